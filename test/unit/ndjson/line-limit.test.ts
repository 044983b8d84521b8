import { describe, expect, it } from 'vitest';
import { parseSourceSettings } from '../../../lambdas/config.js';
import {
  DEFAULT_MAX_LINE_BYTES,
  downloadFileMemoryMb,
  MAX_MAX_LINE_BYTES,
} from '../../../lambdas/core/ndjson/line-limit.js';

const MIB = 1024 * 1024;

describe('the line limit and Download File memory', () => {
  it.each([
    [1024, 1024],
    [16 * MIB, 1024],
    [DEFAULT_MAX_LINE_BYTES, 1024],
    // 256 + 6 × 100.7 MB = 860 → still the floor
    [96 * MIB, 1024],
    // 256 + 6 × 134.2 = 1061.3 → 1088
    [128 * MIB, 1088],
    // 256 + 6 × 268.4 = 1866.5 → 1920
    [MAX_MAX_LINE_BYTES, 1920],
  ])('a %i-byte limit needs %i MB', (maxLineBytes, memoryMb) => {
    expect(downloadFileMemoryMb(maxLineBytes)).toBe(memoryMb);
  });

  it('is the default a source gets', () => {
    const source = parseSourceSettings({
      id: 'src',
      fhirBaseUrl: 'https://fhir.example.org/r4',
      export: { level: 'system' },
    });
    expect(source.maxLineBytes).toBe(64 * MIB);
  });
});
