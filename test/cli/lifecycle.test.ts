import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FailureReceipt } from '../../lambdas/services/export-lifecycle.js';
import type { SourceLock } from '../../lambdas/services/source-lock.js';
import { embeddedS3ClientConfig, startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';
import type { FaultPlan, Sandbox } from '../../scripts/sandbox/index.js';
import { startSandbox } from '../../scripts/sandbox/index.js';
import { processesMentioning, untilGone } from '../support/processes.js';
import { listAllKeys } from '../workflow/support/s3-keys.js';
import {
  plainEnv,
  type RunningCommand,
  runCommand,
  startCommand,
  writeSourceFile,
} from './support/command.js';

const BUCKET = 'bulk-export';

/** What a run says about itself on stderr: its execution name and its own log file. */
function runOf(stderr: string) {
  const match = /Execution (\S+); logs: (\S+)/.exec(stderr);
  if (!match) throw new Error(`no execution line in:\n${stderr}`);
  return { executionName: match[1]!, logFile: match[2]! };
}

/** A source file in `cwd` for a fresh sandbox client, with source settings on top of the defaults. */
async function sourceIn(
  sandbox: Sandbox,
  cwd: string,
  id: string,
  { faults, settings = {} }: { faults?: FaultPlan; settings?: Record<string, unknown> } = {},
) {
  const path = await writeSourceFile(sandbox, cwd, 'source.json', id, faults);
  const source = { ...JSON.parse(await readFile(path, 'utf8')), ...settings };
  await writeFile(path, JSON.stringify(source));
  return { clientId: source.clientId as string };
}

/** The client's export jobs on the sandbox, oldest first, with the DELETEs each received. */
async function jobsOf(sandbox: Sandbox, clientId: string) {
  await sandbox.settled();
  return sandbox
    .jobs()
    .filter((job) => job.clientId === clientId)
    .sort((a, b) => a.transactionTime.localeCompare(b.transactionTime))
    .map((job) => ({
      ...job,
      deletes: sandbox.requestLog.filter(
        (entry) => entry.method === 'DELETE' && entry.path === new URL(job.statusUrl).pathname,
      ).length,
    }));
}

interface BucketView {
  getJson<T>(key: string): Promise<T | undefined>;
  listKeys(prefix: string): Promise<string[]>;
  openUploads(prefix: string): Promise<string[]>;
}

function bucketView(client: S3Client): BucketView {
  return {
    async getJson<T>(key: string) {
      try {
        const response = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
        return JSON.parse(await response.Body!.transformToString()) as T;
      } catch (error) {
        if ((error as { name?: string }).name === 'NoSuchKey') return undefined;
        throw error;
      }
    },
    listKeys: (prefix) => listAllKeys(client, BUCKET, prefix),
    async openUploads(prefix) {
      const page = await client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: prefix }));
      return (page.Uploads ?? []).map((upload) => upload.Key!);
    },
  };
}

/**
 * Reads the bucket a command left in `cwd/.local/s3`, through an embedded S3
 * of our own on that folder, once the command has exited (it is closed
 * before the next command runs there, and before processes are counted).
 */
async function inBucketOf<T>(cwd: string, look: (bucket: BucketView) => Promise<T>): Promise<T> {
  const s3 = await startEmbeddedS3({ directory: join(cwd, '.local', 's3') });
  const client = new S3Client(s3.clientConfig);
  try {
    return await look(bucketView(client));
  } finally {
    client.destroy();
    await s3.close();
  }
}

/**
 * Resolves once the running export has an open multipart upload under
 * `prefix`, asked of the export's own embedded S3: a file is half-way into
 * S3. Fails if the export ends first.
 */
async function untilUploadOpen(command: RunningCommand, prefix: string): Promise<void> {
  const stderr = await command.stderrMatching(/into embedded S3 \(http:[^)]+\)/);
  const endpoint = /into embedded S3 \((http:[^)]+)\)/.exec(stderr)![1]!;
  const client = new S3Client({ ...embeddedS3ClientConfig(endpoint), maxAttempts: 1 });
  let ended = false;
  void command.result.then(() => (ended = true));
  try {
    for (;;) {
      if (ended)
        throw new Error(`the export ended before an upload was open:\n${(await command.result).stderr}`);
      if ((await bucketView(client).openUploads(prefix)).length > 0) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    client.destroy();
  }
}

/** The embedded S3 server a running command started (it names the command's `.local/s3` folder). */
async function s3ServerOf(cwd: string) {
  const [server, ...others] = await processesMentioning(join(cwd, '.local', 's3'));
  expect(server?.args).toContain('s3rver-process.cjs');
  expect(others).toStrictEqual([]);
  return server!;
}

/**
 * Cancel, Ctrl-C, kill and resume, as a user meets them: `npm run export`
 * and `npm run cancel` as processes in one folder (their `.local/`), the
 * sandbox FHIR server over HTTP, the bucket read back from the embedded S3's
 * folder. Every command must leave no process behind: the embedded S3
 * server names the folder on its command line, so any process that does is
 * one a command left.
 */
describe('cancel, Ctrl-C, kill and resume of npm run export', () => {
  /**
   * Large enough that the Observation file (~13 MiB) is a multipart upload
   * (8 MiB parts): a cancel has an open upload to abort.
   */
  let large: Sandbox;
  let small: Sandbox;
  let root: string;
  beforeAll(async () => {
    large = await startSandbox({ patientCount: 2000, resourcesPerFile: 50_000, jobDurationMs: 300 });
    small = await startSandbox({ patientCount: 20, jobDurationMs: 300 });
    root = await mkdtemp(join(tmpdir(), 'cli-lifecycle-'));
  }, 60_000);
  afterAll(async () => {
    // Only when a test failed: what its commands left must not outlive the tests.
    for (const { pid } of await processesMentioning(root)) process.kill(pid, 'SIGKILL');
    await large?.close();
    await small?.close();
    await rm(root, { recursive: true, force: true });
  });

  const folder = async (name: string) => {
    const cwd = join(root, name);
    await mkdir(cwd);
    return cwd;
  };
  // ~100 KB/s of gzip: the large cohort's files take seconds, its Observation file ~10 s.
  const TRICKLE: FaultPlan = { slowFile: { bytesPerSecond: 100_000 } };

  it('Ctrl-C during downloads cancels cleanly: exit 130, job DELETEd once, upload aborted, lock released, receipt "cancelled"', async () => {
    const cwd = await folder('ctrl-c');
    const { clientId } = await sourceIn(large, cwd, 'ctrl-c', { faults: TRICKLE });
    const command = startCommand('export.ts', ['--source', 'source.json'], { cwd, env: plainEnv() });
    await untilUploadOpen(command, 'source=ctrl-c/');
    const server = await s3ServerOf(cwd);

    command.child.kill('SIGINT');
    const result = await command.result;
    await untilGone(server.pid);

    const { executionName } = runOf(result.stderr);
    expect({ code: result.code, stderr: result.stderr }).toMatchObject({ code: 130 });
    expect(result.stderr).toContain(
      `Ctrl-C: cancelling export ${executionName}: stopping downloads, DELETEing the server job, releasing the lock of source ctrl-c`,
    );
    expect(result.stderr).toContain(
      `Export CANCELLED: execution ${executionName} was stopped: stopped locally (Ctrl-C, a signal, or npm run cancel)\nFailure receipt: s3://${BUCKET}/_failures/source=ctrl-c/${executionName}.json\n`,
    );
    expect(await processesMentioning(cwd)).toStrictEqual([]);
    expect((await jobsOf(large, clientId)).map(({ state, deletes }) => ({ state, deletes }))).toStrictEqual([
      { state: 'deleted', deletes: 1 },
    ]);
    await inBucketOf(cwd, async (bucket) => {
      expect(await bucket.getJson('_state/source=ctrl-c/lock.json')).toBeUndefined();
      expect(await bucket.openUploads('')).toStrictEqual([]);
      const receipt = await bucket.getJson<FailureReceipt>(`_failures/source=ctrl-c/${executionName}.json`);
      expect(receipt).toMatchObject({ status: 'cancelled', error: 'ExportCancelled', resumable: false });
      // Cancelled mid-download: some files had landed, not all; the upload seen open was aborted.
      expect(receipt!.files!.landed).toBeGreaterThan(0);
      expect(receipt!.files!.landed).toBeLessThan(receipt!.files!.total);
      expect(receipt!.cleanup.actions).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/^aborted [1-9]\d* open upload\(s\)$/),
          'DELETE of the server job answered 202',
        ]),
      );
      expect(receipt!.cleanup.problems).toStrictEqual([]);
      // Nothing of it is data a reader of the layout could see, staged or published.
      expect((await bucket.listKeys('source=ctrl-c/')).filter((key) => key.includes('/type='))).toStrictEqual(
        [],
      );
    });
  }, 90_000);

  it('a second Ctrl-C exits at once and says what was left; npm run cancel then cleans up, and a second cancel finds nothing', async () => {
    const cwd = await folder('twice');
    const { clientId } = await sourceIn(large, cwd, 'twice', { faults: TRICKLE });
    const command = startCommand('export.ts', ['--source', 'source.json'], { cwd, env: plainEnv() });
    await untilUploadOpen(command, 'source=twice/');
    const server = await s3ServerOf(cwd);

    command.child.kill('SIGINT');
    await command.stderrMatching(/Ctrl-C again to exit at once/);
    command.child.kill('SIGINT');
    const result = await command.result;
    await untilGone(server.pid);

    const { executionName } = runOf(result.stderr);
    expect({ code: result.code, stdout: result.stdout }).toStrictEqual({ code: 130, stdout: '' });
    expect(result.stderr).toContain(
      `Exiting at once. Left as it was: the lock of source twice (held by ${executionName}), its server job (not DELETEd) and any open uploads. \`npm run cancel -- --source-id twice\` finishes the clean-up`,
    );
    expect(result.stderr).not.toContain('Export CANCELLED');
    expect(await processesMentioning(cwd)).toStrictEqual([]);
    // Left as it said: the job, the lock and the open upload.
    expect((await jobsOf(large, clientId)).map(({ state, deletes }) => ({ state, deletes }))).toStrictEqual([
      { state: 'complete', deletes: 0 },
    ]);
    await inBucketOf(cwd, async (bucket) => {
      expect(await bucket.getJson<SourceLock>('_state/source=twice/lock.json')).toMatchObject({
        executionName,
        process: { pid: command.pid, host: hostname() },
      });
      expect((await bucket.openUploads('source=twice/')).length).toBeGreaterThan(0);
      expect(await bucket.getJson(`_failures/source=twice/${executionName}.json`)).toBeUndefined();
    });

    const cancel = await runCommand('cancel.ts', ['--source-id', 'twice'], { cwd, env: plainEnv() });

    // Soft where the server job is concerned: what else the cancel did is checked even when its DELETE fails.
    expect.soft(cancel).toMatchObject({
      code: 0,
      stderr: '',
      stdout: expect.stringContaining('DELETE of the server job answered 202'),
    });
    expect(cancel.stdout).toMatch(
      new RegExp(
        `^Cancelled export ${executionName} \\((running|stopping), since [^)]+\\): aborted [1-9]\\d* open upload\\(s\\);.* released the source lock\\.\\nFailure receipt: s3://${BUCKET}/_failures/source=twice/${executionName}\\.json\\n`,
      ),
    );
    const afterCancel = await jobsOf(large, clientId);
    expect
      .soft(afterCancel.map(({ state, deletes }) => ({ state, deletes })))
      .toStrictEqual([{ state: 'deleted', deletes: 1 }]);
    await inBucketOf(cwd, async (bucket) => {
      expect(await bucket.getJson('_state/source=twice/lock.json')).toBeUndefined();
      expect(await bucket.openUploads('')).toStrictEqual([]);
      const receipt = await bucket.getJson<FailureReceipt>(`_failures/source=twice/${executionName}.json`);
      expect(receipt).toMatchObject({ status: 'cancelled', error: 'ExportCancelled', resumable: false });
      expect.soft(receipt!.cleanup.problems).toStrictEqual([]);
    });

    const again = await runCommand('cancel.ts', ['--source-id', 'twice'], { cwd, env: plainEnv() });

    expect(again).toMatchObject({ code: 0, stderr: '' });
    expect(again.stdout).toMatch(
      /^No export of source twice holds its lock in embedded S3 .*: nothing to cancel\.\n$/,
    );
    expect(await jobsOf(large, clientId)).toStrictEqual(afterCancel);
    expect(await processesMentioning(cwd)).toStrictEqual([]);
  }, 120_000);

  it('an export killed with SIGKILL mid-download: the rerun takes its lock over, DELETEs its job first and succeeds', async () => {
    const cwd = await folder('killed');
    // ~2 KB/s of gzip: the small cohort's files take a few seconds each.
    const { clientId } = await sourceIn(small, cwd, 'killed', {
      faults: { slowFile: { bytesPerSecond: 2_000 } },
    });
    const killed = startCommand('export.ts', ['--source', 'source.json'], { cwd, env: plainEnv() });
    await killed.stderrMatching(/file 1\/\d+ landed/);
    const server = await s3ServerOf(cwd);

    killed.child.kill('SIGKILL');
    const killedResult = await killed.result;
    await untilGone(server.pid);

    expect(killedResult.signal).toBe('SIGKILL');
    const killedRun = runOf(killedResult.stderr);
    expect(await processesMentioning(cwd)).toStrictEqual([]);
    await inBucketOf(cwd, async (bucket) => {
      // The lock names the holder, so that the next run can tell it is gone.
      expect(await bucket.getJson<SourceLock>('_state/source=killed/lock.json')).toMatchObject({
        executionName: killedRun.executionName,
        state: 'running',
        process: { pid: killed.pid, host: hostname() },
      });
    });

    const rerun = await runCommand('export.ts', ['--source', 'source.json'], { cwd, env: plainEnv() });

    expect({ code: rerun.code, stderr: rerun.stderr }).toMatchObject({ code: 0 });
    const rerunRun = runOf(rerun.stderr);
    expect(rerunRun.executionName).not.toBe(killedRun.executionName);
    expect(rerun.stdout).toMatch(
      /^Marker: {2}s3:\/\/bulk-export\/source=killed\/export=[^/]+\/_SUCCESS\.json$/m,
    );
    const takeOver = (await readFile(rerunRun.logFile, 'utf8'))
      .split('\n')
      .filter((line) => line.includes('taking over the source lock'))
      .map((line) => JSON.parse(line));
    expect(takeOver).toMatchObject([
      { level: 'warn', previousExecution: killedRun.executionName, liveness: 'dead' },
    ]);
    const [killedJob, rerunJob, ...more] = await jobsOf(small, clientId);
    expect(more).toStrictEqual([]);
    expect([killedJob, rerunJob].map((job) => ({ state: job?.state, deletes: job?.deletes }))).toStrictEqual([
      { state: 'deleted', deletes: 1 },
      { state: 'deleted', deletes: 1 },
    ]);
    // Epic allows one export per client: the killed run's job is DELETEd before the rerun's kick-off.
    const clientRequests = small.requestLog.filter((entry) => entry.clientId === clientId);
    const killedJobDelete = clientRequests.findIndex(
      (entry) => entry.method === 'DELETE' && entry.path === new URL(killedJob!.statusUrl).pathname,
    );
    const kickOffs = clientRequests.flatMap((entry, index) =>
      entry.path.endsWith('/$export') ? [index] : [],
    );
    expect(kickOffs).toHaveLength(2);
    expect(killedJobDelete).toBeGreaterThan(kickOffs[0]!);
    expect(killedJobDelete).toBeLessThan(kickOffs[1]!);
    const receipt = await inBucketOf(cwd, async (bucket) => {
      expect(await bucket.getJson('_state/source=killed/lock.json')).toBeUndefined();
      return bucket.getJson<FailureReceipt>(`_failures/source=killed/${killedRun.executionName}.json`);
    });
    expect(receipt).toMatchObject({ status: 'superseded', error: 'ExportSuperseded', resumable: false });
    expect(receipt!.cleanup.actions).toContain(
      `left the server job for ${rerunRun.executionName} to DELETE before its kick-off`,
    );
    expect(await processesMentioning(cwd)).toStrictEqual([]);
    // Its process is gone, and its downloads with it: nothing to wait for, nothing left undone.
    expect(receipt!.cleanup.problems).toStrictEqual([]);
  }, 120_000);

  it('a failed export is resumed with --resume: exit 0, and the only file fetched again is the one that was missing', async () => {
    const cwd = await folder('resume');
    // A short pause before the retry pass: the default minute would outlast the command's limit.
    const { clientId } = await sourceIn(small, cwd, 'resume', { settings: { retryPassDelaySeconds: 1 } });
    const repair = small.breakFiles((file) => file.name === 'Condition.1.ndjson');
    let failed: Awaited<ReturnType<typeof runCommand>>;
    try {
      failed = await runCommand('export.ts', ['--source', 'source.json'], { cwd, env: plainEnv() });
    } finally {
      repair();
    }

    const { executionName } = runOf(failed.stderr);
    expect({ code: failed.code, stdout: failed.stdout }).toStrictEqual({ code: 1, stdout: '' });
    expect(failed.stderr).toContain('Export FAILED: ');
    expect(failed.stderr).toContain(
      `It can be resumed (the server job and every landed file are kept): npm run export -- --resume ${executionName}\n`,
    );
    const [job, ...others] = await jobsOf(small, clientId);
    expect({ state: job?.state, deletes: job?.deletes, others }).toStrictEqual({
      state: 'complete',
      deletes: 0,
      others: [],
    });
    await inBucketOf(cwd, async (bucket) => {
      expect(await bucket.getJson('_state/source=resume/lock.json')).toMatchObject({
        executionName,
        state: 'resumable',
      });
      expect(await bucket.getJson(`_failures/source=resume/${executionName}.json`)).toMatchObject({
        status: 'failed',
        resumable: true,
        resume: expect.stringContaining(`npm run export -- --resume ${executionName}`),
      });
    });
    const before = small.requestLog.length;

    const resumed = await runCommand('export.ts', ['--resume', executionName], { cwd, env: plainEnv() });

    expect({ code: resumed.code, stderr: resumed.stderr }).toMatchObject({ code: 0 });
    expect(resumed.stderr).toMatch(
      new RegExp(`^Resuming export ${executionName} of source resume from "Retry Failed Files"`, 'm'),
    );
    expect(resumed.stdout).toMatch(/^Condition\s+1\s+\d+\s/m);
    expect(resumed.stdout).toMatch(
      /^Marker: {2}s3:\/\/bulk-export\/source=resume\/export=[^/]+\/_SUCCESS\.json$/m,
    );
    await small.settled();
    const fileGets = small.requestLog
      .slice(before)
      .filter((entry) => entry.method === 'GET' && entry.path.startsWith(`/files/${job!.id}/`))
      .map((entry) => `${entry.status} ${entry.path.slice(`/files/${job!.id}/`.length)}`);
    expect(fileGets).toStrictEqual(['200 Condition.1.ndjson']);
    expect((await jobsOf(small, clientId)).map(({ state, deletes }) => ({ state, deletes }))).toStrictEqual([
      { state: 'deleted', deletes: 1 },
    ]);
    await inBucketOf(cwd, async (bucket) => {
      expect(await bucket.getJson('_state/source=resume/lock.json')).toBeUndefined();
      // Resumed and succeeded: the failure it recovered from is no longer on record as one.
      expect(await bucket.getJson(`_failures/source=resume/${executionName}.json`)).toBeUndefined();
    });
    expect(await processesMentioning(cwd)).toStrictEqual([]);
  }, 120_000);

  it.each([
    [
      'an unknown name',
      ['--resume', 'no-such-export'],
      (_cwd: string) =>
        `export: no local execution no-such-export in .local/executions: --resume takes the name a failed \`npm run export\` printed in this folder`,
    ],
    [
      'a name with --source',
      ['--resume', 'resume-local-0123abcd', '--source', 'source.json'],
      () =>
        'export: --resume continues an export as it was started; --source cannot be changed (start a new export for that)',
    ],
  ])(
    '--resume with %s exits 2 with one line and the usage hint, starting nothing',
    async (_case, args, line) => {
      const cwd = await folder(`resume-usage-${args.length}`);

      const result = await runCommand('export.ts', args, { cwd, env: plainEnv() });

      expect(result).toStrictEqual({
        code: 2,
        signal: null,
        stdout: '',
        stderr: `${line(cwd)}\nSee \`npm run export -- --help\` for the usage.\n`,
      });
      expect(await readdir(cwd)).toStrictEqual([]);
    },
  );

  describe('npm run cancel, as a command line', () => {
    it('--help prints its usage on stdout and exits 0', async () => {
      const cwd = await folder('cancel-help');

      const result = await runCommand('cancel.ts', ['--help'], { cwd, env: plainEnv() });

      expect({ code: result.code, stderr: result.stderr }).toStrictEqual({ code: 0, stderr: '' });
      expect(result.stdout).toMatch(/^usage: npm run cancel -- --source-id ID /);
      expect(result.stdout).toContain('a failure receipt says "cancelled"');
      expect(await readdir(cwd)).toStrictEqual([]);
    });

    it.each([
      [[], 'cancel: --source-id ID is required'],
      [
        ['--source-id', 'BAD_ID'],
        'cancel: --source-id must be a source id (lower-case letters, digits and -), got "BAD_ID"',
      ],
    ])('%j exits 2 with one line and the usage hint', async (args, line) => {
      const cwd = await folder(`cancel-usage-${args.length}`);

      const result = await runCommand('cancel.ts', args, { cwd, env: plainEnv() });

      expect(result).toStrictEqual({
        code: 2,
        signal: null,
        stdout: '',
        stderr: `${line}\nSee \`npm run cancel -- --help\` for the usage.\n`,
      });
      expect(await readdir(cwd)).toStrictEqual([]);
    });
  });
});
