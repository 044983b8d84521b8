/**
 * A National Provider Identifier: 9 digits and a Luhn check digit computed over the 80840 prefix,
 * as CMS defines it, so that NPI validators downstream accept the synthetic ones.
 */
export function npi(base9: number): string {
  const payload = `80840${base9}`;
  let sum = 0;
  // Doubling starts at the rightmost payload digit, the one next to the check digit.
  for (let i = payload.length - 1, double = true; i >= 0; i--, double = !double) {
    let digit = payload.charCodeAt(i) - 48;
    if (double) {
      digit *= 2;
      if (digit > 9) digit -= 9;
    }
    sum += digit;
  }
  return `${base9}${(10 - (sum % 10)) % 10}`;
}
