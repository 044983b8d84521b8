import { parseSourceSettings, type SourceSettings } from '../config.js';
import { registrationKey } from '../core/layout.js';
import { asObject, rejectUnknownKeys, requiredString } from '../core/validate.js';
import { ConfigurationError } from '../errors.js';
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
export interface RegisteredSource {
  readonly id: string;
  /** Name or ARN of the Secrets Manager secret with the client's credentials (only MintToken reads it). */
  readonly clientSecret: string;
  readonly settings: SourceSettings;
}

export interface SourceRegistry {
  /** The source's settings; a ConfigurationError names the registry object when there is none. */
  get(sourceId: string): Promise<SourceSettings>;
  registration(sourceId: string): Promise<RegisteredSource>;
}

/** Lower-case id used in S3 keys, execution names and schedules (checked before it goes into a key). */
export const SOURCE_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

export const isSourceId = (value: unknown): value is string =>
  typeof value === 'string' && SOURCE_ID_PATTERN.test(value);

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
    const registered = parseRegistration(raw, where);
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

const REGISTRATION_KEYS = ['$schema', 'id', 'clientSecret', 'settings'];
/** Keys of a source's settings that would be credentials or the id: they belong elsewhere in a registration. */
const NOT_IN_SETTINGS: Record<string, string> = {
  id: 'the id is the registration\'s top-level "id"',
  clientId: 'credentials belong in the client secret',
  privateKeyFile: 'credentials belong in the client secret',
  kmsKeyId: 'credentials belong in the client secret',
  tokenUrl: 'authorization settings belong in the client secret',
  scope: 'authorization settings belong in the client secret',
  scopeSyntax: 'authorization settings belong in the client secret',
  extraScopes: 'authorization settings belong in the client secret',
};

/**
 * A registry object: `{ "$schema"?, "id", "clientSecret", "settings" }`, where
 * `settings` is a source's settings without its id and without credentials.
 * Errors name the field path (`<path>.settings.export.level`) and what was expected.
 */
export function parseRegistration(raw: unknown, path = 'registration'): RegisteredSource {
  const record = asObject(raw, path);
  rejectUnknownKeys(record, REGISTRATION_KEYS, path);
  const id = requiredString(record, 'id', path);
  if (!SOURCE_ID_PATTERN.test(id)) {
    throw new ConfigurationError(
      `${path}.id must be 1-63 lower-case letters, digits or dashes, starting with a letter or digit`,
    );
  }
  const clientSecret = requiredString(record, 'clientSecret', path);
  const settingsPath = `${path}.settings`;
  const settings = asObject(record.settings, settingsPath);
  for (const key of Object.keys(settings)) {
    const reason = NOT_IN_SETTINGS[key];
    if (reason) throw new ConfigurationError(`${settingsPath}.${key} is not allowed: ${reason}`);
  }
  return { id, clientSecret, settings: parseSourceSettings({ ...settings, id }, settingsPath) };
}

/** The registry object for a source: the inverse of parseRegistration. */
export function registrationRecord(registered: {
  readonly id: string;
  readonly clientSecret: string;
  readonly settings: Record<string, unknown>;
}): { id: string; clientSecret: string; settings: Record<string, unknown> } {
  const { id: _id, ...settings } = registered.settings;
  return { id: registered.id, clientSecret: registered.clientSecret, settings };
}
