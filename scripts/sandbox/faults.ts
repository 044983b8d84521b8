/**
 * Fault injection: what a misbehaving (or merely real) EHR does to a Bulk Data client.
 *
 * A plan is chosen per client at registration, and can be overridden for a single export
 * (see `parseFaultSpec`). Count faults (`kickoff429: 2`) fire for the first n matching
 * requests and then stop, so a client that retries correctly eventually succeeds.
 */
import { EXPORTABLE_TYPES, type ExportableType } from './data/types.js';
import { type NonConformantPlan, nonConformantPlanProblem } from './export/non-conformance.js';

/** Targets one output file (its index in the manifest's `output` array) or, when omitted, every file. */
export interface FileTarget {
  readonly fileIndex?: number;
}

export interface DropAfterBytes extends FileTarget {
  /** Body bytes sent before the socket is destroyed. */
  readonly bytes: number;
  /** How many GETs of each targeted file are cut. @default 1 */
  readonly times?: number;
}

export type SlowFile =
  | (FileTarget & { readonly bytesPerSecond: number })
  | (FileTarget & { readonly stallAfterBytes: number; readonly stallMs: number });

export interface FaultPlan {
  /** Token endpoint: the first n token requests get a bare 400 with no OAuth error body (Epic, now and then). */
  readonly token400?: number;
  /** Access tokens issued with this lifetime instead of the sandbox's. An expired token gets 401 everywhere. */
  readonly tokenLifetimeSeconds?: number;
  /** `expires_in` sent as a JSON string, as CMS BCDA does. */
  readonly tokenExpiresInAsString?: boolean;

  /** The first n kick-offs get 429 + Retry-After + OperationOutcome. */
  readonly kickoff429?: number;
  /** The first n kick-offs get 503 + Retry-After + OperationOutcome. */
  readonly kickoff503?: number;
  /** Every kick-off fails with this 4xx/5xx status and an OperationOutcome. */
  readonly kickoffErrorStatus?: number;
  /** Only `Group/[id]/$export` is offered; system and Patient kick-offs get 400 (Oracle Health). */
  readonly groupExportOnly?: boolean;
  /** A repeated `_type` parameter gets 400; the types must be comma-joined (Oracle Health). */
  readonly rejectRepeatedType?: boolean;
  /** `_elements` gets 400 even with `Prefer: handling=lenient` (Oracle Health). */
  readonly rejectElements?: boolean;
  /** `_typeFilter` is silently ignored, as the IG allows. */
  readonly ignoreTypeFilter?: boolean;
  /** A finished export still blocks the next kick-off (429) until it is DELETEd (Epic). */
  readonly oneExportUntilDelete?: boolean;
  /** A Group export needs a `system/Group.read|rs` scope on top of the exported types (eClinicalWorks). */
  readonly requireGroupScope?: boolean;
  /** Exports one client may have in progress at once (default 1, as Epic and Oracle Health allow); more get 429. */
  readonly concurrentExports?: number;
  /** How long the export stays in progress (Epic exports can take days). */
  readonly jobDurationMs?: number;
  /**
   * A Group export whose cohort (the Group's members, or the `patient` list when given) has more
   * than this many patients is accepted and then stays in progress forever (202 + X-Progress, never
   * a manifest) until it is DELETEd: the EHR whose backend times out on a large cohort. Smaller
   * cohorts complete as usual, which is what chunking by patients relies on.
   */
  readonly neverCompleteAboveMembers?: number;

  /** The first n status polls of each export get 503 with a non-FHIR body (an infrastructure layer). */
  readonly status5xx?: number;
  /** The first n status polls of each export get 500 + OperationOutcome with issue code `transient`. */
  readonly statusTransient?: number;
  /** The first n status polls of each export get 429 + Retry-After (polling too fast). */
  readonly status429?: number;
  /** Retry-After (seconds) sent with in-progress 202s. */
  readonly statusRetryAfterSeconds?: number;
  /** Retry-After sent verbatim with in-progress 202s and status 429s (an HTTP-date, garbage, a negative number). */
  readonly statusRetryAfterRaw?: string;
  /** Every status poll fails with this 4xx/5xx status and an OperationOutcome (code `processing`). */
  readonly statusErrorStatus?: number;
  /** The export fails: once its duration has passed, status answers 500 + OperationOutcome code `exception`. */
  readonly jobFailure?: boolean;
  /** The first n exports of the client fail as jobFailure does; later ones complete (a flaky backend). */
  readonly jobFailures?: number;
  /** The server does not know `_until` (IG v2 has none): a kick-off with it is refused unless lenient. */
  readonly untilUnsupported?: boolean;
  /** The export is forgotten right after kick-off: status, DELETE and files answer 404. */
  readonly jobExpiry?: boolean;
  /** The manifest's `error[]` lists an OperationOutcome file (a partial success). */
  readonly errorFile?: boolean;
  /**
   * The SMART reference server's `some_file_generation_failed`: every second output file of each
   * type (the 2nd, 4th, …) delivers 1 resource of the `count` its manifest entry gives, and
   * `error[]` carries an OperationOutcome per such file naming it (`Failed to export
   * Condition.2.ndjson`; the first `fatal`, the rest `error`), plus one `information` issue that
   * reports no failure. Issue 16 part 5.
   */
  readonly someFilesFailed?: boolean;
  /**
   * The manifest carries this `transactionTime` (an ISO instant) whatever the clock says: a server
   * whose clock or job cache repeats one, or one from the future. What is exported does not change.
   */
  readonly fixedTransactionTime?: string;
  /** The manifest lists output file n (its index in `output`) twice: again at the end of `output`. */
  readonly duplicateManifestEntry?: number;

  /** The first n GETs of each file get 401 even with a valid token. */
  readonly file401?: number;
  /** The first n GETs of each file get 404 (CMS BCDA, transiently). */
  readonly file404?: number;
  /** The first n GETs of each file get 429 + Retry-After. */
  readonly file429?: number;
  /** The first n GETs of each file get 503 + Retry-After. */
  readonly file5xx?: number;
  /** The socket is destroyed after this many body bytes. */
  readonly dropAfterBytes?: DropAfterBytes;
  /** Files trickle out, or stall once. */
  readonly slowFile?: SlowFile;
  /** Line `line` (1-based, counted across all of the type's files in manifest order) is served as invalid JSON. */
  readonly malformedLine?: { readonly type: ExportableType; readonly line: number };
  /** The manifest `count` of the type's first file is off by `delta`. */
  readonly countMismatch?: { readonly type: ExportableType; readonly delta: number };
  /** Files are served by the second origin as presigned URLs, with `requiresAccessToken: false`. */
  readonly filesFromSecondOrigin?: boolean;
  /** File URLs stay on the main origin (token required) but answer 307 to a presigned URL on the second origin. */
  readonly redirectFiles?: boolean;
  /** Resources per output file (Oracle Health: ~20,000 small files). */
  readonly resourcesPerFile?: number;
  /** File links expire this long after each manifest read (410 Gone on the main origin); re-read the manifest. */
  readonly fileLinkLifetimeMs?: number;

  // EHR behaviours the sandbox's EHR modes (ehr-modes.ts) are made of.
  /** Resource scopes must be SMART v1 with a capital action, system/Patient.Read (Epic); others get invalid_scope. */
  readonly capitalizedScopes?: boolean;
  /** Resource scopes must be SMART v1 (system/Patient.read); v2 scopes get invalid_scope. */
  readonly v1ScopesOnly?: boolean;
  /** Only the Groups `all` (every patient) and `runout` (the `small` Group) exist; other ids get 400 (CMS BCDA). */
  readonly bcdaGroups?: boolean;
  /** `_since` must be a full instant with a timezone and not in the future; a date alone gets 400 (CMS BCDA). */
  readonly sinceNeedsTimestamp?: boolean;
  /** Only GET kick-offs are routed; POST gets 405 (CMS BCDA). */
  readonly getKickOffOnly?: boolean;
  /** In-progress 202s carry no Retry-After (CMS BCDA): the client must back off on its own. */
  readonly noStatusRetryAfter?: boolean;

  // Which origins a client sends its token to (issue 16).
  /**
   * The server names one kind of URL on another origin of itself: the main listener under its
   * other loopback name (`localhost` for `127.0.0.1`, and back), which serves it as usual.
   * `status`: the kick-off's Content-Location. `page`: the manifest comes in two pages and the
   * `next` link points there. `files`: the file URLs (requiresAccessToken stays true).
   */
  readonly otherOriginFor?: 'status' | 'page' | 'files';

  // US Core conformance of what is exported (issue 17 part 4; export/non-conformance.ts).
  /**
   * Chosen resources break US Core 6.1.0, `kind: count` (exact per export): missingPatientIdentifier,
   * genderOutsideValueSet, observationWithoutCategory, conditionWithoutClinicalStatus. The first n of
   * the type in export order that have what the kind breaks; kinds never share a resource. A count
   * larger than the export has is refused at kick-off (400).
   */
  readonly nonConformant?: NonConformantPlan;
}

export type FaultName = keyof FaultPlan;

type Validator = (value: unknown) => string | undefined;

const isCount: Validator = (v) =>
  Number.isInteger(v) && (v as number) >= 0 ? undefined : 'expected a non-negative integer';
const isPositive: Validator = (v) =>
  Number.isInteger(v) && (v as number) > 0 ? undefined : 'expected a positive integer';
const isBoolean: Validator = (v) => (typeof v === 'boolean' ? undefined : 'expected true or false');
const isString: Validator = (v) => (typeof v === 'string' ? undefined : 'expected a string');
const isInstant: Validator = (v) =>
  typeof v === 'string' &&
  /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(v) &&
  !Number.isNaN(Date.parse(v))
    ? undefined
    : 'expected an ISO 8601 instant with a timezone, e.g. 2026-01-01T00:00:00Z';
/** Like isCount, but not a count fault: a bare name does not mean 1. */
const isIndex: Validator = (v) =>
  Number.isInteger(v) && (v as number) >= 0 ? undefined : 'expected a file index (a non-negative integer)';
const isErrorStatus: Validator = (v) =>
  Number.isInteger(v) && (v as number) >= 400 && (v as number) <= 599
    ? undefined
    : 'expected an HTTP status from 400 to 599';
const isType = (v: unknown): v is ExportableType =>
  typeof v === 'string' && (EXPORTABLE_TYPES as readonly string[]).includes(v);

function isObjectWith(fields: Record<string, { validate: Validator; optional?: boolean }>): Validator {
  return (v) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'expected an object';
    const record = v as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      if (!(key in fields)) return `unknown field "${key}" (expected ${Object.keys(fields).join(', ')})`;
    }
    for (const [key, field] of Object.entries(fields)) {
      if (record[key] === undefined) {
        if (field.optional) continue;
        return `missing field "${key}"`;
      }
      const problem = field.validate(record[key]);
      if (problem) return `field "${key}": ${problem}`;
    }
    return undefined;
  };
}

const fileIndex = { validate: isCount, optional: true };
const typeField = {
  validate: (v: unknown) => (isType(v) ? undefined : 'expected an exportable resource type'),
};

const VALIDATORS: Record<FaultName, Validator> = {
  token400: isCount,
  tokenLifetimeSeconds: isPositive,
  tokenExpiresInAsString: isBoolean,
  kickoff429: isCount,
  kickoff503: isCount,
  kickoffErrorStatus: isErrorStatus,
  groupExportOnly: isBoolean,
  rejectRepeatedType: isBoolean,
  rejectElements: isBoolean,
  ignoreTypeFilter: isBoolean,
  oneExportUntilDelete: isBoolean,
  requireGroupScope: isBoolean,
  jobDurationMs: isCount,
  neverCompleteAboveMembers: isIndex,
  status5xx: isCount,
  statusTransient: isCount,
  status429: isCount,
  statusRetryAfterSeconds: isCount,
  statusRetryAfterRaw: isString,
  statusErrorStatus: isErrorStatus,
  jobFailure: isBoolean,
  jobFailures: isCount,
  concurrentExports: isCount,
  untilUnsupported: isBoolean,
  jobExpiry: isBoolean,
  errorFile: isBoolean,
  someFilesFailed: isBoolean,
  fixedTransactionTime: isInstant,
  duplicateManifestEntry: isIndex,
  file401: isCount,
  file404: isCount,
  file429: isCount,
  file5xx: isCount,
  dropAfterBytes: isObjectWith({
    bytes: { validate: isCount },
    times: { validate: isPositive, optional: true },
    fileIndex,
  }),
  slowFile: (v) => {
    const throttle = isObjectWith({ bytesPerSecond: { validate: isPositive }, fileIndex });
    const stall = isObjectWith({
      stallAfterBytes: { validate: isCount },
      stallMs: { validate: isCount },
      fileIndex,
    });
    if (!throttle(v) || !stall(v)) return undefined;
    return 'expected { bytesPerSecond, fileIndex? } or { stallAfterBytes, stallMs, fileIndex? }';
  },
  malformedLine: isObjectWith({ type: typeField, line: { validate: isPositive } }),
  countMismatch: isObjectWith({
    type: typeField,
    delta: { validate: (v) => (Number.isInteger(v) && v !== 0 ? undefined : 'expected a non-zero integer') },
  }),
  filesFromSecondOrigin: isBoolean,
  redirectFiles: isBoolean,
  resourcesPerFile: isPositive,
  fileLinkLifetimeMs: isPositive,
  capitalizedScopes: isBoolean,
  v1ScopesOnly: isBoolean,
  bcdaGroups: isBoolean,
  sinceNeedsTimestamp: isBoolean,
  getKickOffOnly: isBoolean,
  noStatusRetryAfter: isBoolean,
  otherOriginFor: (v) =>
    v === 'status' || v === 'page' || v === 'files' ? undefined : 'expected status, page or files',
  // US Core conformance of what is exported (issue 17 part 4).
  nonConformant: nonConformantPlanProblem,
};

export const FAULT_NAMES = Object.keys(VALIDATORS) as readonly FaultName[];

const COUNT_FAULTS = new Set<FaultName>(
  FAULT_NAMES.filter((name) => VALIDATORS[name] === isCount && name !== 'jobDurationMs'),
);

export class FaultPlanError extends Error {
  override readonly name = 'FaultPlanError';
}

/** Checks every fault name and value; a misspelled fault fails loudly rather than silently not firing. */
export function validateFaultPlan(value: unknown): FaultPlan {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new FaultPlanError('faults: expected an object of fault name to setting');
  }
  for (const [name, setting] of Object.entries(value)) {
    if (!(name in VALIDATORS)) {
      throw new FaultPlanError(`faults: unknown fault "${name}" (known: ${FAULT_NAMES.join(', ')})`);
    }
    if (setting === undefined) continue;
    const problem = VALIDATORS[name as FaultName](setting);
    if (problem) throw new FaultPlanError(`faults.${name}: ${problem}, got ${JSON.stringify(setting)}`);
  }
  const plan = value as FaultPlan;
  if (plan.filesFromSecondOrigin && plan.redirectFiles) {
    throw new FaultPlanError('faults: filesFromSecondOrigin and redirectFiles are mutually exclusive');
  }
  return plan;
}

/**
 * Parses a per-export fault spec, as found in a `/fault/<spec>/fhir` base URL or an
 * `X-Sandbox-Fault` header. Either a JSON object, or `name[=value][;name[=value]]...` where a
 * value is JSON when it parses as JSON and a plain string otherwise; a bare name means `true`
 * (or 1 for count faults). Examples: `file5xx=2;jobFailure`, `dropAfterBytes={"bytes":1000}`,
 * `statusRetryAfterRaw=Fri, 31 Dec 1999 23:59:59 GMT`.
 */
export function parseFaultSpec(spec: string): FaultPlan {
  const text = spec.trim();
  if (text === '') return {};
  if (text.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new FaultPlanError(`fault spec: invalid JSON ${JSON.stringify(text)}`);
    }
    return validateFaultPlan(parsed);
  }
  const plan: Record<string, unknown> = {};
  for (const part of text.split(';')) {
    const item = part.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    const name = eq === -1 ? item : item.slice(0, eq).trim();
    if (eq === -1) {
      plan[name] = COUNT_FAULTS.has(name as FaultName) ? 1 : true;
      continue;
    }
    const raw = item.slice(eq + 1);
    try {
      plan[name] = name === 'statusRetryAfterRaw' || name === 'fixedTransactionTime' ? raw : JSON.parse(raw);
    } catch {
      plan[name] = raw;
    }
  }
  return validateFaultPlan(plan);
}

/** Later plans override earlier ones, fault by fault. */
export function mergeFaultPlans(...plans: readonly (FaultPlan | undefined)[]): FaultPlan {
  const merged: Record<string, unknown> = {};
  for (const plan of plans) {
    if (!plan) continue;
    for (const [name, setting] of Object.entries(plan)) {
      if (setting !== undefined) merged[name] = setting;
    }
  }
  return merged as FaultPlan;
}

/** Counts how often each count fault fired for one subject (a client, an export, a file). */
export class FaultCounter {
  readonly #fired = new Map<string, number>();

  /** True (and counted) when the fault still has shots left. */
  take(name: string, limit: number | undefined): boolean {
    if (!limit) return false;
    const fired = this.#fired.get(name) ?? 0;
    if (fired >= limit) return false;
    this.#fired.set(name, fired + 1);
    return true;
  }
}

/** Whether a file-targeted fault applies to the file at `outputIndex` (undefined for error/deleted files). */
export function targetsFile(target: FileTarget, outputIndex: number | undefined): boolean {
  return target.fileIndex === undefined || target.fileIndex === outputIndex;
}
