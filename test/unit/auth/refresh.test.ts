import { describe, expect, it } from 'vitest';
import {
  decideRefresh,
  effectiveMinValiditySeconds,
  type RefreshInput,
} from '../../../lambdas/core/auth/refresh.js';

const NOW = new Date('2026-03-01T12:00:00Z');
const seconds = (n: number) => new Date(NOW.getTime() + n * 1000);
/** A token obtained `age` seconds ago that lives `lifetime` seconds in all. */
const token = (age: number, lifetime: number) => ({
  obtainedAt: seconds(-age),
  expiresAt: seconds(lifetime - age),
});

describe('decideRefresh', () => {
  const table: Array<[string, RefreshInput, ReturnType<typeof decideRefresh>]> = [
    ['no cached token', { token: undefined, now: NOW }, { refresh: true, reason: 'no-token' }],
    [
      'forced (the FHIR server answered 401)',
      { token: token(0, 3600), now: NOW, forceRefresh: true },
      { refresh: true, reason: 'forced' },
    ],
    [
      'an hour-long token, fresh',
      { token: token(0, 3600), now: NOW },
      { refresh: false, remainingSecondsAtUse: 3600 },
    ],
    [
      'an hour-long token with exactly 300 s left',
      { token: token(3300, 3600), now: NOW },
      { refresh: false, remainingSecondsAtUse: 300 },
    ],
    [
      'an hour-long token with 299 s left',
      { token: token(3301, 3600), now: NOW },
      { refresh: true, reason: 'expiring' },
    ],
    [
      '600 s left now but only 240 s at the next use',
      { token: token(3000, 3600), now: NOW, secondsUntilUse: 360 },
      { refresh: true, reason: 'expiring' },
    ],
    [
      '600 s left now and 400 s at the next use',
      { token: token(3000, 3600), now: NOW, secondsUntilUse: 200 },
      { refresh: false, remainingSecondsAtUse: 400 },
    ],
    [
      'a custom margin of 60 s, 61 s left',
      { token: token(3539, 3600), now: NOW, minValiditySeconds: 60 },
      { refresh: false, remainingSecondsAtUse: 61 },
    ],
    [
      'a custom margin of 60 s, 59 s left',
      { token: token(3541, 3600), now: NOW, minValiditySeconds: 60 },
      { refresh: true, reason: 'expiring' },
    ],
    [
      'already expired',
      { token: token(4000, 3600), now: NOW, minValiditySeconds: 0 },
      { refresh: true, reason: 'expiring' },
    ],
    // eClinicalWorks: 300 s tokens. The margin is capped at half the lifetime (150 s) so a fresh token is reused.
    [
      'an eClinicalWorks 300 s token, fresh',
      { token: token(0, 300), now: NOW },
      { refresh: false, remainingSecondsAtUse: 300 },
    ],
    [
      'an eClinicalWorks 300 s token after 150 s',
      { token: token(150, 300), now: NOW },
      { refresh: false, remainingSecondsAtUse: 150 },
    ],
    [
      'an eClinicalWorks 300 s token after 151 s',
      { token: token(151, 300), now: NOW },
      { refresh: true, reason: 'expiring' },
    ],
    // CMS BCDA: 20-minute tokens are reused for 15 minutes.
    [
      'a BCDA 1200 s token after 900 s',
      { token: token(900, 1200), now: NOW },
      { refresh: false, remainingSecondsAtUse: 300 },
    ],
    [
      'a BCDA 1200 s token after 901 s',
      { token: token(901, 1200), now: NOW },
      { refresh: true, reason: 'expiring' },
    ],
  ];
  it.each(table)('%s', (_, input, expected) => {
    expect(decideRefresh(input)).toStrictEqual(expected);
  });

  it.each([
    [{ secondsUntilUse: -1 }, 'secondsUntilUse must be a non-negative number (got -1)'],
    [{ secondsUntilUse: Number.NaN }, 'secondsUntilUse must be a non-negative number (got NaN)'],
    [{ minValiditySeconds: -5 }, 'minValiditySeconds must be a non-negative number (got -5)'],
  ])('rejects %j', (extra, message) => {
    expect(() => decideRefresh({ token: token(0, 300), now: NOW, ...extra })).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIGURATION', message }),
    );
  });
});

describe('effectiveMinValiditySeconds', () => {
  it('is the configured margin, capped at half the token lifetime', () => {
    expect(effectiveMinValiditySeconds(token(0, 3600), 300)).toBe(300);
    expect(effectiveMinValiditySeconds(token(0, 300), 300)).toBe(150);
    expect(effectiveMinValiditySeconds(token(0, 60), 300)).toBe(30);
  });
});
