import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Watermark } from '../../lambdas/services/watermark.js';
import { type Harness, receiptOf, startHarness } from './support/harness.js';

/**
 * The watermark is where the next `since: "auto"` export starts. A
 * transactionTime from the future must never get there: every later delta
 * would ask for changes after it and get nothing, silently. The refusal of a
 * far-future manifest is in the fault matrix; these are the edges around it.
 */
describe('transactionTime and the watermark (local workflow)', () => {
  let harness: Harness;
  beforeAll(async () => {
    harness = await startHarness();
  }, 60_000);
  afterAll(async () => {
    await harness?.close();
  });

  const watermarkOf = async (sourceId: string) => {
    const text = await harness.getText(`_state/source=${sourceId}/watermark.json`);
    return text === undefined ? undefined : (JSON.parse(text) as Watermark);
  };

  it('accepts a transactionTime a little ahead of our clock (within maxClockSkewSeconds), but the watermark stops at now', async () => {
    // Prepare: a server clock two minutes fast.
    const transactionTime = new Date(Date.now() + 120_000).toISOString();
    // Act
    const result = await harness.exportWith({ faults: { fixedTransactionTime: transactionTime } });
    const finishedAt = Date.now();
    // Assess
    const receipt = receiptOf(result);
    expect(receipt.transactionTime).toBe(transactionTime);
    expect(receipt.watermark).toEqual({
      advanced: true,
      reason: `fully verified export of the source default scope; its transactionTime ${transactionTime} is ahead of this clock, so the watermark stops at now`,
    });
    const watermark = await watermarkOf(result.sourceId);
    expect(Date.parse(watermark!.transactionTime)).toBeLessThanOrEqual(finishedAt);
    expect(Date.parse(watermark!.transactionTime)).toBeLessThan(Date.parse(transactionTime));
  });

  it('refuses to start from a stored watermark in the future, saying how to recover', async () => {
    // Prepare: a watermark a version that trusted any transactionTime could have written.
    const sourceId = 'poisoned';
    await harness.client.send(
      new PutObjectCommand({
        Bucket: harness.bucket,
        Key: `_state/source=${sourceId}/watermark.json`,
        Body: JSON.stringify({
          sourceId,
          transactionTime: '2999-01-01T00:00:00Z',
          executionName: 'old',
          updatedAt: '2026-01-01T00:00:00Z',
        }),
      }),
    );
    // Act
    const result = await harness.exportWith({ sourceId });
    // Assess
    expect(result.run.status).toBe('FAILED');
    expect(result.run.error).toBe('ConfigurationError');
    expect(result.run.cause).toMatch(
      new RegExp(
        `^ConfigurationError: the stored watermark s3://${harness.bucket}/_state/source=${sourceId}/watermark\\.json holds transactionTime 2999-01-01T00:00:00Z, \\d+ years ahead of this client's clock .*: with since=auto every export would ask for changes after it and get none\\. Set it to the last transactionTime you trust \\(or delete it for a full export\\), or start this export with an explicit since`,
      ),
    );
    expect(
      harness.sandbox.requestLog.filter(
        (entry) => entry.clientId === result.clientId && entry.path.endsWith('/$export'),
      ),
    ).toEqual([]);
    // An explicit since still works, and leaves the stored watermark alone (it only moves forward).
    const explicit = await harness.exportWith({
      sourceId,
      clientId: result.clientId,
      input: { since: '2025-01-01T00:00:00Z' },
    });
    expect(explicit.run.status).toBe('SUCCEEDED');
    expect((await watermarkOf(sourceId))?.transactionTime).toBe('2999-01-01T00:00:00Z');
  });
});
