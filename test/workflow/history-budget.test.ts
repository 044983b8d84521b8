import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENTS_PER_POLL_CYCLE } from '../../lambdas/core/history-budget.js';
import type { Receipt } from '../../lambdas/core/receipt.js';
import type { JobRecord } from '../../lambdas/services/export-lifecycle.js';
import {
  GROUP_ID,
  type MatrixEnvironment,
  requestsOf,
  runScenario,
  startMatrixEnvironment,
} from './support/matrix.js';
import { assertZeroLoss } from './support/zero-loss.js';

/**
 * An export whose jobs outlast an execution's history budget continues in a
 * new execution, as many times as it takes: whole workflow, the real ASL and
 * handlers, the sandbox and the embedded S3, with a budget small enough to
 * cross in seconds (on AWS: 15,000 of the 25,000 events a Standard execution
 * may have). Nothing is lost or doubled across the hand-overs.
 */
describe('history budget: an export continues in new executions (local)', () => {
  let env: MatrixEnvironment;
  const BUDGET = 120;
  /** What an execution may use past its budget: the states that end the export once polling is over. */
  const ENDING_EVENTS = 80;
  beforeAll(async () => {
    env = await startMatrixEnvironment();
  }, 60_000);
  afterAll(async () => {
    await env?.close();
  });

  it('an export in one piece polls its one job across several executions, each within its budget, and lands once', async () => {
    // Act: ~50 polls of one job when the machine is idle, at most 6 per execution. The job's length is wall
    // time: three executions need ~13 polls in it, which a busy machine (CI's two workers) still makes.
    const run = await runScenario(env, {
      name: 'continued in one piece',
      faults: { jobDurationMs: 5_000 },
      historyEventBudget: BUDGET,
    });
    // Assess
    await assertZeroLoss(env, run, { outcome: 'succeeded' });
    const { executions, exportName } = run.result.run;
    expect(executions.length).toBeGreaterThanOrEqual(3);
    expect(executions.map((execution) => execution.executionName)).toStrictEqual([
      exportName,
      ...executions.slice(1).map((_, at) => `${exportName}-cont-${at + 1}`),
    ]);
    expect(executions.map((execution) => execution.status)).toStrictEqual(executions.map(() => 'SUCCEEDED'));
    for (const execution of executions) {
      expect(execution.historyEvents.execution, execution.executionName).toBeLessThanOrEqual(
        BUDGET + ENDING_EVENTS,
      );
    }
    // Each handed over close to its budget, not early.
    for (const execution of executions.slice(0, -1)) {
      expect(execution.historyEvents.execution).toBeGreaterThan(BUDGET - 2 * EVENTS_PER_POLL_CYCLE);
    }
    // One job, kicked off once and polled by every execution; never DELETEd mid-way.
    const jobs = env.sandbox.jobs().filter((job) => job.clientId === run.clientId);
    expect(jobs).toHaveLength(1);
    const requests = await requestsOf(env, run.clientId);
    expect(requests.filter((entry) => entry.path.endsWith('/$export'))).toHaveLength(1);
    const receipt = run.result.receipt as Receipt;
    expect(receipt.executionName).toBe(exportName);
    expect(receipt.continuedIn).toStrictEqual(
      executions.slice(1).map((execution) => execution.executionName),
    );
    const job = await env.getJson<JobRecord>(`_work/source=${run.sourceId}/execution=${exportName}/job.json`);
    expect(job?.executions?.map((entry) => entry.executionName)).toStrictEqual(receipt.continuedIn);
  }, 180_000);

  it('a chunked export whose chunks outlast their children’s budget goes on in new executions, one job at a time', async () => {
    // Act: 3 chunks, each polled ~12 times, a child hands over after ~6; the server runs one job per client.
    const size = Math.ceil(env.cohort.length / 3);
    const run = await runScenario(env, {
      name: 'continued in chunks',
      faults: { jobDurationMs: 1_500 },
      source: {
        export: { level: 'group', groupId: GROUP_ID, method: 'POST', chunk: { by: 'patients', size } },
      },
      historyEventBudget: BUDGET,
    });
    // Assess
    await assertZeroLoss(env, run, { outcome: 'succeeded' });
    const { executions } = run.result.run;
    expect(executions.length).toBeGreaterThanOrEqual(2);
    for (const execution of executions) {
      expect(execution.historyEvents.largestChild, execution.executionName).toBeLessThanOrEqual(
        BUDGET + ENDING_EVENTS,
      );
    }
    const receipt = run.result.receipt as Receipt;
    expect(receipt.chunking?.chunks).toHaveLength(3);
    expect(receipt.continuedIn).toHaveLength(executions.length - 1);
    // Three jobs, one kick-off each (a continued chunk is polled again, not asked for again), one at a time:
    // a second job while one runs would have met a 429 (the sandbox allows one per client).
    const jobs = env.sandbox.jobs().filter((job) => job.clientId === run.clientId);
    expect(jobs).toHaveLength(3);
    const requests = await requestsOf(env, run.clientId);
    const kickOffs = requests.filter((entry) => entry.path.endsWith('/$export'));
    expect(kickOffs.map((entry) => entry.status)).toStrictEqual([202, 202, 202]);
    // Nothing is left marked as running on unpolled.
    expect(
      await env.listKeys(
        `_work/source=${run.sourceId}/execution=${run.result.run.exportName}/chunks/continuing/`,
      ),
    ).toStrictEqual([]);
  }, 180_000);

  it('a cancel while a continuation polls ends the export it continued: its one job DELETEd, its lock released', async () => {
    // Prepare: cancel at the second poll of the first continuation.
    const cancel = new AbortController();
    let pollsInContinuation = 0;
    // Act
    const run = await runScenario(env, {
      name: 'cancelled continuation',
      faults: { jobDurationMs: 60_000 },
      historyEventBudget: BUDGET,
      beforeInvocation(invocation) {
        const input = invocation.input as { export?: { continuation?: { number: number } } };
        if (invocation.functionName !== 'PollStatus' || input.export?.continuation?.number !== 1) return;
        if (++pollsInContinuation === 2) cancel.abort();
      },
      signal: cancel.signal,
    });
    // Assess
    const { exportName, executions } = run.result.run;
    expect(run.result.run.status).toBe('ABORTED');
    expect(executions.map((execution) => execution.status)).toStrictEqual(['SUCCEEDED', 'ABORTED']);
    expect(run.result.run.executionName).toBe(`${exportName}-cont-1`);
    expect(run.result.endedCleanUp).toMatchObject({ action: 'ended', resumable: false });
    const jobs = env.sandbox.jobs().filter((job) => job.clientId === run.clientId);
    expect(jobs.map((job) => job.state)).toStrictEqual(['deleted']);
    expect(await env.getText(`_state/source=${run.sourceId}/lock.json`)).toBeUndefined();
    const failure = await env.getJson<{ status: string; executionName: string }>(
      `_failures/source=${run.sourceId}/${exportName}.json`,
    );
    expect(failure).toMatchObject({ status: 'cancelled', executionName: exportName });
    expect(
      (await env.listKeys(`source=${run.sourceId}/`)).filter((key) => /_SUCCESS\.json$/.test(key)),
    ).toEqual([]);
  }, 180_000);
});
