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
import type { DownloadLease } from '../../lambdas/services/export-lifecycle.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';
import { DEFINITION_PATH, runExportLocally } from '../../scripts/local/runner.js';
import { createLocalRuntime } from '../../scripts/local/runtime.js';
import {
  GROUP_ID,
  MATRIX_TRANSFER,
  type MatrixEnvironment,
  requestsOf,
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
    // Prepare: the same definition with a 1 s TimeoutSeconds on Download Batch; every file's first GET
    // is a 503 asking for 2 s, which the download waits out: past the timeout, once per file.
    const definition = JSON.parse(await readFile(DEFINITION_PATH, 'utf8'));
    definition.States['Download Files'].ItemProcessor.States['Download Batch'].TimeoutSeconds = 1;
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

    const leasesAtFinalize = new Map<string, DownloadLease | undefined>();

    // Act
    let run: Awaited<ReturnType<typeof runExportLocally>>;
    try {
      run = await runExportLocally({
        runtime: local.runtime,
        input: { sourceId },
        definitionPath,
        waitOverrideMs: 100,
        retryOverrideMs: 20,
        beforeInvocation: async ({ functionName, input }) => {
          if (functionName !== 'FinalizeExport') return;
          const { workPrefix } = (input as { export: { workPrefix: string } }).export;
          for (const key of await env.listKeys(`${workPrefix}in-flight/`)) {
            leasesAtFinalize.set(key, await env.getJson<DownloadLease>(key));
          }
        },
      });
    } finally {
      await local.close();
    }

    // Assess: each of the 17 files had an invocation killed on it; every file landed all the same.
    expect(run.status).toBe('SUCCEEDED');
    expect(run.killed).toHaveLength(17);
    expect(run.killed.every((killed) => killed.stateName === 'Download Batch')).toBe(true);
    const failures = run.events.filter((event) => event.type === 'StateFailed').map((event) => event.Error);
    expect(failures).toEqual(Array(run.killed.length).fill('States.Timeout'));
    expect(logLines.some((line) => line.includes('InvocationKilledError'))).toBe(true);
    // The Task's own Retry landed each file in the first pass, one invocation after the killed one (which
    // then met the next file's 503 in a batch of several, and was killed there): one invocation per kill
    // plus the last of each batch. The pass's tolerated-failure Catch never fired, and the retry pass had
    // nothing to do.
    const batchCount = new Set(
      run.events
        .filter((event) => event.type === 'StateEntered' && event.state?.name === 'Download Batch')
        .map((event) => event.index),
    ).size;
    expect(batchCount).toBeLessThan(run.killed.length);
    expect(run.invocations.DownloadFile).toBe(run.killed.length + batchCount);
    const entered = new Set(
      run.events.filter((event) => event.type === 'StateEntered').map((event) => event.state?.name),
    );
    expect(
      ['Check Files', 'Did Every File Land?', 'Finalize Export', 'Complete Export'].filter(
        (name) => !entered.has(name),
      ),
    ).toEqual([]);
    expect(
      [
        'Download Files [tolerated failure]',
        'Wait Before Retrying Files',
        'Retry Failed Files [ItemReader]',
        'Retry Failed Files',
      ].filter((name) => entered.has(name)),
    ).toEqual([]);
    const checked = run.events.find(
      (event) => event.type === 'StateExited' && event.state?.name === 'Check Files',
    );
    expect((checked?.state?.output as { check?: unknown } | undefined)?.check).toMatchObject({
      fileCount: 17,
      landed: 17,
      missing: 0,
    });
    // Fenced, a killed invocation sent nothing more once its Retry-After wait ended: each file was
    // fetched twice, the 503 its killed invocation waited on, then the 200 the retry landed.
    const fileGets = (await requestsOf(env, clientId)).filter(
      (entry) => entry.method === 'GET' && entry.path.startsWith('/files/'),
    );
    const perFile = new Map<string, number[]>();
    for (const entry of fileGets) perFile.set(entry.path, [...(perFile.get(entry.path) ?? []), entry.status]);
    expect(perFile.size).toBe(17);
    expect([...perFile.values()]).toEqual(Array(17).fill([503, 200]));
    // Each landing invocation removed its download lease; a killed one could not (its S3 is fenced, as a
    // dead Lambda's is gone): when Finalize Export starts, one lease per file is left, each with the
    // invocation's own time limit (15 min here) as the deadline a clean-up would wait until, not the
    // Task's TimeoutSeconds. Finalize removes them with the uploads such invocations abandoned.
    const inFlight = `_work/source=${sourceId}/execution=${run.executionName}/in-flight/`;
    expect([...leasesAtFinalize.keys()].map((key) => key.slice(inFlight.length).split('.')[0])).toEqual(
      Array.from({ length: 17 }, (_, index) => String(index).padStart(6, '0')),
    );
    for (const [key, lease] of leasesAtFinalize) {
      expect(lease?.index, key).toBe(Number(key.slice(inFlight.length).split('.')[0]));
      const limitMs = Date.parse(lease!.deadline) - Date.parse(lease!.startedAt);
      expect(limitMs, key).toBeGreaterThan(14 * 60_000);
      expect(limitMs, key).toBeLessThanOrEqual(15 * 60_000);
    }
    expect(await env.listKeys(inFlight)).toEqual([]);
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
          metrics: local.metrics,
        },
        logLines,
        watermarkBefore: undefined,
        keysBefore: [],
      },
      { outcome: 'succeeded' },
    );
  }, 90_000);
});
