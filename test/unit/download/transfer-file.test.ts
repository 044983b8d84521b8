import { createHash } from 'node:crypto';
import {
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AccessTokenRejectedError,
  ConfigurationError,
  FileLinkExpiredError,
  InvalidNdjsonError,
  StorageError,
  TransientServerError,
  VerificationError,
} from '../../../lambdas/errors.js';
import { createLogger } from '../../../lambdas/logger.js';
import {
  type TransferCheckpoint,
  type TransferFileDeps,
  type TransferFileInput,
  type TransferSettings,
  transferFile,
} from '../../../lambdas/services/transfer-file.js';
import { type FileServerOptions, type RecordedRequest, startFileServer } from './support/file-server.js';
import { patientLine, patientNdjson } from './support/ndjson-body.js';
import { untilComplete, useTransferBed } from './support/transfer-bed.js';

const BUCKET = 'exports';
const NOW = new Date('2026-03-01T12:00:00Z');
const TOKEN = 'file-token-123';
/** ~1.1 MB: several parts at the test part size. */
const BODY = patientNdjson(1200);
const LINES = 1200;
const SMALL = patientNdjson(20);
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/** Parts small enough to exercise multipart with small bodies (s3rver does not enforce S3's 5 MiB). */
const TEST_SETTINGS: Partial<TransferSettings> = { minPartSizeBytes: 64 * 1024 };
const PART_SIZE = 256 * 1024;

interface S3Call {
  readonly name: string;
  readonly input: Record<string, unknown>;
}

describe('transferFile', () => {
  const bed = useTransferBed(BUCKET, { bodyTimeout: 300, headersTimeout: 5_000 });
  let keyCounter = 0;
  const logs: string[] = [];

  afterAll(() => {
    // Nothing PHI-like or secret ever reaches a log line.
    const all = logs.join('\n');
    expect(all).not.toContain(TOKEN);
    expect(all).not.toContain('"family"');
    expect(all).not.toContain('sig=secret');
  });

  /** A client that records every command and can be told to fail UploadPart n. */
  function instrumentedClient(options: { failPart?: number } = {}) {
    const calls: S3Call[] = [];
    const instrumented = new S3Client(bed.s3.clientConfig);
    instrumented.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as Record<string, unknown>;
        calls.push({ name: context.commandName ?? '', input });
        if (context.commandName === 'UploadPartCommand' && input.PartNumber === options.failPart) {
          throw Object.assign(new Error('We encountered an internal error.'), { name: 'InternalError' });
        }
        return next(args);
      },
      { step: 'initialize', name: 'recordCommands' },
    );
    return { client: instrumented, calls };
  }

  function deps(overrides: Partial<TransferFileDeps> & { sleeps?: number[] } = {}): TransferFileDeps {
    const sleeps = overrides.sleeps ?? [];
    return {
      s3: bed.client,
      http: bed.agent,
      now: () => NOW,
      remainingTimeMs: () => 900_000,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
      random: () => 0.5,
      logger: createLogger({ level: 'debug', write: (line) => logs.push(line), now: () => NOW }),
      settings: TEST_SETTINGS,
      ...overrides,
    };
  }

  function input(url: string, overrides: Partial<TransferFileInput> = {}): TransferFileInput {
    keyCounter++;
    return {
      url: `${url}?sig=secret`,
      resourceType: 'Patient',
      // The file server stands for the FHIR server: its origin may receive the token.
      tokenAudience: { fhirBaseUrl: url, trustedOrigins: [] },
      kind: 'output',
      requiresAccessToken: false,
      allowInsecureHttp: true,
      bucket: BUCKET,
      key: `source=test/export=1/type=Patient/t${keyCounter}/part-0001.ndjson`,
      partSizeBytes: PART_SIZE,
      ...overrides,
    };
  }

  async function objectBytes(key: string): Promise<Buffer> {
    const response = await bed.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from(await response.Body!.transformToByteArray());
  }

  async function exists(key: string): Promise<boolean> {
    try {
      await bed.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
      return true;
    } catch {
      return false;
    }
  }

  async function keysUnder(key: string): Promise<string[]> {
    const prefix = key.slice(0, key.lastIndexOf('/') + 1);
    const listed = await bed.client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
    return (listed.Contents ?? []).map((object) => object.Key!.slice(prefix.length)).sort();
  }

  /** remainingTimeMs that drops below the safety margin after `calls` calls. */
  const timeRunsOutAfter = (calls: number) => {
    let count = 0;
    return () => (++count > calls ? 1_000 : 900_000);
  };

  it('lands a file byte for byte in parts, with counts, SHA-256, content type and tags', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY });
    const request = input(server.url, { expectedCount: LINES });
    try {
      // Act
      const outcome = await transferFile(request, deps());
      // Assess
      expect(outcome).toEqual({
        status: 'complete',
        bucket: BUCKET,
        key: request.key,
        bytes: BODY.length,
        lines: LINES,
        blankLines: 0,
        invalidLines: 0,
        sha256: sha256(BODY),
        serverEtag: server.requests[0]!.status === 200 ? expect.stringMatching(/^"/) : undefined,
      });
      expect((await objectBytes(request.key)).equals(BODY)).toBe(true);
      const head = await bed.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: request.key }));
      expect(head.ContentType).toBe('application/fhir+ndjson');
      expect(head.Metadata).toEqual({ 'resource-type': 'Patient', 'file-kind': 'output' });
      const tags = await bed.client.send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: request.key }));
      expect(tags.TagSet).toEqual([
        { Key: 'sha256', Value: sha256(BODY) },
        { Key: 'lines', Value: String(LINES) },
      ]);
      expect(await keysUnder(request.key)).toEqual(['part-0001.ndjson']);
    } finally {
      await server.close();
    }
  });

  it('puts a file smaller than one part in a single PutObject, with sha256 and lines metadata', async () => {
    // Prepare
    const server = await startFileServer({ body: SMALL });
    const { client: recording, calls } = instrumentedClient();
    const request = input(server.url);
    try {
      // Act
      const outcome = await transferFile(request, deps({ s3: recording }));
      // Assess
      expect(outcome).toMatchObject({
        status: 'complete',
        bytes: SMALL.length,
        lines: 20,
        sha256: sha256(SMALL),
      });
      expect(calls.map((call) => call.name)).toEqual(['PutObjectCommand', 'HeadObjectCommand']);
      const head = await bed.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: request.key }));
      expect(head.Metadata).toEqual({
        'resource-type': 'Patient',
        'file-kind': 'output',
        sha256: sha256(SMALL),
        lines: '20',
      });
    } finally {
      recording.destroy();
      await server.close();
    }
  });

  it.each<[string, Omit<FileServerOptions, 'body'>, (requests: RecordedRequest[]) => void, number[]]>([
    [
      'a dropped connection, resumed with Range',
      { faults: [{ kind: 'drop', afterBytes: 400_000 }] },
      (requests) => {
        expect(requests).toHaveLength(2);
        expect(requests[1]!.headers.range).toMatch(/^bytes=\d+-$/);
        expect(requests[1]!.headers['if-range']).toMatch(/^"[0-9a-f]{16}"$/);
        expect(requests[1]!.status).toBe(206);
      },
      [500],
    ],
    [
      'a dropped connection to a server without Range support, restarted from byte 0',
      { ranges: false, faults: [{ kind: 'drop', afterBytes: 400_000 }] },
      (requests) => {
        expect(requests).toHaveLength(2);
        expect(requests[1]!.headers.range).toBeUndefined();
        expect(requests[1]!.status).toBe(200);
      },
      [500],
    ],
    [
      'a dropped connection when the server ignores the range (200 to a range request)',
      { faults: [{ kind: 'drop', afterBytes: 400_000 }, { kind: 'ignore-range' }] },
      (requests) => {
        expect(requests[1]!.headers.range).toMatch(/^bytes=\d+-$/);
        expect(requests[1]!.status).toBe(200);
      },
      [500],
    ],
    [
      'a gzip-encoded body',
      { gzip: true },
      (requests) => {
        expect(requests).toHaveLength(1);
        expect(requests[0]!.headers['accept-encoding']).toBe('gzip');
      },
      [],
    ],
    [
      'a gzip-encoded body cut off, resumed undecoded with Range',
      { gzip: true, faults: [{ kind: 'drop', afterBytes: 60_000 }] },
      (requests) => {
        expect(requests[1]!.headers).toMatchObject({
          'accept-encoding': 'identity',
          range: expect.stringMatching(/^bytes=/),
        });
        expect(requests[1]!.status).toBe(206);
      },
      [500],
    ],
    [
      'a gzip-encoded body cut off without a Last-Modified, fetched again undecoded (resumable by its ETag)',
      { gzip: true, lastModified: null, faults: [{ kind: 'drop', afterBytes: 60_000 }] },
      (requests) => {
        expect(requests.map((r) => [r.headers['accept-encoding'], r.headers.range, r.status])).toEqual([
          ['gzip', undefined, 200],
          ['identity', undefined, 200],
        ]);
      },
      [500],
    ],
    [
      'a gzip-encoded body cut off whose Last-Modified is too recent to be strong, fetched again undecoded',
      {
        gzip: true,
        lastModified: 'now',
        faults: [
          { kind: 'drop', afterBytes: 60_000 },
          { kind: 'drop', afterBytes: 300_000 },
        ],
      },
      (requests) => {
        // Undecoded, the file has a strong ETag: its own cut resumes with Range.
        expect(requests.map((r) => [r.headers['accept-encoding'], r.headers.range, r.status])).toEqual([
          ['gzip', undefined, 200],
          ['identity', undefined, 200],
          ['identity', expect.stringMatching(/^bytes=[1-9]\d*-$/), 206],
        ]);
        expect(requests[2]!.headers['if-range']).toMatch(/^"/);
      },
      [500, 1000],
    ],
    [
      'a 503, then success',
      { faults: [{ kind: 'status', status: 503 }] },
      (requests) => expect(requests.map((r) => r.status)).toEqual([503, 200]),
      [500],
    ],
    [
      'a 429 with Retry-After, honoured',
      { faults: [{ kind: 'status', status: 429, headers: { 'retry-after': '3' } }] },
      (requests) => expect(requests.map((r) => r.status)).toEqual([429, 200]),
      [3000],
    ],
    [
      'a transient 404 (CMS), then success',
      { faults: [{ kind: 'status', status: 404 }] },
      (requests) => expect(requests.map((r) => r.status)).toEqual([404, 200]),
      [500],
    ],
    [
      'a stalled body, cut by the idle timeout and resumed',
      { faults: [{ kind: 'stall', afterBytes: 300_000 }] },
      (requests) => {
        expect(requests).toHaveLength(2);
        expect(requests[1]!.status).toBe(206);
      },
      [500],
    ],
    [
      'several faults in a row',
      {
        faults: [
          { kind: 'drop', afterBytes: 200_000 },
          { kind: 'status', status: 500 },
          { kind: 'drop', afterBytes: 300_000 },
        ],
      },
      (requests) => expect(requests.map((r) => r.status)).toEqual([200, 500, 206, 206]),
      [500, 1000, 2000],
    ],
  ])('lands the file byte for byte despite %s', async (_name, options, assessRequests, expectedSleeps) => {
    // Prepare
    const server = await startFileServer({ body: BODY, ...options });
    const request = input(server.url, { expectedCount: LINES });
    const sleeps: number[] = [];
    try {
      // Act
      const outcome = await transferFile(request, deps({ sleeps }));
      // Assess
      expect(outcome).toMatchObject({
        status: 'complete',
        bytes: BODY.length,
        lines: LINES,
        sha256: sha256(BODY),
      });
      expect((await objectBytes(request.key)).equals(BODY)).toBe(true);
      assessRequests(server.requests);
      expect(sleeps).toEqual(expectedSleeps);
    } finally {
      await server.close();
    }
  });

  it('splits a file across invocations at a checkpoint, resuming with Range, byte for byte', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY });
    const request = input(server.url, { expectedCount: LINES });
    // Act
    const { outcome, checkpoints } = await untilComplete(request, (invocation) =>
      deps({ remainingTimeMs: invocation === 0 ? timeRunsOutAfter(2) : () => 900_000 }),
    );
    // Assess
    expect(checkpoints).toHaveLength(1);
    const [checkpoint] = checkpoints;
    expect(checkpoint).toMatchObject({
      version: 2,
      uploadId: expect.any(String),
      lines: expect.any(Number),
      restarts: 0,
      tokenRejections: 0,
      resumeValidator: expect.stringMatching(/^"/),
    });
    expect(JSON.stringify(checkpoint).length).toBeLessThan(8 * 1024);
    expect(checkpoint!.byteOffset).toBeGreaterThan(0);
    expect(BODY[checkpoint!.byteOffset - 1]).toBe(0x0a);
    expect(checkpoint!.objectBytes + checkpoint!.carryBytes).toBe(checkpoint!.byteOffset);
    expect(server.requests[1]!.headers.range).toBe(`bytes=${checkpoint!.byteOffset}-`);
    expect(outcome).toMatchObject({
      status: 'complete',
      bytes: BODY.length,
      lines: LINES,
      sha256: sha256(BODY),
    });
    expect((await objectBytes(request.key)).equals(BODY)).toBe(true);
    await server.close();
  });

  it('keeps too few bytes for a part in a carry object across the checkpoint, then removes it', async () => {
    // Prepare
    const body = patientNdjson(3000);
    const server = await startFileServer({ body });
    const request = input(server.url, { partSizeBytes: 1024 * 1024 });
    // Act
    const { outcome, checkpoints } = await untilComplete(request, (invocation) => {
      if (invocation === 1) return deps();
      return deps({ remainingTimeMs: timeRunsOutAfter(1), settings: { minPartSizeBytes: 1024 * 1024 } });
    });
    // Assess
    const [checkpoint] = checkpoints;
    expect(checkpoint).toMatchObject({
      nextPartNumber: 1,
      objectBytes: 0,
      carryBytes: checkpoint!.byteOffset,
    });
    expect(checkpoint!.carryKey).toBe(
      `${request.key.replace('part-0001.ndjson', '')}_part-0001.ndjson.carry-${checkpoint!.byteOffset}`,
    );
    expect(checkpoint!.carryBytes).toBeGreaterThan(0);
    expect(outcome).toMatchObject({ status: 'complete', bytes: body.length, sha256: sha256(body) });
    expect((await objectBytes(request.key)).equals(body)).toBe(true);
    expect(await keysUnder(request.key)).toEqual(['part-0001.ndjson']);
    await server.close();
  });

  it('hands the part list over through S3 when it would make the checkpoint too big', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY });
    const request = input(server.url, { partSizeBytes: 64 * 1024 });
    // Act
    const { outcome, checkpoints } = await untilComplete(request, (invocation) =>
      deps({
        remainingTimeMs: invocation === 0 ? timeRunsOutAfter(4) : () => 900_000,
        settings: { ...TEST_SETTINGS, maxInlinePartsJsonBytes: 60 },
      }),
    );
    // Assess
    const [checkpoint] = checkpoints;
    expect(checkpoint!.parts).toBeUndefined();
    expect(checkpoint!.partsKey).toMatch(/\/_part-0001\.ndjson\.parts\.json$/);
    expect(checkpoint!.nextPartNumber).toBeGreaterThan(2);
    expect((await objectBytes(request.key)).equals(BODY)).toBe(true);
    expect(outcome).toMatchObject({ status: 'complete', sha256: sha256(BODY) });
    expect(await keysUnder(request.key)).toEqual(['part-0001.ndjson']);
    await server.close();
  });

  it('continues through several checkpoints, SHA-256 carried in the state', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY, writeBytes: 16 * 1024 });
    const request = input(server.url, { expectedCount: LINES, partSizeBytes: 64 * 1024 });
    // Act
    const { outcome, checkpoints } = await untilComplete(
      request,
      () => deps({ remainingTimeMs: timeRunsOutAfter(1) }),
      200,
    );
    // Assess
    expect(checkpoints.length).toBeGreaterThanOrEqual(2);
    const offsets = checkpoints.map((checkpoint) => checkpoint.byteOffset);
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    expect(outcome).toMatchObject({ status: 'complete', lines: LINES, sha256: sha256(BODY) });
    expect((await objectBytes(request.key)).equals(BODY)).toBe(true);
    await server.close();
  });

  it('starts over at a checkpoint when the server cannot resume, rather than keep useless parts', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY, ranges: false });
    const request = input(server.url);
    // Act
    const { outcome, checkpoints } = await untilComplete(request, (invocation) =>
      deps({ remainingTimeMs: invocation === 0 ? timeRunsOutAfter(2) : () => 900_000 }),
    );
    // Assess
    expect(checkpoints[0]).toMatchObject({ byteOffset: 0, nextPartNumber: 1, restarts: 1, carryBytes: 0 });
    expect(checkpoints[0]!.uploadId).toBeUndefined();
    expect(server.requests.map((r) => r.headers.range)).toEqual([undefined, undefined]);
    expect((await objectBytes(request.key)).equals(BODY)).toBe(true);
    expect(outcome).toMatchObject({ status: 'complete', sha256: sha256(BODY) });
    await server.close();
  });

  it('finishes when the previous invocation stopped exactly at the end of the file (416)', async () => {
    // Prepare
    const server = await startFileServer({ body: SMALL });
    const request = input(server.url);
    // Act
    // Every invocation stops after its first chunk, so one of them stops at the very end.
    const { outcome, checkpoints } = await untilComplete(
      request,
      () => deps({ remainingTimeMs: () => 0 }),
      100,
    );
    // Assess
    expect(checkpoints.at(-1)!.byteOffset).toBe(SMALL.length);
    expect(server.requests.at(-1)!.status).toBe(416);
    expect(outcome).toMatchObject({ status: 'complete', bytes: SMALL.length, lines: 20 });
    expect((await objectBytes(request.key)).equals(SMALL)).toBe(true);
    await server.close();
  });

  it('hands back on a 401 for a fresh token, then continues with it', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY, token: TOKEN });
    const request = input(server.url, { requiresAccessToken: true, accessToken: 'expired-token' });
    // Act
    const first = await transferFile(request, deps());
    const checkpoint = first.status === 'checkpoint' ? first.checkpoint : undefined;
    const second = await transferFile({ ...request, accessToken: TOKEN, checkpoint }, deps());
    // Assess
    expect(first).toMatchObject({ status: 'checkpoint', reason: 'access-token-rejected' });
    expect(checkpoint).toMatchObject({ byteOffset: 0, tokenRejections: 1 });
    expect(second).toMatchObject({ status: 'complete', sha256: sha256(BODY) });
    expect(server.requests.map((r) => r.status)).toEqual([401, 200]);
    await server.close();
  });

  it('fails with AccessTokenRejectedError on a second 401 in a row, even with a fresh token', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY, token: TOKEN });
    const request = input(server.url, { requiresAccessToken: true, accessToken: 'expired-token' });
    const first = await transferFile(request, deps());
    const checkpoint = first.status === 'checkpoint' ? first.checkpoint : undefined;
    // Act
    const second = transferFile({ ...request, accessToken: 'also-rejected', checkpoint }, deps());
    // Assess
    await expect(second).rejects.toThrow(
      new AccessTokenRejectedError(
        `GET ${server.origin}/files/data.ndjson answered 401, again after a fresh token`,
      ),
    );
    await expect(second).rejects.toBeInstanceOf(AccessTokenRejectedError);
    await server.close();
  });

  it('gives up after 5 attempts with the last transient error, backing off with full jitter', async () => {
    // Prepare
    const status = { kind: 'status', status: 500 } as const;
    const server = await startFileServer({
      body: BODY,
      faults: [status, status, status, status, status, status],
    });
    const sleeps: number[] = [];
    // Act
    const transfer = transferFile(input(server.url), deps({ sleeps }));
    // Assess
    await expect(transfer).rejects.toThrow(
      new TransientServerError(`GET ${server.origin}/files/data.ndjson answered 500`),
    );
    expect(server.requests).toHaveLength(5);
    expect(sleeps).toEqual([500, 1000, 2000, 4000]);
    await server.close();
  });

  it('checkpoints instead of sleeping past the safety margin', async () => {
    // Prepare
    const server = await startFileServer({
      body: BODY,
      faults: [{ kind: 'status', status: 503, headers: { 'retry-after': '30' } }],
    });
    const sleeps: number[] = [];
    // Act
    const outcome = await transferFile(input(server.url), deps({ sleeps, remainingTimeMs: () => 80_000 }));
    // Assess
    expect(outcome).toMatchObject({ status: 'checkpoint', reason: 'time', checkpoint: { byteOffset: 0 } });
    expect(sleeps).toEqual([]);
    await server.close();
  });

  it('fails at once on 410: the link expired and the manifest must be read again', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY, faults: [{ kind: 'status', status: 410 }] });
    const sleeps: number[] = [];
    // Act
    const transfer = transferFile(input(server.url), deps({ sleeps }));
    // Assess
    await expect(transfer).rejects.toThrow(
      new FileLinkExpiredError(
        `GET ${server.origin}/files/data.ndjson answered 410: the file link has expired`,
      ),
    );
    expect(sleeps).toEqual([]);
    await server.close();
  });

  it('fails on a line count that differs from the manifest, aborting the upload and leaving no object', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY });
    const { client: recording, calls } = instrumentedClient();
    const request = input(server.url, { expectedCount: LINES + 1 });
    // Act
    const transfer = transferFile(request, deps({ s3: recording }));
    // Assess
    await expect(transfer).rejects.toThrow(
      new VerificationError(
        `${server.origin}/files/data.ndjson: the manifest says ${LINES + 1} resources, the file had ${LINES}`,
      ),
    );
    const uploadId = calls.find((call) => call.name === 'UploadPartCommand')?.input.UploadId;
    expect(
      calls.filter((call) => call.name === 'AbortMultipartUploadCommand').map((call) => call.input.UploadId),
    ).toEqual([uploadId]);
    expect(calls.some((call) => call.name === 'CompleteMultipartUploadCommand')).toBe(false);
    expect(await exists(request.key)).toBe(false);
    recording.destroy();
    await server.close();
  });

  it('surfaces a failed UploadPart as StorageError and aborts the upload', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY });
    const { client: recording, calls } = instrumentedClient({ failPart: 2 });
    const request = input(server.url);
    // Act
    const transfer = transferFile(request, deps({ s3: recording }));
    // Assess
    await expect(transfer).rejects.toThrow(
      new StorageError(
        `S3 UploadPart 2 of s3://${BUCKET}/${request.key} failed: InternalError: We encountered an internal error.`,
      ),
    );
    await expect(transfer).rejects.toBeInstanceOf(StorageError);
    const uploadId = calls.find((call) => call.name === 'UploadPartCommand')?.input.UploadId;
    expect(uploadId).toEqual(expect.any(String));
    expect(
      calls.filter((call) => call.name === 'AbortMultipartUploadCommand').map((call) => call.input.UploadId),
    ).toEqual([uploadId]);
    expect(await exists(request.key)).toBe(false);
    recording.destroy();
    await server.close();
  });

  it('fails on an invalid line under the default policy, naming line and offset, and aborts', async () => {
    // Prepare
    const bad = Buffer.concat([BODY, Buffer.from('{"resourceType":"Observation","id":"x"}\n'), SMALL]);
    const server = await startFileServer({ body: bad });
    const { client: recording, calls } = instrumentedClient();
    const request = input(server.url);
    // Act
    const transfer = transferFile(request, deps({ s3: recording }));
    // Assess
    await expect(transfer).rejects.toThrow(
      new InvalidNdjsonError(
        `NDJSON line ${LINES + 1} (byte offset ${BODY.length}) is invalid: resourceType is Observation, expected Patient`,
      ),
    );
    expect(calls.some((call) => call.name === 'AbortMultipartUploadCommand')).toBe(true);
    expect(await exists(request.key)).toBe(false);
    recording.destroy();
    await server.close();
  });

  it('quarantines invalid lines across a checkpoint and lands the rest', async () => {
    // Prepare
    const badA = '{"resourceType":"Observation","id":"a"}';
    const badB = '{"resourceType":"Patient"';
    const body = Buffer.concat([Buffer.from(`${badA}\n`), BODY, Buffer.from(`\n${badB}\n`), SMALL]);
    const expected = Buffer.concat([BODY, SMALL]);
    const server = await startFileServer({ body });
    const request = input(server.url, {
      invalidLinePolicy: 'quarantine',
      quarantineKey: `quarantine/t${keyCounter + 1}/part-0001.ndjson`,
      expectedCount: LINES + 20 + 2,
    });
    // Act
    const { outcome, checkpoints } = await untilComplete(request, (invocation) =>
      deps({ remainingTimeMs: invocation === 0 ? timeRunsOutAfter(2) : () => 900_000 }),
    );
    // Assess
    expect(checkpoints[0]!.quarantine).toEqual({ segments: 1, bytes: badA.length + 1 });
    expect(outcome).toEqual({
      status: 'complete',
      bucket: BUCKET,
      key: request.key,
      bytes: expected.length,
      lines: LINES + 20,
      blankLines: 1,
      invalidLines: 2,
      sha256: sha256(expected),
      quarantineKey: request.quarantineKey,
      serverEtag: expect.any(String),
    });
    expect((await objectBytes(request.key)).equals(expected)).toBe(true);
    expect((await objectBytes(request.quarantineKey!)).toString()).toBe(`${badA}\n${badB}\n`);
    expect(await keysUnder(request.quarantineKey!)).toEqual(['part-0001.ndjson']);
    await server.close();
  });

  it.each<['error' | 'deleted', string]>([
    ['error', '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing"}]}'],
    ['deleted', '{"resourceType":"Bundle","type":"transaction","entry":[]}'],
  ])('checks %s files for their own resource type', async (kind, line) => {
    // Prepare
    const body = Buffer.from(`${line}\n${line}\n`);
    const server = await startFileServer({ body });
    const request = input(server.url, { kind, resourceType: 'Patient' });
    // Act
    const outcome = await transferFile(request, deps());
    // Assess
    expect(outcome).toMatchObject({ status: 'complete', lines: 2, bytes: body.length });
    await server.close();
  });

  it('never doubles or drops a line when faults hit between every part', async () => {
    // Prepare
    const lines = Array.from({ length: 3000 }, (_, i) => patientLine(i, 99));
    const body = Buffer.from(`${lines.join('\n')}\n`);
    const faults = Array.from({ length: 6 }, (_, i) => ({
      kind: 'drop' as const,
      afterBytes: 150_000 + i * 7919,
    }));
    const server = await startFileServer({ body, faults });
    const request = input(server.url, { expectedCount: 3000, partSizeBytes: 64 * 1024 });
    // Act
    const outcome = await transferFile(request, deps({ settings: { ...TEST_SETTINGS, maxAttempts: 10 } }));
    // Assess
    const landed = (await objectBytes(request.key)).toString().split('\n').slice(0, -1);
    expect(landed).toEqual(lines);
    expect(outcome).toMatchObject({ status: 'complete', lines: 3000, sha256: sha256(body) });
    await server.close();
  });

  it.each([
    ['an empty file', ''],
    ['a file of blank lines', '\n\r\n  \n'],
  ])('lands %s as an empty object', async (_name, text) => {
    // Prepare
    const server = await startFileServer({ body: Buffer.from(text) });
    const request = input(server.url, { expectedCount: 0 });
    // Act
    const outcome = await transferFile(request, deps());
    // Assess
    expect(outcome).toMatchObject({
      status: 'complete',
      bytes: 0,
      lines: 0,
      sha256: sha256(Buffer.alloc(0)),
    });
    expect(await objectBytes(request.key)).toHaveLength(0);
    await server.close();
  });

  it('asks for SSE-KMS with a bucket key on every object it writes, scratch objects included', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY });
    const { client: recording, calls } = instrumentedClient();
    const request = input(server.url, { sseKmsKeyId: 'alias/exports', partSizeBytes: 1024 * 1024 });
    const encryption = {
      ServerSideEncryption: 'aws:kms',
      SSEKMSKeyId: 'alias/exports',
      BucketKeyEnabled: true,
    };
    // Act
    await untilComplete(request, (invocation) =>
      deps({
        s3: recording,
        remainingTimeMs: invocation === 0 ? timeRunsOutAfter(1) : () => 900_000,
        settings: { minPartSizeBytes: 1024 * 1024 },
      }),
    );
    // Assess
    const writes = calls.filter((call) =>
      ['CreateMultipartUploadCommand', 'PutObjectCommand'].includes(call.name),
    );
    expect(writes.map((call) => call.input.Key)).toEqual([
      expect.stringMatching(/\/_part-0001\.ndjson\.carry-\d+$/),
      request.key,
    ]);
    for (const write of writes) expect(write.input).toMatchObject(encryption);
    expect((await objectBytes(request.key)).equals(BODY)).toBe(true);
    recording.destroy();
    await server.close();
  });

  it.each<[string, Partial<TransferFileInput>, Partial<TransferSettings>, string]>([
    [
      'quarantine without a key',
      { invalidLinePolicy: 'quarantine' },
      {},
      "transferFile input.quarantineKey must be given with invalidLinePolicy 'quarantine'",
    ],
    ['an empty bucket', { bucket: '' }, {}, 'transferFile input.bucket must be a non-empty string'],
    [
      'a negative count',
      { expectedCount: -1 },
      {},
      'transferFile input.expectedCount must be a non-negative integer',
    ],
    [
      'a misspelled setting',
      {},
      { safetyMargin: 5 } as Partial<TransferSettings>,
      'Unknown transfer setting "safetyMargin"',
    ],
    [
      'a malformed checkpoint',
      { checkpoint: { version: 2 } as unknown as TransferCheckpoint },
      {},
      'checkpoint.byteOffset must be a non-negative integer',
    ],
  ])('refuses %s up front', async (_name, overrides, settings, message) => {
    // Act
    const transfer = transferFile(input('http://127.0.0.1:9/x.ndjson', overrides), deps({ settings }));
    // Assess
    await expect(transfer).rejects.toThrow(new ConfigurationError(message));
  });
});
