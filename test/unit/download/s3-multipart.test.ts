import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3MultipartWriter } from '../../../lambdas/adapters/s3-multipart.js';
import { StorageError } from '../../../lambdas/errors.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../../scripts/local/embedded-s3.js';

const BUCKET = 'multipart';

describe('S3MultipartWriter', () => {
  let s3: EmbeddedS3;
  let client: S3Client;
  /** UploadPart requests wait here until the test lets them through. */
  const held: (() => void)[] = [];
  let holdParts = false;
  let failParts = false;

  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    client = new S3Client(s3.clientConfig);
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (holdParts && context.commandName === 'UploadPartCommand') {
          await new Promise<void>((resolve) => held.push(resolve));
        }
        if (failParts && context.commandName === 'UploadPartCommand') {
          throw Object.assign(new Error('We encountered an internal error.'), { name: 'InternalError' });
        }
        return next(args);
      },
      { step: 'initialize', name: 'holdParts' },
    );
  });
  afterAll(async () => {
    client.destroy();
    await s3.close();
  });

  async function read(key: string): Promise<string> {
    const response = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return response.Body!.transformToString();
  }

  it('keeps at most `concurrency` parts in flight: the next uploadPart waits for a slot', async () => {
    // Prepare
    holdParts = true;
    const writer = await S3MultipartWriter.create(
      client,
      { bucket: BUCKET, key: 'queue.ndjson' },
      {},
      { concurrency: 2 },
    );
    const released: number[] = [];
    await writer.uploadPart(Buffer.from('a\n'), () => released.push(1));
    await writer.uploadPart(Buffer.from('b\n'), () => released.push(2));
    let thirdQueued = false;
    // Act
    const third = writer
      .uploadPart(Buffer.from('c\n'), () => released.push(3))
      .then(() => {
        thirdQueued = true;
      });
    await new Promise((resolve) => setImmediate(resolve));
    const queuedWhileFull = thirdQueued;
    while (held.length < 2) await new Promise((resolve) => setImmediate(resolve));
    held.shift()!();
    await third;
    holdParts = false;
    for (const release of held.splice(0)) release();
    const progress = await writer.flush();
    await writer.complete();
    // Assess
    expect(queuedWhileFull).toBe(false);
    expect(thirdQueued).toBe(true);
    expect(released.sort()).toEqual([1, 2, 3]);
    expect(progress.parts.map((part) => part.PartNumber)).toEqual([1, 2, 3]);
    expect(progress.nextPartNumber).toBe(4);
    expect(await read('queue.ndjson')).toBe('a\nb\nc\n');
  });

  it('continues an upload in another writer from its progress, as the next invocation does', async () => {
    // Prepare
    const target = { bucket: BUCKET, key: 'resumed.ndjson' };
    const first = await S3MultipartWriter.create(client, target, {});
    await first.uploadPart(Buffer.from('line 1\n'));
    const progress = JSON.parse(JSON.stringify(await first.flush()));
    // Act
    const second = S3MultipartWriter.resume(client, target, progress);
    await second.uploadPart(Buffer.from('line 2\n'));
    await second.complete();
    // Assess
    expect(await read('resumed.ndjson')).toBe('line 1\nline 2\n');
  });

  it('refuses to resume from a part list with a gap', async () => {
    // Act
    const resume = () =>
      S3MultipartWriter.resume(
        client,
        { bucket: BUCKET, key: 'gap.ndjson' },
        { uploadId: 'u', nextPartNumber: 3, parts: [{ PartNumber: 2, ETag: '"x"' }] },
      );
    // Assess
    expect(resume).toThrow(
      new StorageError(`Cannot resume upload to s3://${BUCKET}/gap.ndjson: the part list is not parts 1…2`),
    );
  });

  it('fails the next call after a part failed, with the S3 error as cause', async () => {
    // Prepare
    const writer = await S3MultipartWriter.create(client, { bucket: BUCKET, key: 'failed.ndjson' }, {});
    failParts = true;
    await writer.uploadPart(Buffer.from('x\n'));
    // Act
    const flushing = writer.flush();
    // Assess
    const error = await flushing.catch((caught: unknown) => caught);
    failParts = false;
    expect(error).toBeInstanceOf(StorageError);
    expect((error as Error).message).toBe(
      'S3 UploadPart 1 of s3://multipart/failed.ndjson failed: InternalError: We encountered an internal error.',
    );
    expect(((error as Error).cause as Error).name).toBe('InternalError');
    await expect(writer.uploadPart(Buffer.from('y\n'))).rejects.toBe(error);
  });
});
