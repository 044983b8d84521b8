import { createHash } from 'node:crypto';
import {
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { S3MultipartWriter } from '../../../lambdas/adapters/s3-multipart.js';
import { StorageError, VerificationError } from '../../../lambdas/errors.js';
import {
  type ObjectToPublish,
  publishedKey,
  publishObjects,
  removeObjects,
  stagingKey,
  verifyPublished,
} from '../../../lambdas/services/publish-export.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../../scripts/local/embedded-s3.js';
import { thrown } from '../../support/thrown.js';

const MiB = 1024 * 1024;
const ROOT = 'exports/source=epic/export=2026-11-26T110000.123Z/';
/** An export folder of its own for each case. */
const folder = (source: string) => `exports/source=${source}/export=2026-11-26T110000.123Z/`;
const sha256 = (body: Buffer | string) => createHash('sha256').update(body).digest('hex');

describe('stagingKey and publishedKey', () => {
  it.each([
    [`${ROOT}type=Patient/part-0001.ndjson`, `${ROOT}_staging/type=Patient/part-0001.ndjson`],
    [
      'source=a/export=2026-11-26T110000.123Z_epic-20261126T110000Z-auto/type=Observation/part-0012.ndjson',
      'source=a/export=2026-11-26T110000.123Z_epic-20261126T110000Z-auto/_staging/type=Observation/part-0012.ndjson',
    ],
  ])('%s is staged at %s, and back', (published, staged) => {
    expect(stagingKey(published)).toBe(staged);
    expect(publishedKey(staged)).toBe(published);
  });

  it.each([
    `${ROOT}_errors/part-0001.ndjson`,
    `${ROOT}_deleted/type=Patient/part-0001.ndjson`,
    `${ROOT}_quarantine/type=Patient/part-0001.quarantine.ndjson`,
    `${ROOT}_staging/type=Patient/part-0001.ndjson`,
    'type=Patient/part-0001.ndjson',
  ])('refuses to stage %s: readers never see it, so it is never staged', (key) => {
    const error = thrown(() => stagingKey(key));
    expect(error).toBeInstanceOf(RangeError);
    expect(error.message).toBe(
      `${key} is not the key of an output file (…/export=<id>/type=<Type>/<file>); only those are staged`,
    );
  });

  it('refuses to publish a key that is not staged', () => {
    const key = `${ROOT}type=Patient/part-0001.ndjson`;
    expect(thrown(() => publishedKey(key)).message).toBe(
      `${key} is not a staging key (…/export=<id>/_staging/type=<Type>/<file>)`,
    );
  });
});

describe('publishing an export', () => {
  const BUCKET = 'publish';
  let s3: EmbeddedS3;
  let client: S3Client;
  /** Every command sent, in order, with its input. */
  let sent: { command: string; input: Record<string, unknown> }[] = [];
  /** Copy requests in flight now, and the most seen at once. */
  let copying = 0;
  let mostCopying = 0;
  /** Throws S3's InternalError instead of sending a request this returns true for. */
  let failWhen: ((command: string, input: Record<string, unknown>) => boolean) | undefined;
  /** Keys a DeleteObjects answer reports as not deleted, as S3 does for a key it was refused. */
  let refuseToDelete = new Set<string>();
  /** Each refusal case stages in its own folder. */
  let refusals = 0;

  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    client = new S3Client(s3.clientConfig);
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const command = context.commandName ?? '';
        const input = args.input as Record<string, unknown>;
        sent.push({ command, input });
        if (failWhen?.(command, input)) {
          throw Object.assign(new Error('We encountered an internal error. Please try again.'), {
            name: 'InternalError',
            $metadata: { httpStatusCode: 500 },
          });
        }
        const isCopy = command === 'CopyObjectCommand' || command === 'UploadPartCopyCommand';
        if (isCopy) mostCopying = Math.max(mostCopying, ++copying);
        try {
          const result = await next(args);
          if (command === 'DeleteObjectsCommand' && refuseToDelete.size > 0) {
            const objects = (input.Delete as { Objects: { Key: string }[] }).Objects;
            (result.output as { Errors?: unknown[] }).Errors = objects
              .filter(({ Key }) => refuseToDelete.has(Key))
              .map(({ Key }) => ({ Key, Code: 'AccessDenied', Message: 'Access Denied' }));
          }
          return result;
        } finally {
          if (isCopy) copying--;
        }
      },
      { step: 'initialize', name: 'recordAndFail' },
    );
  });
  afterAll(async () => {
    client.destroy();
    await s3.close();
  });
  beforeEach(() => {
    sent = [];
    mostCopying = 0;
    failWhen = undefined;
    refuseToDelete = new Set();
  });

  const commands = (name: string) => sent.filter((request) => request.command === name);
  const read = async (key: string) =>
    Buffer.from(
      await (
        await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))
      ).Body!.transformToByteArray(),
    );
  const head = (key: string) => client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
  const tags = async (key: string) =>
    (await client.send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: key }))).TagSet ?? [];
  const exists = (key: string) =>
    head(key).then(
      () => true,
      (error: { name?: string }) => {
        if (error.name === 'NotFound') return false;
        throw error;
      },
    );

  /** A file as Download File lands a small one: one PUT, the facts in its metadata. */
  async function stageSmall(folder: string, type: string, body: string): Promise<ObjectToPublish> {
    const to = `${folder}type=${type}/part-0001.ndjson`;
    const from = stagingKey(to);
    await client.send(
      new PutObjectCommand({
        Bucket: BUCKET,
        Key: from,
        Body: body,
        ContentType: 'application/fhir+ndjson',
        Metadata: { 'resource-type': type, 'file-kind': 'output', sha256: sha256(body), lines: '1' },
      }),
    );
    return { from, to, bytes: Buffer.byteLength(body), sha256: sha256(body) };
  }

  /** A file as Download File lands a large one: a multipart upload, the facts in tags added after. */
  async function stageMultipart(folder: string, type: string, body: Buffer): Promise<ObjectToPublish> {
    const to = `${folder}type=${type}/part-0001.ndjson`;
    const from = stagingKey(to);
    const writer = await S3MultipartWriter.create(
      client,
      { bucket: BUCKET, key: from },
      { 'resource-type': type, 'file-kind': 'output' },
    );
    for (let start = 0; start < body.length; start += 5 * MiB) {
      await writer.uploadPart(body.subarray(start, start + 5 * MiB));
    }
    await writer.complete();
    await client.send(
      new PutObjectTaggingCommand({
        Bucket: BUCKET,
        Key: from,
        Tagging: {
          TagSet: [
            { Key: 'sha256', Value: sha256(body) },
            { Key: 'lines', Value: '1000' },
          ],
        },
      }),
    );
    return { from, to, bytes: body.length, sha256: sha256(body) };
  }

  it('copies a staged file to its published key, keeping content type, metadata and encryption', async () => {
    // Prepare
    const body = '{"resourceType":"Patient","id":"1"}\n';
    const object = await stageSmall(folder('keep'), 'Patient', body);
    // Act
    const published = await publishObjects(client, {
      bucket: BUCKET,
      objects: [object],
      sseKmsKeyId: 'arn:aws:kms:us-east-1:111122223333:key/data',
    });
    // Assess
    expect(published).toEqual([
      { from: object.from, to: object.to, bytes: object.bytes, sha256: sha256(body), copiedBy: 'CopyObject' },
    ]);
    const copy = commands('CopyObjectCommand');
    expect(copy.map(({ input }) => input)).toEqual([
      {
        Bucket: BUCKET,
        Key: object.to,
        CopySource: `${BUCKET}/exports/source%3Dkeep/export%3D2026-11-26T110000.123Z/_staging/type%3DPatient/part-0001.ndjson`,
        CopySourceIfMatch: (await head(object.from)).ETag,
        MetadataDirective: 'COPY',
        TaggingDirective: 'COPY',
        ServerSideEncryption: 'aws:kms',
        SSEKMSKeyId: 'arn:aws:kms:us-east-1:111122223333:key/data',
        BucketKeyEnabled: true,
      },
    ]);
    const final = await head(object.to);
    expect(final.ContentType).toBe('application/fhir+ndjson');
    expect(final.Metadata).toEqual({
      'resource-type': 'Patient',
      'file-kind': 'output',
      sha256: sha256(body),
      lines: '1',
    });
    expect((await read(object.to)).toString()).toBe(body);
    await expect(verifyPublished(client, { bucket: BUCKET, objects: published })).resolves.toBeUndefined();
  });

  it('gives a file landed in parts its sha256 and line count as metadata, and keeps its tags', async () => {
    const body = Buffer.alloc(6 * MiB, '{"resourceType":"Observation"}\n');
    const object = await stageMultipart(folder('promote'), 'Observation', body);
    const [published] = await publishObjects(client, { bucket: BUCKET, objects: [object] });
    expect(published?.copiedBy).toBe('CopyObject');
    expect(commands('CopyObjectCommand')[0]?.input).toMatchObject({
      MetadataDirective: 'REPLACE',
      ContentType: 'application/fhir+ndjson',
      TaggingDirective: 'COPY',
    });
    expect((await head(object.to)).Metadata).toEqual({
      'resource-type': 'Observation',
      'file-kind': 'output',
      sha256: sha256(body),
      lines: '1000',
    });
    expect(await tags(object.to)).toEqual([
      { Key: 'sha256', Value: sha256(body) },
      { Key: 'lines', Value: '1000' },
    ]);
    expect((await read(object.to)).equals(body)).toBe(true);
  });

  it('copies an object above the threshold part by part, with ranges, at most `concurrency` at once', async () => {
    // Prepare: 12 MiB + 3 bytes in parts of 5 MiB: three ranges, the last one short.
    const body = Buffer.alloc(12 * MiB + 3);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7919) % 251;
    const object = await stageMultipart(folder('parts'), 'Observation', body);
    sent = [];
    // Act
    const published = await publishObjects(client, {
      bucket: BUCKET,
      objects: [object],
      multipartCopyThresholdBytes: 6 * MiB,
      copyPartBytes: 5 * MiB,
      concurrency: 2,
    });
    // Assess
    expect(published.map((p) => p.copiedBy)).toEqual(['UploadPartCopy']);
    expect(
      commands('UploadPartCopyCommand').map(({ input }) => [input.PartNumber, input.CopySourceRange]),
    ).toEqual([
      [1, `bytes=0-${5 * MiB - 1}`],
      [2, `bytes=${5 * MiB}-${10 * MiB - 1}`],
      [3, `bytes=${10 * MiB}-${12 * MiB + 2}`],
    ]);
    expect(mostCopying).toBe(2);
    expect(commands('CreateMultipartUploadCommand')[0]?.input).toMatchObject({
      ContentType: 'application/fhir+ndjson',
      Metadata: {
        'resource-type': 'Observation',
        'file-kind': 'output',
        sha256: sha256(body),
        lines: '1000',
      },
      Tagging: `sha256=${sha256(body)}&lines=1000`,
    });
    expect((await read(object.to)).equals(body)).toBe(true);
    expect(await tags(object.to)).toEqual([
      { Key: 'sha256', Value: sha256(body) },
      { Key: 'lines', Value: '1000' },
    ]);
    await verifyPublished(client, { bucket: BUCKET, objects: published });
  });

  it('a failed part copy fails the publish, names the part and the object, and leaves no upload open', async () => {
    const body = Buffer.alloc(11 * MiB, 'x');
    const object = await stageMultipart(folder('failed-part'), 'Observation', body);
    failWhen = (command, input) => command === 'UploadPartCopyCommand' && input.PartNumber === 2;
    const error = await publishObjects(client, {
      bucket: BUCKET,
      objects: [object],
      multipartCopyThresholdBytes: 6 * MiB,
      copyPartBytes: 5 * MiB,
    }).catch((caught: unknown) => caught as Error);
    expect(error).toBeInstanceOf(StorageError);
    expect((error as Error).message).toBe(
      `S3 UploadPartCopy 2 (bytes ${5 * MiB}-${10 * MiB - 1} of s3://${BUCKET}/${object.from}) of s3://${BUCKET}/${object.to} failed: InternalError (HTTP 500): We encountered an internal error. Please try again.`,
    );
    expect(commands('AbortMultipartUploadCommand')).toHaveLength(1);
    const open = await client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: object.to }));
    expect(open.Uploads ?? []).toEqual([]);
    expect(await exists(object.to)).toBe(false);
  });

  it('a retry copies only what is not published yet, and after the staging objects are gone copies nothing', async () => {
    // Prepare: three files; the copy of the second fails the first time.
    const root = folder('retry');
    const objects = [
      await stageSmall(root, 'Patient', '{"resourceType":"Patient"}\n'),
      await stageSmall(root, 'Encounter', '{"resourceType":"Encounter"}\n'),
      await stageSmall(root, 'Condition', '{"resourceType":"Condition"}\n'),
    ];
    failWhen = (command, input) => command === 'CopyObjectCommand' && input.Key === objects[1]?.to;
    await expect(publishObjects(client, { bucket: BUCKET, objects, concurrency: 1 })).rejects.toThrow(
      `S3 CopyObject from s3://${BUCKET}/${objects[1]?.from} of s3://${BUCKET}/${objects[1]?.to} failed: InternalError (HTTP 500)`,
    );
    failWhen = undefined;
    sent = [];
    // Act
    const retried = await publishObjects(client, { bucket: BUCKET, objects, concurrency: 1 });
    const copiedByRetry = commands('CopyObjectCommand').map(({ input }) => input.Key);
    await verifyPublished(client, { bucket: BUCKET, objects: retried });
    await removeObjects(
      client,
      BUCKET,
      objects.map(({ from }) => from),
    );
    sent = [];
    const afterRemoval = await publishObjects(client, { bucket: BUCKET, objects });
    // Assess
    expect(retried.map((p) => p.copiedBy)).toEqual(['already-published', 'CopyObject', 'CopyObject']);
    expect(copiedByRetry).toEqual([objects[1]?.to, objects[2]?.to]);
    expect(afterRemoval.map((p) => p.copiedBy)).toEqual([
      'already-published',
      'already-published',
      'already-published',
    ]);
    expect(afterRemoval.map((p) => p.sha256)).toEqual(objects.map((o) => o.sha256));
    expect(commands('CopyObjectCommand')).toEqual([]);
  });

  it('copies again over a published object that differs from its staging object', async () => {
    const object = await stageSmall(folder('stale'), 'Patient', '{"resourceType":"Patient","v":2}\n');
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: object.to, Body: 'half' }));
    const [published] = await publishObjects(client, { bucket: BUCKET, objects: [object] });
    expect(published?.copiedBy).toBe('CopyObject');
    expect((await read(object.to)).toString()).toBe('{"resourceType":"Patient","v":2}\n');
  });

  it.each([
    {
      name: 'a staging object of another size',
      change: (o: ObjectToPublish) => ({ ...o, bytes: o.bytes + 1 }),
      error: VerificationError,
      message: (o: ObjectToPublish) =>
        `s3://${BUCKET}/${o.from} holds ${o.bytes} bytes, expected ${o.bytes + 1}; not published`,
    },
    {
      name: 'a staging object of another hash',
      change: (o: ObjectToPublish) => ({ ...o, sha256: 'f'.repeat(64) }),
      error: VerificationError,
      message: (o: ObjectToPublish) =>
        `s3://${BUCKET}/${o.from} records sha256 ${o.sha256}, expected ${'f'.repeat(64)}; not published`,
    },
    {
      name: 'no staging object and no published one',
      change: (o: ObjectToPublish) => ({ ...o, from: `${o.from}.gone` }),
      error: StorageError,
      message: (o: ObjectToPublish) =>
        `cannot publish s3://${BUCKET}/${o.from}.gone: it does not exist, and s3://${BUCKET}/${o.to} does not exist either (expected ${o.bytes} bytes with sha256 ${o.sha256})`,
    },
  ])('refuses $name, naming the object and what was expected', async ({ change, error, message }) => {
    const object = await stageSmall(folder(`refused-${++refusals}`), 'Patient', '{"a":1}\n');
    const caught = await publishObjects(client, { bucket: BUCKET, objects: [change(object)] }).catch(
      (e: unknown) => e as Error,
    );
    expect(caught).toBeInstanceOf(error);
    expect((caught as Error).message).toBe(message(object));
    expect(await exists(object.to)).toBe(false);
  });

  it('refuses a staging object that records no sha256 anywhere', async () => {
    const to = `${folder('unhashed')}type=Patient/part-0001.ndjson`;
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: stagingKey(to), Body: 'x' }));
    await expect(
      publishObjects(client, { bucket: BUCKET, objects: [{ from: stagingKey(to), to, bytes: 1 }] }),
    ).rejects.toMatchObject({
      name: 'VerificationError',
      message: `s3://${BUCKET}/${stagingKey(to)} records no sha256 (neither in its metadata nor in its tags); not published`,
    });
  });

  it('verification names every published object that is missing, of another size or of another hash', async () => {
    // Prepare
    const root = folder('verify');
    const objects = [
      await stageSmall(root, 'Patient', '{"resourceType":"Patient"}\n'),
      await stageSmall(root, 'Encounter', '{"resourceType":"Encounter"}\n'),
      await stageSmall(root, 'Condition', '{"resourceType":"Condition"}\n'),
      await stageSmall(root, 'Procedure', '{"resourceType":"Procedure"}\n'),
    ];
    const published = await publishObjects(client, { bucket: BUCKET, objects });
    const [patient, encounter, condition] = published as [
      (typeof published)[0],
      (typeof published)[0],
      (typeof published)[0],
    ];
    await removeObjects(client, BUCKET, [patient.to]);
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: encounter.to, Body: 'short' }));
    const sameSize = 'x'.repeat(condition.bytes);
    await client.send(
      new PutObjectCommand({
        Bucket: BUCKET,
        Key: condition.to,
        Body: sameSize,
        Metadata: { sha256: sha256(sameSize) },
      }),
    );
    // Act
    const error = await verifyPublished(client, { bucket: BUCKET, objects: published }).catch(
      (e: unknown) => e as Error,
    );
    // Assess
    expect(error).toBeInstanceOf(VerificationError);
    expect(error?.message).toBe(
      `3 of 4 published object(s) do not match their staging object: ` +
        `s3://${BUCKET}/${patient.to} is missing (expected ${patient.bytes} bytes with sha256 ${patient.sha256}); ` +
        `s3://${BUCKET}/${encounter.to} holds 5 bytes (expected ${encounter.bytes} bytes with sha256 ${encounter.sha256}); ` +
        `s3://${BUCKET}/${condition.to} has sha256 metadata ${sha256(sameSize)} (expected ${condition.bytes} bytes with sha256 ${condition.sha256})`,
    );
  });

  it('removes keys 1000 a request, counting a key that is already gone as removed', async () => {
    // Prepare: three objects that exist among 2,001 keys (S3 deletes a missing key without complaint).
    const present = ['a', 'b', 'c'].map((name) => `${ROOT}remove/_staging/type=Patient/${name}.ndjson`);
    for (const key of present)
      await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: key }));
    const keys = [...present, ...Array.from({ length: 1998 }, (_, i) => `${ROOT}remove/missing-${i}`)];
    // Act
    const removed = await removeObjects(client, BUCKET, [...keys, present[0]!]);
    // Assess
    expect(removed).toBe(2001);
    expect(
      commands('DeleteObjectsCommand').map(
        ({ input }) => (input.Delete as { Objects: unknown[] }).Objects.length,
      ),
    ).toEqual([1000, 1000, 1]);
    expect(commands('DeleteObjectsCommand')[0]?.input.Delete).toMatchObject({ Quiet: true });
    for (const key of present) expect(await exists(key)).toBe(false);
    expect(await removeObjects(client, BUCKET, [])).toBe(0);
  });

  it('deletes a staging object by its version when it has one, so that no noncurrent copy is kept', async () => {
    // The embedded S3 keeps no versions: this checks what is asked of S3, each key and version once.
    const removed = await removeObjects(client, BUCKET, [
      { key: 'v/a', versionId: '3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY' },
      { key: 'v/a', versionId: '3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY' },
      { key: 'v/b' },
      'v/c',
    ]);
    expect(removed).toBe(3);
    expect(commands('DeleteObjectsCommand').map(({ input }) => input.Delete)).toEqual([
      {
        Objects: [
          { Key: 'v/a', VersionId: '3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY' },
          { Key: 'v/b' },
          { Key: 'v/c' },
        ],
        Quiet: true,
      },
    ]);
  });

  it('names each key S3 refused to delete, after trying every batch', async () => {
    const keys = Array.from({ length: 1005 }, (_, i) => `${ROOT}refused/part-${i}`);
    refuseToDelete = new Set([keys[3]!, keys[1004]!]);
    await expect(removeObjects(client, BUCKET, keys)).rejects.toMatchObject({
      name: 'StorageError',
      message:
        `S3 DeleteObjects in s3://${BUCKET} left 2 of 1005 object(s) undeleted: ` +
        `${keys[3]} (AccessDenied: Access Denied); ${keys[1004]} (AccessDenied: Access Denied)`,
    });
    expect(commands('DeleteObjectsCommand')).toHaveLength(2);
  });

  it('names the keys of a batch whose request failed, the first ten and how many more', async () => {
    const keys = Array.from({ length: 12 }, (_, i) => `k${i}`);
    failWhen = (command) => command === 'DeleteObjectsCommand';
    const error = await removeObjects(client, BUCKET, keys).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(StorageError);
    const reason =
      '(the request failed: InternalError (HTTP 500): We encountered an internal error. Please try again.)';
    expect(error?.message).toBe(
      `S3 DeleteObjects in s3://${BUCKET} left 12 of 12 object(s) undeleted: ${keys
        .slice(0, 10)
        .map((key) => `${key} ${reason}`)
        .join('; ')}; and 2 more`,
    );
    expect((error as Error).cause).toMatchObject({ name: 'InternalError' });
  });

  it.each([
    [
      { threads: 2 },
      'unknown publish option(s): threads (expected bucket, objects, sseKmsKeyId, concurrency, multipartCopyThresholdBytes, copyPartBytes)',
    ],
    [
      { copyPartBytes: 1024 },
      "copyPartBytes must be an integer from 5242880 to 5368709120 (S3's part limits), got 1024",
    ],
    [
      { multipartCopyThresholdBytes: 6 * 1024 ** 3 },
      `multipartCopyThresholdBytes must be an integer from 0 to 5368709120 (S3's CopyObject limit), got ${6 * 1024 ** 3}`,
    ],
    [{ concurrency: 0 }, 'concurrency must be a positive integer, got 0'],
  ])('refuses the option %o before any request', async (option, message) => {
    await expect(publishObjects(client, { bucket: BUCKET, objects: [], ...option })).rejects.toMatchObject({
      name: 'ConfigurationError',
      message,
    });
    expect(sent).toEqual([]);
  });
});
