import { describe, expect, it } from 'vitest';
import {
  asObject,
  describe as describeValue,
  FHIR_INSTANT,
  formatSpan,
  optionalEnum,
  optionalInteger,
  optionalStringArray,
} from '../../../lambdas/core/validate.js';
import { ConfigurationError, InvalidExecutionInputError } from '../../../lambdas/errors.js';
import { thrown } from '../../support/thrown.js';

describe('describe', () => {
  it.each([
    [null, 'null'],
    [undefined, 'undefined'],
    [[], 'an array'],
    ['secret', 'a string'],
    ['', 'an empty string'],
    [' \t\n', 'a string of only white space'],
    [{}, 'an object'],
    [1, 'number'],
    [true, 'boolean'],
  ])('%j → %s', (value, text) => {
    expect(describeValue(value)).toBe(text);
  });
});

describe('FHIR_INSTANT', () => {
  it.each([
    ['2026-01-31T00:00:00Z', true],
    ['2026-01-31T00:00:00.1Z', true],
    ['2026-01-31T00:00:00.123456789+05:30', true],
    ['2026-01-31T00:00:00-00:00', true],
    ['2026-01-31T00:00:00', false],
    ['2026-01-31', false],
    ['2026-01-31T00:00Z', false],
    ['2026-01-31T00:00:00+0530', false],
    ['2026-01-31 00:00:00Z', false],
    ['2026-01-31T00:00:00.1234567890Z', false],
  ])('%s → %s', (text, valid) => {
    expect(FHIR_INSTANT.test(text)).toBe(valid);
  });
});

describe('validators', () => {
  it('raise ConfigurationError by default and the given error otherwise', () => {
    // Act
    const config = thrown(() => asObject('x', 'source'));
    const input = thrown(() => asObject('x', 'input', (message) => new InvalidExecutionInputError(message)));
    // Assess
    expect(config).toBeInstanceOf(ConfigurationError);
    expect(config.message).toBe('source must be a JSON object (got a string)');
    expect(input).toBeInstanceOf(InvalidExecutionInputError);
    expect(input.message).toBe('input must be a JSON object (got a string)');
  });

  it.each([
    ['a short value', 'grp', 'p.level must be one of a, b (got "grp")'],
    ['exactly 40 characters', 'x'.repeat(40), `p.level must be one of a, b (got "${'x'.repeat(40)}")`],
    ['a long value, which may be a secret', 's'.repeat(41), 'p.level must be one of a, b (got a string)'],
  ])('echo %s of an enum only when short', (_, value, message) => {
    // Act
    const error = thrown(() => optionalEnum({ level: value }, 'level', ['a', 'b'], 'p'));
    // Assess
    expect(error.message).toBe(message);
  });

  it.each([
    [0, 'p.n must be an integer from 1 to 10 (got 0)'],
    [11, 'p.n must be an integer from 1 to 10 (got 11)'],
    [2.5, 'p.n must be an integer from 1 to 10 (got 2.5)'],
    [Number.NaN, 'p.n must be an integer from 1 to 10 (got NaN)'],
    ['5', 'p.n must be an integer from 1 to 10 (got a string)'],
  ])('rejects integer %j', (value, message) => {
    expect(thrown(() => optionalInteger({ n: value }, 'n', { min: 1, max: 10 }, 'p')).message).toBe(message);
  });

  it('returns string arrays unchanged and undefined when absent', () => {
    expect(optionalStringArray({ a: ['x', 'y'] }, 'a', 'p')).toStrictEqual(['x', 'y']);
    expect(optionalStringArray({}, 'a', 'p')).toBeUndefined();
  });
});

describe('formatSpan', () => {
  it.each([
    [0, '0 s'],
    [599_999, '599 s'],
    [600_000, '10 min'],
    [7_199_000, '119 min'],
    [7_200_000, '2 h'],
    [172_800_000, '2 days'],
    [-90_000, '90 s'],
    [Date.parse('2999-01-01T00:00:00Z') - Date.parse('2026-12-06T12:00:00Z'), '972 years'],
  ])('%d ms → %s', (ms, text) => {
    expect(formatSpan(ms)).toBe(text);
  });
});
