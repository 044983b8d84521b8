import { createHash } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lockKey, resultKey } from '../../../lambdas/core/layout.js';
import { SealedTokenError } from '../../../lambdas/errors.js';
import {
  createDownloadFileHandler,
  type DownloadFileEvent,
} from '../../../lambdas/handlers/download-file.js';
import type { InvocationContext } from '../../../lambdas/middleware.js';
import type { SourceLock } from '../../../lambdas/services/source-lock.js';
import type { ExportContext, FileItem, FileResult } from '../../../lambdas/state.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../../scripts/local/embedded-s3.js';
import { createLocalRuntime, type LocalRuntime } from '../../../scripts/local/runtime.js';
import { type FileServer, startFileServer } from '../download/support/file-server.js';

const BUCKET = 'exports';
const SOURCE = 'chunky';
const EXECUTION = 'exec-14';
const WORK = `_work/source=${SOURCE}/${EXECUTION}/`;
const IDS = ['pr-1', 'pr-2', 'pr-1', 'pr-3'];
const BODY = Buffer.from(IDS.map((id) => `{"resourceType":"Practitioner","id":"${id}"}\n`).join(''));

const idHashes = (ids: readonly string[]) =>
  Buffer.concat(ids.map((id) => createHash('sha256').update(id, 'utf8').digest().subarray(0, 8)));

describe('Download File for a chunked export', () => {
  let s3: EmbeddedS3;
  let client: S3Client;
  let local: LocalRuntime;
  let server: FileServer;
  let invocation = 0;

  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    client = new S3Client(s3.clientConfig);
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
    });
    server = await startFileServer({ body: BODY });
    const now = new Date();
    const lock: SourceLock = {
      executionName: EXECUTION,
      acquiredAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + 3_600_000).toISOString(),
      state: 'running',
    };
    await local.runtime.store.putJson(lockKey(local.runtime.prefix, SOURCE), lock);
    await local.runtime.store.putJson(`${WORK}urls.json`, [server.url, server.url]);
  });

  afterAll(async () => {
    await server.close();
    await local.close();
    client.destroy();
    await s3.close();
  });

  function event(file: Partial<FileItem> & { index: number }): DownloadFileEvent {
    return {
      file: {
        kind: 'output',
        type: 'Practitioner',
        resourceType: 'Practitioner',
        key: `source=${SOURCE}/export=${EXECUTION}/type=Practitioner/part-${String(file.index + 1).padStart(4, '0')}.ndjson`,
        ...file,
      },
      export: {
        sourceId: SOURCE,
        executionName: EXECUTION,
        bucket: BUCKET,
        workPrefix: WORK,
      } as ExportContext,
      // The export as a whole wants a token; a sealed token that cannot be opened shows whether it was asked for.
      requiresAccessToken: true,
      urlsKey: `${WORK}urls.json`,
      sealedToken: 'not-a-sealed-token',
      transfer: { checkpoint: null },
    };
  }

  const context = (): InvocationContext => ({
    awsRequestId: `request-${++invocation}`,
    getRemainingTimeInMillis: () => 900_000,
  });

  async function objectBytes(key: string): Promise<Buffer> {
    const response = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from(await response.Body!.transformToByteArray());
  }

  it('writes the id hashes of a chunk’s file, big-endian 8 bytes each, and names them in its result', async () => {
    // Prepare
    const handler = createDownloadFileHandler(local.runtime);
    // Act
    const state = await handler(
      event({ index: 0, chunk: 2, chunkFileIndex: 0, requiresAccessToken: false }),
      context(),
    );
    // Assess
    expect(state).toMatchObject({ status: 'complete', lines: 4 });
    const result = await local.runtime.store.getJson<FileResult>(resultKey(WORK, 0));
    expect(result).toMatchObject({ chunk: 2, resourceIdsKey: `${WORK}resource-ids/000000.u64`, lines: 4 });
    expect((await objectBytes(result!.resourceIdsKey!)).equals(idHashes(IDS))).toBe(true);
    expect(server.requests.at(-1)!.headers.authorization).toBeUndefined();
  });

  it('keeps no ids for a file of an export in one piece', async () => {
    // Prepare
    const handler = createDownloadFileHandler(local.runtime);
    const unchunked = event({ index: 1 });
    // Act
    const refused = await handler(unchunked, context()).catch((error: Error) => error);
    const state = await handler({ ...unchunked, requiresAccessToken: false }, context());
    // Assess
    // The export's own requiresAccessToken decides when the file does not say: the token is opened.
    expect(refused).toBeInstanceOf(SealedTokenError);
    expect(state).toMatchObject({ status: 'complete', lines: 4 });
    const result = await local.runtime.store.getJson<FileResult>(resultKey(WORK, 1));
    expect(result).not.toHaveProperty('resourceIdsKey');
    expect(result).not.toHaveProperty('chunk');
    const idsObject = client.send(
      new HeadObjectCommand({ Bucket: BUCKET, Key: `${WORK}resource-ids/000001.u64` }),
    );
    await expect(idsObject).rejects.toThrow();
  });
});
