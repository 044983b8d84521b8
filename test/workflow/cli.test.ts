import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support/harness.js';

const run = promisify(execFile);
const TSX = join(process.cwd(), 'node_modules', '.bin', 'tsx');

/** `npm run export` and `npm run backfill` as a user runs them: separate processes, real exit codes. */
describe('export and backfill commands', () => {
  let harness: Harness;
  let dir: string;
  beforeAll(async () => {
    harness = await startHarness();
    dir = await mkdtemp(join(tmpdir(), 'cli-'));
  }, 60_000);
  afterAll(async () => {
    await harness?.close();
  });

  async function sourceFile(id: string, faults?: Record<string, unknown>) {
    const { clientId } = await harness.sandbox.registerClient({
      jwks: { keys: [harness.key.publicJwk] },
      ...(faults ? { faults } : {}),
    });
    const path = join(dir, `${id}.json`);
    await writeFile(
      path,
      JSON.stringify({
        id,
        fhirBaseUrl: harness.sandbox.baseUrl,
        clientId,
        privateKeyFile: harness.key.privateKeyFile,
        allowInsecureHttp: true,
        export: { level: 'group', groupId: 'small' },
      }),
    );
    return path;
  }

  const env = {
    ...process.env,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
  };
  const cliArgs = (script: string, args: string[]) => [
    join('scripts', script),
    ...args,
    '--s3-endpoint',
    harness.s3.endpoint,
    '--bucket',
    harness.bucket,
  ];

  it('export exits 0 and prints the summary table when every file landed', async () => {
    const source = await sourceFile('cli-ok');

    const { stdout } = await run(TSX, cliArgs('export.ts', ['--source', source]), { env, timeout: 60_000 });

    expect(stdout).toMatch(/Resource type\s+Files\s+Resources\s+Bytes/);
    expect(stdout).toMatch(/^Patient\s+1\s+10\s/m);
    expect(stdout).toMatch(/Marker: {2}s3:\/\/workflow-tests\/source=cli-ok\/export=[^/]+\/_SUCCESS\.json/);
    // Then the validation stage, on by default (issue 17): its table and where the report is.
    expect(stdout).toContain('US Core validation (hl7.fhir.us.core#6.1.0):');
    expect(stdout).toMatch(/^Patient\s+10\s+\d+\.\d%/m);
    expect(stdout).toMatch(
      /Report: {2}s3:\/\/workflow-tests\/source=cli-ok\/export=[^/]+\/_validation\/summary\.json/,
    );
    // Then the warehouse load, on by default (issue 18): rows per table and where its marker is.
    expect(stdout).toMatch(/^Warehouse load \(Parquet, \d+ rows in \d+ part\(s\)\):$/m);
    expect(stdout).toMatch(/^ {2}patient\s+10 rows\s+1 part\(s\)$/m);
    expect(stdout).toMatch(/Marker: {2}s3:\/\/workflow-tests\/source=cli-ok\/export=[^/]+\/_LOADED\.json/);
  }, 90_000);

  it('export exits 1 and says what failed when the server fails the job', async () => {
    const source = await sourceFile('cli-fail', { jobFailure: true });

    const failure = await run(TSX, cliArgs('export.ts', ['--source', source]), { env, timeout: 60_000 }).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );

    expect(failure?.code).toBe(1);
    expect(failure?.stderr).toContain('Export FAILED: ExportRequestRejectedError: the export job failed');
  }, 90_000);

  it('backfill runs one export per window, in order, each with its window', async () => {
    const source = await sourceFile('cli-backfill');
    harness.sandbox.clearRequestLog();

    const { stdout } = await run(
      TSX,
      cliArgs('backfill.ts', [
        '--source',
        source,
        '--from',
        '2024-01-01T00:00:00Z',
        '--to',
        '2024-03-01T00:00:00Z',
        '--window',
        '30d',
      ]),
      { env, timeout: 80_000 },
    );

    expect(stdout).toMatch(
      /^window 1\/2 2024-01-01T00:00:00.000Z → 2024-01-31T00:00:00.000Z: \d+ resources/m,
    );
    expect(stdout).toMatch(
      /^window 2\/2 2024-01-31T00:00:00.000Z → 2024-03-01T00:00:00.000Z: \d+ resources/m,
    );
    const kickOffs = harness.sandbox.requestLog.filter((entry) => entry.path.endsWith('/$export'));
    expect(
      kickOffs.map((entry) => [
        new URLSearchParams(entry.query).get('_since'),
        new URLSearchParams(entry.query).get('_until'),
      ]),
    ).toEqual([
      ['2024-01-01T00:00:00.000Z', '2024-01-31T00:00:00.000Z'],
      ['2024-01-31T00:00:00.000Z', '2024-03-01T00:00:00.000Z'],
    ]);
    // A window with `until` never moves the daily delta's watermark.
    expect(await harness.getText('_state/source=cli-backfill/watermark.json')).toBeUndefined();
  }, 120_000);
});
