import { createHash } from 'node:crypto';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifiedBatchKey } from '../../../lambdas/core/layout.js';
import { type Receipt, type ReceiptFile, summarizeFiles } from '../../../lambdas/core/receipt.js';
import { VerificationError } from '../../../lambdas/errors.js';
import { finalizeExport } from '../../../lambdas/services/finalize-export.js';
import { publishFileBatch, verifyFileBatch } from '../../../lambdas/services/verify-files.js';
import type { FileItem } from '../../../lambdas/state.js';
import { type LandedExport, seedLandedExport } from '../../../scripts/bench/landed-export.js';
import { batchItems } from '../../../scripts/local/asl-adapter.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../../scripts/local/embedded-s3.js';
import { createLocalRuntime, type LocalRuntime } from '../../../scripts/local/runtime.js';

/**
 * Verify Files, Publish Files and Finalize Export as the state machine runs
 * them over an export that landed (scripts/bench/landed-export.ts): batch by
 * batch, then the sum.
 */
const BUCKET = 'finalize-batches';
const FILES = 23;
const PER_BATCH = 5;

describe('finalization in batches', () => {
  let s3: EmbeddedS3;
  let local: LocalRuntime;
  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    local = createLocalRuntime({ sources: [], s3ClientConfig: s3.clientConfig, bucket: BUCKET });
  });
  afterAll(async () => {
    await s3.close();
  });

  const batchesOf = (landed: LandedExport) =>
    batchItems(landed.items, {
      MaxItemsPerBatch: PER_BATCH,
      BatchInput: { export: landed.context, manifest: landed.manifest },
    }) as unknown as { Items: FileItem[]; BatchInput: { export: never; manifest: never } }[];
  const text = async (key: string) =>
    (
      await local.runtime.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))
    ).Body!.transformToString();

  async function land(executionName: string): Promise<LandedExport> {
    return seedLandedExport(local.runtime, { sourceId: executionName, executionName, files: FILES });
  }
  async function verifyAndPublish(landed: LandedExport, skip?: number) {
    for (const [at, batch] of batchesOf(landed).entries()) {
      if (at === skip) continue;
      await verifyFileBatch(local.runtime, { ...batch, step: 'verify' });
    }
    for (const [at, batch] of batchesOf(landed).entries()) {
      if (at === skip) continue;
      await publishFileBatch(local.runtime, { ...batch, step: 'publish' });
    }
  }

  it('sums the batches per type and writes the file index, one line per file in file-list order', async () => {
    // Prepare
    const landed = await land('sums');
    await verifyAndPublish(landed);
    // Act: parts of 300 bytes, so the index goes out as a multipart upload of several parts.
    const result = await finalizeExport(
      local.runtime,
      { export: landed.context, manifest: landed.manifest },
      { fileIndexPartBytes: 300 },
    );
    // Assess
    const receipt = (await local.runtime.store.getJson<Receipt>(result.receiptKey))!;
    const indexText = await text(receipt.fileIndex.key);
    const indexed = indexText
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as ReceiptFile);
    expect(indexed.map((file) => file.key)).toStrictEqual(landed.items.map((item) => item.key));
    expect(receipt.fileIndex).toStrictEqual({
      key: `${landed.manifest.exportRoot}_receipt.files.ndjson`,
      files: FILES,
      sha256: createHash('sha256').update(indexText).digest('hex'),
    });
    const whole = summarizeFiles(indexed);
    expect(receipt).toMatchObject({ receiptVersion: 2, ...JSON.parse(JSON.stringify(whole)) });
    expect(receipt.byType.Patient).toStrictEqual({ files: 8, resources: 8, bytes: expect.any(Number) });
    expect(receipt.totals.files + receipt.errors.files).toBe(FILES);
    expect(receipt.errors.files).toBe(0 + Math.floor(FILES / 50));
    // A small export keeps its files inline too, the same as the index.
    expect(receipt.files).toStrictEqual(indexed);
    // Published: every data file at its final key.
    for (const item of landed.items.filter((candidate) => candidate.kind === 'output')) {
      expect(await local.runtime.store.head(item.key)).toBeDefined();
    }
  });

  it('fails with a VerificationError naming the first file of a batch that was never verified', async () => {
    // Prepare
    const landed = await land('missing');
    await verifyAndPublish(landed, 2);
    // Act
    const failure = await finalizeExport(local.runtime, {
      export: landed.context,
      manifest: landed.manifest,
    }).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    // Assess
    expect(failure).toBeInstanceOf(VerificationError);
    expect(failure?.message).toContain(`file ${2 * PER_BATCH} was not verified`);
    expect(await local.runtime.store.getJson(`${landed.manifest.exportRoot}_SUCCESS.json`)).toBeUndefined();
  });

  it('fails when the last batch is missing: fewer files verified than the manifest lists', async () => {
    // Prepare
    const landed = await land('short');
    const batches = batchesOf(landed);
    await verifyAndPublish(landed, batches.length - 1);
    // Act
    const failure = await finalizeExport(local.runtime, {
      export: landed.context,
      manifest: landed.manifest,
    }).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    // Assess
    expect(failure).toBeInstanceOf(VerificationError);
    expect(failure?.message).toContain(
      `no verification record covers files ${(batches.length - 1) * PER_BATCH} to ${FILES - 1}`,
    );
  });

  it('verify fails the batch with a VerificationError naming a file whose object does not match', async () => {
    // Prepare
    const landed = await land('mismatch');
    const [first] = batchesOf(landed);
    const item = first!.Items[3]!;
    await local.runtime.store.putJson(
      `${landed.context.workPrefix}results/${String(item.index).padStart(6, '0')}.json`,
      {
        ...(await local.runtime.store.getJson<object>(
          `${landed.context.workPrefix}results/${String(item.index).padStart(6, '0')}.json`,
        )),
        bytes: 1,
      },
    );
    // Act
    const failure = await verifyFileBatch(local.runtime, { ...first!, step: 'verify' }).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    // Assess
    expect(failure).toBeInstanceOf(VerificationError);
    expect(failure?.message).toContain('the download wrote 1');
    expect(await local.runtime.store.getJson(verifiedBatchKey(landed.context.workPrefix, 0))).toBeUndefined();
  });

  it('publish refuses a batch that has no matching verification record', async () => {
    // Prepare
    const landed = await land('unverified');
    const [first] = batchesOf(landed);
    // Act
    const failure = await publishFileBatch(local.runtime, { ...first!, step: 'publish' }).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    // Assess
    expect(failure).toBeInstanceOf(VerificationError);
    expect(failure?.message).toContain('have no verification record');
    expect(await local.runtime.store.head(first!.Items[0]!.key)).toBeUndefined();
  });
});
