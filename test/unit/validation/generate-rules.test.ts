/**
 * The generator's command line: its help, and errors that name the wrong input and what was expected. A full
 * run needs the IG package and FHIR core definitions, which tests do not have; the committed tables and their
 * provenance are checked in rule-table.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const SCRIPT = 'scripts/validation/generate-rules.ts';
const run = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', SCRIPT, ...args], { encoding: 'utf8', timeout: 20_000 });

describe('npm run validation-rules', () => {
  it('--help says which inputs it takes', () => {
    const { status, stdout } = run('--help');
    expect(status).toBe(0);
    expect(stdout).toContain('--us-core');
    expect(stdout).toContain('--fhir-core');
  });

  it('names a missing FHIR core file and a wrong IG package, and exits 2', () => {
    const empty = mkdtempSync(join(tmpdir(), 'fhir-core-'));
    const missing = run('--us-core', '/nonexistent/us-core.tgz', '--fhir-core', empty);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain(`--fhir-core ${empty} has no profiles-types.json`);

    for (const name of [
      'profiles-types.json',
      'profiles-resources.json',
      'valuesets.json',
      'v3-codesystems.json',
    ]) {
      writeFileSync(join(empty, name), '{"resourceType":"Bundle","entry":[]}');
    }
    const noPackage = run('--us-core', '/nonexistent/us-core.tgz', '--fhir-core', empty);
    expect(noPackage.status).toBe(2);
    expect(noPackage.stderr).toContain('--us-core /nonexistent/us-core.tgz does not exist');

    const notIg = mkdtempSync(join(tmpdir(), 'not-ig-'));
    writeFileSync(join(notIg, 'package.json'), '{"name":"hl7.fhir.r4.core","version":"4.0.1"}');
    const wrong = run('--us-core', notIg, '--fhir-core', empty);
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toContain('package is hl7.fhir.r4.core#4.0.1; expected hl7.fhir.us.core');
  });
});
