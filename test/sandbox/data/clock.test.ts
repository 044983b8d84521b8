import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatDate, formatInstant, parseInstant } from '../../../scripts/sandbox/data/clock.js';

const YEAR_1900 = Date.UTC(1900, 0, 1);
const YEAR_2100 = Date.UTC(2100, 0, 1);

describe('formatInstant', () => {
  it('writes the same text as Date#toISOString', () => {
    // Act / Assess
    fc.assert(
      fc.property(fc.integer({ min: YEAR_1900, max: YEAR_2100 }), (ms) => {
        expect(formatInstant(ms)).toBe(new Date(ms).toISOString());
      }),
      { numRuns: 5000 },
    );
  });

  it.each([
    [Date.UTC(2024, 1, 29, 23, 59, 59, 999), '2024-02-29T23:59:59.999Z'],
    [Date.UTC(2025, 0, 1), '2025-01-01T00:00:00.000Z'],
    [Date.UTC(1969, 11, 31, 23, 0, 0, 1), '1969-12-31T23:00:00.001Z'],
  ])('formats %i as %s', (ms, text) => {
    // Act / Assess
    expect(formatInstant(ms)).toBe(text);
  });
});

describe('formatDate', () => {
  it('writes the UTC day', () => {
    // Act / Assess
    fc.assert(
      fc.property(fc.integer({ min: YEAR_1900, max: YEAR_2100 }), (ms) => {
        expect(formatDate(ms)).toBe(new Date(ms).toISOString().slice(0, 10));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('parseInstant', () => {
  it.each([
    ['2024-03-01', Date.UTC(2024, 2, 1)],
    ['2024-03-01T10:20:30Z', Date.UTC(2024, 2, 1, 10, 20, 30)],
    ['2024-03-01T10:20:30.456+02:00', Date.UTC(2024, 2, 1, 8, 20, 30, 456)],
    ['2024-03-01T10:20', Date.UTC(2024, 2, 1, 10, 20)],
    ['2024-03-01T10:20:30', Date.UTC(2024, 2, 1, 10, 20, 30)],
  ])('reads %s (a time without zone as UTC)', (text, ms) => {
    // Act / Assess
    expect(parseInstant(text)).toBe(ms);
  });

  it.each(['', 'yesterday', '2024/03/01', '1709251200000', '2024-03-01 10:20:30Z'])('rejects %j', (text) => {
    // Act / Assess
    expect(parseInstant(text)).toBeNaN();
  });
});
