import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExportNotResumableError } from '../../lambdas/errors.js';
import type { FailureReceipt } from '../../lambdas/services/export-lifecycle.js';
import type { SourceLock } from '../../lambdas/services/source-lock.js';
import {
  type MatrixEnvironment,
  requestsOf,
  runScenario,
  type ScenarioRun,
  sourceIdFor,
  startMatrixEnvironment,
  statusUrlOf,
} from './support/matrix.js';
import { assertZeroLoss } from './support/zero-loss.js';

/**
 * The life of an export that does not go straight through: a file that
 * fails and is retried in the same execution, a failed export resumed
 * (redriven) without downloading what landed, a resume after the links
 * expired, a cancel while polling and while downloading, a lock whose holder
 * died, and a success event that fails after the marker. The real ASL and
 * handlers, the sandbox over HTTP, the embedded S3; each run is followed by
 * the zero-loss check where it applies.
 */
describe('resume, cancel and never strand a source', { timeout: 180_000 }, () => {
  let env: MatrixEnvironment;
  beforeAll(async () => {
    // ~50 files: 25 resources per file over the cohort's types.
    env = await startMatrixEnvironment({ resourcesPerFile: 25 });
  }, 60_000);
  afterAll(async () => {
    await env?.close();
  });

  const FILES = /^\/files\//;
  const fileGets = async (run: ScenarioRun) =>
    (await requestsOf(env, run.clientId)).filter((entry) => entry.method === 'GET' && FILES.test(entry.path));
  const deletesOf = async (run: ScenarioRun) => {
    const path = new URL(statusUrlOf(run)!).pathname;
    return (await requestsOf(env, run.clientId)).filter(
      (entry) => entry.method === 'DELETE' && entry.path === path,
    );
  };
  const lockOf = (sourceId: string) => env.getJson<SourceLock>(`_state/source=${sourceId}/lock.json`);
  const failureReceiptOf = (run: ScenarioRun) =>
    env.getJson<FailureReceipt>(`_failures/source=${run.sourceId}/${run.result.run.executionName}.json`);

  it('one file failing among ~50 is retried in the retry pass, which lands it once the fault clears', async () => {
    let repair: (() => void) | undefined;
    const run = await runScenario(env, {
      name: 'retry pass',
      beforeInvocation(invocation) {
        if (invocation.functionName === 'PrepareExport')
          repair = env.sandbox.breakFiles((file) => file.name === 'Observation.2.ndjson');
        // The first pass is over: the server can serve the file again.
        if (invocation.functionName === 'CheckFiles') repair?.();
      },
    });
    await assertZeroLoss(env, run, { outcome: 'succeeded' });
    const gets = await fileGets(run);
    expect(gets.length).toBeGreaterThanOrEqual(45);
    const broken = gets.filter((entry) => entry.path.endsWith('/Observation.2.ndjson'));
    expect(broken.map((entry) => entry.status)).toEqual([403, 200]);
    // Every other file was fetched once: nothing that landed in the first pass was fetched again.
    const others = gets.filter((entry) => !entry.path.endsWith('/Observation.2.ndjson'));
    expect(new Set(others.map((entry) => entry.path)).size).toBe(others.length);
    const check = run.result.run.events.find(
      (event) => event.type === 'StateExited' && event.state?.name === 'Check Files',
    );
    expect((check?.state?.output as { check?: unknown } | undefined)?.check).toMatchObject({ missing: 1 });
  });

  it('a file still failing after the retry pass fails the export resumably; a resume lands only the missing file, byte for byte', async () => {
    const sourceId = sourceIdFor('resume');
    const repair = env.sandbox.breakFiles((file) => file.name === 'Condition.1.ndjson');
    let first: ScenarioRun;
    try {
      first = await runScenario(env, { name: 'resume', sourceId });
    } finally {
      repair();
    }
    expect(first.result.run.status).toBe('FAILED');
    expect(first.result.endedCleanUp).toMatchObject({ action: 'ended', resumable: true });
    const receipt = await failureReceiptOf(first);
    expect(receipt).toMatchObject({
      status: 'failed',
      resumable: true,
      files: { failed: [expect.objectContaining({ type: 'Condition', error: 'FileDownloadError' })] },
    });
    expect(receipt!.cause).toMatch(
      /1 file\(s\) did not land: file \d+ \(output Condition\): FileDownloadError/,
    );
    expect(receipt!.files!.landed).toBe(receipt!.files!.total - 1);
    expect(await lockOf(sourceId)).toMatchObject({ state: 'resumable' });
    // Not published: a reader of the layout sees nothing of it yet.
    const visible = (await env.listKeys(`source=${sourceId}/`)).filter((key) => /\/type=[^/]+\//.test(key));
    expect(visible.filter((key) => !key.includes('/_staging/'))).toEqual([]);
    expect(first.result.run.redrivePoint?.stateName).toBe('Retry Failed Files');

    env.sandbox.clearRequestLog();
    const resumed = await runScenario(env, {
      name: 'resume',
      sourceId,
      clientId: first.clientId,
      executionName: first.result.run.executionName,
      redrive: first.result.run.redrivePoint!,
    });
    // One execution, as on AWS, where a redrive keeps the history: the check sees both attempts.
    await assertZeroLoss(
      env,
      {
        ...resumed,
        keysBefore: first.keysBefore,
        watermarkBefore: first.watermarkBefore,
        result: {
          ...resumed.result,
          run: { ...resumed.result.run, events: [...first.result.run.events, ...resumed.result.run.events] },
        },
      },
      { outcome: 'succeeded' },
    );
    // The resumed execution's request log: one GET, the file that had not landed.
    const gets = await fileGets(resumed);
    expect(gets.map((entry) => `${entry.status} ${entry.path.replace(/^.*\//, '')}`)).toEqual([
      '200 Condition.1.ndjson',
    ]);
    // Locally the inline Map fails with its item's error; on AWS it is States.ExceedToleratedFailureThreshold.
    expect(resumed.result.receipt?.resumedAfter).toMatchObject({ error: 'FileDownloadError' });
    expect(await failureReceiptOf(first)).toBeUndefined();
  });

  it("a chunked export that fails downloading resumes like any other: only the missing files, each from its own chunk's job", async () => {
    const sourceId = sourceIdFor('resume-chunks');
    const chunked = {
      export: { level: 'group', groupId: 'cohort', method: 'POST', chunk: { by: 'patients', size: 25 } },
    };
    // Every chunk's job serves its own Condition.1.ndjson: each of them fails both passes.
    const repair = env.sandbox.breakFiles((file) => file.name === 'Condition.1.ndjson');
    let first: ScenarioRun;
    try {
      first = await runScenario(env, { name: 'resume-chunks', sourceId, source: chunked });
    } finally {
      repair();
    }
    expect(first.result.run.status).toBe('FAILED');
    expect(first.result.endedCleanUp).toMatchObject({ action: 'ended', resumable: true });
    const receipt = await failureReceiptOf(first);
    const failed = receipt!.files!.failed;
    const jobs = env.sandbox.jobs().filter((job) => job.clientId === first.clientId);
    expect(jobs.length).toBeGreaterThan(1);
    expect(failed).toHaveLength(jobs.length);
    expect(failed.every((file) => file.type === 'Condition' && file.error === 'FileDownloadError')).toBe(
      true,
    );
    // Kept for the resume: no chunk's job was DELETEd.
    expect(jobs.every((job) => job.state !== 'deleted')).toBe(true);

    env.sandbox.clearRequestLog();
    const resumed = await runScenario(env, {
      name: 'resume-chunks',
      sourceId,
      clientId: first.clientId,
      source: chunked,
      executionName: first.result.run.executionName,
      redrive: first.result.run.redrivePoint!,
    });
    await assertZeroLoss(
      env,
      {
        ...resumed,
        keysBefore: first.keysBefore,
        watermarkBefore: first.watermarkBefore,
        result: {
          ...resumed.result,
          run: { ...resumed.result.run, events: [...first.result.run.events, ...resumed.result.run.events] },
        },
      },
      { outcome: 'succeeded' },
    );
    const gets = await fileGets(resumed);
    expect(gets.map((entry) => `${entry.status} ${entry.path.replace(/^.*\//, '')}`)).toEqual(
      jobs.map(() => '200 Condition.1.ndjson'),
    );
    // One per chunk's job: each file came from the job that listed it.
    expect(new Set(gets.map((entry) => entry.path.split('/').slice(0, -1).join('/'))).size).toBe(jobs.length);
    expect(resumed.result.receipt?.chunking?.chunks).toHaveLength(jobs.length);
    expect(resumed.result.receipt?.resumedAfter).toMatchObject({ error: 'FileDownloadError' });
    expect(
      env.sandbox
        .jobs()
        .filter((job) => job.clientId === first.clientId)
        .map((job) => job.state),
    ).toEqual(jobs.map(() => 'deleted'));
  });

  it('a resume after the links expired says so and offers a fresh export', async () => {
    const sourceId = sourceIdFor('expired');
    const repair = env.sandbox.breakFiles((file) => file.name === 'Encounter.1.ndjson');
    let first: ScenarioRun;
    try {
      first = await runScenario(env, { name: 'expired', sourceId });
    } finally {
      repair();
    }
    expect(first.result.endedCleanUp).toMatchObject({ resumable: true });
    // A day later: the server has deleted its files (the lock says until when they were valid).
    const lock = (await lockOf(sourceId))!;
    await env.client.send(
      new PutObjectCommand({
        Bucket: env.bucket,
        Key: `_state/source=${sourceId}/lock.json`,
        Body: JSON.stringify({ ...lock, resumableUntil: new Date(Date.now() - 60_000).toISOString() }),
      }),
    );
    const attempt = runScenario(env, {
      name: 'expired',
      sourceId,
      clientId: first.clientId,
      executionName: first.result.run.executionName,
      redrive: first.result.run.redrivePoint!,
    });
    await expect(attempt).rejects.toThrow(ExportNotResumableError);
    await expect(attempt).rejects.toThrow(
      /cannot be resumed: the server's file links expired at .*; start a fresh export instead: npm run export -- --source/,
    );
    // The fresh export takes the dead export's lock over and DELETEs its job before its own kick-off.
    const fresh = await runScenario(env, { name: 'expired', sourceId, clientId: first.clientId });
    expect({ status: fresh.result.run.status, cause: fresh.result.run.cause }).toEqual({
      status: 'SUCCEEDED',
      cause: undefined,
    });
    const oldJob = env.sandbox.jobs().find((job) => job.statusUrl === statusUrlOf(first));
    expect(oldJob?.state).toBe('deleted');
    expect(await failureReceiptOf(first)).toMatchObject({ status: 'superseded', resumable: false });
    expect(await lockOf(sourceId)).toBeUndefined();
  });

  it.each([
    ['while polling', (name: string, count: number) => name === 'PollStatus' && count === 2],
    ['while downloading', (name: string, count: number) => name === 'DownloadFile' && count === 12],
  ])(
    'a cancel %s ends the export cleanly: job DELETEd once, no open upload, lock released, receipt "cancelled"',
    async (_when, at) => {
      const cancel = new AbortController();
      const counts = new Map<string, number>();
      const run = await runScenario(env, {
        name: 'cancel',
        beforeInvocation(invocation) {
          const count = (counts.get(invocation.functionName) ?? 0) + 1;
          counts.set(invocation.functionName, count);
          if (at(invocation.functionName, count)) cancel.abort();
        },
        signal: cancel.signal,
      });
      expect(run.result.run.status).toBe('ABORTED');
      expect(run.result.endedCleanUp).toMatchObject({ action: 'ended', resumable: false });
      expect(await deletesOf(run)).toHaveLength(1);
      expect(await env.openUploads(`source=${run.sourceId}/`)).toEqual([]);
      expect(await lockOf(run.sourceId)).toBeUndefined();
      expect(await failureReceiptOf(run)).toMatchObject({ status: 'cancelled', resumable: false });
      const keys = await env.listKeys(`source=${run.sourceId}/`);
      expect(keys.filter((key) => /(_SUCCESS|_receipt)\.json$|\/_staging\/|\/type=/.test(key))).toEqual([]);
      expect(
        await env.listKeys(
          `_work/source=${run.sourceId}/execution=${run.result.run.executionName}/in-flight/`,
        ),
      ).toEqual([]);
      expect(run.result.emittedEvents.map((event) => event.detailType)).toEqual(['Bulk Export Failed']);
    },
  );

  it('a cancel while chunks run DELETEs every chunk job it kicked off, and lands nothing', async () => {
    // Prepare: two chunks at once, each job in progress for a while; cancel at the third chunk poll.
    const cancel = new AbortController();
    let polls = 0;
    // Act
    const run = await runScenario(env, {
      name: 'cancel-chunks',
      faults: { jobDurationMs: 5_000, concurrentExports: 2 },
      source: {
        export: {
          level: 'group',
          groupId: 'cohort',
          method: 'POST',
          chunk: { by: 'patients', size: 25 },
          maxConcurrentJobs: 2,
        },
      },
      beforeInvocation(invocation) {
        if (invocation.functionName === 'PollStatus' && ++polls === 3) cancel.abort();
      },
      signal: cancel.signal,
    });
    // Assess
    expect(run.result.run.status).toBe('ABORTED');
    const jobs = env.sandbox.jobs().filter((job) => job.clientId === run.clientId);
    expect(jobs).toHaveLength(2);
    expect(jobs.map((job) => job.state)).toStrictEqual(['deleted', 'deleted']);
    expect(await failureReceiptOf(run)).toMatchObject({
      status: 'cancelled',
      resumable: false,
      statusUrlKnown: true,
    });
    const receipt = await failureReceiptOf(run);
    expect(
      receipt?.cleanup.actions.filter((action) =>
        /^DELETE of the server job of chunk \d+ answered 202$/.test(action),
      ),
    ).toHaveLength(2);
    expect(await lockOf(run.sourceId)).toBeUndefined();
    const keys = await env.listKeys(`source=${run.sourceId}/`);
    expect(keys.filter((key) => /(_SUCCESS|_receipt)\.json$|\/type=/.test(key))).toEqual([]);
  });

  it('a live holder keeps its lock: a second export of the source is refused and told how to cancel', async () => {
    const sourceId = sourceIdFor('live holder');
    const first = runScenario(env, { name: 'live holder', sourceId, waitOverrideMs: 400 });
    // Wait for the first to hold the lock.
    for (let tries = 0; !(await lockOf(sourceId)) && tries < 200; tries += 1)
      await new Promise((r) => setTimeout(r, 25));
    const second = await runScenario(env, { name: 'live holder', sourceId });
    expect(second.result.run.status).toBe('FAILED');
    expect(second.result.run.error).toBe('ExportAlreadyRunningError');
    expect(second.result.run.cause).toMatch(
      /is running \(execution .*\); this one was not started: it is still running; wait for it, or cancel it with `npm run cancel -- --source-id/,
    );
    expect((await first).result.run.status).toBe('SUCCEEDED');
  });

  it('a success event that cannot be published after the marker is a warning on a succeeded export, never a failure', async () => {
    const run = await runScenario(env, {
      name: 'event fails',
      eventSink: {
        async emit(detailType) {
          if (detailType === 'Bulk Export Succeeded') {
            throw Object.assign(
              new Error('EventBridge refused the Bulk Export Succeeded event: InternalFailure'),
              {
                name: 'StorageError',
              },
            );
          }
        },
      },
    });
    expect(run.result.run.status).toBe('SUCCEEDED');
    const warning = /could not publish the success event \(StorageError: EventBridge refused/;
    expect((run.result.run.output as { warnings: string[] }).warnings).toEqual([
      expect.stringMatching(warning),
    ]);
    expect(run.result.receipt?.warnings).toEqual([expect.stringMatching(warning)]);
    expect(run.result.receipt?.serverJobDeleted).toBe(true);
    expect(await failureReceiptOf(run)).toBeUndefined();
    expect(await lockOf(run.sourceId)).toBeUndefined();
    expect(run.result.endedCleanUp).toBeUndefined();
  });

  it('no token for the job after the marker: succeeded, the DELETE left to the server with a warning, never an old token', async () => {
    const run = await runScenario(env, {
      name: 'no completion token',
      beforeInvocation(invocation) {
        if (invocation.stateName === 'Mint Token For Completion') {
          throw Object.assign(new Error('token endpoint down'), { name: 'TokenRequestError' });
        }
      },
    });
    expect(run.result.run.status).toBe('SUCCEEDED');
    expect(run.result.receipt?.warnings).toEqual([
      'could not DELETE the server job: no access token (the server removes it when it expires)',
    ]);
    expect(run.result.receipt?.serverJobDeleted).toBe(false);
    expect(await deletesOf(run)).toHaveLength(0);
    expect(await lockOf(run.sourceId)).toBeUndefined();
  });

  it('an execution without a sourceId fails in Prepare, and the clean-up of the ended execution finds nothing to do', async () => {
    const run = await runScenario(env, { name: 'no source id', input: { sourceId: undefined } });
    expect({ status: run.result.run.status, error: run.result.run.error }).toEqual({
      status: 'FAILED',
      error: 'InvalidExecutionInputError',
    });
    expect(run.result.endedCleanUp).toMatchObject({ action: 'nothing-to-do' });
  });
});
