import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_WAIT_POLICY, nextWaitSeconds, parseRetryAfter } from '../../../lambdas/core/retry-after.js';

const now = new Date('2026-11-26T12:00:00Z');

describe('parseRetryAfter', () => {
  it.each([
    ['120', 120],
    [' 7 ', 7],
    ['0', 0],
    ['Thu, 26 Nov 2026 12:01:30 GMT', 90],
    ['Thu, 26 Nov 2026 11:00:00 GMT', 0],
  ])('reads %j as %d seconds', (header, expected) => {
    expect(parseRetryAfter(header, now)).toBe(expected);
  });

  it.each([
    undefined,
    null,
    '',
    '-5',
    '1.5',
    'soon',
    '1e3',
    '99999999999999999999',
    '2026-11-26T12:01:30Z',
    'Thu, 99 Nov 2026 12:01:30 GMT',
  ])('treats %j as no usable value', (header) => {
    expect(parseRetryAfter(header, now)).toBeUndefined();
  });
});

describe('nextWaitSeconds', () => {
  it.each([
    [undefined, 0, 15],
    [undefined, 1, 30],
    [undefined, 2, 60],
    [undefined, 10, 300],
    [1, 0, 5],
    [42, 3, 42],
    [86_400, 0, 300],
  ])('Retry-After %j on attempt %d waits %d s', (retryAfter, attempt, expected) => {
    expect(nextWaitSeconds(retryAfter, attempt)).toBe(expected);
  });

  it('honours a per-source ceiling of hours (Oracle Health)', () => {
    expect(nextWaitSeconds(7200, 0, { ...DEFAULT_WAIT_POLICY, ceilingSeconds: 3 * 3600 })).toBe(7200);
  });

  it('always yields an integer within [floor, ceiling] for any header and attempt', () => {
    fc.assert(
      fc.property(fc.string(), fc.integer({ min: 0, max: 10_000 }), (header, attempt) => {
        const seconds = nextWaitSeconds(parseRetryAfter(header, now), attempt);
        expect(Number.isInteger(seconds)).toBe(true);
        expect(seconds).toBeGreaterThanOrEqual(DEFAULT_WAIT_POLICY.floorSeconds);
        expect(seconds).toBeLessThanOrEqual(DEFAULT_WAIT_POLICY.ceilingSeconds);
      }),
    );
  });
});
