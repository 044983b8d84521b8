import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Receipt } from '../../lambdas/core/receipt.js';
import { startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';
import type { SourceStatus } from '../../scripts/local/job-status.js';
import type { FaultPlan, Sandbox } from '../../scripts/sandbox/index.js';
import { startSandbox } from '../../scripts/sandbox/index.js';
import { processesMentioning } from '../support/processes.js';
import { plainEnv, runCommand, startCommand, writeSourceFile } from './support/command.js';

interface StatusDocument {
  readonly target: string;
  readonly at: string;
  readonly sources: SourceStatus[];
}

const executionOf = (stderr: string) => {
  const match = /Execution (\S+); logs:/.exec(stderr);
  if (!match) throw new Error(`no execution line in:\n${stderr}`);
  return match[1]!;
};

/** The receipt a finished export left, read through an embedded S3 of our own on the folder's `.local/s3`. */
async function receiptIn(cwd: string, sourceId: string): Promise<Receipt> {
  const s3 = await startEmbeddedS3({ directory: join(cwd, '.local', 's3') });
  const client = new S3Client(s3.clientConfig);
  try {
    const listed = await client.send(
      new ListObjectsV2Command({ Bucket: 'bulk-export', Prefix: `source=${sourceId}/` }),
    );
    const key = listed
      .Contents!.map((object) => object.Key!)
      .find((name) => name.endsWith('/_receipt.json'))!;
    const response = await client.send(new GetObjectCommand({ Bucket: 'bulk-export', Key: key }));
    return JSON.parse(await response.Body!.transformToString()) as Receipt;
  } finally {
    client.destroy();
    await s3.close();
  }
}

/**
 * `npm run status` as a user runs it beside `npm run export`: processes in one
 * folder (its `.local/`), the sandbox FHIR server over HTTP, the state read
 * from the embedded S3's folder while the export's own embedded S3 serves it.
 */
describe('npm run status', () => {
  let sandbox: Sandbox;
  let root: string;
  beforeAll(async () => {
    sandbox = await startSandbox({ patientCount: 20, jobDurationMs: 300 });
    root = await mkdtemp(join(tmpdir(), 'cli-status-'));
  }, 60_000);
  afterAll(async () => {
    for (const { pid } of await processesMentioning(root)) process.kill(pid, 'SIGKILL');
    await sandbox?.close();
    await rm(root, { recursive: true, force: true });
  });

  const folder = async (name: string) => {
    const cwd = join(root, name);
    await mkdir(cwd);
    return cwd;
  };
  const sourceIn = async (
    cwd: string,
    id: string,
    faults?: FaultPlan,
    exportSettings?: Record<string, unknown>,
  ) => {
    await writeSourceFile(sandbox, cwd, 'source.json', id, faults, exportSettings);
  };
  const status = async (cwd: string, args: readonly string[] = []) => {
    const result = await runCommand('status.ts', args, { cwd, env: plainEnv() });
    expect({ code: result.code, stderr: result.stderr }).toStrictEqual({ code: 0, stderr: '' });
    return result.stdout;
  };
  const statusJson = async (cwd: string, sourceId: string) =>
    JSON.parse(await status(cwd, ['--source-id', sourceId, '--json'])) as StatusDocument;

  it('shows the running export (phase, server progress, age, live holder), then the last success and the watermark, the same twice', async () => {
    const cwd = await folder('run');
    // The server keeps the job in progress for 12 s: long enough to look at it while it waits.
    await sourceIn(cwd, 'slow', { jobDurationMs: 12_000 });
    const command = startCommand('export.ts', ['--source', 'source.json'], { cwd, env: plainEnv() });
    const executionName = executionOf(await command.stderrMatching(/Execution \S+; logs:/));

    let during: SourceStatus | undefined;
    for (let tries = 0; tries < 40; tries += 1) {
      const [source] = (await statusJson(cwd, 'slow')).sources;
      if (source?.running?.serverProgress) {
        during = source;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(during?.running).toMatchObject({
      executionName,
      phase: 'waiting for the server',
      serverProgress: expect.stringMatching(/^\d+% complete$/),
      lock: { holder: `pid ${command.pid}@${hostname()}`, liveness: 'alive', state: 'running' },
    });
    expect(during!.running!.ageSeconds).toBeGreaterThanOrEqual(0);
    expect(during!.running!.ageSeconds).toBeLessThan(60);
    expect(during!.running!.files).toBeUndefined();
    const text = await status(cwd, ['--source-id', 'slow']);
    expect(text).toMatch(
      new RegExp(`Source slow\\n  Running: +${executionName}: waiting for the server, age \\d+(\\.\\d)? s`),
    );
    expect(text).toContain('files: —; chunks: —');
    expect(text).toMatch(/server progress: "\d+% complete" \(polled [\d.]+ s ago\)/);
    expect(text).toContain(`lock: pid ${command.pid}@${hostname()}, alive, running since`);

    const run = await command.result;
    expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code: 0 });
    const receipt = await receiptIn(cwd, 'slow');
    const after = await statusJson(cwd, 'slow');
    expect(after.sources).toStrictEqual([
      {
        sourceId: 'slow',
        registered: true,
        lastSuccess: {
          executionName,
          at: receipt.completedAt ?? receipt.finishedAt,
          transactionTime: receipt.transactionTime,
          resources: receipt.totals.resources,
          files: receipt.totals.files,
          bytes: receipt.totals.bytes,
          receiptKey: expect.stringMatching(/^source=slow\/export=[^/]+\/_receipt\.json$/),
        },
        watermark: { transactionTime: receipt.transactionTime, executionName, updatedAt: expect.any(String) },
      },
    ]);
    expect(receipt.totals.resources).toBeGreaterThan(0);
    const afterText = await status(cwd);
    expect(afterText).toContain('  Running:       none\n');
    expect(afterText).toContain(`resources in ${receipt.totals.files} files`);
    expect(afterText).toContain(
      `  Watermark:     ${receipt.transactionTime} (next since=auto; set by ${executionName}`,
    );
    expect(afterText).toContain('  Last failure:  none');
    // Reads only: a second look sees the same state.
    const again = await statusJson(cwd, 'slow');
    expect(again.sources).toStrictEqual(after.sources);
    expect(await processesMentioning(cwd)).toStrictEqual([]);
  }, 90_000);

  it('shows files landed of total while the export downloads', async () => {
    const cwd = await folder('downloading');
    // Every file trickles in at 1 kB/s: the small ones land while the large ones are on their way,
    // for long enough that a status process started under load (each takes seconds) sees it.
    await sourceIn(cwd, 'trickle', { slowFile: { bytesPerSecond: 1_000 } });
    const command = startCommand('export.ts', ['--source', 'source.json'], { cwd, env: plainEnv() });
    const executionName = executionOf(await command.stderrMatching(/Execution \S+; logs:/));

    // Read as a person reads it, until a file has landed and another has not.
    const seen: string[] = [];
    let landedOfTotal: RegExpExecArray | null = null;
    for (let tries = 0; tries < 20 && !landedOfTotal; tries += 1) {
      const text = await status(cwd, ['--source-id', 'trickle']);
      seen.push(/Running: +(.*)/.exec(text)?.[1] ?? text);
      landedOfTotal = new RegExp(
        `Running: +${executionName}: downloading, age [\\d.]+ s \\(started [^)]+\\)\\n +([1-9]\\d*) of (\\d+) files landed; chunks: —\\n`,
      ).exec(text);
      if (!landedOfTotal) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(landedOfTotal, seen.join('\n')).not.toBeNull();
    expect(Number(landedOfTotal![1])).toBeLessThan(Number(landedOfTotal![2]));

    const run = await command.result;
    expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code: 0 });
  }, 90_000);

  it("shows a chunked export's chunks done of total while it runs, then its success", async () => {
    const cwd = await folder('chunked');
    // 20 patients in slices of 7 are 3 chunks, one server job at a time (maxConcurrentJobs defaults
    // to 1); each job stays in progress 2.5 s, so there is a while with some chunks done and some not.
    await sourceIn(
      cwd,
      'sliced',
      { jobDurationMs: 2_500 },
      { level: 'group', groupId: 'cohort', method: 'POST', chunk: { by: 'patients', size: 7 } },
    );
    const command = startCommand('export.ts', ['--source', 'source.json'], { cwd, env: plainEnv() });
    const executionName = executionOf(await command.stderrMatching(/Execution \S+; logs:/));

    // Read both forms as a person would, until one chunk is done and another is not. The text is read
    // after the JSON and the export moves on meanwhile, so each is checked on its own.
    const seen: string[] = [];
    let during: SourceStatus | undefined;
    let text: string | undefined;
    for (let tries = 0; tries < 60 && !(during && text); tries += 1) {
      const [source] = (await statusJson(cwd, 'sliced')).sources;
      const chunks = source?.running?.chunks;
      if (chunks && chunks.done >= 1 && chunks.done < chunks.total) during ??= source;
      const read = await status(cwd, ['--source-id', 'sliced']);
      seen.push(/Running: +[\s\S]*?(?=\n {2}Last success)/.exec(read)?.[0] ?? read);
      if (/chunks: [12] of 3\n/.test(read)) text ??= read;
      if (!(during && text)) await new Promise((resolve) => setTimeout(resolve, 150));
    }
    expect(during?.running, seen.join('\n---\n')).toMatchObject({
      executionName,
      phase: 'exporting chunks',
      chunks: { total: 3 },
      lastPolledChunk: expect.any(Number),
      lock: { holder: `pid ${command.pid}@${hostname()}`, liveness: 'alive', state: 'running' },
    });
    expect(during!.running!.chunks!.done).toBeGreaterThanOrEqual(1);
    expect(during!.running!.chunks!.done).toBeLessThan(3);
    // A chunked export has no manifest of its own while its chunks run: no files to count yet.
    expect(during!.running!.files).toBeUndefined();
    expect(text, seen.join('\n---\n')).toMatch(
      new RegExp(
        `Source sliced\\n  Running: +${executionName}: exporting chunks, age [\\d.]+ s \\(started [^)]+\\)\\n` +
          ' +files: —; chunks: [12] of 3\\n' +
          ' +server progress: ("[^"\\n]*"|—) \\(chunk \\d+, polled [\\d.]+ s ago\\)\\n',
      ),
    );

    const run = await command.result;
    expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code: 0 });
    const receipt = await receiptIn(cwd, 'sliced');
    expect(receipt.chunking).toMatchObject({ by: 'patients', reason: 'planned' });
    expect(receipt.chunking!.chunks.map((chunk) => chunk.patients)).toStrictEqual([7, 7, 6]);
    const [after] = (await statusJson(cwd, 'sliced')).sources;
    expect(after!.running).toBeUndefined();
    expect(after!.lastSuccess).toStrictEqual({
      executionName,
      at: receipt.completedAt ?? receipt.finishedAt,
      transactionTime: receipt.transactionTime,
      resources: receipt.totals.resources,
      files: receipt.totals.files,
      bytes: receipt.totals.bytes,
      receiptKey: expect.stringMatching(/^source=sliced\/export=[^/]+\/_receipt\.json$/),
    });
    expect(receipt.totals.resources).toBeGreaterThan(0);
    const afterText = await status(cwd, ['--source-id', 'sliced']);
    expect(afterText).toContain('  Running:       none\n');
    expect(afterText).toContain(`, ${executionName}: `);
    expect(afterText).toContain(`resources in ${receipt.totals.files} files`);
    expect(afterText).toContain('  Last failure:  none');
    expect(await processesMentioning(cwd)).toStrictEqual([]);
  }, 90_000);

  it('shows a failed run as the last failure, with its cause and that it cannot be resumed', async () => {
    const cwd = await folder('failed');
    await sourceIn(cwd, 'refused', { kickoffErrorStatus: 400 });
    const run = await runCommand('export.ts', ['--source', 'source.json'], { cwd, env: plainEnv() });
    expect(run.code).toBe(1);
    const executionName = executionOf(run.stderr);

    const [source] = (await statusJson(cwd, 'refused')).sources;
    expect(source).toMatchObject({
      sourceId: 'refused',
      registered: true,
      lastFailure: {
        executionName,
        outcome: 'failed',
        error: expect.stringMatching(/^[A-Z]\w+Error$/),
        resumable: false,
        receiptKey: `_failures/source=refused/${executionName}.json`,
      },
    });
    expect(source!.running).toBeUndefined();
    expect(source!.lastSuccess).toBeUndefined();
    const text = await status(cwd, ['--source-id', 'refused']);
    expect(text).toContain(`, ${executionName} failed: ${source!.lastFailure!.error}: `);
    expect(text).toContain('                 not resumable');
    expect(text).toContain('  Last success:  none');
  }, 90_000);

  it('says so when nothing is known of a source, and exits 0', async () => {
    const cwd = await folder('empty');
    const text = await status(cwd, ['--source-id', 'nowhere']);
    expect(text).toContain('Nothing is known of source nowhere here');
  }, 30_000);

  it('prints its usage for --help, and one line and exit 2 for a wrong option or value', async () => {
    const cwd = await folder('usage');
    const help = await runCommand('status.ts', ['--help'], { cwd, env: plainEnv() });
    expect(help).toMatchObject({ code: 0, stderr: '' });
    expect(help.stdout).toMatch(/^usage: npm run status -- \[--source-id ID\] \[--json\]/);

    for (const [args, message] of [
      [['--sources', 'x'], "status: Unknown option '--sources'"],
      [['--source-id', 'Not_An_Id'], 'status: --source-id must be a source id'],
      [['--state-machine-arn', 'arn:nope'], 'status: --state-machine-arn must be a state machine ARN'],
      [['--aws-s3'], 'status: --aws-s3 needs --bucket NAME'],
    ] as const) {
      const wrong = await runCommand('status.ts', args, { cwd, env: plainEnv() });
      expect({ code: wrong.code, stdout: wrong.stdout }).toStrictEqual({ code: 2, stdout: '' });
      expect(wrong.stderr.split('\n')[0]).toContain(message);
    }
    // Nothing was started for a wrong command line.
    expect(await readdir(cwd)).toStrictEqual([]);
  }, 30_000);
});
