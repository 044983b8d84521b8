import { ConfigurationError } from '../../errors.js';

/**
 * When a cached access token must be replaced. Tokens are refreshed ahead of
 * time rather than after a 401, because a 401 halfway through a gigabyte
 * download costs the download.
 */

/** The design's rule: a token with under five minutes left when it will be used is replaced. */
export const DEFAULT_MIN_VALIDITY_SECONDS = 300;

export interface CachedTokenTimes {
  readonly obtainedAt: Date;
  readonly expiresAt: Date;
}

export interface RefreshInput {
  readonly token: CachedTokenTimes | undefined;
  readonly now: Date;
  /** How long until the caller actually uses the token (e.g. the next poll's wait). @default 0 */
  readonly secondsUntilUse?: number;
  /** @default DEFAULT_MIN_VALIDITY_SECONDS */
  readonly minValiditySeconds?: number;
  readonly forceRefresh?: boolean;
}

export type RefreshDecision =
  | { readonly refresh: true; readonly reason: 'no-token' | 'forced' | 'expiring' }
  | { readonly refresh: false; readonly remainingSecondsAtUse: number };

/**
 * The validity actually demanded of a token: never more than half of its
 * whole lifetime. eClinicalWorks issues 300 s tokens, so a flat five-minute
 * margin would make every fresh token "expiring" and re-mint on every call,
 * flooding the token endpoint the cache exists to protect.
 */
export function effectiveMinValiditySeconds(token: CachedTokenTimes, minValiditySeconds: number): number {
  const lifetimeSeconds = (token.expiresAt.getTime() - token.obtainedAt.getTime()) / 1000;
  return Math.min(minValiditySeconds, Math.max(0, lifetimeSeconds / 2));
}

export function decideRefresh(input: RefreshInput): RefreshDecision {
  const secondsUntilUse = input.secondsUntilUse ?? 0;
  const minValiditySeconds = input.minValiditySeconds ?? DEFAULT_MIN_VALIDITY_SECONDS;
  if (!Number.isFinite(secondsUntilUse) || secondsUntilUse < 0) {
    throw new ConfigurationError(
      `secondsUntilUse must be a non-negative number (got ${String(secondsUntilUse)})`,
    );
  }
  if (!Number.isFinite(minValiditySeconds) || minValiditySeconds < 0) {
    throw new ConfigurationError(
      `minValiditySeconds must be a non-negative number (got ${String(minValiditySeconds)})`,
    );
  }
  if (input.forceRefresh) return { refresh: true, reason: 'forced' };
  if (!input.token) return { refresh: true, reason: 'no-token' };
  const useAt = input.now.getTime() + secondsUntilUse * 1000;
  const remainingSecondsAtUse = (input.token.expiresAt.getTime() - useAt) / 1000;
  // A token already expired at use time is replaced whatever its lifetime.
  if (remainingSecondsAtUse <= 0) return { refresh: true, reason: 'expiring' };
  if (remainingSecondsAtUse < effectiveMinValiditySeconds(input.token, minValiditySeconds)) {
    return { refresh: true, reason: 'expiring' };
  }
  return { refresh: false, remainingSecondsAtUse };
}
