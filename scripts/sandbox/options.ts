/** Sandbox options: defaults in one place, validated up front so a misspelled option fails loudly. */
import type { Dataset } from './data/types.js';
import { EHR_MODE_NAMES, type EhrMode, isEhrMode } from './ehr-modes.js';

export interface SandboxOptions {
  /** Port of the main origin (FHIR API, token endpoint, files). @default 0 (any free port) */
  readonly port?: number;
  /** Port of the second origin (an S3-like file host). @default 0 (any free port) */
  readonly secondPort?: number;
  /** @default '127.0.0.1' */
  readonly host?: string;
  /** Seed of the synthetic dataset. @default 42 */
  readonly seed?: number;
  /** Patients in the synthetic dataset. @default 1000 */
  readonly patientCount?: number;
  /** Serve this dataset instead of generating one from `seed` and `patientCount`. */
  readonly dataset?: Dataset;
  /** How long an export stays in progress (0: complete at the first poll). @default 2000 */
  readonly jobDurationMs?: number;
  /** Retry-After (seconds) on in-progress status, kick-off 429/503 and file 429/503. @default 1 */
  readonly retryAfterSeconds?: number;
  /** Lifetime of issued access tokens. @default 300 */
  readonly accessTokenLifetimeSeconds?: number;
  /** Resources per output file; larger types are split across several files. @default 5000 */
  readonly resourcesPerFile?: number;
  /** The manifest's `requiresAccessToken` for files on the main origin. @default true */
  readonly requiresAccessToken?: boolean;
  /**
   * When set, main-origin file links expire this long after each manifest read (410 Gone
   * afterwards; read the manifest again for fresh links). @default undefined (links never expire)
   */
  readonly fileLinkLifetimeMs?: number;
  /** Lifetime of presigned second-origin links. @default 3600 */
  readonly presignedLinkSeconds?: number;
  /** The manifest's `Expires` header is this long after the manifest read, unless links expire sooner. @default 86_400_000 */
  readonly manifestExpiresMs?: number;
  /** The sandbox clock (jobs, tokens, assertions, link expiry). @default () => new Date() */
  readonly now?: () => Date;
  /** Served files are generated once into a fresh folder under this one, removed on close. @default os.tmpdir() */
  readonly spoolDirectory?: string;
  /** Oldest request-log entries are dropped past this many. @default 100_000 */
  readonly requestLogLimit?: number;
  /** Used to fetch registered `jwks_url`s. @default globalThis.fetch */
  readonly fetch?: typeof fetch;
  /** Every client registered without an `ehr` of its own meets this EHR's behaviour (ehr-modes.ts). */
  readonly ehr?: EhrMode;
  // Auth modes (issue 16 part 2): a cms-bcda mode sets ['client_secret_basic'].
  /**
   * Client authentication the token endpoint accepts and discovery lists
   * (`token_endpoint_auth_methods_supported`). @default ['private_key_jwt']
   */
  readonly tokenEndpointAuthMethods?: readonly TokenEndpointAuthMethod[];
  // Bulk Data 2.0 output options (issue 16 part 4): see export/partial-manifests.ts.
  /** Output files per page of a partial manifest (kick-offs with allowPartialManifests=true). @default 2 */
  readonly partialManifestPageSize?: number;
}

export const TOKEN_ENDPOINT_AUTH_METHODS = ['private_key_jwt', 'client_secret_basic'] as const;
export type TokenEndpointAuthMethod = (typeof TOKEN_ENDPOINT_AUTH_METHODS)[number];

export type ResolvedOptions = Required<
  Omit<SandboxOptions, 'dataset' | 'fileLinkLifetimeMs' | 'spoolDirectory' | 'ehr'>
> &
  Pick<SandboxOptions, 'dataset' | 'fileLinkLifetimeMs' | 'spoolDirectory' | 'ehr'>;

export const DEFAULTS = {
  port: 0,
  secondPort: 0,
  host: '127.0.0.1',
  seed: 42,
  patientCount: 1000,
  jobDurationMs: 2000,
  retryAfterSeconds: 1,
  accessTokenLifetimeSeconds: 300,
  resourcesPerFile: 5000,
  requiresAccessToken: true,
  presignedLinkSeconds: 3600,
  manifestExpiresMs: 86_400_000,
  requestLogLimit: 100_000,
  tokenEndpointAuthMethods: ['private_key_jwt'] as readonly TokenEndpointAuthMethod[],
  partialManifestPageSize: 2,
} as const;

export class SandboxOptionsError extends Error {
  override readonly name = 'SandboxOptionsError';
}

const INTEGER_RULES: Record<string, { min: number; max?: number }> = {
  port: { min: 0, max: 65535 },
  secondPort: { min: 0, max: 65535 },
  seed: { min: Number.MIN_SAFE_INTEGER },
  patientCount: { min: 1 },
  jobDurationMs: { min: 0 },
  retryAfterSeconds: { min: 0 },
  accessTokenLifetimeSeconds: { min: 1 },
  resourcesPerFile: { min: 1 },
  fileLinkLifetimeMs: { min: 1 },
  presignedLinkSeconds: { min: 1 },
  manifestExpiresMs: { min: 1 },
  requestLogLimit: { min: 1 },
  partialManifestPageSize: { min: 1 },
};

export function resolveOptions(options: SandboxOptions = {}): ResolvedOptions {
  const known = new Set([
    ...Object.keys(INTEGER_RULES),
    'host',
    'dataset',
    'requiresAccessToken',
    'now',
    'fetch',
    'spoolDirectory',
    'ehr',
    'tokenEndpointAuthMethods',
  ]);
  for (const [key, value] of Object.entries(options)) {
    if (!known.has(key)) {
      throw new SandboxOptionsError(`unknown sandbox option "${key}" (known: ${[...known].join(', ')})`);
    }
    if (value === undefined) continue;
    const rule = INTEGER_RULES[key];
    if (
      rule &&
      (!Number.isInteger(value) || value < rule.min || (rule.max !== undefined && value > rule.max))
    ) {
      throw new SandboxOptionsError(
        `sandbox option ${key}: expected an integer ≥ ${rule.min}${rule.max !== undefined ? ` and ≤ ${rule.max}` : ''}, got ${JSON.stringify(value)}`,
      );
    }
  }
  for (const key of ['host', 'spoolDirectory'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'string') {
      throw new SandboxOptionsError(`sandbox option ${key}: expected a string`);
    }
  }
  if (options.ehr !== undefined && !isEhrMode(options.ehr)) {
    throw new SandboxOptionsError(`sandbox option ehr: expected one of ${EHR_MODE_NAMES.join(', ')}`);
  }
  if (options.requiresAccessToken !== undefined && typeof options.requiresAccessToken !== 'boolean') {
    throw new SandboxOptionsError('sandbox option requiresAccessToken: expected a boolean');
  }
  const methods: unknown = options.tokenEndpointAuthMethods;
  if (
    methods !== undefined &&
    (!Array.isArray(methods) ||
      methods.length === 0 ||
      methods.some((method) => !(TOKEN_ENDPOINT_AUTH_METHODS as readonly unknown[]).includes(method)))
  ) {
    throw new SandboxOptionsError(
      `sandbox option tokenEndpointAuthMethods: expected a non-empty list of ${TOKEN_ENDPOINT_AUTH_METHODS.join(', ')}`,
    );
  }
  for (const key of ['now', 'fetch'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'function') {
      throw new SandboxOptionsError(`sandbox option ${key}: expected a function`);
    }
  }
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  return {
    ...DEFAULTS,
    // A sandbox that is BCDA authenticates as BCDA does: client id and secret over Basic only.
    ...(options.ehr === 'cms-bcda' ? { tokenEndpointAuthMethods: ['client_secret_basic'] } : {}),
    now: () => new Date(),
    fetch: globalThis.fetch,
    ...defined,
  } as ResolvedOptions;
}
