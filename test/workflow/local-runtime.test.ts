import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AbortMultipartUploadCommand,
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Receipt } from '../../lambdas/core/receipt.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';
import { DEFINITION_PATH, runExportLocally } from '../../scripts/local/runner.js';
import { createLocalRuntime } from '../../scripts/local/runtime.js';
import {
  GROUP_ID,
  MATRIX_TRANSFER,
  type MatrixEnvironment,
  startMatrixEnvironment,
} from './support/matrix.js';
import { assertZeroLoss } from './support/zero-loss.js';

/**
 * What the fault matrix relies on in the local runtime: the embedded S3 serves
 * the multipart and conditional-write calls s3rver lacks, and the runner kills
 * (and fences) a Task past its TimeoutSeconds.
 */
describe('embedded S3: the S3 behaviour the pipeline relies on', () => {
  let s3: EmbeddedS3;
  let client: S3Client;
  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket('extensions');
    client = new S3Client(s3.clientConfig);
  });
  afterAll(async () => {
    client.destroy();
    await s3.close();
  });

  it('lists open multipart uploads by prefix, aborts one, and refuses its parts afterwards (NoSuchUpload)', async () => {
    const Bucket = 'extensions';
    const kept = await client.send(
      new CreateMultipartUploadCommand({ Bucket, Key: 'other/part-0001.ndjson' }),
    );
    const aborted = await client.send(
      new CreateMultipartUploadCommand({ Bucket, Key: 'source=a/type=Patient/part-0001.ndjson' }),
    );

    const listed = await client.send(new ListMultipartUploadsCommand({ Bucket, Prefix: 'source=a/' }));
    await client.send(
      new AbortMultipartUploadCommand({
        Bucket,
        Key: 'source=a/type=Patient/part-0001.ndjson',
        UploadId: aborted.UploadId!,
      }),
    );
    const part = client.send(
      new UploadPartCommand({
        Bucket,
        Key: 'source=a/type=Patient/part-0001.ndjson',
        UploadId: aborted.UploadId!,
        PartNumber: 1,
        Body: 'x',
      }),
    );

    expect(listed.Uploads?.map((upload) => [upload.Key, upload.UploadId])).toEqual([
      ['source=a/type=Patient/part-0001.ndjson', aborted.UploadId],
    ]);
    await expect(part).rejects.toMatchObject({ name: 'NoSuchUpload' });
    const after = await client.send(new ListMultipartUploadsCommand({ Bucket }));
    expect(after.Uploads?.map((upload) => upload.UploadId)).toEqual([kept.UploadId]);
  });

  it('answers a conditional PUT (If-None-Match: *) over an existing key with 412, one winner among racers', async () => {
    const Bucket = 'extensions';
    const racers = await Promise.allSettled(
      [1, 2, 3, 4, 5].map((n) =>
        client.send(new PutObjectCommand({ Bucket, Key: 'lock.json', Body: String(n), IfNoneMatch: '*' })),
      ),
    );

    expect(racers.filter((racer) => racer.status === 'fulfilled')).toHaveLength(1);
    for (const racer of racers.filter((r) => r.status === 'rejected')) {
      expect((racer as PromiseRejectedResult).reason).toMatchObject({
        name: 'PreconditionFailed',
        $metadata: { httpStatusCode: 412 },
      });
    }
  });
});

describe('the local runner and a Task past its TimeoutSeconds', () => {
  let env: MatrixEnvironment;
  beforeAll(async () => {
    // A 503's Retry-After of 2 s keeps a first download waiting past a 1 s TimeoutSeconds.
    env = await startMatrixEnvironment({ retryAfterSeconds: 2 });
  }, 60_000);
  afterAll(async () => {
    await env?.close();
  }, 60_000);

  it('kills the invocation with States.Timeout, fences it, and the Retry lands the file', async () => {
    // Prepare: the same definition with a 1 s TimeoutSeconds on Download File; every file's first GET
    // is a 503 asking for 2 s, which the download waits out: past the timeout, once per file.
    const definition = JSON.parse(await readFile(DEFINITION_PATH, 'utf8'));
    definition.States['Download Files'].ItemProcessor.States['Download File'].TimeoutSeconds = 1;
    const definitionPath = join(await mkdtemp(join(tmpdir(), 'timeout-asl-')), 'bulk-export.asl.json');
    await writeFile(definitionPath, JSON.stringify(definition));
    const { clientId } = await env.sandbox.registerClient({
      jwks: { keys: [env.key.publicJwk] },
      faults: { file5xx: 1 },
    });
    const sourceId = 'timeout-seconds';
    const logLines: string[] = [];
    const local = createLocalRuntime({
      sources: [
        {
          raw: {
            id: sourceId,
            fhirBaseUrl: env.sandbox.baseUrl,
            clientId,
            privateKeyFile: env.key.privateKeyFile,
            allowInsecureHttp: true,
            export: { level: 'group', groupId: GROUP_ID },
          },
        },
      ],
      s3ClientConfig: env.s3.clientConfig,
      bucket: env.bucket,
      transfer: MATRIX_TRANSFER,
      onLogLine: (line) => logLines.push(line),
    });

    // Act
    let run: Awaited<ReturnType<typeof runExportLocally>>;
    try {
      run = await runExportLocally({
        runtime: local.runtime,
        input: { sourceId },
        definitionPath,
        waitOverrideMs: 100,
        retryOverrideMs: 20,
      });
    } finally {
      await local.close();
    }

    // Assess: the first Download File of each of the 17 files was killed; every file landed all the same.
    expect(run.status).toBe('SUCCEEDED');
    expect(run.killed).toHaveLength(17);
    expect(run.killed.every((killed) => killed.stateName === 'Download File')).toBe(true);
    const failures = run.events.filter((event) => event.type === 'StateFailed').map((event) => event.Error);
    expect(failures).toEqual(Array(run.killed.length).fill('States.Timeout'));
    expect(logLines.some((line) => line.includes('InvocationKilledError'))).toBe(true);
    await assertZeroLoss(
      env,
      {
        scenario: { name: 'TimeoutSeconds' },
        sourceId,
        clientId,
        result: {
          run,
          receipt: (await env.getJson<Receipt>((run.output as { receiptKey: string }).receiptKey))!,
          emittedEvents: local.emittedEvents,
        },
        logLines,
        watermarkBefore: undefined,
        keysBefore: [],
      },
      { outcome: 'succeeded' },
    );
  }, 90_000);
});
