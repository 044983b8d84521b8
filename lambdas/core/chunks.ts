import { ConfigurationError, InvalidExecutionInputError } from '../errors.js';
import { DURATION, MAX_PATIENTS_PER_CHUNK, SPAN } from '../schema/source.js';
import { isValidInstant } from './validate.js';

/**
 * Chunk plans: a cohort too big for one `$export` job (the server's queue
 * times out on it) split into jobs that finish. A chunk is either a slice of
 * the cohort's patients, sent as the `patient` parameter (POST only), or a
 * `_since`/`_until` window. Pure: the member list comes from the caller
 * (`groupMemberReferences` reads it from a Group resource).
 */
export interface PatientChunk {
  readonly kind: 'patients';
  /** 0-based position in the plan: names the chunk in keys, logs and the receipt. */
  readonly index: number;
  /** `Patient/<id>` references, in the Group's order. */
  readonly patients: readonly string[];
}

export interface TimeChunk {
  readonly kind: 'time';
  readonly index: number;
  readonly since: string;
  readonly until: string;
}

export type Chunk = PatientChunk | TimeChunk;

export { MAX_PATIENTS_PER_CHUNK };

/** Slices the members into chunks of `size`, in order; the last one may be smaller. */
export function planPatientChunks(members: readonly string[], size: number): PatientChunk[] {
  if (!Number.isInteger(size) || size < 1 || size > MAX_PATIENTS_PER_CHUNK) {
    throw new ConfigurationError(
      `chunk.size must be an integer from 1 to ${MAX_PATIENTS_PER_CHUNK} (got ${String(size)})`,
    );
  }
  if (members.length === 0) {
    throw new ConfigurationError('the cohort has no members to split into chunks');
  }
  const chunks: PatientChunk[] = [];
  for (let start = 0; start < members.length; start += size) {
    chunks.push({ kind: 'patients', index: chunks.length, patients: members.slice(start, start + size) });
  }
  return chunks;
}

/** `30d` or `12h` as milliseconds; anything else is refused with what was expected. */
export function parseChunkWindow(text: string, path = 'chunk.window'): number {
  if (!SPAN.regex.test(text)) throw new ConfigurationError(`${path} must be ${SPAN.expected}`);
  return Number(text.slice(0, -1)) * (text.endsWith('d') ? 86_400_000 : 3_600_000);
}

const UNIT_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `45m`, `12h` or `2d` as milliseconds (chunkOnTimeout). */
export function parseDuration(text: string, path: string): number {
  if (!DURATION.regex.test(text)) throw new ConfigurationError(`${path} must be ${DURATION.expected}`);
  return Number(text.slice(0, -1)) * UNIT_MS[text.slice(-1)]!;
}

/**
 * Consecutive `[since, until)` windows covering the span. The first window
 * starts at `since` exactly: a delta's `_since` is the watermark, and no
 * instant between two windows is left out or asked for twice.
 */
export function planTimeChunks(since: string, until: string, window: string): TimeChunk[] {
  const start = isValidInstant(since) ? Date.parse(since) : Number.NaN;
  const end = isValidInstant(until) ? Date.parse(until) : Number.NaN;
  if (Number.isNaN(start) || Number.isNaN(end) || start >= end) {
    throw new InvalidExecutionInputError(
      'a time-chunked export needs since earlier than until, both ISO 8601 instants with a timezone',
    );
  }
  const step = parseChunkWindow(window);
  const chunks: TimeChunk[] = [];
  for (let at = start; at < end; at += step) {
    chunks.push({
      kind: 'time',
      index: chunks.length,
      since: new Date(at).toISOString(),
      until: new Date(Math.min(at + step, end)).toISOString(),
    });
  }
  return chunks;
}

export interface GroupMembers {
  /** Distinct `Patient/<id>` references of the current members, in the Group's order. */
  readonly patients: readonly string[];
  /** Members marked `inactive` or whose period has ended: not in the cohort today. */
  readonly inactive: number;
  /** The same patient listed more than once. */
  readonly repeated: number;
}

const PATIENT_REFERENCE = /^(?:.*\/)?Patient\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/;

/**
 * The patients of a Group resource (`GET Group/{id}`), as `patient` parameter
 * references. A member named only by an identifier, or by a reference that is
 * not to a Patient, is refused with where it was and what was searched: the
 * `patient` parameter takes FHIR references, and a cohort silently smaller
 * than its Group is the failure this must not have.
 */
export function groupMemberReferences(group: unknown, groupId: string, now = new Date()): GroupMembers {
  const where = `Group/${groupId}`;
  if (
    group === null ||
    typeof group !== 'object' ||
    (group as { resourceType?: unknown }).resourceType !== 'Group'
  ) {
    throw new ConfigurationError(`GET ${where} did not return a Group resource`);
  }
  const members = (group as { member?: unknown }).member;
  if (members !== undefined && !Array.isArray(members)) {
    throw new ConfigurationError(`${where}.member is not an array`);
  }
  const seen = new Set<string>();
  const patients: string[] = [];
  let inactive = 0;
  let repeated = 0;
  (members ?? []).forEach((member: unknown, index: number) => {
    const at = `${where} member[${index}]`;
    const entity = (member as { entity?: { reference?: unknown; identifier?: unknown } } | null)?.entity;
    const period = (member as { period?: { end?: unknown } } | null)?.period;
    const ended = typeof period?.end === 'string' && Date.parse(period.end) <= now.getTime();
    if ((member as { inactive?: unknown } | null)?.inactive === true || ended) {
      inactive += 1;
      return;
    }
    const reference = entity?.reference;
    if (typeof reference !== 'string') {
      throw new ConfigurationError(
        entity?.identifier !== undefined
          ? `${at} names its patient only by an identifier (member.entity.identifier, no member.entity.reference); the patient parameter needs Patient/<id>: search Patient?identifier=<system>|<value> on the server and list the patients by reference`
          : `${at} has no member.entity.reference`,
      );
    }
    const match = PATIENT_REFERENCE.exec(reference);
    if (!match) {
      throw new ConfigurationError(
        `${at} references ${reference.startsWith('#') ? 'a contained resource' : `a ${reference.split('/').at(-2) ?? 'non-Patient'} resource`}, not a Patient: only Patient members can be sent as the patient parameter`,
      );
    }
    const patient = `Patient/${match[1]}`;
    if (seen.has(patient)) {
      repeated += 1;
      return;
    }
    seen.add(patient);
    patients.push(patient);
  });
  if (patients.length === 0) {
    throw new ConfigurationError(
      `${where} has no current Patient members (searched member[].entity.reference; ${inactive} inactive)`,
    );
  }
  return { patients, inactive, repeated };
}
