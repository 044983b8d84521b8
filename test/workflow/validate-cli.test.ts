import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support/harness.js';

const run = promisify(execFile);
const TSX = join(process.cwd(), 'node_modules', '.bin', 'tsx');
const env = {
  ...process.env,
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_REGION: 'us-east-1',
};

type Outcome = { code: number; stdout: string; stderr: string };
const outcome = (script: string, args: string[]): Promise<Outcome> =>
  run(TSX, [join('scripts', script), ...args], { env, timeout: 90_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: Outcome) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );

/** `npm run export -- --no-validate` and `npm run validate` as a user runs them: separate processes, exit codes. */
describe('the validate command', () => {
  let harness: Harness;
  let folder: string;
  beforeAll(async () => {
    harness = await startHarness({ patientCount: 20, jobDurationMs: 0, retryAfterSeconds: 0 });
    const dir = await mkdtemp(join(tmpdir(), 'validate-cli-'));
    const { clientId } = await harness.sandbox.registerClient({
      jwks: { keys: [harness.key.publicJwk] },
      faults: { nonConformant: { observationWithoutCategory: 2 } },
    });
    const source = join(dir, 'cli-validate.json');
    await writeFile(
      source,
      JSON.stringify({
        id: 'cli-validate',
        fhirBaseUrl: harness.sandbox.baseUrl,
        clientId,
        privateKeyFile: harness.key.privateKeyFile,
        allowInsecureHttp: true,
        export: { level: 'group', groupId: 'cohort' },
      }),
    );
    const exported = await outcome('export.ts', [
      '--source',
      source,
      '--no-validate',
      '--no-load',
      '--s3-endpoint',
      harness.s3.endpoint,
      '--bucket',
      harness.bucket,
    ]);
    expect(exported.code, exported.stderr).toBe(0);
    folder = /Marker: {2}s3:\/\/[^/]+\/(source=cli-validate\/export=[^/]+\/)_SUCCESS\.json/.exec(
      exported.stdout,
    )![1]!;
    expect(exported.stdout).not.toContain('US Core validation');
    expect(exported.stdout).not.toContain('Warehouse load');
  }, 120_000);
  afterAll(async () => {
    await harness?.close();
  });

  const validate = (exportUrl: string, ...more: string[]) =>
    outcome('validate.ts', ['--export', exportUrl, '--s3-endpoint', harness.s3.endpoint, ...more]);

  it('--no-validate exported without validating: no report, no _VALIDATED.json', async () => {
    expect(await harness.listKeys(`${folder}_validation/`)).toEqual([]);
    expect(await harness.getText(`${folder}_VALIDATED.json`)).toBeUndefined();
  });

  it('validates the export, prints the table, and twice in a row gives the same report', async () => {
    const url = `s3://${harness.bucket}/${folder}`;
    const first = await validate(url);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^type\s+checked\s+conformant\s+top rules$/m);
    expect(first.stdout).toMatch(
      /^Observation\s+\d+\s+\d+\.\d%\s+.*cardinality:Observation\.category \(2\)/m,
    );
    expect(first.stdout).toContain(
      `passed (report); report: s3://${harness.bucket}/${folder}_validation/summary.json`,
    );
    const summary = await harness.getText(`${folder}_validation/summary.json`);

    const second = await validate(url.replace(/\/$/, ''));
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toBe(first.stdout);
    expect(await harness.getText(`${folder}_validation/summary.json`)).toBe(summary);
  }, 60_000);

  it('says what is wrong with --export, and what it expected', async () => {
    const notAnExport = await validate(`s3://${harness.bucket}/source=cli-validate/`);
    expect(notAnExport.code).toBe(2);
    expect(notAnExport.stderr).toContain(
      'is not an export folder: expected it to end in source=ID/export=TIME/',
    );

    const noMarker = await validate(
      `s3://${harness.bucket}/source=cli-validate/export=2020-01-01T000000.000Z/`,
    );
    expect(noMarker.code).toBe(1);
    expect(noMarker.stderr).toContain('no _SUCCESS.json in s3://');

    const help = await validate('x', '--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('usage: npm run validate -- --export s3://BUCKET/');
  }, 60_000);
});
