import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../lambdas/logger.js';
import { ObjectSink } from '../../../lambdas/services/transfer/object-sink.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../../scripts/local/embedded-s3.js';

const BUCKET = 'object-sink';
const KIB = 1024;

describe('ObjectSink memory', () => {
  let s3: EmbeddedS3;
  let client: S3Client;
  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    client = new S3Client(s3.clientConfig);
  });
  afterAll(async () => {
    client.destroy();
    await s3.close();
  });

  const sinkFor = (key: string) =>
    ObjectSink.fresh({
      s3: client,
      target: { bucket: BUCKET, key },
      partSizeBytes: 64 * KIB,
      minPartSizeBytes: 32 * KIB,
      concurrency: 2,
      metadata: {},
      maxInlinePartsJsonBytes: 6 * KIB,
      logger: createLogger({ level: 'error', write: () => {} }),
    });

  it('lets go of the one-off buffer of each line longer than a part', async () => {
    // Prepare: 24 lines of 200 KiB in a row, each bigger than the 64 KiB part (as a file of
    // inline attachments is), then a short one.
    const sink = await sinkFor('long-lines.ndjson');
    const long = Buffer.alloc(200 * KIB, 'x');
    long[long.length - 1] = 0x0a;
    const short = Buffer.from('{"short":1}\n');
    const held: number[] = [];
    // Act
    for (let line = 0; line < 24; line++) {
      await sink.write([long], long.length);
      held.push(sink.heldBufferBytes);
    }
    await sink.write([short], short.length);
    const landed = await sink.finish(25);
    // Assess: never more than the part being filled and `concurrency` + 1 spare part buffers.
    expect(Math.max(...held)).toBeLessThanOrEqual(4 * 64 * KIB);
    expect(landed.bytes).toBe(24 * long.length + short.length);
    const stored = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'long-lines.ndjson' }));
    expect(Number(stored.ContentLength)).toBe(landed.bytes);
  });
});
