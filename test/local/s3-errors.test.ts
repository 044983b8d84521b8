import { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Store } from '../../lambdas/adapters/s3-store.js';
import { type EmbeddedS3, embeddedS3ClientConfig, startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';

/** What a user reads when S3 fails: the code and the message, never a bare `Error`. */
describe('S3 errors, as the pipeline reports them', () => {
  let s3: EmbeddedS3;
  beforeAll(async () => {
    s3 = await startEmbeddedS3();
  });
  afterAll(async () => {
    await s3.close();
  });

  it('a bucket that does not exist: NoSuchBucket and what S3 said', async () => {
    const client = new S3Client(s3.clientConfig);
    const store = createS3Store({ s3: client, bucket: 'no-such-bucket' });
    try {
      await expect(store.putJson('_state/source=a/watermark.json', {})).rejects.toMatchObject({
        name: 'StorageError',
        message:
          'S3 PutObject of s3://no-such-bucket/_state/source=a/watermark.json failed: NoSuchBucket (HTTP 404): The specified bucket does not exist',
      });
    } finally {
      client.destroy();
    }
  });

  it('an endpoint nobody answers: the network code and its message, after the store retries', async () => {
    // The embedded S3's port once it is closed: nothing listens there any more.
    const closed = await startEmbeddedS3();
    await closed.close();
    const client = new S3Client({ ...embeddedS3ClientConfig(closed.endpoint), maxAttempts: 1 });
    // Two quick attempts: the store's retries (test/integration/s3-store.test.ts) are not what this is about.
    const store = createS3Store({
      s3: client,
      bucket: 'exports',
      retry: { maxAttempts: 2, baseDelayMs: 1, maxDelayMs: 1 },
    });
    try {
      await expect(store.putJson('a.json', {})).rejects.toMatchObject({
        name: 'StorageError',
        message: expect.stringMatching(
          /^S3 PutObject of s3:\/\/exports\/a\.json failed after 2 attempts: ECONNREFUSED: connect ECONNREFUSED 127\.0\.0\.1:\d+$/,
        ),
      });
    } finally {
      client.destroy();
    }
  });
});
