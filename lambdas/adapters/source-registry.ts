import { parseRegisteredSource, type RegisteredSource, type SourceSettings } from '../config.js';
import { registrationKey } from '../core/layout.js';
import { ConfigurationError } from '../errors.js';
import { isSourceId } from '../schema/source.js';
import type { JsonStore } from './s3-store.js';

/**
 * Sources live in the export bucket, one object per source
 * (`<prefix>_registry/sources/<id>.json`), not in the functions' environment:
 * a Lambda environment holds about 11 sources in its 4 KB, and changing it
 * redeploys every function. S3 rather than SSM or AppConfig: the bucket, its
 * data key and the grants to read it exist already, objects have no 4 KB
 * (SSM standard) limit and no per-account parameter quota, and `put` needs no
 * deployment (AppConfig would).
 */
export interface SourceRegistry {
  /** The source's settings; a ConfigurationError names the registry object when there is none. */
  get(sourceId: string): Promise<SourceSettings>;
  registration(sourceId: string): Promise<RegisteredSource>;
}

/** How long a registration is reused per container. @default 60 (SOURCE_CACHE_SECONDS) */
export const DEFAULT_SOURCE_CACHE_SECONDS = 60;

export interface SourceRegistryOptions {
  readonly store: Pick<JsonStore, 'bucket' | 'getJson'>;
  readonly prefix: string;
  /** @default DEFAULT_SOURCE_CACHE_SECONDS */
  readonly cacheSeconds?: number;
  /** @default () => new Date() */
  readonly now?: () => Date;
}

/**
 * Reads registrations through the JsonStore (its retries, its SSE-KMS key).
 * A registration is reused for `cacheSeconds`, so a change reaches every
 * container within that time without a call per task; a missing or invalid
 * one is not kept, so a source registered a moment later is found at once.
 */
export function createSourceRegistry(options: SourceRegistryOptions): SourceRegistry {
  const { store, prefix } = options;
  const cacheMs = (options.cacheSeconds ?? DEFAULT_SOURCE_CACHE_SECONDS) * 1000;
  if (!Number.isFinite(cacheMs) || cacheMs < 0) {
    throw new ConfigurationError(
      `the source cache time must be a non-negative number of seconds, got ${options.cacheSeconds}`,
    );
  }
  const now = options.now ?? (() => new Date());
  const cache = new Map<string, { readonly value: Promise<RegisteredSource>; readonly readAt: number }>();

  const read = async (sourceId: string): Promise<RegisteredSource> => {
    const key = registrationKey(prefix, sourceId);
    const where = `s3://${store.bucket}/${key}`;
    const raw = await store.getJson<unknown>(key);
    if (raw === undefined) {
      throw new ConfigurationError(`unknown sourceId "${sourceId}": no registration at ${where}`);
    }
    const registered = parseRegisteredSource(raw, where);
    if (registered.id !== sourceId) {
      throw new ConfigurationError(
        `${where}: id is "${registered.id}", expected "${sourceId}" (the key's id)`,
      );
    }
    return registered;
  };

  const registration = (sourceId: string): Promise<RegisteredSource> => {
    if (!isSourceId(sourceId)) {
      // Never an S3 key built from it: it may be anything a caller put in an execution input.
      return Promise.reject(
        new ConfigurationError(
          `sourceId "${String(sourceId).slice(0, 64)}" is not a source id: expected 1-63 lower-case letters, digits or dashes, starting with a letter or digit`,
        ),
      );
    }
    const at = now().getTime();
    const cached = cache.get(sourceId);
    if (cached && at - cached.readAt < cacheMs) return cached.value;
    const value = read(sourceId);
    cache.set(sourceId, { value, readAt: at });
    value.catch(() => {
      if (cache.get(sourceId)?.value === value) cache.delete(sourceId);
    });
    return value;
  };

  return {
    registration,
    get: async (sourceId) => (await registration(sourceId)).settings,
  };
}

/** The registry object for a source: the inverse of parseRegisteredSource. */
export function registrationRecord(registered: {
  readonly id: string;
  readonly clientSecret: string;
  readonly settings: Record<string, unknown>;
}): { id: string; clientSecret: string; settings: Record<string, unknown> } {
  const { id: _id, ...settings } = registered.settings;
  return { id: registered.id, clientSecret: registered.clientSecret, settings };
}
