import { createHash } from 'node:crypto';
import { GetObjectCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../lambdas/logger.js';
import { HASH_IMPLEMENTATION } from '../../../lambdas/services/transfer/file-hash.js';
import {
  type TransferCheckpoint,
  type TransferFileDeps,
  type TransferFileInput,
  transferFile,
} from '../../../lambdas/services/transfer-file.js';
import { startFileServer } from './support/file-server.js';
import { patientNdjson } from './support/ndjson-body.js';
import { untilComplete, useTransferBed } from './support/transfer-bed.js';

/**
 * Which SHA-256 a transfer uses (lambdas/services/transfer/file-hash.ts):
 * node:crypto when the file should end in this invocation, the resumable
 * hash-wasm hash otherwise, and a clean start over when a natively hashed file
 * must hand over a checkpoint after all. Whatever the path, the object and
 * its hash must be exactly the file's.
 */

const BUCKET = 'hashing';
const START = Date.parse('2026-03-01T12:00:00Z');
/** ~1.1 MB, served 64 KiB per write: about 17 chunks. */
const BODY = patientNdjson(1200);
const LINES = 1200;
const TOKEN = 'hashing-token';
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

interface Settled {
  readonly hashing: string;
  readonly responseBytes?: number;
  readonly predictedSecondsLeft?: number;
}

describe('transferFile hashing', () => {
  const bed = useTransferBed(BUCKET, { bodyTimeout: 2_000, headersTimeout: 5_000 });
  let keyCounter = 0;

  /** Deps whose clock moves 100 ms at every reading, so the 200 ms before the choice pass within a few chunks. */
  function deps(logs: string[], overrides: Partial<TransferFileDeps> = {}): TransferFileDeps {
    let ticks = 0;
    return {
      s3: bed.client,
      http: bed.agent,
      now: () => new Date(START + 100 * ticks++),
      remainingTimeMs: () => 900_000,
      sleep: async () => {},
      random: () => 0.5,
      logger: createLogger({ level: 'debug', write: (line) => logs.push(line) }),
      settings: { minPartSizeBytes: 64 * 1024 },
      ...overrides,
    };
  }

  function input(url: string, overrides: Partial<TransferFileInput> = {}): TransferFileInput {
    keyCounter++;
    return {
      url,
      resourceType: 'Patient',
      // The file server stands for the FHIR server: its origin may receive the token.
      tokenAudience: { fhirBaseUrl: url, trustedOrigins: [] },
      kind: 'output',
      expectedCount: LINES,
      requiresAccessToken: false,
      allowInsecureHttp: true,
      bucket: BUCKET,
      key: `source=test/export=1/type=Patient/h${keyCounter}/part-0001.ndjson`,
      partSizeBytes: 128 * 1024,
      ...overrides,
    };
  }

  const settledIn = (logs: string[]): Settled[] =>
    logs
      .map((line) => JSON.parse(line))
      .filter((entry) => entry.message === 'hashing settled')
      .map(({ hashing, responseBytes, predictedSecondsLeft }) => ({
        hashing,
        responseBytes,
        predictedSecondsLeft,
      }));

  async function landed(key: string): Promise<Buffer> {
    const response = await bed.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from(await response.Body!.transformToByteArray());
  }

  async function openUploads(key: string): Promise<number> {
    const listed = await bed.client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: key }));
    return listed.Uploads?.length ?? 0;
  }

  it('uses node:crypto when the Content-Length says the file ends well within the time left', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY });
    const logs: string[] = [];
    const request = input(server.url);
    // Act
    const outcome = await transferFile(request, deps(logs));
    // Assess
    expect(settledIn(logs)).toEqual([
      { hashing: 'native', responseBytes: BODY.length, predictedSecondsLeft: expect.any(Number) },
    ]);
    expect(outcome).toMatchObject({ status: 'complete', lines: LINES, sha256: sha256(BODY) });
    expect((await landed(request.key)).equals(BODY)).toBe(true);
    await server.close();
  });

  it('uses node:crypto on a gzip response too, predicting from the compressed bytes read', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY, gzip: true, writeBytes: 4 * 1024 });
    const logs: string[] = [];
    const request = input(server.url);
    // Act
    const outcome = await transferFile(request, deps(logs));
    // Assess
    const [settled] = settledIn(logs);
    expect(settled).toMatchObject({ hashing: 'native' });
    // The compressed length, not the file's.
    expect(settled!.responseBytes).toBeLessThan(BODY.length / 2);
    expect(outcome).toMatchObject({ status: 'complete', sha256: sha256(BODY) });
    expect((await landed(request.key)).equals(BODY)).toBe(true);
    await server.close();
  });

  it('keeps the resumable hash when the file would not end within half the time left', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY });
    const logs: string[] = [];
    const request = input(server.url);
    // Act: 500 ms of usable time, and over a second of file left when the choice is made.
    const outcome = await transferFile(request, deps(logs, { remainingTimeMs: () => 60_500 }));
    // Assess
    const [settled] = settledIn(logs);
    expect(settled).toMatchObject({ hashing: 'resumable', responseBytes: BODY.length });
    expect(settled!.predictedSecondsLeft).toBeGreaterThanOrEqual(0);
    expect(outcome).toMatchObject({ status: 'complete', sha256: sha256(BODY) });
    expect((await landed(request.key)).equals(BODY)).toBe(true);
    await server.close();
  });

  it('keeps the resumable hash when the server sends no Content-Length', async () => {
    // Prepare
    const server = await startFileServer({
      body: BODY,
      gzip: true,
      contentLength: false,
      writeBytes: 4 * 1024,
    });
    const logs: string[] = [];
    const request = input(server.url);
    // Act
    const outcome = await transferFile(request, deps(logs));
    // Assess
    expect(settledIn(logs)).toEqual([
      { hashing: 'resumable', responseBytes: undefined, predictedSecondsLeft: undefined },
    ]);
    expect(outcome).toMatchObject({ status: 'complete', sha256: sha256(BODY) });
    await server.close();
  });

  it('starts over with the resumable hash when a natively hashed file runs out of time after all', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY });
    const logs: string[] = [];
    const request = input(server.url);
    // Plenty of time when the hash is chosen, then suddenly none: the prediction was wrong.
    const runsOut = () => (settledIn(logs).length > 0 ? 1_000 : 900_000);
    // Act
    const { outcome, checkpoints } = await untilComplete(request, (invocation) =>
      deps(logs, invocation === 0 ? { remainingTimeMs: runsOut } : {}),
    );
    // Assess
    expect(settledIn(logs).map((settled) => settled.hashing)).toEqual(['native']);
    expect(checkpoints).toHaveLength(1);
    // Nothing of the natively hashed upload is kept: byte 0, no upload, the empty resumable hash.
    expect(checkpoints[0]).toMatchObject({ byteOffset: 0, objectBytes: 0, nextPartNumber: 1, restarts: 1 });
    expect(checkpoints[0]!.uploadId).toBeUndefined();
    expect(checkpoints[0]!.sha256State).toMatchObject({ implementation: HASH_IMPLEMENTATION, bytes: 0 });
    expect(logs.join('\n')).toContain('whose state cannot be carried');
    expect(server.requests.map((r) => r.headers.range)).toEqual([undefined, undefined]);
    expect(outcome).toMatchObject({ status: 'complete', lines: LINES, sha256: sha256(BODY) });
    expect((await landed(request.key)).equals(BODY)).toBe(true);
    expect(await openUploads(request.key)).toBe(0);
    await server.close();
  });

  it('starts over when a natively hashed file is handed back for a fresh token mid-file', async () => {
    // Prepare: the connection drops after 700 KB; the reconnect's token has expired.
    const server = await startFileServer({
      body: BODY,
      token: TOKEN,
      faults: [
        { kind: 'drop', afterBytes: 700_000 },
        { kind: 'status', status: 401 },
      ],
    });
    const logs: string[] = [];
    const request = input(server.url, { requiresAccessToken: true, accessToken: TOKEN });
    // Act
    const first = await transferFile(request, deps(logs));
    const checkpoint =
      first.status === 'checkpoint'
        ? (JSON.parse(JSON.stringify(first.checkpoint)) as TransferCheckpoint)
        : undefined;
    const second = await transferFile({ ...request, checkpoint }, deps(logs));
    // Assess
    expect(settledIn(logs).map((settled) => settled.hashing)).toEqual(['native']);
    expect(first).toMatchObject({ status: 'checkpoint', reason: 'access-token-rejected' });
    expect(checkpoint).toMatchObject({ byteOffset: 0, restarts: 1, tokenRejections: 1 });
    expect(server.requests.map((r) => r.status)).toEqual([200, 401, 200]);
    expect(server.requests[1]!.headers.range).toMatch(/^bytes=[1-9]\d*-$/);
    expect(server.requests[2]!.headers.range).toBeUndefined();
    expect(second).toMatchObject({ status: 'complete', lines: LINES, sha256: sha256(BODY) });
    expect((await landed(request.key)).equals(BODY)).toBe(true);
    expect(await openUploads(request.key)).toBe(0);
    await server.close();
  });

  it('carries the resumable hash across a checkpoint taken before the choice was made', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY, writeBytes: 16 * 1024 });
    const logs: string[] = [];
    const request = input(server.url);
    // Time runs out at the first chunk: 100 ms in, before the 200 ms decision.
    const runsOut = () => 1_000;
    // Act
    const { outcome, checkpoints } = await untilComplete(request, (invocation) =>
      deps(logs, invocation === 0 ? { remainingTimeMs: runsOut } : {}),
    );
    // Assess
    expect(settledIn(logs)).toEqual([]);
    expect(checkpoints).toHaveLength(1);
    expect(checkpoints[0]!.byteOffset).toBeGreaterThan(0);
    expect(checkpoints[0]).toMatchObject({ restarts: 0 });
    expect(checkpoints[0]!.sha256State.bytes).toBe(checkpoints[0]!.objectBytes);
    expect(server.requests[1]!.headers.range).toBe(`bytes=${checkpoints[0]!.byteOffset}-`);
    expect(outcome).toMatchObject({ status: 'complete', lines: LINES, sha256: sha256(BODY) });
    expect((await landed(request.key)).equals(BODY)).toBe(true);
    await server.close();
  });

  /** A checkpoint taken mid-file, with parts uploaded, for the version tests below. */
  async function checkpointMidFile(logs: string[]) {
    // No Content-Length, so the hash settles on the resumable one and the checkpoint keeps its
    // parts; the connection drops after 400 KB and the reconnect's token has expired.
    const server = await startFileServer({
      body: BODY,
      contentLength: false,
      token: TOKEN,
      faults: [
        { kind: 'drop', afterBytes: 400_000 },
        { kind: 'status', status: 401 },
      ],
    });
    const request = input(server.url, { requiresAccessToken: true, accessToken: TOKEN });
    const first = await transferFile(request, deps(logs));
    if (first.status !== 'checkpoint') throw new Error('expected a checkpoint');
    const checkpoint = JSON.parse(JSON.stringify(first.checkpoint)) as TransferCheckpoint;
    expect(checkpoint.nextPartNumber).toBeGreaterThan(1);
    return { server, request, checkpoint };
  }

  it.each([
    [
      'another hash-wasm build (its WebAssembly changed)',
      (checkpoint: TransferCheckpoint) => {
        const state = Buffer.from(checkpoint.sha256State.state, 'base64');
        state[0] = state[0]! ^ 0xff;
        return { ...checkpoint, sha256State: { ...checkpoint.sha256State, state: state.toString('base64') } };
      },
      'cannot be loaded by this build',
    ],
    [
      'the previous version of the checkpoint (the pure-TS hash)',
      (checkpoint: TransferCheckpoint) =>
        ({
          ...checkpoint,
          version: 1,
          sha256State: {
            v: 1,
            n: checkpoint.objectBytes,
            h: [1, 2, 3, 4, 5, 6, 7, 8],
            tail: 'c3NuOjEyMy00NS02Nzg5',
          },
        }) as unknown as TransferCheckpoint,
      'pure-ts/sha256 (checkpoint version 1)',
    ],
  ])('starts the file over, cleanly, from a hash state written by %s', async (_name, alter, reason) => {
    // Prepare
    const logs: string[] = [];
    const { server, request, checkpoint } = await checkpointMidFile(logs);
    // Act
    const outcome = await transferFile({ ...request, checkpoint: alter(checkpoint) }, deps(logs));
    // Assess: no Range request after the checkpoint; the object is the file, once; the old upload is gone.
    const restart = logs
      .map((line) => JSON.parse(line))
      .find((entry) => entry.message === 'restarting the file from byte 0');
    expect(restart?.reason).toContain(reason);
    expect(server.requests.map((r) => r.status)).toEqual([200, 401, 200]);
    expect(server.requests[2]!.headers.range).toBeUndefined();
    expect(outcome).toMatchObject({ status: 'complete', lines: LINES, sha256: sha256(BODY) });
    expect((await landed(request.key)).equals(BODY)).toBe(true);
    expect(await openUploads(request.key)).toBe(0);
    await server.close();
  });
});
