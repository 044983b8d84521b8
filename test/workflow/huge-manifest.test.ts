import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Receipt } from '../../lambdas/core/receipt.js';
import { type MatrixEnvironment, runScenario, startMatrixEnvironment } from './support/matrix.js';
import { assertZeroLoss } from './support/zero-loss.js';

/**
 * An export split into many tiny files (Oracle Health's way) goes through
 * Verify Files and Publish Files in batches of consecutive files (their
 * ItemBatcher), and Finalize Export adds the batches up: every file lands,
 * and the receipt names them in its file index.
 */
describe('an export of many tiny files, finalized in batches', () => {
  let env: MatrixEnvironment;
  beforeAll(async () => {
    env = await startMatrixEnvironment();
  }, 60_000);
  afterAll(async () => {
    await env?.close();
  }, 60_000);

  it('verifies and publishes batch by batch, then lands every file with zero loss', async () => {
    // Act
    const run = await runScenario(env, { name: 'many-tiny-files', faults: { resourcesPerFile: 1 } });
    // Assess
    await assertZeroLoss(env, run, { outcome: 'succeeded' });
    const receipt = run.result.receipt as Receipt;
    const files = receipt.fileIndex.files;
    const batches = Math.ceil(files / 500);
    expect(files).toBeGreaterThan(500);
    expect(run.result.run.invocations.VerifyFiles).toBe(2 * batches);
    expect(run.result.run.invocations.FinalizeExport).toBe(1);
    // Past RECEIPT_INLINE_FILES_MAX the receipt stays a summary; the index holds the files.
    if (files > 1000) expect(receipt.files).toBeUndefined();
    else expect(receipt.files).toHaveLength(files);
  }, 300_000);
});
