import { DEFAULT_MAX_LINE_BYTES, MAX_MAX_LINE_BYTES, MIN_MAX_LINE_BYTES } from './core/ndjson/line-limit.js';
import { checkFetchableUrl } from './core/urls.js';
import {
  asObject,
  optionalBoolean,
  optionalEnum,
  optionalInteger,
  optionalString,
  optionalStringArray,
  RESOURCE_TYPE,
  rejectUnknownKeys,
  requiredString,
} from './core/validate.js';
import { ConfigurationError } from './errors.js';

/**
 * Everything about a source that is not a secret. On AWS it comes from the
 * CDK config (as the `SOURCES` environment variable of the Prepare function);
 * locally from the source file. The client's credentials are read separately,
 * only by the token-minting function.
 */
export interface SourceSettings {
  /** Lower-case id used in S3 keys, execution names and schedules. */
  readonly id: string;
  /** The FHIR base URL, without a trailing slash. */
  readonly fhirBaseUrl: string;
  readonly export: ExportSettings;
  /** Files downloaded at once (Map MaxConcurrency). @default 4 */
  readonly maxConcurrency: number;
  /** Longest wait between polls that a server may ask for. @default 300 (Oracle Health may need hours) */
  readonly retryAfterCeilingSeconds: number;
  /** Give up on an export that has not completed after this long. @default 72 (Epic exports can take days) */
  readonly deadlineHours: number;
  /** Consecutive transient status errors tolerated before failing. @default 10 */
  readonly maxConsecutiveTransientErrors: number;
  /**
   * How far a manifest's `transactionTime` may be ahead of our clock (the
   * server's clock running fast) before the export is refused. @default 300
   */
  readonly maxClockSkewSeconds: number;
  /** Local mode only: allow http:// for loopback hosts. @default false */
  readonly allowInsecureHttp: boolean;
  /** What to do with a line that is not a valid resource. @default 'fail' */
  readonly invalidLinePolicy: 'fail' | 'quarantine';
  /** Longest NDJSON line accepted, in bytes; Download File's memory follows it (core/ndjson/line-limit.ts). @default 64 MiB */
  readonly maxLineBytes: number;
  /**
   * How long a completed job's file links stay valid when the server sends no
   * `Expires` header: how long a failed export stays resumable. The IG lets
   * servers delete files at will; CMS keeps them 24 h. @default 24
   */
  readonly fileLinksValidHours: number;
  /** The pause before the pass that retries the files the first pass could not land. @default 60 */
  readonly retryPassDelaySeconds: number;
}

export interface ExportSettings {
  /** @default 'group' when groupId is set, else 'system' */
  readonly level: 'system' | 'patient' | 'group';
  readonly groupId?: string;
  /** `_type`; empty = all types the server offers. */
  readonly types: readonly string[];
  /** `_typeFilter` queries such as `Observation?category=laboratory`. */
  readonly typeFilters: readonly string[];
  /** `_elements`. */
  readonly elements: readonly string[];
  /** Kick-off method: newer IG versions prefer POST, some servers only have GET. @default 'GET' */
  readonly method: 'GET' | 'POST';
  /** Oracle Health rejects a repeated `_type`: join with commas. @default 'comma' */
  readonly typeParameterStyle: 'comma' | 'repeat';
  /** @default 'application/fhir+ndjson' */
  readonly outputFormat: string;
}

const SOURCE_KEYS = [
  'id',
  'description',
  'fhirBaseUrl',
  'export',
  'maxConcurrency',
  'retryAfterCeilingSeconds',
  'deadlineHours',
  'maxConsecutiveTransientErrors',
  'maxClockSkewSeconds',
  'allowInsecureHttp',
  'invalidLinePolicy',
  'maxLineBytes',
  'fileLinksValidHours',
  'retryPassDelaySeconds',
];
const EXPORT_KEYS = [
  'level',
  'groupId',
  'types',
  'typeFilters',
  'elements',
  'method',
  'typeParameterStyle',
  'outputFormat',
];

const SOURCE_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;

export function parseSourceSettings(raw: unknown, path = 'source'): SourceSettings {
  const source = asObject(raw, path);
  rejectUnknownKeys(source, [...SOURCE_KEYS, ...AUTH_KEYS], path);
  const id = requiredString(source, 'id', path);
  if (!SOURCE_ID.test(id)) {
    throw new ConfigurationError(
      `${path}.id must be 1-63 lower-case letters, digits or dashes, starting with a letter or digit`,
    );
  }
  const allowInsecureHttp = optionalBoolean(source, 'allowInsecureHttp', path) ?? false;
  const fhirBaseUrl = requiredString(source, 'fhirBaseUrl', path);
  const check = checkFetchableUrl(fhirBaseUrl, allowInsecureHttp);
  if (!check.ok) throw new ConfigurationError(`${path}.fhirBaseUrl ${check.reason}`);

  const exportPath = `${path}.export`;
  const exportRaw = source.export === undefined ? {} : asObject(source.export, exportPath);
  rejectUnknownKeys(exportRaw, EXPORT_KEYS, exportPath);
  const groupId = optionalString(exportRaw, 'groupId', exportPath);
  const level =
    optionalEnum(exportRaw, 'level', ['system', 'patient', 'group'], exportPath) ??
    (groupId ? 'group' : 'system');
  if (level === 'group' && groupId === undefined) {
    throw new ConfigurationError(`${exportPath}.groupId is required when ${exportPath}.level is group`);
  }
  if (level !== 'group' && groupId !== undefined) {
    throw new ConfigurationError(
      `${exportPath}.groupId is set but ${exportPath}.level is ${level}; use level group`,
    );
  }
  const typeFilters = optionalStringArray(exportRaw, 'typeFilters', exportPath, undefined, {
    regex: /^[A-Z][A-Za-z]+\?.+$/,
    expected: 'a query like Observation?category=laboratory',
  });

  return {
    id,
    fhirBaseUrl: fhirBaseUrl.replace(/\/+$/, ''),
    export: {
      level,
      ...(groupId === undefined ? {} : { groupId }),
      types: optionalStringArray(exportRaw, 'types', exportPath, undefined, RESOURCE_TYPE) ?? [],
      typeFilters: typeFilters ?? [],
      elements: optionalStringArray(exportRaw, 'elements', exportPath) ?? [],
      method: optionalEnum(exportRaw, 'method', ['GET', 'POST'], exportPath) ?? 'GET',
      typeParameterStyle:
        optionalEnum(exportRaw, 'typeParameterStyle', ['comma', 'repeat'], exportPath) ?? 'comma',
      outputFormat: optionalString(exportRaw, 'outputFormat', exportPath) ?? 'application/fhir+ndjson',
    },
    maxConcurrency: optionalInteger(source, 'maxConcurrency', { min: 1, max: 1000 }, path) ?? 4,
    retryAfterCeilingSeconds:
      optionalInteger(source, 'retryAfterCeilingSeconds', { min: 5, max: 86_400 }, path) ?? 300,
    deadlineHours: optionalInteger(source, 'deadlineHours', { min: 1, max: 24 * 14 }, path) ?? 72,
    maxConsecutiveTransientErrors:
      optionalInteger(source, 'maxConsecutiveTransientErrors', { min: 0, max: 1000 }, path) ?? 10,
    maxClockSkewSeconds: optionalInteger(source, 'maxClockSkewSeconds', { min: 0, max: 86_400 }, path) ?? 300,
    allowInsecureHttp,
    invalidLinePolicy: optionalEnum(source, 'invalidLinePolicy', ['fail', 'quarantine'], path) ?? 'fail',
    maxLineBytes:
      optionalInteger(source, 'maxLineBytes', { min: MIN_MAX_LINE_BYTES, max: MAX_MAX_LINE_BYTES }, path) ??
      DEFAULT_MAX_LINE_BYTES,
    fileLinksValidHours: optionalInteger(source, 'fileLinksValidHours', { min: 1, max: 24 * 30 }, path) ?? 24,
    retryPassDelaySeconds:
      optionalInteger(source, 'retryPassDelaySeconds', { min: 0, max: 3600 }, path) ?? 60,
  };
}

/** The settings of every source, keyed by id (the `SOURCES` variable on AWS). */
export function parseSourceCatalog(
  raw: string | undefined,
  variable = 'SOURCES',
): Map<string, SourceSettings> {
  if (raw === undefined || raw.trim() === '') {
    throw new ConfigurationError(
      `environment variable ${variable} is missing: expected a JSON array of sources`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigurationError(
      `environment variable ${variable} is not valid JSON: expected an array of sources`,
    );
  }
  if (!Array.isArray(parsed)) throw new ConfigurationError(`${variable} must be a JSON array of sources`);
  const catalog = new Map<string, SourceSettings>();
  parsed.forEach((entry, index) => {
    const settings = parseSourceSettings(entry, `${variable}[${index}]`);
    if (catalog.has(settings.id))
      throw new ConfigurationError(`${variable}[${index}].id ${settings.id} is a duplicate`);
    catalog.set(settings.id, settings);
  });
  return catalog;
}

/** Keys of a local source file that belong to authorization, parsed by the token minter. */
export const AUTH_KEYS = [
  'clientId',
  'privateKeyFile',
  'kmsKeyId',
  'tokenUrl',
  'scope',
  'scopeSyntax',
  'extraScopes',
] as const;

/** Reads a required environment variable, naming it when it is missing. */
export function requireEnv(env: NodeJS.ProcessEnv, name: string, expected: string): string {
  const value = env[name];
  if (value === undefined || value.trim() === '') {
    throw new ConfigurationError(`environment variable ${name} is missing: expected ${expected}`);
  }
  return value;
}
