import type { ResourceValidation, ResourceValidator, ValidationIssue } from './types.js';

/**
 * The validation report: counts that add up file by file (a partial summary
 * per data file, merged one at a time into `_validation/summary.json`), the
 * issue lines of non-conformant resources, and the short table the CLI prints.
 * Nothing here holds an element's value: only types, ids, profiles, rule ids,
 * FHIRPath locations and counts.
 */

export interface ValidationTotals {
  checked: number;
  conformant: number;
  nonConformant: number;
  /** Conformant, with warnings: counted in the rules' counts, no issue line. */
  withWarningsOnly: number;
}

/** One profile's counts, as a partial summary holds them. */
export interface ProfileTally extends ValidationTotals {
  /** Resources that claimed the profile in meta.profile (the rest had it chosen for their type). */
  claimed: number;
  /** Occurrences per rule id, every severity. */
  issues: Record<string, number>;
  /** Occurrences of severity `error` per rule id: what makes resources non-conformant. */
  errors: Record<string, number>;
  /** Resources populating each must-support element (element id). */
  mustSupportPopulated: Record<string, number>;
}

export interface TypeTally extends ValidationTotals {
  profiles: Record<string, ProfileTally>;
}

/** What one data file (or several, merged) added up to: `_validation/_work/partials/<index>.json`. */
export interface PartialSummary {
  files: number;
  byType: Record<string, TypeTally>;
}

const zeroTotals = (): ValidationTotals => ({
  checked: 0,
  conformant: 0,
  nonConformant: 0,
  withWarningsOnly: 0,
});

export const emptyPartialSummary = (): PartialSummary => ({ files: 0, byType: {} });

const addTotals = (into: ValidationTotals, from: ValidationTotals) => {
  into.checked += from.checked;
  into.conformant += from.conformant;
  into.nonConformant += from.nonConformant;
  into.withWarningsOnly += from.withWarningsOnly;
};

const addCounts = (into: Record<string, number>, from: Readonly<Record<string, number>>) => {
  for (const [key, count] of Object.entries(from)) into[key] = (into[key] ?? 0) + count;
};

/** The record's entry for `key`, made by `create` the first time. */
function entry<T>(record: Record<string, T>, key: string, create: () => T): T {
  let value = record[key];
  if (value === undefined) {
    value = create();
    record[key] = value;
  }
  return value;
}

const newTypeTally = (): TypeTally => ({ ...zeroTotals(), profiles: {} });
const newProfileTally = (): ProfileTally => ({
  ...zeroTotals(),
  claimed: 0,
  issues: {},
  errors: {},
  mustSupportPopulated: {},
});

const hasError = (issues: readonly ValidationIssue[]) => issues.some((issue) => issue.severity === 'error');

/** Counts one resource's validation into `summary`. */
export function tallyResource(summary: PartialSummary, result: ResourceValidation): void {
  const type = entry(summary.byType, result.resourceType, newTypeTally);
  const warned = result.profiles.some((profile) => profile.issues.length > 0);
  const one: ValidationTotals = {
    checked: 1,
    conformant: result.conformant ? 1 : 0,
    nonConformant: result.conformant ? 0 : 1,
    withWarningsOnly: result.conformant && warned ? 1 : 0,
  };
  addTotals(type, one);
  for (const profile of result.profiles) {
    const tally = entry(type.profiles, profile.profile, newProfileTally);
    const failed = hasError(profile.issues);
    addTotals(tally, {
      checked: 1,
      conformant: failed ? 0 : 1,
      nonConformant: failed ? 1 : 0,
      withWarningsOnly: !failed && profile.issues.length > 0 ? 1 : 0,
    });
    if (profile.claimed) tally.claimed += 1;
    for (const issue of profile.issues) {
      tally.issues[issue.rule] = (tally.issues[issue.rule] ?? 0) + 1;
      if (issue.severity === 'error') tally.errors[issue.rule] = (tally.errors[issue.rule] ?? 0) + 1;
    }
    for (const element of new Set(profile.mustSupportPopulated)) {
      tally.mustSupportPopulated[element] = (tally.mustSupportPopulated[element] ?? 0) + 1;
    }
  }
}

/** Adds `from` into `into`: the report merges partial summaries one at a time. */
export function mergePartialSummary(into: PartialSummary, from: PartialSummary): void {
  into.files += from.files;
  for (const [typeName, fromType] of Object.entries(from.byType)) {
    const type = entry(into.byType, typeName, newTypeTally);
    addTotals(type, fromType);
    for (const [url, fromProfile] of Object.entries(fromType.profiles)) {
      const profile = entry(type.profiles, url, newProfileTally);
      addTotals(profile, fromProfile);
      profile.claimed += fromProfile.claimed;
      addCounts(profile.issues, fromProfile.issues);
      addCounts(profile.errors, fromProfile.errors);
      addCounts(profile.mustSupportPopulated, fromProfile.mustSupportPopulated);
    }
  }
}

/**
 * One line of `_validation/issues/…/part-NNNN.ndjson`: a resource that does not
 * conform to `profile`, and every issue it has against it (warnings too, so the
 * line is complete). A resource failing two profiles has two lines.
 */
export interface IssueLine {
  readonly resourceType: string;
  readonly id: string | null;
  readonly profile: string;
  readonly issues: readonly Pick<ValidationIssue, 'severity' | 'rule' | 'expression' | 'message'>[];
}

/** The issue lines of one resource: none when it conforms (a warning-only resource is counted, not listed). */
export function issueLines(result: ResourceValidation): IssueLine[] {
  if (result.conformant) return [];
  return result.profiles
    .filter((profile) => hasError(profile.issues))
    .map((profile) => ({
      resourceType: result.resourceType,
      id: result.id ?? null,
      profile: profile.profile,
      issues: profile.issues.map(({ severity, rule, expression, message }) => ({
        severity,
        rule,
        expression,
        message,
      })),
    }));
}

/** `_validation/summary.json`. */
export interface ValidationSummary {
  readonly summaryVersion: 1;
  /** The rules applied: `hl7.fhir.us.core#6.1.0`. */
  readonly ruleSet: string;
  readonly sourceId: string;
  readonly transactionTime: string;
  /** The export folder validated (`s3 key`, ends in `/`) and its receipt. */
  readonly exportFolder: string;
  readonly receiptKey: string;
  /** Data files validated. */
  readonly files: number;
  readonly totals: ValidationTotals;
  readonly byType: Readonly<Record<string, TypeSummary>>;
}

export interface TypeSummary extends ValidationTotals {
  readonly profiles: Readonly<Record<string, ProfileSummary>>;
}

export interface ProfileSummary extends ValidationTotals {
  readonly title: string;
  readonly claimed: number;
  /** Occurrences per rule id (every severity), most frequent first. */
  readonly issues: Readonly<Record<string, number>>;
  /** Of those, the occurrences of severity `error`: a rule absent here only warned. */
  readonly errors: Readonly<Record<string, number>>;
  /** Every must-support element of the profile: % of the resources checked against it that populate it. */
  readonly mustSupportCoverage: Readonly<Record<string, number>>;
}

const byKey = <T>(record: Readonly<Record<string, T>>) =>
  Object.keys(record)
    .sort()
    .map((key) => [key, record[key]!] as const);

/** One decimal, rounded down: an element populated by all but one resource never reads 100%. */
const percentOf = (part: number, whole: number) => (whole === 0 ? 0 : Math.floor((part * 1000) / whole) / 10);

/**
 * The summary from the merged partials. Keys are sorted (types, profiles, elements; rules by count,
 * then id), so the same export always gives the same bytes, however its files were split into invocations.
 */
export function buildValidationSummary(
  merged: PartialSummary,
  validator: Pick<ResourceValidator, 'ruleSet' | 'mustSupportElements' | 'profileTitle'>,
  about: Pick<ValidationSummary, 'sourceId' | 'transactionTime' | 'exportFolder' | 'receiptKey'>,
): ValidationSummary {
  const totals = zeroTotals();
  const byType: Record<string, TypeSummary> = {};
  for (const [typeName, type] of byKey(merged.byType)) {
    addTotals(totals, type);
    const profiles: Record<string, ProfileSummary> = {};
    for (const [url, tally] of byKey(type.profiles)) {
      const coverage: Record<string, number> = {};
      const elements = new Set([
        ...validator.mustSupportElements(url),
        ...Object.keys(tally.mustSupportPopulated),
      ]);
      for (const element of [...elements].sort()) {
        coverage[element] = percentOf(tally.mustSupportPopulated[element] ?? 0, tally.checked);
      }
      profiles[url] = {
        title: validator.profileTitle(url),
        checked: tally.checked,
        conformant: tally.conformant,
        nonConformant: tally.nonConformant,
        withWarningsOnly: tally.withWarningsOnly,
        claimed: tally.claimed,
        issues: Object.fromEntries(rulesByCount(tally.issues)),
        errors: Object.fromEntries(rulesByCount(tally.errors)),
        mustSupportCoverage: coverage,
      };
    }
    byType[typeName] = {
      checked: type.checked,
      conformant: type.conformant,
      nonConformant: type.nonConformant,
      withWarningsOnly: type.withWarningsOnly,
      profiles,
    };
  }
  return {
    summaryVersion: 1,
    ruleSet: validator.ruleSet,
    ...about,
    files: merged.files,
    totals,
    byType,
  };
}

function rulesByCount(issues: Readonly<Record<string, number>>): [string, number][] {
  return Object.entries(issues).sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0));
}

export interface RuleCount {
  readonly rule: string;
  readonly count: number;
  /** Occurrences of severity `error`; 0: the rule only warned. */
  readonly errors: number;
}

/**
 * A type's rules over all its profiles: those that made resources non-conformant first (by their
 * error count), then the warnings, so a best-practice warning on every resource (dom-6) never hides
 * the rule a data team must act on.
 */
export function topRules(type: TypeSummary, limit = 3): RuleCount[] {
  const counts: Record<string, number> = {};
  const errors: Record<string, number> = {};
  for (const profile of Object.values(type.profiles)) {
    addCounts(counts, profile.issues);
    addCounts(errors, profile.errors);
  }
  return Object.entries(counts)
    .map(([rule, count]) => ({ rule, count, errors: errors[rule] ?? 0 }))
    .sort(
      (a, b) => b.errors - a.errors || b.count - a.count || (a.rule < b.rule ? -1 : a.rule > b.rule ? 1 : 0),
    )
    .slice(0, limit);
}

/**
 * The short table `npm run validate`, `npm run export` and the demo print: per type,
 * resources checked, % conformant and the top three rules (errors first; a rule that only
 * warned says so).
 */
export function renderValidationTable(summary: Pick<ValidationSummary, 'byType' | 'totals'>): string {
  const rows: string[][] = [['type', 'checked', 'conformant', 'top rules']];
  const percent = (totals: ValidationTotals) =>
    `${totals.checked === 0 ? '100' : (Math.floor((totals.conformant * 1000) / totals.checked) / 10).toFixed(1)}%`;
  for (const [typeName, type] of byKey(summary.byType)) {
    const top = topRules(type)
      .map(({ rule, count, errors }) => `${rule} (${count}${errors === 0 ? ', warning' : ''})`)
      .join(', ');
    rows.push([typeName, String(type.checked), percent(type), top || '—']);
  }
  rows.push(['all', String(summary.totals.checked), percent(summary.totals), '']);
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows
    .map((row) =>
      row
        .map((cell, column) =>
          column === 1 || column === 2 ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!),
        )
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
