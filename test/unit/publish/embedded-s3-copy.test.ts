import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  S3Client,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedS3, startEmbeddedS3 } from '../../../scripts/local/embedded-s3.js';

/**
 * What the embedded S3 must do as S3 does for an export to be published
 * (scripts/local/s3rver-process.cjs adds it to s3rver).
 */
const BUCKET = 'copies';
/** Keys of the layout: `=` in every partition, which a copy source must carry URL-encoded. */
const SOURCE = 'source=epic/export=2026-11-26T110000.123Z/_staging/type=Patient/part-0001.ndjson';
const TARGET = 'source=epic/export=2026-11-26T110000.123Z/type=Patient/part-0001.ndjson';
const encoded = (key: string) => `${BUCKET}/${key.split('/').map(encodeURIComponent).join('/')}`;

describe('embedded S3: copies, tags and batch deletes', () => {
  let s3: EmbeddedS3;
  let client: S3Client;
  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    client = new S3Client(s3.clientConfig);
  });
  afterAll(async () => {
    client.destroy();
    await s3.close();
  });

  const read = async (key: string) =>
    (await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToString();
  const tags = async (key: string) =>
    (await client.send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: key }))).TagSet ?? [];
  const put = (
    key: string,
    body: string,
    extra: Partial<ConstructorParameters<typeof PutObjectCommand>[0]> = {},
  ) => client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, ...extra }));

  it('CopyObject of a URL-encoded source keeps content type, metadata and tags (the COPY directives)', async () => {
    // Prepare
    await put(SOURCE, '{"resourceType":"Patient"}\n', {
      ContentType: 'application/fhir+ndjson',
      Metadata: { sha256: 'abc', lines: '1' },
    });
    await client.send(
      new PutObjectTaggingCommand({
        Bucket: BUCKET,
        Key: SOURCE,
        Tagging: { TagSet: [{ Key: 'kind', Value: 'output' }] },
      }),
    );
    // Act
    await client.send(new CopyObjectCommand({ Bucket: BUCKET, Key: TARGET, CopySource: encoded(SOURCE) }));
    // Assess
    const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: TARGET }));
    expect(head.ContentType).toBe('application/fhir+ndjson');
    expect(head.Metadata).toEqual({ sha256: 'abc', lines: '1' });
    expect(await tags(TARGET)).toEqual([{ Key: 'kind', Value: 'output' }]);
    expect(await read(TARGET)).toBe('{"resourceType":"Patient"}\n');
  });

  it('CopyObject with REPLACE sets the given metadata and tags', async () => {
    await put('replace/from', 'x', { Metadata: { a: '1' } });
    await client.send(
      new CopyObjectCommand({
        Bucket: BUCKET,
        Key: 'replace/to',
        CopySource: encoded('replace/from'),
        MetadataDirective: 'REPLACE',
        Metadata: { b: '2' },
        ContentType: 'text/plain',
        TaggingDirective: 'REPLACE',
        Tagging: 'sha256=def&lines=2',
      }),
    );
    const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'replace/to' }));
    expect(head.Metadata).toEqual({ b: '2' });
    expect(head.ContentType).toBe('text/plain');
    expect(await tags('replace/to')).toEqual([
      { Key: 'sha256', Value: 'def' },
      { Key: 'lines', Value: '2' },
    ]);
  });

  it('refuses a copy whose source ETag is not the one named in x-amz-copy-source-if-match', async () => {
    await put('pinned/from', 'v1');
    await expect(
      client.send(
        new CopyObjectCommand({
          Bucket: BUCKET,
          Key: 'pinned/to',
          CopySource: encoded('pinned/from'),
          CopySourceIfMatch: '"0123456789abcdef0123456789abcdef"',
        }),
      ),
    ).rejects.toMatchObject({ name: 'PreconditionFailed', $metadata: { httpStatusCode: 412 } });
    await expect(
      client.send(
        new CopyObjectCommand({ Bucket: BUCKET, Key: 'pinned/to', CopySource: encoded('pinned/nope') }),
      ),
    ).rejects.toMatchObject({ name: 'NoSuchKey' });
  });

  it('UploadPartCopy copies the byte ranges asked for, and the upload keeps the tags it was created with', async () => {
    // Prepare
    const body = 'abcdefghijklmnopqrstuvwxyz';
    await put('ranges/from', body);
    const { UploadId } = await client.send(
      new CreateMultipartUploadCommand({
        Bucket: BUCKET,
        Key: 'ranges/to',
        Metadata: { sha256: 'zzz' },
        Tagging: 'sha256=zzz',
      }),
    );
    const copyPart = (PartNumber: number, range?: string) =>
      client.send(
        new UploadPartCopyCommand({
          Bucket: BUCKET,
          Key: 'ranges/to',
          UploadId,
          PartNumber,
          CopySource: encoded('ranges/from'),
          ...(range ? { CopySourceRange: range } : {}),
        }),
      );
    // Act
    const parts = [await copyPart(1, 'bytes=20-25'), await copyPart(2, 'bytes=0-2'), await copyPart(3)];
    const refused = async (range: string) =>
      copyPart(4, range).then(
        () => undefined,
        (error: unknown) => error,
      );
    const beyondTheEnd = await refused('bytes=20-26');
    const openEnded = await refused('bytes=5-');
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: BUCKET,
        Key: 'ranges/to',
        UploadId,
        MultipartUpload: {
          Parts: parts.map((part, index) => ({ PartNumber: index + 1, ETag: part.CopyPartResult!.ETag! })),
        },
      }),
    );
    // Assess
    expect(await read('ranges/to')).toBe(`uvwxyzabc${body}`);
    expect((await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'ranges/to' }))).Metadata).toEqual(
      {
        sha256: 'zzz',
      },
    );
    expect(await tags('ranges/to')).toEqual([{ Key: 'sha256', Value: 'zzz' }]);
    expect(beyondTheEnd).toMatchObject({
      name: 'InvalidArgument',
      message: 'Range specified is not valid for source object of size: 26',
    });
    expect(openEnded).toMatchObject({
      name: 'InvalidArgument',
      message: expect.stringMatching(
        /^The x-amz-copy-source-range value must be of the form bytes=first-last/,
      ),
    });
  });

  it('forgets the tags of a deleted object, and of an object written again without tags', async () => {
    await put('forget/a', 'x', { Tagging: 'sha256=old' });
    expect(await tags('forget/a')).toEqual([{ Key: 'sha256', Value: 'old' }]);
    await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'forget/a' }));
    await put('forget/a', 'y');
    expect(await tags('forget/a')).toEqual([]);
    await put('forget/a', 'z', { Tagging: 'sha256=new' });
    await put('forget/a', 'w');
    expect(await tags('forget/a')).toEqual([]);
  });

  it('DeleteObjects removes up to 1000 keys, counts a missing key as deleted, and refuses 1001', async () => {
    // Prepare
    const present = Array.from({ length: 5 }, (_, i) => `batch/type=Patient/part-000${i}.ndjson`);
    for (const key of present) await put(key, key);
    const missing = Array.from({ length: 995 }, (_, i) => `batch/missing-${i}`);
    const keys = [...present, ...missing];
    // Act
    const answer = await client.send(
      new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: keys.map((Key) => ({ Key })) } }),
    );
    const quiet = await client.send(
      new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: [{ Key: '123' }], Quiet: true } }),
    );
    const tooMany = client.send(
      new DeleteObjectsCommand({
        Bucket: BUCKET,
        Delete: { Objects: [...keys, 'one-more'].map((Key) => ({ Key })) },
      }),
    );
    // Assess
    expect(answer.Deleted?.map((deleted) => deleted.Key)).toEqual(keys);
    expect(answer.Errors).toBeUndefined();
    expect(quiet.Deleted).toBeUndefined();
    await expect(tooMany).rejects.toMatchObject({ name: 'MalformedXML', $metadata: { httpStatusCode: 400 } });
    for (const key of present) {
      await expect(client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))).rejects.toMatchObject({
        name: 'NotFound',
      });
    }
  });
});
