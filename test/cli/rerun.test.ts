import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Sandbox, startSandbox } from '../../scripts/sandbox/index.js';
import { processesMentioning } from '../support/processes.js';
import { type CommandResult, plainEnv, runCommand, writeSourceFile } from './support/command.js';

/** What a run says about itself on stderr: its execution name and its own log file. */
function runOf(result: CommandResult) {
  const match = /Execution (\S+); logs: (\S+)/.exec(result.stderr);
  if (!match) throw new Error(`no execution line in:\n${result.stderr}`);
  return { executionName: match[1]!, logFile: match[2]! };
}

const nextSince = (result: CommandResult) =>
  /^transactionTime \(next _since\): (\S+)/m.exec(result.stdout)?.[1];

/** Runs in one checkout: each command keeps its `.local/` state in the folder it runs in, here a fresh one. */
describe('every command, run twice in the same checkout', () => {
  let sandbox: Sandbox;
  let dir: string;
  beforeAll(async () => {
    sandbox = await startSandbox({ patientCount: 20, jobDurationMs: 300, resourcesPerFile: 10 });
    dir = await mkdtemp(join(tmpdir(), 'cli-rerun-'));
  }, 60_000);
  afterAll(async () => {
    // Only when a test failed: what its commands left must not outlive the tests.
    for (const { pid } of await processesMentioning(dir)) process.kill(pid, 'SIGKILL');
    await sandbox?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('demo: both runs succeed, each a full export of its own 20 patients, each with its own log', async () => {
    const cwd = join(dir, 'demo');
    await mkdir(cwd);

    const first = await runCommand('demo.ts', ['--patients', '20'], { cwd, env: plainEnv() });
    const second = await runCommand('demo.ts', ['--patients', '20'], { cwd, env: plainEnv() });

    for (const run of [first, second]) {
      expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code: 0 });
      expect(run.stdout).toMatch(/^Export succeeded in [\d.]+ s/m);
      expect(run.stdout).toMatch(/^Patient\s+\d+\s+20\s/m);
      expect(run.stdout).toContain('Asked for: everything (no _since)');
    }
    const runs = [runOf(first), runOf(second)];
    expect(runs[0]!.executionName).not.toBe(runs[1]!.executionName);
    expect((await readdir(join(cwd, '.local', 'logs'))).sort()).toStrictEqual(
      runs.map((run) => `demo-${run.executionName}.ndjson`).sort(),
    );
    expect(await processesMentioning(cwd)).toStrictEqual([]);
  }, 120_000);

  it('export: both runs succeed into the embedded S3; the second asks only for changes since the first', async () => {
    const cwd = join(dir, 'export');
    await mkdir(cwd);
    await writeSourceFile(sandbox, cwd, 'source.json', 'daily');
    sandbox.clearRequestLog();

    const first = await runCommand('export.ts', ['--source', 'source.json'], { cwd, env: plainEnv() });
    const second = await runCommand('export.ts', ['--source', 'source.json'], { cwd, env: plainEnv() });

    expect({ code: first.code, stderr: first.stderr }).toMatchObject({ code: 0 });
    expect({ code: second.code, stderr: second.stderr }).toMatchObject({ code: 0 });
    const firstTransactionTime = nextSince(first)!;
    expect(first.stdout).toContain('Asked for: everything (no _since)');
    expect(second.stdout).toContain(`Asked for: changes since ${firstTransactionTime}`);
    const kickOffSince = sandbox.requestLog
      .filter((entry) => entry.path.endsWith('/$export'))
      .map((entry) => new URLSearchParams(entry.query).get('_since'));
    expect(kickOffSince).toStrictEqual([null, firstTransactionTime]);
    // The watermark on disk is the second run's, ready for a third.
    const watermark = JSON.parse(
      await readFile(
        join(cwd, '.local', 's3', 'bulk-export', '_state', 'source=daily', 'watermark.json._S3rver_object'),
        'utf8',
      ),
    );
    expect(watermark.transactionTime).toBe(nextSince(second));
    // One log per run, each holding only its own run.
    const runs = [runOf(first), runOf(second)];
    expect((await readdir(join(cwd, '.local', 'logs'))).sort()).toStrictEqual(
      runs.map((run) => `export-${run.executionName}.ndjson`).sort(),
    );
    for (const [index, run] of runs.entries()) {
      const log = await readFile(run.logFile, 'utf8');
      expect(log).toContain(runs[index]!.executionName);
      expect(log).not.toContain(runs[1 - index]!.executionName);
    }
    expect(await processesMentioning(cwd)).toStrictEqual([]);
  }, 120_000);

  it('backfill: the same windows again succeed again', async () => {
    const cwd = join(dir, 'backfill');
    await mkdir(cwd);
    await writeSourceFile(sandbox, cwd, 'source.json', 'history');
    const args = [
      '--source',
      'source.json',
      '--from',
      '2024-01-01T00:00:00Z',
      '--to',
      '2024-01-11T00:00:00Z',
    ];

    const first = await runCommand('backfill.ts', [...args, '--window', '10d'], { cwd, env: plainEnv() });
    const second = await runCommand('backfill.ts', [...args, '--window', '10d'], { cwd, env: plainEnv() });

    for (const run of [first, second]) {
      expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code: 0 });
      expect(run.stdout).toMatch(
        /^window 1\/1 2024-01-01T00:00:00.000Z → 2024-01-11T00:00:00.000Z: \d+ resources in \d+ files$/m,
      );
    }
    // The window's execution name repeats; its log does not gather both runs.
    expect(await readdir(join(cwd, '.local', 'logs'))).toStrictEqual([
      expect.stringMatching(/^backfill-history-20240101T000000Z-20240111T000000Z-[0-9a-f]{8}\.ndjson$/),
      expect.stringMatching(/^backfill-history-20240101T000000Z-20240111T000000Z-[0-9a-f]{8}\.ndjson$/),
    ]);
    expect(await processesMentioning(cwd)).toStrictEqual([]);
  }, 120_000);
});
