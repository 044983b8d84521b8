import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createS3Store,
  DEFAULT_STORAGE_RETRY,
  type S3StoreOptions,
} from '../../lambdas/adapters/s3-store.js';
import { ConfigurationError, StorageError } from '../../lambdas/errors.js';
import { type EmbeddedS3, embeddedS3ClientConfig, startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';

/**
 * The JSON store against the embedded S3 taken away and brought back, and
 * against endpoints that fail the ways S3 does (refused, reset, 503 Slow
 * Down). The SDK client makes one attempt per call here, so what is retried
 * is this store's doing alone.
 */

const BUCKET = 'store-tests';

interface Pauses {
  readonly sleep: (ms: number) => Promise<void>;
  readonly delays: number[];
}

/** A sleep that records each pause and runs `onPause` instead of waiting. */
function pauses(onPause: (index: number) => Promise<void> | void = () => {}): Pauses {
  const delays: number[] = [];
  return {
    delays,
    async sleep(ms) {
      delays.push(ms);
      await onPause(delays.length);
    },
  };
}

function storeAt(endpoint: string, options: Partial<S3StoreOptions> = {}) {
  const s3 = new S3Client({ ...embeddedS3ClientConfig(endpoint), maxAttempts: 1 });
  return createS3Store({ s3, bucket: BUCKET, ...options });
}

async function thrown(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

const listening = (server: Server | TcpServer) =>
  new Promise<number>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
const closed = (server: Server | TcpServer) => new Promise<void>((resolve) => server.close(() => resolve()));

describe('S3 store: an S3 outage of a few seconds is ridden out', () => {
  let directory: string;
  let s3: EmbeddedS3;
  let port: number;
  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 's3-store-test-'));
    s3 = await startEmbeddedS3({ directory });
    port = Number(new URL(s3.endpoint).port);
    await s3.createBucket(BUCKET);
  });
  afterAll(async () => {
    await s3?.close();
    await rm(directory, { recursive: true, force: true });
  });

  it('reads and writes through S3 stopped and started again, once per pause until it is back', async () => {
    // Prepare
    const store = storeAt(s3.endpoint);
    await store.putJson('results/000003.json', { index: 3 });
    await s3.close();
    const restartAtSecondPause = pauses(async (index) => {
      if (index === 2) s3 = await startEmbeddedS3({ directory, port });
    });
    const during = storeAt(s3.endpoint, { sleep: restartAtSecondPause.sleep });
    // Act
    const read = await during.getJson<{ index: number }>('results/000003.json');
    await during.putJson('receipt.json', { files: 1 });
    // Assess: two failed attempts, one pause each; S3 came back at the second.
    expect(read).toEqual({ index: 3 });
    expect(restartAtSecondPause.delays).toHaveLength(2);
    expect(await store.getJson('receipt.json')).toEqual({ files: 1 });
  });

  it('gives up after maxAttempts with a StorageError naming the network error and the attempts', async () => {
    // Prepare
    await s3.close();
    const counted = pauses();
    const store = storeAt(s3.endpoint, { sleep: counted.sleep, retry: { maxAttempts: 3 } });
    try {
      // Act
      const error = await thrown(store.getJson('results/000003.json'));
      // Assess
      expect(error).toBeInstanceOf(StorageError);
      expect(error.message).toBe(
        `S3 GetObject of s3://${BUCKET}/results/000003.json failed after 3 attempts: ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:${port}`,
      );
      expect(counted.delays).toHaveLength(2);
    } finally {
      s3 = await startEmbeddedS3({ directory, port });
    }
  });

  it('pauses 250 ms, 0.5, 1, 2, 4, 4 s (each between half and all of it) by default', async () => {
    await s3.close();
    try {
      for (const [random, expected] of [
        [0, [125, 250, 500, 1000, 2000, 2000]],
        [1, [250, 500, 1000, 2000, 4000, 4000]],
      ] as const) {
        const counted = pauses();
        const store = storeAt(s3.endpoint, { sleep: counted.sleep, random: () => random });
        await expect(store.head('any.json')).rejects.toThrow(
          `failed after ${DEFAULT_STORAGE_RETRY.maxAttempts} attempts: ECONNREFUSED`,
        );
        expect(counted.delays).toEqual(expected);
      }
    } finally {
      s3 = await startEmbeddedS3({ directory, port });
    }
  });

  it('does not retry what no retry can fix: a missing bucket fails at once, with its code and message', async () => {
    const counted = pauses();
    const s3Client = new S3Client({ ...embeddedS3ClientConfig(s3.endpoint), maxAttempts: 1 });
    const store = createS3Store({ s3: s3Client, bucket: 'no-such-bucket', sleep: counted.sleep });

    const error = await thrown(store.getJson('_state/source=a/watermark.json'));

    expect(error).toBeInstanceOf(StorageError);
    expect(error.message).toBe(
      'S3 GetObject of s3://no-such-bucket/_state/source=a/watermark.json failed: NoSuchBucket (HTTP 404): The specified bucket does not exist',
    );
    expect(counted.delays).toEqual([]);
  });
});

describe('S3 store: what is retried, by how S3 failed', () => {
  let slowDown: Server;
  let slowDownPort: number;
  let slowDownRequests = 0;
  let resetting: TcpServer;
  let resettingPort: number;
  beforeAll(async () => {
    // 503 Slow Down: S3 refuses the request before acting on it.
    slowDown = createHttpServer((req, res) => {
      slowDownRequests += 1;
      req.resume();
      res.writeHead(503, { 'content-type': 'application/xml' });
      res.end(
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>',
      );
    });
    slowDownPort = await listening(slowDown);
    // A connection reset once the request is under way: it may or may not have been applied.
    resetting = createTcpServer((socket) => socket.once('data', () => socket.destroy()));
    resettingPort = await listening(resetting);
  });
  afterAll(async () => {
    await closed(slowDown);
    await closed(resetting);
  });

  it.each([
    ['a plain write', {}],
    ['a conditional write (the source lock)', { ifNoneMatch: true }],
  ])('503 Slow Down: %s is retried', async (_name, putOptions) => {
    slowDownRequests = 0;
    const counted = pauses();
    const store = storeAt(`http://127.0.0.1:${slowDownPort}`, {
      sleep: counted.sleep,
      retry: { maxAttempts: 2 },
    });

    const error = await thrown(
      store.putJson('_state/source=a/lock.json', { executionName: 'e' }, putOptions),
    );

    expect(error.message).toBe(
      `S3 PutObject of s3://${BUCKET}/_state/source=a/lock.json failed after 2 attempts: SlowDown (HTTP 503): Please reduce your request rate.`,
    );
    expect(slowDownRequests).toBe(2);
  });

  it('a connection reset mid-request: a read or plain write is retried, a conditional write is not', async () => {
    const store = (counted: Pauses) =>
      storeAt(`http://127.0.0.1:${resettingPort}`, { sleep: counted.sleep, retry: { maxAttempts: 3 } });
    const read = pauses();
    const write = pauses();
    const conditional = pauses();

    const errors = [
      await thrown(store(read).getJson('manifest.json')),
      await thrown(store(write).putJson('receipt.json', {})),
      await thrown(store(conditional).putJson('lock.json', {}, { ifNoneMatch: true })),
    ];

    expect(errors.map((error) => error.message.replace(/: ECONNRESET.*|: EPIPE.*/, ': <reset>'))).toEqual([
      `S3 GetObject of s3://${BUCKET}/manifest.json failed after 3 attempts: <reset>`,
      `S3 PutObject of s3://${BUCKET}/receipt.json failed after 3 attempts: <reset>`,
      // Its first attempt may have taken the lock; a second would be refused by it.
      `S3 PutObject of s3://${BUCKET}/lock.json failed: <reset>`,
    ]);
    expect([read, write, conditional].map((counted) => counted.delays.length)).toEqual([2, 2, 0]);
  });
});

describe('S3 store options', () => {
  const s3 = new S3Client(embeddedS3ClientConfig('http://127.0.0.1:9'));
  afterAll(() => s3.destroy());

  it.each([
    [{ retries: 3 }, 'unknown S3 store option(s): retries'],
    [
      { retry: { attempts: 3 } },
      'unknown S3 store retry option(s): attempts (expected maxAttempts, baseDelayMs, maxDelayMs)',
    ],
    [{ retry: { maxAttempts: 0 } }, 'S3 store retry.maxAttempts must be an integer of at least 1 (got 0)'],
    [
      { retry: { baseDelayMs: 1.5 } },
      'S3 store retry.baseDelayMs must be an integer of at least 0 (got 1.5)',
    ],
    [
      { retry: { baseDelayMs: 500, maxDelayMs: 100 } },
      'S3 store retry.maxDelayMs must be an integer of at least 500 (got 100)',
    ],
  ])('rejects %j: %s', (options, message) => {
    expect(() => createS3Store({ s3, bucket: BUCKET, ...(options as object) })).toThrow(
      new ConfigurationError(message),
    );
  });
});
