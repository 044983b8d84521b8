import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';
import { type Sandbox, startSandbox } from '../../scripts/sandbox/index.js';
import { processesMentioning, untilGone } from '../support/processes.js';
import { plainEnv, runCommand, startCommand, writeSourceFile } from './support/command.js';

/**
 * A command that fails, before, during or after its workflow, ends with its
 * status and leaves no process behind: the embedded S3 server it started
 * runs with the command's `.local/s3` folder on its command line, so any
 * process naming the test's folder is one it left.
 */
describe('a failing command exits with its status and leaves no process behind', () => {
  let sandbox: Sandbox;
  let dir: string;
  beforeAll(async () => {
    sandbox = await startSandbox({ patientCount: 10, jobDurationMs: 300 });
  }, 60_000);
  afterAll(async () => {
    await sandbox?.close();
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cli-exit-'));
  });
  afterEach(async () => {
    // Only when a test failed: what its command left must not outlive the test.
    for (const { pid } of await processesMentioning(dir)) process.kill(pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('before: an unreadable --source ends at once with exit 1 and one line', async () => {
    const result = await runCommand('export.ts', ['--source', 'missing.json'], { cwd: dir, env: plainEnv() });

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      new RegExp(`^export failed: cannot read source file ${join(dir, 'missing.json')}: ENOENT[^\\n]*\\n$`),
    );
    expect(await processesMentioning(dir)).toStrictEqual([]);
  });

  it.each([
    ['export', 'export.ts', []],
    ['backfill', 'backfill.ts', ['--from', '2024-01-01T00:00:00Z', '--to', '2024-01-02T00:00:00Z']],
  ])(
    'before: %s into a bucket the embedded S3 refuses exits 1 with its code and message, the S3 server stopped',
    async (name, script, extra) => {
      const source = await writeSourceFile(sandbox, dir, 'source.json', 'refused');

      const result = await runCommand(script, ['--source', source, '--bucket', 'Not_A_Bucket', ...extra], {
        cwd: dir,
        env: plainEnv(),
      });

      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        new RegExp(
          `^${name} failed: cannot create bucket Not_A_Bucket in the embedded S3: InvalidBucketName \\(HTTP 400\\): Bucket names can contain lowercase letters[^\\n]*$`,
          'm',
        ),
      );
      expect(await processesMentioning(dir)).toStrictEqual([]);
    },
    90_000,
  );

  it('before: --s3-endpoint with a bucket that does not exist says so and how to create it, exit 1', async () => {
    const s3 = await startEmbeddedS3();
    try {
      const source = await writeSourceFile(sandbox, dir, 'source.json', 'no-bucket');
      const env = plainEnv({
        AWS_ACCESS_KEY_ID: 'S3RVER',
        AWS_SECRET_ACCESS_KEY: 'S3RVER',
        AWS_REGION: 'us-east-1',
      });

      const result = await runCommand(
        'export.ts',
        ['--source', source, '--s3-endpoint', s3.endpoint, '--bucket', 'missing'],
        { cwd: dir, env },
      );

      expect(result.code).toBe(1);
      expect(result.stderr).toBe(
        `export failed: bucket missing does not exist at ${s3.endpoint}: create it first (e.g. \`aws s3 mb s3://missing\`), or leave out --s3-endpoint and --aws-s3 to use the embedded S3, which creates it\n`,
      );
    } finally {
      await s3.close();
    }
  });

  it('during: a server that fails the job gives exit 1 and "Export FAILED", the S3 server stopped', async () => {
    const source = await writeSourceFile(sandbox, dir, 'source.json', 'job-fails', { jobFailure: true });

    const result = await runCommand('export.ts', ['--source', source], { cwd: dir, env: plainEnv() });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Export FAILED: ExportRequestRejectedError: the export job failed');
    expect(await processesMentioning(dir)).toStrictEqual([]);
  }, 90_000);

  it.each([
    ['export', 'export.ts', true],
    ['demo', 'demo.ts', false],
  ])(
    'after: %s whose summary cannot be written (stdout closed) exits 1 with one line, the S3 server stopped',
    async (name, script, needsSource) => {
      const args = needsSource
        ? ['--source', await writeSourceFile(sandbox, dir, 'source.json', 'no-reader')]
        : ['--patients', '5'];

      const result = await runCommand(script, args, { cwd: dir, env: plainEnv(), closeStdout: true });

      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`${name}: cannot write to standard output (EPIPE)\n`);
      expect(result.stderr).not.toMatch(/^\s+at /m);
      expect(await processesMentioning(dir)).toStrictEqual([]);
    },
    90_000,
  );

  it('killed mid-run: the embedded S3 server it started stops too', async () => {
    // A job that stays in progress, so the command is surely waiting when it is killed.
    const source = await writeSourceFile(sandbox, dir, 'source.json', 'killed', { jobDurationMs: 600_000 });
    const command = startCommand('export.ts', ['--source', source], { cwd: dir, env: plainEnv() });
    await command.stderrMatching(/Wait For Export: waiting/);
    const [server] = await processesMentioning(join(dir, '.local', 's3'));
    expect(server?.args).toContain('s3rver-process.cjs');

    command.child.kill('SIGKILL');
    const result = await command.result;
    await untilGone(server!.pid);

    expect(result.signal).toBe('SIGKILL');
    expect(await processesMentioning(dir)).toStrictEqual([]);
  }, 90_000);
});
