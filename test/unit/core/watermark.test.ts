import { describe, expect, it } from 'vitest';
import { checkStoredWatermark, decideWatermark } from '../../../lambdas/core/watermark.js';
import { ConfigurationError } from '../../../lambdas/errors.js';
import { thrown } from '../../support/thrown.js';

const NOW = new Date('2026-12-06T12:00:00.000Z');

describe('decideWatermark', () => {
  it.each([
    [
      'a first export',
      { current: undefined, transactionTime: '2026-12-06T11:00:00Z' },
      {
        advance: true,
        transactionTime: '2026-12-06T11:00:00Z',
        reason: 'fully verified export of the source default scope',
      },
    ],
    [
      'a newer export',
      { current: '2026-12-05T11:00:00Z', transactionTime: '2026-12-06T11:00:00Z' },
      {
        advance: true,
        transactionTime: '2026-12-06T11:00:00Z',
        reason: 'fully verified export of the source default scope',
      },
    ],
    [
      'an export with the same transactionTime',
      { current: '2026-12-06T11:00:00Z', transactionTime: '2026-12-06T11:00:00.000Z' },
      {
        advance: false,
        reason: 'the stored watermark 2026-12-06T11:00:00Z is not older; it never moves backwards',
      },
    ],
    [
      'an older export',
      { current: '2026-12-06T11:00:00Z', transactionTime: '2026-12-01T00:00:00Z' },
      {
        advance: false,
        reason: 'the stored watermark 2026-12-06T11:00:00Z is not older; it never moves backwards',
      },
    ],
    [
      'a transactionTime ahead of now (within the allowed skew): the watermark stops at now',
      { current: '2026-12-05T11:00:00Z', transactionTime: '2026-12-06T12:02:00Z' },
      {
        advance: true,
        transactionTime: NOW.toISOString(),
        reason:
          'fully verified export of the source default scope; its transactionTime 2026-12-06T12:02:00Z is ahead of this clock, so the watermark stops at now',
      },
    ],
    [
      'a transactionTime from the future, a stored watermark at now',
      { current: NOW.toISOString(), transactionTime: '2999-01-01T00:00:00Z' },
      {
        advance: false,
        reason: `the stored watermark ${NOW.toISOString()} is not older; it never moves backwards`,
      },
    ],
  ])('%s', (_, { current, transactionTime }, decision) => {
    expect(decideWatermark({ advancesWatermark: true, current, transactionTime, now: NOW })).toStrictEqual(
      decision,
    );
  });

  it('never moves for a window or a narrower scope', () => {
    expect(
      decideWatermark({
        advancesWatermark: false,
        current: undefined,
        transactionTime: '2026-12-06T11:00:00Z',
        now: NOW,
      }),
    ).toStrictEqual({
      advance: false,
      reason: 'a window with until or a narrower scope does not move the daily delta',
    });
  });

  it('never yields a watermark after now, whatever the transactionTime', () => {
    for (const transactionTime of [
      '2026-12-06T12:00:00.001Z',
      '2027-01-01T00:00:00Z',
      '2999-01-01T00:00:00Z',
    ]) {
      const decision = decideWatermark({
        advancesWatermark: true,
        current: undefined,
        transactionTime,
        now: NOW,
      });
      expect(decision.advance).toBe(true);
      expect(Date.parse((decision as { transactionTime: string }).transactionTime)).toBeLessThanOrEqual(
        NOW.getTime(),
      );
    }
  });
});

describe('checkStoredWatermark', () => {
  const where = 's3://bucket/_state/source=epic/watermark.json';

  it.each(['2026-12-06T11:00:00Z', '2026-12-06T12:05:00Z'])(
    'accepts %s (in the past, or within the skew)',
    (transactionTime) => {
      expect(() =>
        checkStoredWatermark({ transactionTime, where, now: NOW, maxClockSkewSeconds: 300 }),
      ).not.toThrow();
    },
  );

  it.each([
    [
      '2999-01-01T00:00:00Z',
      `the stored watermark ${where} holds transactionTime 2999-01-01T00:00:00Z, 972 years ahead of this client's clock (2026-12-06T12:00:00.000Z): with since=auto every export would ask for changes after it and get none. Set it to the last transactionTime you trust (or delete it for a full export), or start this export with an explicit since`,
    ],
    [
      '2026-12-06T12:05:01Z',
      `the stored watermark ${where} holds transactionTime 2026-12-06T12:05:01Z, 301 s ahead of this client's clock (2026-12-06T12:00:00.000Z): with since=auto every export would ask for changes after it and get none. Set it to the last transactionTime you trust (or delete it for a full export), or start this export with an explicit since`,
    ],
    [
      'yesterday',
      `the stored watermark ${where} does not hold an instant as its transactionTime; correct it to the last transactionTime you trust, or delete it for a full export`,
    ],
  ])('refuses %s, saying how to recover', (transactionTime, message) => {
    // Act
    const error = thrown(() =>
      checkStoredWatermark({ transactionTime, where, now: NOW, maxClockSkewSeconds: 300 }),
    );
    // Assess
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toBe(message);
  });
});
