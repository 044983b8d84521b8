import { createHash } from 'node:crypto';
import { InvalidExecutionInputError } from '../errors.js';
import { parseWith } from '../schema/fields.js';
import {
  chunkingProblem,
  chunkSchema,
  type ExportSettings,
  INCLUDE_ASSOCIATED_DATA,
  PATIENT_REFERENCE,
  patientParameterProblem,
} from '../schema/source.js';
import {
  asObject,
  type ErrorFactory,
  isValidInstant,
  optionalEnum,
  optionalInstant,
  optionalString,
  optionalStringArray,
  RESOURCE_TYPE,
  rejectUnknownKeys,
  requiredString,
} from './validate.js';

/**
 * What starts an execution: an EventBridge Scheduler schedule
 * (`{ "sourceId": "epic", "since": "auto" }`) or an operator's backfill
 * (`{ "sourceId", "since", "until", "types", "typeFilters", "groupId", "patient",
 * "includeAssociatedData" }`).
 */
export interface ExecutionInput {
  readonly sourceId: string;
  /** `auto` = the last fully successful export's transactionTime (none stored: a full export). */
  readonly since?: string | 'auto';
  readonly until?: string;
  readonly types?: readonly string[];
  readonly typeFilters?: readonly string[];
  readonly groupId?: string;
  readonly level?: 'system' | 'patient' | 'group';
  /** Replaces the source's `export.patient` for this execution ([] = no patient parameter). */
  readonly patient?: readonly string[];
  /** Replaces the source's `export.includeAssociatedData` for this execution. */
  readonly includeAssociatedData?: readonly string[];
  /** Replaces the source's `export.chunk` for this execution; `false` exports in one piece. */
  readonly chunk?: ExportSettings['chunk'] | false;
}

const fail: ErrorFactory = (message) => new InvalidExecutionInputError(message);
const KEYS = [
  'sourceId',
  'since',
  'until',
  'types',
  'typeFilters',
  'groupId',
  'level',
  'patient',
  'includeAssociatedData',
  'chunk',
  'scheduledTime',
];

export function parseExecutionInput(raw: unknown): ExecutionInput {
  const input = asObject(raw, 'execution input', fail);
  rejectUnknownKeys(input, KEYS, 'execution input', fail);
  const sourceId = requiredString(input, 'sourceId', 'input', fail);
  const since = input.since === 'auto' ? 'auto' : optionalInstant(input, 'since', 'input', fail);
  const until = optionalInstant(input, 'until', 'input', fail);
  if (since && since !== 'auto' && until && Date.parse(since) >= Date.parse(until)) {
    throw fail('input.since must be earlier than input.until');
  }
  const types = optionalStringArray(input, 'types', 'input', fail, RESOURCE_TYPE);
  const typeFilters = optionalStringArray(input, 'typeFilters', 'input', fail, {
    regex: /^[A-Z][A-Za-z]+\?.+$/,
    expected: 'a query like Observation?category=laboratory',
  });
  const groupId = optionalString(input, 'groupId', 'input', fail);
  const level = optionalEnum(input, 'level', ['system', 'patient', 'group'], 'input', fail);
  const patient = optionalStringArray(input, 'patient', 'input', fail, PATIENT_REFERENCE);
  const includeAssociatedData = optionalStringArray(
    input,
    'includeAssociatedData',
    'input',
    fail,
    INCLUDE_ASSOCIATED_DATA,
  );
  const chunk =
    input.chunk === undefined || input.chunk === false
      ? input.chunk
      : parseWith(chunkSchema, input.chunk, 'input.chunk', fail);
  if (patient !== undefined && patient.length > 0 && level === 'system') {
    throw fail(
      'input.patient applies to patient or group level exports only; set input.level to patient or group',
    );
  }
  return {
    sourceId,
    ...(since === undefined ? {} : { since }),
    ...(until === undefined ? {} : { until }),
    ...(types === undefined ? {} : { types }),
    ...(typeFilters === undefined ? {} : { typeFilters }),
    ...(groupId === undefined ? {} : { groupId }),
    ...(level === undefined ? {} : { level }),
    ...(patient === undefined ? {} : { patient }),
    ...(includeAssociatedData === undefined ? {} : { includeAssociatedData }),
    ...(chunk === undefined ? {} : { chunk }),
  };
}

/**
 * Checks an input's `patient` against the source it runs for, as the schema checks a source's own:
 * the level the execution will have, and the source's kick-off method (GET cannot carry `patient`).
 * Throws an InvalidExecutionInputError naming the fix, so a backfill fails before it takes the lock.
 */
export function checkInputAgainstSource(
  input: ExecutionInput,
  settings: Pick<ExportSettings, 'level' | 'groupId' | 'method'> & {
    readonly patient?: readonly string[];
    readonly chunk?: ExportSettings['chunk'];
    readonly allowPartialManifests?: boolean;
  },
): void {
  const level = input.level ?? (input.groupId ? 'group' : settings.level);
  if (input.chunk !== undefined && input.chunk !== false) {
    const problem = chunkingProblem({
      level,
      groupId: input.groupId ?? settings.groupId,
      method: settings.method,
      patient: input.patient ?? settings.patient ?? [],
      chunk: input.chunk,
      allowPartialManifests: settings.allowPartialManifests,
    });
    if (problem !== undefined)
      throw fail(
        `input.${problem.path.join('.')} ${problem.message.replace('set export.level', 'set input.level')}`,
      );
  }
  if (input.patient === undefined) {
    // The source's own list rides along unless the input replaces it: a system-level override cannot carry it.
    const inherited = settings.patient ?? [];
    if (inherited.length > 0 && level === 'system')
      throw fail('input.level system cannot carry the source’s export.patient; also pass "patient": []');
    return;
  }
  const problem = patientParameterProblem({ level, method: settings.method, patient: input.patient });
  if (problem !== undefined)
    throw fail(`input.patient ${problem.replace('set export.level', 'set input.level')}`);
}

/**
 * An execution name that is the same for the same source and window, so that
 * starting a window twice is refused by Step Functions instead of exporting
 * twice. Names allow 80 characters of [A-Za-z0-9-_].
 */
export function executionNameForWindow(
  sourceId: string,
  since: string | 'auto' | undefined,
  until: string | undefined,
): string {
  const compact = (instant: string | undefined) => {
    if (instant === undefined) return 'open';
    if (instant === 'auto') return 'auto';
    if (!isValidInstant(instant)) {
      throw new InvalidExecutionInputError('a window bound must be an ISO 8601 instant with a timezone');
    }
    // 2026-01-01T00:00:00.123Z → 20260101T000000123Z: only characters CloudWatch accepts in execution names.
    return new Date(Date.parse(instant)).toISOString().replace(/[-:.]/g, '').replace(/000Z$/, 'Z');
  };
  const name = `${sourceId}-${compact(since)}-${compact(until)}`;
  if (name.length <= MAX_EXECUTION_NAME) return name;
  // Truncating would give two windows of a long source id one name; keep them apart with a digest.
  const digest = createHash('sha256').update(name).digest('hex').slice(0, 12);
  return `${name.slice(0, MAX_EXECUTION_NAME - digest.length - 1)}-${digest}`;
}

const MAX_EXECUTION_NAME = 80;

/** Splits [from, to) into consecutive windows of `windowDays` for a backfill. */
export function splitIntoWindows(
  from: string,
  to: string,
  windowDays: number,
): { since: string; until: string }[] {
  const start = isValidInstant(from) ? Date.parse(from) : Number.NaN;
  const end = isValidInstant(to) ? Date.parse(to) : Number.NaN;
  if (Number.isNaN(start) || Number.isNaN(end) || start >= end) {
    throw new InvalidExecutionInputError('backfill needs --from earlier than --to, both ISO 8601 instants');
  }
  if (!Number.isFinite(windowDays) || windowDays <= 0) {
    throw new InvalidExecutionInputError('backfill --window must be a positive number of days, e.g. 30d');
  }
  const step = windowDays * 86_400_000;
  const windows: { since: string; until: string }[] = [];
  for (let at = start; at < end; at += step) {
    windows.push({
      since: new Date(at).toISOString(),
      until: new Date(Math.min(at + step, end)).toISOString(),
    });
  }
  return windows;
}
