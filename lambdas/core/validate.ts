import { ConfigurationError } from '../errors.js';

/**
 * Tiny validators that name the offending key and what was expected, so a
 * user reading `sources.epic.export.level must be one of system, patient,
 * group (got "grp")` knows exactly what to fix. Values are echoed only for
 * short enumerations and numbers, never for free text (it may be a secret).
 */
export type ErrorFactory = (message: string) => Error;

const configError: ErrorFactory = (message) => new ConfigurationError(message);

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') {
    // "must be a non-empty string (got a string)" left people guessing what was wrong with it.
    if (value === '') return 'an empty string';
    return value.trim() === '' ? 'a string of only white space' : 'a string';
  }
  return typeof value === 'object' ? 'an object' : `${typeof value}`;
}

export function asObject(
  value: unknown,
  path: string,
  fail: ErrorFactory = configError,
): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw fail(`${path} must be a JSON object (got ${describe(value)})`);
  }
  return value as Record<string, unknown>;
}

export function rejectUnknownKeys(
  object: Record<string, unknown>,
  allowed: readonly string[],
  path: string,
  fail: ErrorFactory = configError,
): void {
  const unknown = Object.keys(object).filter((key) => !allowed.includes(key));
  if (unknown.length > 0) {
    throw fail(`${path} has unknown key(s) ${unknown.join(', ')}; expected only ${allowed.join(', ')}`);
  }
}

export function optionalString(
  object: Record<string, unknown>,
  key: string,
  path: string,
  fail: ErrorFactory = configError,
): string | undefined {
  const value = object[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.trim() === '') {
    throw fail(`${path}.${key} must be a non-empty string (got ${describe(value)})`);
  }
  return value;
}

export function requiredString(
  object: Record<string, unknown>,
  key: string,
  path: string,
  fail: ErrorFactory = configError,
): string {
  const value = optionalString(object, key, path, fail);
  if (value === undefined) throw fail(`${path}.${key} is required: a non-empty string`);
  return value;
}

export function optionalEnum<T extends string>(
  object: Record<string, unknown>,
  key: string,
  allowed: readonly T[],
  path: string,
  fail: ErrorFactory = configError,
): T | undefined {
  const value = object[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    const got = typeof value === 'string' && value.length <= 40 ? JSON.stringify(value) : describe(value);
    throw fail(`${path}.${key} must be one of ${allowed.join(', ')} (got ${got})`);
  }
  return value as T;
}

export function optionalInteger(
  object: Record<string, unknown>,
  key: string,
  range: { min: number; max: number },
  path: string,
  fail: ErrorFactory = configError,
): number | undefined {
  const value = object[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < range.min || value > range.max) {
    const got = typeof value === 'number' ? String(value) : describe(value);
    throw fail(`${path}.${key} must be an integer from ${range.min} to ${range.max} (got ${got})`);
  }
  return value;
}

export function optionalBoolean(
  object: Record<string, unknown>,
  key: string,
  path: string,
  fail: ErrorFactory = configError,
): boolean | undefined {
  const value = object[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw fail(`${path}.${key} must be true or false (got ${describe(value)})`);
  return value;
}

export function optionalStringArray(
  object: Record<string, unknown>,
  key: string,
  path: string,
  fail: ErrorFactory = configError,
  pattern?: { regex: RegExp; expected: string },
): string[] | undefined {
  const value = object[key];
  if (value === undefined) return undefined;
  if (!Array.isArray(value))
    throw fail(`${path}.${key} must be an array of strings (got ${describe(value)})`);
  return value.map((item, index) => {
    if (typeof item !== 'string' || item.trim() === '') {
      throw fail(`${path}.${key}[${index}] must be a non-empty string (got ${describe(item)})`);
    }
    if (pattern && !pattern.regex.test(item)) {
      throw fail(`${path}.${key}[${index}] must be ${pattern.expected}`);
    }
    return item;
  });
}

/** An ISO 8601 instant with a timezone, as FHIR `instant` requires for `_since`. */
export const FHIR_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/**
 * A FHIR instant that names a real moment: Date.parse rolls 2026-02-30 over
 * to March 2 instead of refusing it, so the calendar is checked here.
 */
export function isValidInstant(value: string): boolean {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})/.exec(value);
  if (!match || !FHIR_INSTANT.test(value) || Number.isNaN(Date.parse(value))) return false;
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return (
    month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth && hour <= 23 && minute <= 59 && second <= 59
  );
}

export function optionalInstant(
  object: Record<string, unknown>,
  key: string,
  path: string,
  fail: ErrorFactory = configError,
): string | undefined {
  const value = optionalString(object, key, path, fail);
  if (value === undefined) return undefined;
  if (!isValidInstant(value)) {
    throw fail(`${path}.${key} must be an ISO 8601 instant with a timezone, e.g. 2026-01-31T00:00:00Z`);
  }
  return value;
}

export const RESOURCE_TYPE = {
  regex: /^[A-Z][A-Za-z]{1,63}$/,
  expected: 'a FHIR resource type such as Patient',
};

/** A span for people: `301 s`, `14 min`, `5 h`, `12 days`, `972 years` (whole units, rounded down). */
export function formatSpan(ms: number): string {
  const seconds = Math.floor(Math.abs(ms) / 1000);
  if (seconds < 600) return `${seconds} s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3600)} h`;
  if (seconds < 63_072_000) return `${Math.floor(seconds / 86_400)} days`;
  return `${Math.floor(seconds / 31_557_600)} years`;
}
