import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SourceLock } from '../../lambdas/services/source-lock.js';
import type { EventLog, InvocationInfo } from '../../scripts/local/runner.js';
import {
  MATRIX_TRANSFER,
  type MatrixEnvironment,
  requestsOf,
  runScenario,
  type S3Outage,
  type ScenarioRun,
  sourceIdFor,
  startMatrixEnvironment,
} from './support/matrix.js';
import { assertZeroLoss } from './support/zero-loss.js';

/**
 * Faults of our own side rather than the server's: a Download File
 * invocation killed mid-file (a Lambda timeout), the S3 endpoint going away
 * mid-export, and two executions of one source at once. Same zero-loss check
 * as the fault matrix.
 */

interface DownloadInput {
  readonly batch: { readonly files: readonly { readonly index: number }[] };
  readonly transfer: {
    readonly position?: number;
    readonly checkpoint: unknown;
    readonly invocations?: number;
  };
}

/** Kills the first Download Batch invocation starting with file 0 that `matches`, once (its retry must run). */
function killFileZeroOnce(matches: (input: DownloadInput) => boolean, afterMs: number, error: string) {
  let done = false;
  return (invocation: InvocationInfo) => {
    if (done || invocation.functionName !== 'DownloadFile') return undefined;
    const input = invocation.input as DownloadInput;
    // The file the invocation starts with: the one its checkpoint is of.
    if (input.batch.files[input.transfer.position ?? 0]?.index !== 0 || !matches(input)) return undefined;
    done = true;
    return { afterMs, error };
  };
}

function retriesOf(run: ScenarioRun, state: string): { error: string | undefined; attempt: number }[] {
  return run.result.run.events
    .filter((event) => event.type === 'StateRetried' && event.state?.name === state)
    .map((event) => ({
      error: (event as EventLog & { retry?: { attempt: number } }).Error,
      attempt: (event as EventLog & { retry: { attempt: number } }).retry.attempt,
    }));
}

/** The Error of each failed attempt of a state, from StateFailed events (those the Retry then retried). */
function failuresOf(run: ScenarioRun, state: string): (string | undefined)[] {
  return run.result.run.events
    .filter((event) => event.type === 'StateFailed' && event.state?.name === state)
    .map((event) => event.Error);
}

describe.concurrent('a Download File invocation killed mid-file (a Lambda timeout)', () => {
  let env: MatrixEnvironment;
  beforeAll(async () => {
    env = await startMatrixEnvironment();
  }, 60_000);
  afterAll(async () => {
    await env?.close();
  }, 60_000);

  // The Patient file (102 KB, identity from the second origin) at 60 KB/s: about 1.7 s, so the
  // kill lands mid-file. (A gzip body would be throttled in compressed bytes: 13 times faster.)
  const slowFirstFile = {
    filesFromSecondOrigin: true,
    slowFile: { bytesPerSecond: 60_000, fileIndex: 0 },
  } as const;

  for (const error of ['States.Timeout', 'Sandbox.Timedout', 'Lambda.Unknown']) {
    it(`killed on its first invocation (${error}) → the retry starts the file over; every line once, the orphan writes nothing`, async () => {
      const run = await runScenario(env, {
        name: `killed fresh ${error}`,
        faults: slowFirstFile,
        killInvocation: killFileZeroOnce((input) => input.transfer.checkpoint === null, 900, error),
      });

      await assertZeroLoss(env, run, { outcome: 'succeeded' });
      expect(run.result.run.killed).toHaveLength(1);
      expect(failuresOf(run, 'Download Batch')).toEqual([error]);
      // The orphan still had the file streaming in; its next write to S3 was refused.
      expect(run.logLines.some((line) => line.includes('InvocationKilledError'))).toBe(true);
      const patient = (await requestsOf(env, run.clientId)).filter((entry) =>
        entry.path.endsWith('/Patient.1.ndjson'),
      );
      expect(patient.filter((entry) => entry.status === 200)).toHaveLength(2);
    }, 60_000);
  }

  it('killed while continuing from a checkpoint (Sandbox.Timedout) → the retry goes on from that same checkpoint; every line once', async () => {
    const run = await runScenario(env, {
      name: 'killed resumed',
      faults: slowFirstFile,
      // Each invocation may run 1 s and checkpoints with 0.6 s left: the file takes several.
      invocationTimeoutMs: (functionName) => (functionName === 'DownloadFile' ? 1000 : 60_000),
      transfer: {
        partSizeBytes: 16 * 1024,
        settings: { ...MATRIX_TRANSFER.settings, minPartSizeBytes: 16 * 1024, safetyMarginMs: 600 },
      },
      // The second invocation of the file (the first to continue from a checkpoint), 350 ms in:
      // before its own checkpoint at 400 ms, after it may have uploaded a 16 KiB part of its own.
      killInvocation: killFileZeroOnce(
        (input) => input.transfer.checkpoint !== null,
        350,
        'Sandbox.Timedout',
      ),
    });

    await assertZeroLoss(env, run, { outcome: 'succeeded' });
    expect(run.result.run.killed).toHaveLength(1);
    expect(failuresOf(run, 'Download Batch')).toEqual(['Sandbox.Timedout']);
    const patient = (await requestsOf(env, run.clientId)).filter((entry) =>
      entry.path.endsWith('/Patient.1.ndjson'),
    );
    // One plain GET, then only Range requests: nothing was downloaded from byte 0 again. (An
    // invocation that stopped exactly at the end of the file makes the next one's range a 416.)
    expect(patient[0]!.status).toBe(200);
    const ranges = patient.slice(1).map((entry) => entry.status);
    const endOfFile = ranges.at(-1) === 416 ? [416] : [];
    expect(ranges).toEqual([...Array(ranges.length - endOfFile.length).fill(206), ...endOfFile]);
    expect(patient.length).toBeGreaterThan(3);
  }, 60_000);
});

describe('the S3 endpoint unavailable mid-export', () => {
  let env: MatrixEnvironment;
  beforeAll(async () => {
    env = await startMatrixEnvironment();
  }, 60_000);
  afterAll(async () => {
    await env?.close();
  }, 60_000);

  // The outage is tied to the workflow's steps, not to the clock, so that a slow machine cannot
  // let the downloads finish before S3 goes down, nor keep S3 down past the retries.
  it('down as the downloads start, back once a download has failed on it → the Retry lands every line once', async () => {
    let outage: Promise<void> | undefined;
    let recovery: Promise<void> | undefined;
    const attempts = new Set<string>();
    const run = await runScenario(env, {
      name: 'S3 outage',
      // Each file's first attempt starts with S3 down; an attempt with an input seen before is
      // the state's Retry of a failed one, and starts once S3 is back.
      async beforeInvocation({ functionName, input }) {
        if (functionName !== 'DownloadFile') return;
        const attempt = JSON.stringify(input);
        if (attempts.has(attempt)) {
          recovery ??= outage!.then(() => env.startS3());
          await recovery;
          return;
        }
        attempts.add(attempt);
        if (recovery) return;
        outage ??= env.stopS3();
        await outage;
      },
    });

    await assertZeroLoss(env, run, { outcome: 'succeeded' });
    expect(failuresOf(run, 'Download Batch').length).toBeGreaterThan(0);
    expect(failuresOf(run, 'Download Batch').every((error) => error === 'StorageError')).toBe(true);
    expect(run.result.run.cause).toBeUndefined();
  }, 90_000);

  it('down as Finalize starts, back a moment after it first tries S3 → Finalize rides it out in one attempt', async () => {
    let outage: S3Outage | undefined;
    const run = await runScenario(env, {
      name: 'S3 outage at Finalize',
      async beforeInvocation({ stateName }) {
        if (stateName === 'Finalize Export') outage ??= await env.takeS3AwayUntilTried();
      },
    });

    expect(outage?.tried).toBe(true);
    await outage!.back;
    await assertZeroLoss(env, run, { outcome: 'succeeded' });
    // The store's own retries waited S3 out: no Finalize attempt failed (their pauses are
    // shortened here, so the state's Retry alone could not have).
    expect(failuresOf(run, 'Finalize Export')).toEqual([]);
    expect(run.result.run.invocations.FinalizeExport).toBe(1);
  }, 90_000);
});

describe('two executions of one source at once', () => {
  let env: MatrixEnvironment;
  beforeAll(async () => {
    env = await startMatrixEnvironment();
  }, 60_000);
  afterAll(async () => {
    await env?.close();
  }, 60_000);

  it('only one proceeds; the other ends with ExportAlreadyRunningError and leaves the winner its lock', async () => {
    const races = await Promise.all(
      [1, 2, 3].map(async (race) => {
        const sourceId = sourceIdFor(`race ${race}`);
        // A slow job keeps the winner running well after the loser has ended.
        const { clientId } = await env.sandbox.registerClient({
          jwks: { keys: [env.key.publicJwk] },
          faults: { jobDurationMs: 1500 },
        });
        const lockWhenFirstEnded: { value?: SourceLock | undefined } = {};
        const start = (name: string) =>
          runScenario(env, { name, sourceId, clientId, executionName: `${sourceId}-${name}` }).then(
            async (run) => {
              if (!('value' in lockWhenFirstEnded)) {
                lockWhenFirstEnded.value = await env.getJson<SourceLock>(
                  `_state/source=${sourceId}/lock.json`,
                );
              }
              return run;
            },
          );
        const runs = await Promise.all([start('a'), start('b')]);
        return { sourceId, clientId, runs, lockWhenFirstEnded: lockWhenFirstEnded.value };
      }),
    );

    for (const { sourceId, clientId, runs, lockWhenFirstEnded } of races) {
      const winner = runs.find((run) => run.result.run.status === 'SUCCEEDED');
      const loser = runs.find((run) => run.result.run.status === 'FAILED');
      expect(runs.map((run) => run.result.run.status).sort(), `${sourceId}: one winner, one loser`).toEqual([
        'FAILED',
        'SUCCEEDED',
      ]);
      await assertZeroLoss(env, winner!, { outcome: 'succeeded' });

      expect(loser!.result.run.error).toBe('ExportAlreadyRunningError');
      expect(loser!.result.run.cause).toMatch(
        new RegExp(
          `^ExportAlreadyRunningError: another export of source ${sourceId} (is running \\(execution ${winner!.result.run.executionName}, since [^)]+\\); this one was not started|took the lock first)`,
        ),
      );
      // The loser ended while the winner was still exporting, and left it the lock.
      expect(lockWhenFirstEnded?.executionName).toBe(winner!.result.run.executionName);
      expect(loser!.result.run.cause).not.toContain('released the source lock');
      // It never reached the server, and left a failure receipt but nothing under the source.
      const kickOffs = (await requestsOf(env, clientId)).filter((entry) => entry.path.endsWith('/$export'));
      expect(kickOffs).toHaveLength(1);
      const failure = await env.getJson<{ error: string }>(
        `_failures/source=${sourceId}/${loser!.result.run.executionName}.json`,
      );
      expect(failure?.error).toBe('ExportAlreadyRunningError');
      expect(loser!.result.emittedEvents.map((event) => event.detailType)).toEqual(['Bulk Export Failed']);
      expect(retriesOf(loser!, 'Prepare Export')).toEqual([]);
    }
  }, 90_000);
});
