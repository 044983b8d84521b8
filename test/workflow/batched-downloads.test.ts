import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FileBatch } from '../../lambdas/core/file-batches.js';
import { RECEIPT_INLINE_FILES_MAX, type Receipt } from '../../lambdas/core/receipt.js';
import type { FileItem } from '../../lambdas/state.js';
import { countStateTransitions, mapChildSpans } from '../../scripts/bench/billing.js';
import type { EventLog } from '../../scripts/local/runner.js';
import {
  MATRIX_TRANSFER,
  type MatrixEnvironment,
  requestsOf,
  runScenario,
  type ScenarioRun,
  startMatrixEnvironment,
} from './support/matrix.js';
import { assertZeroLoss } from './support/zero-loss.js';

/**
 * An export of many small files (Oracle Health splits its output into
 * thousands) lands a batch of files per Download Files child: the cost per
 * file is a fraction of a state transition and of a Lambda invocation.
 * Same zero-loss check as the fault matrix.
 */

/** Lambda invocations of a run: every Task visit and every retry of one (the local ItemReader bridges are no Lambdas). */
function lambdaInvocations(events: readonly EventLog[], stateNames?: readonly string[]): number {
  return events.filter(
    (event) =>
      (event.type === 'StateEntered' || event.type === 'StateRetried') &&
      event.state?.type === 'Task' &&
      !event.state.name.endsWith(' [ItemReader]') &&
      (stateNames === undefined || stateNames.includes(event.state.name)),
  ).length;
}

function entered(run: ScenarioRun, stateName: string): number {
  return run.result.run.events.filter(
    (event) => event.type === 'StateEntered' && event.state?.name === stateName,
  ).length;
}

describe.concurrent('batched downloads of many small files', () => {
  let env: MatrixEnvironment;
  beforeAll(async () => {
    env = await startMatrixEnvironment();
  }, 60_000);
  afterAll(async () => {
    await env?.close();
  }, 60_000);

  it('lands ~950 one-resource files with a child per batch: under 1.5 transitions and 0.2 Lambda invocations per file', async () => {
    // Act
    const run = await runScenario(env, { name: 'many small files', faults: { resourcesPerFile: 1 } });

    // Assess
    await assertZeroLoss(env, run, { outcome: 'succeeded' });
    const work = `_work/source=${run.sourceId}/execution=${run.result.run.executionName}/`;
    const items = (await env.getJson<FileItem[]>(`${work}files.json`))!;
    const batches = (await env.getJson<FileBatch[]>(`${work}file-batches.json`))!;
    expect(items.length).toBeGreaterThan(600);
    // Every file in exactly one batch.
    expect(
      batches.flatMap((batch) => batch.files.map((file) => file.index)).sort((a, b) => a - b),
    ).toStrictEqual(items.map((item) => item.index));
    const downloads = lambdaInvocations(run.result.run.events, ['Download Batch']);
    // One invocation per batch, plus one per hand-back (a token about to expire; no retry in a clean run).
    const handBacks = run.result.run.events.filter(
      (event) =>
        event.type === 'StateExited' &&
        event.state?.name === 'Download Batch' &&
        (event.state.output as { transfer?: { status?: string } }).transfer?.status === 'checkpoint',
    ).length;
    expect(downloads).toBe(batches.length + handBacks);
    expect(handBacks).toBeLessThan(batches.length);
    expect(downloads).toBeLessThan(items.length / 10);
    const transitions = countStateTransitions(run.result.run.events);
    // A child per batch in the download Map (Verify Files and Publish Files have children of their own).
    expect(mapChildSpans(run.result.run.events, 'Download Files')).toHaveLength(batches.length);
    expect(transitions.total / items.length).toBeLessThanOrEqual(1.5);
    expect(lambdaInvocations(run.result.run.events) / items.length).toBeLessThanOrEqual(0.2);
    expect(entered(run, 'Retry Failed Files')).toBe(0);

    // Verify Files and Publish Files go over the same files in batches of 500 (their ItemBatcher), and
    // Finalize Export adds the batches up; the receipt names every file in its index.
    const receipt = run.result.receipt as Receipt;
    const verificationBatches = Math.ceil(receipt.fileIndex.files / 500);
    expect(receipt.fileIndex.files).toBe(items.length);
    expect(verificationBatches).toBeGreaterThanOrEqual(2);
    expect(run.result.run.invocations.VerifyFiles).toBe(2 * verificationBatches);
    expect(run.result.run.invocations.FinalizeExport).toBe(1);
    // Past RECEIPT_INLINE_FILES_MAX the receipt stays a summary; the index holds the files.
    if (items.length > RECEIPT_INLINE_FILES_MAX) expect(receipt.files).toBeUndefined();
    else expect(receipt.files).toHaveLength(items.length);
  }, 180_000);

  it('lands in the retry pass a file that failed every first-pass attempt, its batch’s other files landing in the first pass', async () => {
    // Prepare: output file 40's first six GETs are cut before a byte: one attempt per invocation, six
    // invocations (the first and the Map's five retries) in the first pass; the seventh GET, in the retry pass, is whole.
    const run = await runScenario(env, {
      name: 'one file fails its first pass',
      faults: { resourcesPerFile: 1, dropAfterBytes: { bytes: 0, times: 6, fileIndex: 40 } },
      transfer: { ...MATRIX_TRANSFER, settings: { ...MATRIX_TRANSFER.settings, maxAttempts: 1 } },
    });

    // Assess
    await assertZeroLoss(env, run, { outcome: 'succeeded' });
    expect(entered(run, 'Retry Failed Files')).toBe(1);
    const check = run.result.run.events.find(
      (event) => event.type === 'StateExited' && event.state?.name === 'Check Files',
    )?.state?.output as { check: { missing: number; retryBatchCount: number } };
    // The file the server cut is missing after the first pass, and none of its batch's other files is:
    // the batch's retries skipped the files that had landed and went on past the failing one.
    const work = `_work/source=${run.sourceId}/execution=${run.result.run.exportName}/`;
    const urls = (await env.getJson<string[]>(`${work}file-urls.json`))!;
    const requests = await requestsOf(env, run.clientId);
    const cut = new Set(
      requests.filter((entry) => entry.fault === 'dropAfterBytes').map((entry) => entry.path),
    );
    const cutIndexes = urls.flatMap((url, index) => (cut.has(new URL(url).pathname) ? [index] : []));
    expect(cutIndexes).toHaveLength(1);
    const missing = (await env.getJson<FileItem[]>(`${work}retry-files.json`))!.map((item) => item.index);
    expect(missing).toContain(cutIndexes[0]);
    const batches = (await env.getJson<FileBatch[]>(`${work}file-batches.json`))!;
    const cutBatch = batches.find((batch) => batch.files.some((file) => file.index === cutIndexes[0]))!;
    expect(cutBatch.files.length).toBeGreaterThan(1);
    expect(
      cutBatch.files.filter((file) => file.index !== cutIndexes[0] && missing.includes(file.index)),
    ).toStrictEqual([]);
    expect(check.check.missing).toBe(missing.length);
    expect(entered(run, 'Download Retried Batch')).toBe(check.check.retryBatchCount);
  }, 180_000);
});
