import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileFailureKey, lockKey, resultKey } from '../../../lambdas/core/layout.js';
import { StorageError, TransientServerError } from '../../../lambdas/errors.js';
import {
  createDownloadFileHandler,
  type DownloadFileEvent,
} from '../../../lambdas/handlers/download-file.js';
import type { InvocationContext } from '../../../lambdas/middleware.js';
import type { Runtime } from '../../../lambdas/runtime.js';
import type { FileFailure } from '../../../lambdas/services/export-lifecycle.js';
import type { SourceLock } from '../../../lambdas/services/source-lock.js';
import type { ExportContext, FileItem, FileResult } from '../../../lambdas/state.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../../scripts/local/embedded-s3.js';
import { createLocalRuntime, type LocalRuntime } from '../../../scripts/local/runtime.js';
import { type FileServer, startFileServer } from '../download/support/file-server.js';

const BUCKET = 'exports';
const SOURCE = 'batched';
const BODY = Buffer.from(
  ['p-1', 'p-2', 'p-3'].map((id) => `{"resourceType":"Patient","id":"${id}"}\n`).join(''),
);

/**
 * Download Batch: the files of one Map item in order. A file that fails is
 * recorded and the others still land; a checkpoint names the file to go on
 * from. The single-file behaviour is the workflow suites' to judge.
 */
describe('Download File with a batch of files', () => {
  let s3: EmbeddedS3;
  let local: LocalRuntime;
  let server: FileServer;
  /** What `/broken` answers: a status, or the file's body. */
  let broken: number | 'body' = 503;
  let invocation = 0;
  let execution = 0;

  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    local = createLocalRuntime({
      sources: [
        {
          raw: {
            id: SOURCE,
            fhirBaseUrl: 'http://127.0.0.1:9/fhir',
            clientId: 'client',
            kmsKeyId: 'alias/signing',
            allowInsecureHttp: true,
          },
        },
      ],
      s3ClientConfig: s3.clientConfig,
      bucket: BUCKET,
      // A file answering 503 gives up in milliseconds rather than after the default backoff.
      transfer: {
        settings: {
          safetyMarginMs: 60_000,
          maxAttempts: 2,
          baseBackoffMs: 1,
          maxBackoffMs: 2,
          maxRestarts: 10,
          partConcurrency: 3,
          minPartSizeBytes: 5 * 1024 * 1024,
          maxQuarantineBytes: 64 * 1024 * 1024,
          maxInlinePartsJsonBytes: 6 * 1024,
          maxGzipExpansion: 100,
        },
      },
    });
    server = await startFileServer({ body: BODY });
    server.route('/broken', (_headers, response: ServerResponse) => {
      if (broken === 'body') {
        response.writeHead(200, { 'content-type': 'application/fhir+ndjson' }).end(BODY);
      } else {
        response.writeHead(broken).end();
      }
    });
  });

  afterAll(async () => {
    await server.close();
    await local.close();
    await s3.close();
  });

  /** A fresh execution (own work prefix and lock) whose batch is three Patient files, the middle one at `/broken`. */
  async function batchExport(): Promise<DownloadFileEvent> {
    const executionName = `exec-${++execution}`;
    const work = `_work/source=${SOURCE}/execution=${executionName}/`;
    const now = new Date();
    const lock: SourceLock = {
      executionName,
      acquiredAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + 3_600_000).toISOString(),
      state: 'running',
    };
    await local.runtime.store.putJson(lockKey(local.runtime.prefix, SOURCE), lock);
    await local.runtime.store.putJson(`${work}urls.json`, [
      server.url,
      `${server.origin}/broken`,
      server.url,
    ]);
    const files: FileItem[] = [0, 1, 2].map((index) => ({
      index,
      kind: 'output',
      type: 'Patient',
      resourceType: 'Patient',
      key: `source=${SOURCE}/export=${executionName}/type=Patient/part-${String(index + 1).padStart(4, '0')}.ndjson`,
    }));
    return {
      batch: { batch: 0, files },
      export: { sourceId: SOURCE, executionName, bucket: BUCKET, workPrefix: work } as ExportContext,
      requiresAccessToken: false,
      urlsKey: `${work}urls.json`,
      sealedToken: 'not-needed',
      transfer: { position: 0, checkpoint: null, invocations: 0 },
    };
  }

  const context = (remainingMs: () => number = () => 900_000): InvocationContext => ({
    awsRequestId: `request-${++invocation}`,
    getRemainingTimeInMillis: remainingMs,
  });

  const results = (event: DownloadFileEvent) =>
    Promise.all(
      [0, 1, 2].map((index) =>
        local.runtime.store.getJson<FileResult>(resultKey(event.export.workPrefix, index)),
      ),
    );
  const dataRequests = () => server.requests.filter((request) => request.url === '/files/data.ndjson').length;

  it('lands the other files when one fails retryably, records its failure, then throws a retryable error; run again, it fetches only that file', async () => {
    // Prepare
    broken = 503;
    const event = await batchExport();
    const handler = createDownloadFileHandler(local.runtime);
    // Act
    const error = await handler(event, context()).catch((thrown: Error) => thrown);
    // Assess
    expect(error).toBeInstanceOf(TransientServerError);
    expect((error as Error).message).toMatch(
      /^1 of 3 file\(s\) of batch 0 did not land; TransientServerError: /,
    );
    const [first, middle, last] = await results(event);
    expect(first).toMatchObject({ index: 0, lines: 3 });
    expect(middle).toBeUndefined();
    expect(last).toMatchObject({ index: 2, lines: 3 });
    const failure = await local.runtime.store.getJson<FileFailure>(
      fileFailureKey(event.export.workPrefix, 1),
    );
    expect(failure).toMatchObject({ index: 1, error: 'TransientServerError' });

    // Act: the Map's Retry runs the same input again, the server recovered.
    broken = 'body';
    const before = dataRequests();
    const state = await handler(event, context());
    // Assess: the landed files were skipped, not fetched again (their lines still count for the batch).
    expect(state).toMatchObject({ status: 'complete', lines: 9 });
    expect(dataRequests()).toBe(before);
    expect((await results(event)).map((result) => result?.lines)).toStrictEqual([3, 3, 3]);
  });

  it('throws the first file’s own error when no file failed retryably, after landing the rest', async () => {
    // Prepare: 400 to a plain GET is not worth retrying.
    broken = 400;
    const event = await batchExport();
    const handler = createDownloadFileHandler(local.runtime);
    // Act
    const error = await handler(event, context()).catch((thrown: Error) => thrown);
    // Assess
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(TransientServerError);
    expect(error).not.toBeInstanceOf(StorageError);
    const failure = await local.runtime.store.getJson<FileFailure>(
      fileFailureKey(event.export.workPrefix, 1),
    );
    expect(failure?.error).toBe((error as Error).name);
    expect((await results(event)).map((result) => result?.lines)).toStrictEqual([3, undefined, 3]);
  });

  it('hands back for a fresh token before a file that needs one when the token is about to expire', async () => {
    // Prepare: the first file needs no token; the second does, and the token has 10 s left.
    broken = 'body';
    const event = await batchExport();
    const files = event.batch!.files.map((file, at) => ({ ...file, requiresAccessToken: at > 0 }));
    const handler = createDownloadFileHandler(local.runtime);
    // Act
    const state = await handler(
      {
        ...event,
        batch: { batch: 0, files },
        // Not a sealed token: opening it would throw, so the file is not attempted.
        sealedToken: 'not-a-sealed-token',
        tokenExpiresAt: new Date(Date.now() + 10_000).toISOString(),
      },
      context(),
    );
    // Assess
    expect(state).toMatchObject({ status: 'checkpoint', position: 1, checkpoint: null });
    expect((await results(event)).map((result) => result?.lines)).toStrictEqual([3, undefined, undefined]);
  });

  it('returns a checkpoint at the next file when time runs low between files, and goes on from that position', async () => {
    // Prepare: time runs low as soon as the first file has landed.
    broken = 'body';
    const event = await batchExport();
    let remainingMs = 900_000;
    let landed = 0;
    const runtime: Runtime = {
      ...local.runtime,
      progress: (progress) => {
        if (progress.kind === 'file-done' && ++landed === 1) remainingMs = 1_000;
      },
    };
    const handler = createDownloadFileHandler(runtime);
    // Act
    const first = await handler(
      event,
      context(() => remainingMs),
    );
    // Assess
    expect(first).toMatchObject({ status: 'checkpoint', position: 1, checkpoint: null, invocations: 0 });
    expect((await results(event)).map((result) => result?.lines)).toStrictEqual([3, undefined, undefined]);

    // Act: the loop calls again with the returned transfer state.
    const before = dataRequests();
    remainingMs = 900_000;
    const second = await handler(
      { ...event, transfer: first },
      context(() => remainingMs),
    );
    // Assess: file 0 was not looked at again; files 1 and 2 landed (one from /broken, one from the data URL).
    expect(second).toMatchObject({ status: 'complete', lines: 6 });
    expect(dataRequests()).toBe(before + 1);
    expect((await results(event)).map((result) => result?.lines)).toStrictEqual([3, 3, 3]);
  });
});
