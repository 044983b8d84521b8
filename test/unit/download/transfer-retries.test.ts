import { createHash } from 'node:crypto';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { FileLinkExpiredError, TransientServerError } from '../../../lambdas/errors.js';
import { createLogger } from '../../../lambdas/logger.js';
import {
  type TransferFileDeps,
  type TransferFileInput,
  transferFile,
} from '../../../lambdas/services/transfer-file.js';
import { type Fault, startFileServer } from './support/file-server.js';
import { patientNdjson } from './support/ndjson-body.js';
import { useTransferBed } from './support/transfer-bed.js';

/**
 * What the fault matrix (test/workflow/fault-matrix.test.ts) led to about
 * retries inside one transfer: attempts count failures in a row without
 * progress, and an expired link is replaced by a fresh one without losing
 * the bytes already landed.
 */
const BUCKET = 'retries';
const NOW = new Date('2026-03-01T12:00:00Z');
const BODY = patientNdjson(1200);
const LINES = 1200;
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

describe('transferFile retries', () => {
  const bed = useTransferBed(BUCKET, { bodyTimeout: 300, headersTimeout: 5_000 });
  let keyCounter = 0;

  function deps(overrides: Partial<TransferFileDeps> = {}): TransferFileDeps {
    return {
      s3: bed.client,
      http: bed.agent,
      now: () => NOW,
      remainingTimeMs: () => 900_000,
      sleep: async () => {},
      random: () => 0.5,
      logger: createLogger({ level: 'error', write: () => {}, now: () => NOW }),
      settings: { minPartSizeBytes: 64 * 1024 },
      ...overrides,
    };
  }

  function input(url: string, overrides: Partial<TransferFileInput> = {}): TransferFileInput {
    keyCounter++;
    return {
      url,
      resourceType: 'Patient',
      kind: 'output',
      requiresAccessToken: false,
      allowInsecureHttp: true,
      bucket: BUCKET,
      key: `source=test/export=1/type=Patient/r${keyCounter}/part-0001.ndjson`,
      partSizeBytes: 256 * 1024,
      expectedCount: LINES,
      ...overrides,
    };
  }

  async function objectBytes(key: string): Promise<Buffer> {
    const response = await bed.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from(await response.Body!.transformToByteArray());
  }

  it('lands a file cut eight times, each time further on: only failures in a row without progress count', async () => {
    // Prepare: every request is cut 100 KB after where it started, eight times (five attempts allowed).
    const faults: Fault[] = Array.from({ length: 8 }, () => ({ kind: 'drop', afterBytes: 100_000 }));
    const server = await startFileServer({ body: BODY, faults });
    const request = input(server.url);
    // Act
    const outcome = await transferFile(request, deps());
    // Assess
    expect(outcome).toMatchObject({ status: 'complete', lines: LINES, sha256: sha256(BODY) });
    expect(server.requests).toHaveLength(9);
    expect(server.requests.slice(1).every((recorded) => recorded.headers.range !== undefined)).toBe(true);
    expect((await objectBytes(request.key)).equals(BODY)).toBe(true);
    await server.close();
  });

  it('still gives up after five failures in a row that make no progress', async () => {
    // Prepare: cut before the first line ends, every time.
    const faults: Fault[] = Array.from({ length: 8 }, () => ({ kind: 'drop', afterBytes: 10 }));
    const server = await startFileServer({ body: BODY, faults });
    // Act
    const transfer = transferFile(input(server.url), deps());
    // Assess
    await expect(transfer).rejects.toBeInstanceOf(TransientServerError);
    expect(server.requests).toHaveLength(5);
    await server.close();
  });

  it('asks for a fresh link when one expires mid-file (410) and goes on from the same byte', async () => {
    // Prepare: the body is cut, and the link has expired by the time the transfer asks for the rest.
    const server = await startFileServer({
      body: BODY,
      faults: [
        { kind: 'drop', afterBytes: 300_000 },
        { kind: 'status', status: 410 },
      ],
    });
    const request = input(`${server.url}?expires=1`);
    const refreshed: string[] = [];
    // Act
    const outcome = await transferFile(
      request,
      deps({
        refreshUrl: async () => {
          refreshed.push('fresh');
          return `${server.url}?expires=2`;
        },
      }),
    );
    // Assess
    expect(outcome).toMatchObject({ status: 'complete', lines: LINES, sha256: sha256(BODY) });
    expect(refreshed).toEqual(['fresh']);
    const [cut, expired, rest] = server.requests;
    expect([cut!.url, expired!.url, rest!.url]).toEqual([
      '/files/data.ndjson?expires=1',
      '/files/data.ndjson?expires=1',
      '/files/data.ndjson?expires=2',
    ]);
    expect(expired!.headers.range).toMatch(/^bytes=[1-9]\d*-$/);
    expect(rest!.headers.range).toBe(expired!.headers.range);
    expect((await objectBytes(request.key)).equals(BODY)).toBe(true);
    await server.close();
  });

  it('fails with FileLinkExpiredError when the fresh link is refused too, before any progress', async () => {
    // Prepare
    const server = await startFileServer({
      body: BODY,
      faults: [
        { kind: 'status', status: 410 },
        { kind: 'status', status: 410 },
      ],
    });
    let refreshes = 0;
    // Act
    const transfer = transferFile(
      input(server.url),
      deps({
        refreshUrl: async () => {
          refreshes++;
          return server.url;
        },
      }),
    );
    // Assess
    await expect(transfer).rejects.toBeInstanceOf(FileLinkExpiredError);
    expect(refreshes).toBe(1);
    expect(server.requests).toHaveLength(2);
    await server.close();
  });
});
