import { describe, expect, it } from 'vitest';
import { startSandbox } from '../../scripts/sandbox/index.js';
import type { SandboxOptions } from '../../scripts/sandbox/options.js';

describe('sandbox options', () => {
  it.each([
    ['a misspelled option', { prot: 8080 }, /^unknown sandbox option "prot" \(known: port, secondPort, /],
    ['a negative port', { port: -1 }, 'sandbox option port: expected an integer ≥ 0 and ≤ 65535, got -1'],
    [
      'a fractional job duration',
      { jobDurationMs: 1.5 },
      'sandbox option jobDurationMs: expected an integer ≥ 0, got 1.5',
    ],
    [
      'zero resources per file',
      { resourcesPerFile: 0 },
      'sandbox option resourcesPerFile: expected an integer ≥ 1, got 0',
    ],
    [
      'a non-boolean requiresAccessToken',
      { requiresAccessToken: 'yes' },
      'sandbox option requiresAccessToken: expected a boolean',
    ],
    ['a clock that is not a function', { now: new Date() }, 'sandbox option now: expected a function'],
  ])('refuses %s before listening', async (_name, options, message) => {
    await expect(startSandbox(options as SandboxOptions)).rejects.toThrow(message);
  });
});
