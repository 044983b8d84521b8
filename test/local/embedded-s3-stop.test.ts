import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { type EmbeddedS3, startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';

describe('embedded S3 stopped', () => {
  let s3: EmbeddedS3 | undefined;
  let client: S3Client | undefined;
  afterAll(async () => {
    client?.destroy();
    await s3?.close();
  });

  it('is an outage at once: a client busy on a kept-alive connection is cut off, not served until it stops', async () => {
    // Prepare
    s3 = await startEmbeddedS3();
    await s3.createBucket('stop-test');
    client = new S3Client({ ...s3.clientConfig, maxAttempts: 1 });
    await client.send(new PutObjectCommand({ Bucket: 'stop-test', Key: 'k.json', Body: '{}' }));
    // Act: one request after the other on the same connection while S3 is being stopped.
    let stopRequested = false;
    let stopped = false;
    let servedAfterStopped = 0;
    let failure: unknown;
    const busy = (async () => {
      for (let request = 0; request < 3000; request++) {
        if (request === 20) {
          stopRequested = true;
          void s3!.close().then(() => {
            stopped = true;
          });
        }
        try {
          const response = await client!.send(new GetObjectCommand({ Bucket: 'stop-test', Key: 'k.json' }));
          await response.Body!.transformToString();
          if (stopped) servedAfterStopped += 1;
        } catch (error) {
          failure = error;
          return request;
        }
      }
      return 3000;
    })();
    const lastRequest = await busy;
    // Assess: the client was cut off soon after the stop; nothing was served once it had ended.
    expect(stopRequested).toBe(true);
    // The connection was cut (mid-request) or refused (between requests): an outage, not an S3 error.
    expect(['ECONNRESET', 'ECONNREFUSED', 'EPIPE']).toContain(
      (failure as { code?: string } | undefined)?.code,
    );
    expect(lastRequest).toBeLessThan(3000);
    expect(servedAfterStopped).toBe(0);
    s3 = undefined;
  });
});
