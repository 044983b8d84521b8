import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { USER_AGENT } from '../../../lambdas/core/user-agent.js';

describe('USER_AGENT', () => {
  it("names package.json's product and version, so a release cannot leave it behind", () => {
    // Prepare
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      name: string;
      version: string;
    };
    // Act
    const product = USER_AGENT.split(' ')[0];
    // Assess
    expect(product).toBe(`${pkg.name}/${pkg.version}`);
  });
});
