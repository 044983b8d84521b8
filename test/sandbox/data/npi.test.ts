import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { npi } from '../../../scripts/sandbox/data/resources/npi.js';

/** The standard Luhn check, over the NPI with its 80840 card-issuer prefix. */
function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = digits.length - 1, double = false; i >= 0; i--, double = !double) {
    let digit = Number(digits[i]);
    if (double) digit = digit * 2 > 9 ? digit * 2 - 9 : digit * 2;
    sum += digit;
  }
  return sum % 10 === 0;
}

describe('npi', () => {
  it.each([
    [123456789, '1234567893'],
    [123450000, '1234500001'],
    [198760000, '1987600008'],
  ])('appends the check digit to %i', (base, expected) => {
    // Act / Assess
    expect(npi(base)).toBe(expected);
  });

  it('always yields 10 digits that pass the Luhn check with the 80840 prefix', () => {
    // Act / Assess
    fc.assert(
      fc.property(fc.integer({ min: 100_000_000, max: 299_999_999 }), (base) => {
        const value = npi(base);
        expect(value).toMatch(/^\d{10}$/);
        expect(luhnValid(`80840${value}`)).toBe(true);
      }),
    );
  });
});
