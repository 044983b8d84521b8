import { Readable } from 'node:stream';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedS3, startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';

describe('embedded S3', () => {
  let s3: EmbeddedS3;
  let client: S3Client;
  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket('exports');
    client = new S3Client(s3.clientConfig);
  });
  afterAll(async () => {
    client.destroy();
    await s3.close();
  });

  it('stores a streamed multipart upload byte for byte', async () => {
    const body = Buffer.alloc(11 * 1024 * 1024, 'abcdefghij\n');
    await new Upload({
      client,
      params: {
        Bucket: 'exports',
        Key: 'a/b.ndjson',
        Body: Readable.from([body.subarray(0, 3), body.subarray(3)]),
      },
      partSize: 5 * 1024 * 1024,
    }).done();
    const got = await client.send(new GetObjectCommand({ Bucket: 'exports', Key: 'a/b.ndjson' }));
    const bytes = Buffer.from(await got.Body!.transformToByteArray());
    expect(bytes.equals(body)).toBe(true);
  });

  it('paginates ListObjectsV2 (continuation tokens need the legacy OpenSSL provider)', async () => {
    for (let i = 0; i < 5; i++) {
      await client.send(new PutObjectCommand({ Bucket: 'exports', Key: `p/${i}`, Body: 'x' }));
    }
    const first = await client.send(
      new ListObjectsV2Command({ Bucket: 'exports', Prefix: 'p/', MaxKeys: 2 }),
    );
    expect(first.KeyCount).toBe(2);
    expect(first.IsTruncated).toBe(true);
    const second = await client.send(
      new ListObjectsV2Command({
        Bucket: 'exports',
        Prefix: 'p/',
        MaxKeys: 10,
        ContinuationToken: first.NextContinuationToken!,
      }),
    );
    expect(second.Contents?.map((o) => o.Key)).toEqual(['p/2', 'p/3', 'p/4']);
  });
});
