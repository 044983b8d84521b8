import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedS3, startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';
import { isAlive, untilGone } from '../support/processes.js';

describe('embedded S3', () => {
  let s3: EmbeddedS3;
  let client: S3Client;
  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket('exports');
    client = new S3Client(s3.clientConfig);
  });
  afterAll(async () => {
    client.destroy();
    await s3.close();
  });

  it('stores a streamed multipart upload byte for byte', async () => {
    const body = Buffer.alloc(11 * 1024 * 1024, 'abcdefghij\n');
    await new Upload({
      client,
      params: {
        Bucket: 'exports',
        Key: 'a/b.ndjson',
        Body: Readable.from([body.subarray(0, 3), body.subarray(3)]),
      },
      partSize: 5 * 1024 * 1024,
    }).done();
    const got = await client.send(new GetObjectCommand({ Bucket: 'exports', Key: 'a/b.ndjson' }));
    const bytes = Buffer.from(await got.Body!.transformToByteArray());
    expect(bytes.equals(body)).toBe(true);
  });

  it('answers a second Complete of one upload with NoSuchUpload, and a missing part with InvalidPart, and lives on', async () => {
    // Prepare: one upload of one part, completed twice at once (as an SDK retry can), and an
    // upload completed with a part it never got. Either used to crash the whole server.
    const key = 'race/complete.ndjson';
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: 'exports', Key: key }));
    const part = await client.send(
      new UploadPartCommand({
        Bucket: 'exports',
        Key: key,
        UploadId,
        PartNumber: 1,
        Body: Buffer.from('{"a":1}\n'),
      }),
    );
    const complete = (parts: { PartNumber: number; ETag?: string }[], uploadId = UploadId) =>
      client.send(
        new CompleteMultipartUploadCommand({
          Bucket: 'exports',
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
        }),
      );
    const other = await client.send(
      new CreateMultipartUploadCommand({ Bucket: 'exports', Key: 'race/missing.ndjson' }),
    );
    // Act
    const outcomes = await Promise.allSettled([
      complete([{ PartNumber: 1, ETag: part.ETag }]),
      complete([{ PartNumber: 1, ETag: part.ETag }]),
    ]);
    const missing = await client
      .send(
        new CompleteMultipartUploadCommand({
          Bucket: 'exports',
          Key: 'race/missing.ndjson',
          UploadId: other.UploadId,
          MultipartUpload: { Parts: [{ PartNumber: 1, ETag: '"0"' }] },
        }),
      )
      .then(
        () => 'completed',
        (error: Error) => error.name,
      );
    // Assess
    expect(
      outcomes
        .map((outcome) => (outcome.status === 'fulfilled' ? 'completed' : (outcome.reason as Error).name))
        .sort(),
    ).toEqual(['NoSuchUpload', 'completed']);
    expect(missing).toBe('InvalidPart');
    const got = await client.send(new GetObjectCommand({ Bucket: 'exports', Key: key }));
    expect(await got.Body!.transformToString()).toBe('{"a":1}\n');
    expect(isAlive(s3.pid)).toBe(true);
  });

  it('paginates ListObjectsV2 (continuation tokens need the legacy OpenSSL provider)', async () => {
    for (let i = 0; i < 5; i++) {
      await client.send(new PutObjectCommand({ Bucket: 'exports', Key: `p/${i}`, Body: 'x' }));
    }
    const first = await client.send(
      new ListObjectsV2Command({ Bucket: 'exports', Prefix: 'p/', MaxKeys: 2 }),
    );
    expect(first.KeyCount).toBe(2);
    expect(first.IsTruncated).toBe(true);
    const second = await client.send(
      new ListObjectsV2Command({
        Bucket: 'exports',
        Prefix: 'p/',
        MaxKeys: 10,
        ContinuationToken: first.NextContinuationToken!,
      }),
    );
    expect(second.Contents?.map((o) => o.Key)).toEqual(['p/2', 'p/3', 'p/4']);
  });
});

describe('embedded S3 across runs', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'embedded-s3-runs-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('finds the bucket an earlier run made in the same folder, with its objects', async () => {
    const first = await startEmbeddedS3({ directory: dir });
    const firstClient = new S3Client(first.clientConfig);
    try {
      await first.createBucket('kept');
      await firstClient.send(new PutObjectCommand({ Bucket: 'kept', Key: 'a.json', Body: '{"run":1}' }));
    } finally {
      firstClient.destroy();
      await first.close();
    }

    const second = await startEmbeddedS3({ directory: dir });
    const secondClient = new S3Client(second.clientConfig);
    try {
      // s3rver answers BucketAlreadyExists here; a second run must not fail on it.
      await second.createBucket('kept');
      const got = await secondClient.send(new GetObjectCommand({ Bucket: 'kept', Key: 'a.json' }));
      expect(await got.Body!.transformToString()).toBe('{"run":1}');
    } finally {
      secondClient.destroy();
      await second.close();
    }
  });

  it('still refuses a bucket name S3 would refuse, with the code and message', async () => {
    const s3 = await startEmbeddedS3({ directory: dir });
    try {
      await expect(s3.createBucket('Not_A_Bucket')).rejects.toMatchObject({
        name: 'InvalidBucketName',
        message: expect.stringContaining('Bucket names can contain lowercase letters'),
      });
    } finally {
      await s3.close();
    }
  });

  it('stops when the process that started it is killed, so it never outlives a command', async () => {
    // A parent that starts the server, says the server's pid, and then hangs until killed.
    const loader = pathToFileURL(join(process.cwd(), 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
    const module = pathToFileURL(join(process.cwd(), 'scripts', 'local', 'embedded-s3.ts')).href;
    const parent = spawn(
      process.execPath,
      [
        '--import',
        loader,
        '--input-type=module',
        '-e',
        `const { startEmbeddedS3 } = await import(${JSON.stringify(module)});
         const s3 = await startEmbeddedS3({ directory: ${JSON.stringify(dir)} });
         process.stdout.write(JSON.stringify({ pid: s3.pid }) + '\\n');
         setInterval(() => {}, 60_000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const parentExited = new Promise((resolve) => parent.once('exit', resolve));
    const [line] = (await once(createInterface({ input: parent.stdout! }), 'line')) as [string];
    const serverPid = (JSON.parse(line) as { pid: number }).pid;
    expect(isAlive(serverPid)).toBe(true);

    parent.kill('SIGKILL');
    await parentExited;

    await untilGone(serverPid);
    expect(isAlive(serverPid)).toBe(false);
  });
});
