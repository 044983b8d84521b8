/** Time arithmetic and FHIR instant formatting, in UTC, with no access to the wall clock. */

export const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;
export const YEAR_MS = Math.round(365.25 * DAY_MS);

/** How far back the synthetic history reaches from the dataset's epoch. */
export const HISTORY_MS = 5 * YEAR_MS;

const TWO_DIGITS = Array.from({ length: 100 }, (_, i) => `${i}`.padStart(2, '0'));
/** `mm:ss.` for each second of an hour, and `SSSZ` for each millisecond: instants are 3 pieces. */
const SECONDS_OF_HOUR = Array.from(
  { length: 3600 },
  (_, i) => `${TWO_DIGITS[Math.floor(i / 60)]}:${TWO_DIGITS[i % 60]}.`,
);
const MILLIS_Z = Array.from({ length: 1000 }, (_, i) => `${`${i}`.padStart(3, '0')}Z`);
/** Caches hold the days and hours a dataset uses (its history and birth dates); cleared past these sizes. */
const MAX_CACHED = 200_000;
const dayTexts = new Map<number, string>();
const hourTexts = new Map<number, string>();
let lastHour = Number.NaN;
let lastHourText = '';

/** `YYYY-MM-DD` of the UTC day of `ms`. */
export function formatDate(ms: number): string {
  const day = Math.floor(ms / DAY_MS);
  let text = dayTexts.get(day);
  if (text === undefined) {
    if (dayTexts.size >= MAX_CACHED) dayTexts.clear();
    text = new Date(day * DAY_MS).toISOString().slice(0, 10);
    dayTexts.set(day, text);
  }
  return text;
}

/**
 * FHIR `instant` with milliseconds, e.g. `2024-03-05T14:07:09.123Z`: the same text as
 * `Date#toISOString` for years 0–9999, from cached pieces (this runs several times per resource,
 * and fewer pieces make the line cheaper to flatten and encode).
 */
export function formatInstant(ms: number): string {
  const hour = Math.floor(ms / HOUR_MS);
  // The instants of one resource mostly fall in the same hour: skip the map for those.
  let prefix = hour === lastHour ? lastHourText : hourTexts.get(hour);
  if (prefix === undefined) {
    if (hourTexts.size >= MAX_CACHED) hourTexts.clear();
    prefix = new Date(hour * HOUR_MS).toISOString().slice(0, 14);
    hourTexts.set(hour, prefix);
  }
  lastHour = hour;
  lastHourText = prefix;
  const ofHour = ms - hour * HOUR_MS;
  return prefix + SECONDS_OF_HOUR[Math.floor(ofHour / 1000)]! + MILLIS_Z[ofHour % 1000]!;
}

const INSTANT = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$/;

/**
 * Milliseconds of an ISO 8601 date or instant, or NaN when it is not one. A time without a zone
 * is read as UTC: reading it in the host's zone would make the data differ between machines.
 */
export function parseInstant(text: string): number {
  const match = INSTANT.exec(text);
  if (match === null) return Number.NaN;
  return Date.parse(match[1] !== undefined && match[4] === undefined ? `${text}Z` : text);
}
