import { createHash } from 'node:crypto';
import { DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { StorageError } from '../../../lambdas/errors.js';
import { createLogger } from '../../../lambdas/logger.js';
import { ResourceIdSink } from '../../../lambdas/services/transfer/resource-ids.js';
import {
  type TransferFileDeps,
  type TransferFileInput,
  type TransferOutcome,
  transferFile,
} from '../../../lambdas/services/transfer-file.js';
import { startFileServer } from './support/file-server.js';
import { patientLine, patientNdjson } from './support/ndjson-body.js';
import { untilComplete, useTransferBed } from './support/transfer-bed.js';

const BUCKET = 'exports';
const NOW = new Date('2026-03-01T12:00:00Z');
const LINES = 1200;
const BODY = patientNdjson(LINES);

/** What the transfer must hand back for these ids: the first 8 bytes of each one's SHA-256, in order. */
function idHashes(ids: readonly string[]): Buffer {
  return Buffer.concat(ids.map((id) => createHash('sha256').update(id, 'utf8').digest().subarray(0, 8)));
}

const patientIds = (count: number) => Array.from({ length: count }, (_, i) => `pt-${i}`);

function landedIds(outcome: TransferOutcome): Buffer {
  if (outcome.status !== 'complete') throw new Error('not complete');
  if (outcome.resourceIds === undefined) throw new Error('no resource ids');
  return outcome.resourceIds;
}

describe('transferFile collecting resource ids', () => {
  const bed = useTransferBed(BUCKET, { bodyTimeout: 300, headersTimeout: 5_000 });
  let keyCounter = 0;

  function deps(overrides: Partial<TransferFileDeps> = {}): TransferFileDeps {
    return {
      s3: bed.client,
      http: bed.agent,
      now: () => NOW,
      remainingTimeMs: () => 900_000,
      sleep: async () => undefined,
      random: () => 0.5,
      logger: createLogger({ level: 'warn', write: () => undefined, now: () => NOW }),
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
      key: `source=test/export=ids/type=Patient/t${keyCounter}/part-0001.ndjson`,
      partSizeBytes: 64 * 1024,
      collectResourceIds: true,
      ...overrides,
    };
  }

  async function keysBeside(key: string): Promise<string[]> {
    const prefix = key.slice(0, key.lastIndexOf('/') + 1);
    const listed = await bed.client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
    return (listed.Contents ?? []).map((object) => object.Key!.slice(prefix.length)).sort();
  }

  const timeRunsOutAfter = (calls: number) => {
    let count = 0;
    return () => (++count > calls ? 1_000 : 900_000);
  };

  it('hands back the hash of every landed line’s id, in file order, in one invocation', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY });
    // Act
    const outcome = await transferFile(input(server.url), deps());
    // Assess
    expect(landedIds(outcome).equals(idHashes(patientIds(LINES)))).toBe(true);
    await server.close();
  });

  it('collects nothing when not asked', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY });
    // Act
    const outcome = await transferFile(input(server.url, { collectResourceIds: false }), deps());
    // Assess
    expect(outcome).toMatchObject({ status: 'complete', lines: LINES });
    expect(outcome).not.toHaveProperty('resourceIds');
    await server.close();
  });

  it('keeps exactly the ids of the landed lines across several checkpoints, then removes its scratch objects', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY, writeBytes: 16 * 1024 });
    const request = input(server.url, { expectedCount: LINES });
    // Act
    const { outcome, checkpoints } = await untilComplete(
      request,
      () => deps({ remainingTimeMs: timeRunsOutAfter(1) }),
      200,
    );
    // Assess
    expect(checkpoints.length).toBeGreaterThanOrEqual(2);
    for (const checkpoint of checkpoints) {
      // Every line before the checkpoint's offset has an id; its hash is kept, none twice.
      expect(checkpoint.resourceIds).toEqual({
        segments: expect.any(Number),
        count: checkpoint.lines,
      });
      expect(server.requests.some((r) => r.headers.range === `bytes=${checkpoint.byteOffset}-`)).toBe(true);
    }
    expect(landedIds(outcome).equals(idHashes(patientIds(LINES)))).toBe(true);
    expect(await keysBeside(request.key)).toEqual(['part-0001.ndjson']);
    await server.close();
  });

  it('drops what it collected when the file starts over from byte 0 (no range support)', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY, ranges: false, writeBytes: 16 * 1024 });
    const request = input(server.url);
    // Act
    const { outcome, checkpoints } = await untilComplete(request, (invocation) =>
      deps({ remainingTimeMs: invocation === 0 ? timeRunsOutAfter(3) : () => 900_000 }),
    );
    // Assess
    expect(checkpoints).toHaveLength(1);
    expect(checkpoints[0]).toMatchObject({
      byteOffset: 0,
      restarts: 1,
      resourceIds: { segments: 0, count: 0 },
    });
    expect(landedIds(outcome).equals(idHashes(patientIds(LINES)))).toBe(true);
    await server.close();
  });

  it('keeps every id once when the connection breaks mid-line and the transfer reads on from the last whole line', async () => {
    // Prepare
    const lines = Array.from({ length: 3000 }, (_, i) => patientLine(i, 99));
    const body = Buffer.from(`${lines.join('\n')}\n`);
    const faults = Array.from({ length: 4 }, (_, i) => ({
      kind: 'drop' as const,
      afterBytes: 150_000 + i * 7919,
    }));
    const server = await startFileServer({ body, faults });
    // Act
    const outcome = await transferFile(
      input(server.url, { expectedCount: 3000 }),
      deps({ settings: { minPartSizeBytes: 64 * 1024, maxAttempts: 10 } }),
    );
    // Assess
    expect(server.requests.length).toBeGreaterThan(1);
    expect(landedIds(outcome).equals(idHashes(patientIds(3000)))).toBe(true);
    await server.close();
  });

  it('starts over when continuing a checkpoint made without collecting ids, so none is missing', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY });
    const first = await transferFile(
      input(server.url, { collectResourceIds: false }),
      deps({ remainingTimeMs: timeRunsOutAfter(2) }),
    );
    if (first.status !== 'checkpoint') throw new Error('expected a checkpoint');
    expect(first.checkpoint.byteOffset).toBeGreaterThan(0);
    // Act
    const outcome = await transferFile(
      input(server.url, {
        key: `source=test/export=ids/late/t${keyCounter}/part-0001.ndjson`,
        checkpoint: first.checkpoint,
      }),
      deps(),
    );
    // Assess
    expect(landedIds(outcome).equals(idHashes(patientIds(LINES)))).toBe(true);
    expect(server.requests.at(-1)!.headers.range).toBeUndefined();
    await server.close();
  });

  it('counts only lines with a string id: an OperationOutcome without one adds nothing', async () => {
    // Prepare
    const body = Buffer.from(
      [
        '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing"}]}',
        '{"resourceType":"OperationOutcome","id":"oo-1","issue":[]}',
        '{"resourceType":"OperationOutcome","id":42,"issue":[]}',
        '',
      ].join('\n'),
    );
    const server = await startFileServer({ body });
    // Act
    const outcome = await transferFile(
      input(server.url, { kind: 'error', resourceType: 'OperationOutcome' }),
      deps(),
    );
    // Assess
    expect(outcome).toMatchObject({ status: 'complete', lines: 3 });
    expect(landedIds(outcome).equals(idHashes(['oo-1']))).toBe(true);
    await server.close();
  });

  it('keeps only committed ids across its own checkpoint: lines framed but not handed over come again', async () => {
    // Prepare
    const target = { bucket: BUCKET, key: 'source=test/export=ids/sink/part-0001.ndjson' };
    const first = new ResourceIdSink(bed.client, target);
    for (const id of ['a', 'b', 'c']) first.add(Buffer.from(id));
    first.commit();
    for (const id of ['d', 'e']) first.add(Buffer.from(id));
    // Act
    const state = await first.checkpoint();
    const second = new ResourceIdSink(bed.client, target, JSON.parse(JSON.stringify(state)));
    second.add(Buffer.from('d'));
    second.commit();
    second.add(Buffer.from('never landed'));
    const all = await second.finish();
    // Assess
    expect(state).toEqual({ segments: 1, count: 3 });
    expect(all.equals(idHashes(['a', 'b', 'c', 'd']))).toBe(true);
    await second.deleteSegments();
    expect(await keysBeside(target.key)).toEqual([]);
  });

  it.each([
    ['has disappeared', undefined],
    ['holds fewer ids than the checkpoint counts', Buffer.alloc(8)],
  ])('fails rather than hand back a short list when a segment %s', async (_name, replacement) => {
    // Prepare
    const target = {
      bucket: BUCKET,
      key: `source=test/export=ids/lost-${replacement === undefined ? 'gone' : 'short'}/part-0001.ndjson`,
    };
    const first = new ResourceIdSink(bed.client, target);
    for (const id of ['a', 'b']) first.add(Buffer.from(id));
    first.commit();
    const state = await first.checkpoint();
    const segmentKey = target.key.replace('part-0001.ndjson', '_part-0001.ndjson.resource-ids-1');
    await bed.client.send(
      replacement === undefined
        ? new DeleteObjectCommand({ Bucket: BUCKET, Key: segmentKey })
        : new PutObjectCommand({ Bucket: BUCKET, Key: segmentKey, Body: replacement }),
    );
    // Act
    const failure = await new ResourceIdSink(bed.client, target, state)
      .finish()
      .catch((error: unknown) => error);
    // Assess
    expect(failure).toBeInstanceOf(StorageError);
  });
});
