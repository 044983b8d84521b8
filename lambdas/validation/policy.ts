import type { ValidationTotals } from './report.js';

/** A source's `validation` setting (lambdas/schema/source.ts), with its defaults applied. */
export interface ValidationPolicy {
  readonly enabled: boolean;
  readonly mode: 'report' | 'gate';
  /** gate: the share of checked resources, in %, that must be conformant. */
  readonly minConformantPercent: number;
}

export const DEFAULT_VALIDATION_POLICY: ValidationPolicy = {
  enabled: true,
  mode: 'report',
  minConformantPercent: 100,
};

export interface ValidationVerdict {
  readonly passed: boolean;
  readonly mode: ValidationPolicy['mode'];
  /** Why it did not pass; absent when it passed. */
  readonly reason?: string;
  /** Conformant resources as % of those checked, two decimals (100 when none were checked). */
  readonly conformantPercent: number;
}

/** Two decimals, rounded down: 99.996% must not read as the 100% a gate asks for. */
export function conformantPercent(totals: Pick<ValidationTotals, 'checked' | 'conformant'>): number {
  if (totals.checked === 0) return 100;
  return Math.floor((totals.conformant * 10_000) / totals.checked) / 100;
}

/**
 * `report` always passes (a data team reads the counts); `gate` passes only at or above
 * its threshold, and says by how much it fell short. Counts only: never a resource.
 */
export function judge(policy: ValidationPolicy, totals: ValidationTotals): ValidationVerdict {
  const percent = conformantPercent(totals);
  if (policy.mode === 'report') return { passed: true, mode: 'report', conformantPercent: percent };
  if (percent >= policy.minConformantPercent)
    return { passed: true, mode: 'gate', conformantPercent: percent };
  return {
    passed: false,
    mode: 'gate',
    conformantPercent: percent,
    reason:
      `${totals.conformant} of ${totals.checked} resources (${percent}%) conform to US Core, ` +
      `below the gate's minConformantPercent of ${policy.minConformantPercent}%`,
  };
}
