/**
 * `_typeFilter` support: parses one `Type?query` query (parameters AND-ed, comma-separated values
 * OR-ed, as FHIR search defines) into a predicate over a resource's facts, so that a filtered
 * selection is counted and sliced without rendering any resource.
 */
import { DAY_MS, MINUTE_MS } from './clock.js';

export interface Token {
  readonly system: string;
  readonly code: string;
}

/**
 * A token search parameter over a small closed domain: each resource maps to one domain value
 * (an index), and each domain value carries the codings a token matches against.
 */
export interface TokenParameter {
  readonly domain: readonly (readonly Token[])[];
  valueIndex(owner: number, j: number): number;
}

export type SearchParameters = Readonly<Record<string, TokenParameter>>;

export type ResourcePredicate = (owner: number, j: number, lastUpdatedMs: number) => boolean;

export type CompiledFilter =
  | { readonly ok: true; readonly predicate: ResourcePredicate }
  | { readonly ok: false; readonly message: string };

interface TokenClause {
  readonly parameter: TokenParameter;
  /** 1 where the domain value satisfies the clause. */
  readonly accepts: Uint8Array;
}

const LAST_UPDATED = '_lastUpdated';
const DATE_PREFIXES = ['eq', 'gt', 'ge', 'lt', 'le'] as const;
type DatePrefix = (typeof DATE_PREFIXES)[number];

const DATE =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

/** A token parameter whose domain values are plain codes of one CodeSystem (statuses). */
export function codeParameter(
  system: string,
  codes: readonly string[],
  valueIndex: (owner: number, j: number) => number,
): TokenParameter {
  return { domain: codes.map((code) => [{ system, code }]), valueIndex };
}

export function compileTypeFilter(type: string, query: string, parameters: SearchParameters): CompiledFilter {
  const fail = (reason: string): CompiledFilter => ({
    ok: false,
    message: `_typeFilter ${type}?${query}: ${reason}`,
  });
  const supported = [LAST_UPDATED, ...Object.keys(parameters)].sort().join(', ');
  const entries = [...new URLSearchParams(query)];
  if (entries.length === 0) return fail('the query has no search parameter');

  let lowMs = Number.NEGATIVE_INFINITY;
  let highMs = Number.POSITIVE_INFINITY;
  const tokens: TokenClause[] = [];
  for (const [name, rawValue] of entries) {
    const [base, modifier] = splitModifier(name);
    if (base !== LAST_UPDATED && !Object.hasOwn(parameters, base)) {
      return fail(`search parameter "${base}" is not supported for ${type} (supported: ${supported})`);
    }
    if (modifier !== undefined) return fail(`modifier ":${modifier}" on "${base}" is not supported`);
    if (rawValue === '') return fail(`search parameter "${base}" has no value`);
    if (base === LAST_UPDATED) {
      // URLSearchParams reads an unescaped '+' of a zone offset as a space.
      const range = parseDateComparison(rawValue.replaceAll(' ', '+'));
      if (typeof range === 'string') return fail(range);
      lowMs = Math.max(lowMs, range[0]);
      highMs = Math.min(highMs, range[1]);
      continue;
    }
    const parameter = parameters[base]!;
    const accepts = compileTokens(parameter, rawValue);
    if (accepts === undefined) return fail(`search parameter "${base}" has an empty token in "${rawValue}"`);
    tokens.push({ parameter, accepts });
  }
  return { ok: true, predicate: conjunction(lowMs, highMs, tokens) };
}

function splitModifier(name: string): [string, string | undefined] {
  const colon = name.indexOf(':');
  return colon < 0 ? [name, undefined] : [name.slice(0, colon), name.slice(colon + 1)];
}

function conjunction(lowMs: number, highMs: number, tokens: readonly TokenClause[]): ResourcePredicate {
  return (owner, j, lastUpdatedMs) => {
    if (lastUpdatedMs < lowMs || lastUpdatedMs >= highMs) return false;
    for (const clause of tokens) {
      if (clause.accepts[clause.parameter.valueIndex(owner, j)] !== 1) return false;
    }
    return true;
  };
}

/** OR of the comma-separated tokens (`code`, `system|code`, `system|`, `|code`), per domain value. */
function compileTokens(parameter: TokenParameter, value: string): Uint8Array | undefined {
  const accepts = new Uint8Array(parameter.domain.length);
  for (const token of value.split(',')) {
    if (token === '' || token === '|') return undefined;
    const bar = token.indexOf('|');
    const system = bar < 0 ? undefined : token.slice(0, bar);
    const code = bar < 0 ? token : token.slice(bar + 1);
    parameter.domain.forEach((codings, index) => {
      if (codings.some((coding) => tokenMatches(coding, system, code))) accepts[index] = 1;
    });
  }
  return accepts;
}

function tokenMatches(coding: Token, system: string | undefined, code: string): boolean {
  if (system === undefined) return coding.code === code;
  if (code === '') return coding.system === system;
  return coding.system === system && coding.code === code;
}

/**
 * The half-open range [low, high) of lastUpdated values a `_lastUpdated` comparison accepts. A
 * partial date denotes its whole precision range, as FHIR date search does: `gt2024` is after the
 * end of 2024, `le2024-03` up to the end of March 2024.
 */
function parseDateComparison(value: string): [number, number] | string {
  const prefixed = /^[a-z]{2}/.test(value);
  const prefix = (prefixed ? value.slice(0, 2) : 'eq') as DatePrefix;
  if (!DATE_PREFIXES.includes(prefix)) {
    return `prefix "${prefix}" of _lastUpdated is not supported (use one of ${DATE_PREFIXES.join(', ')})`;
  }
  const span = parseDateSpan(prefixed ? value.slice(2) : value);
  if (span === undefined) {
    return `_lastUpdated value "${value}" is not a FHIR date or dateTime, with an optional prefix (${DATE_PREFIXES.join(', ')})`;
  }
  const [start, end] = span;
  switch (prefix) {
    case 'eq':
      return [start, end];
    case 'gt':
      return [end, Number.POSITIVE_INFINITY];
    case 'ge':
      return [start, Number.POSITIVE_INFINITY];
    case 'lt':
      return [Number.NEGATIVE_INFINITY, start];
    case 'le':
      return [Number.NEGATIVE_INFINITY, end];
  }
}

/** [start, end) in epoch milliseconds of a date at its own precision; a time without zone is UTC. */
function parseDateSpan(text: string): [number, number] | undefined {
  const match = DATE.exec(text);
  if (match === null) return undefined;
  const [, y, mo, d, h, mi, s, fraction, zone] = match;
  const year = Number(y);
  const month = mo === undefined ? 1 : Number(mo);
  const day = d === undefined ? 1 : Number(d);
  const hour = h === undefined ? 0 : Number(h);
  const minute = mi === undefined ? 0 : Number(mi);
  const second = s === undefined ? 0 : Number(s);
  const millis = fraction === undefined ? 0 : Math.floor(Number(`0.${fraction}`) * 1000);
  const local = Date.UTC(year, month - 1, day, hour, minute, second, millis);
  const check = new Date(local);
  if (
    check.getUTCFullYear() !== year ||
    check.getUTCMonth() !== month - 1 ||
    check.getUTCDate() !== day ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  ) {
    return undefined;
  }
  const start = local - zoneOffsetMs(zone);
  if (mo === undefined) return [start, Date.UTC(year + 1, 0, 1)];
  if (d === undefined) return [start, Date.UTC(year, month, 1)];
  if (h === undefined) return [start, start + DAY_MS];
  if (s === undefined) return [start, start + MINUTE_MS];
  if (fraction === undefined) return [start, start + 1000];
  return [start, start + 1];
}

function zoneOffsetMs(zone: string | undefined): number {
  if (zone === undefined || zone === 'Z') return 0;
  const sign = zone.startsWith('-') ? -1 : 1;
  return sign * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6))) * MINUTE_MS;
}
