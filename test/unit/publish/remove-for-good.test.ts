import { ListObjectVersionsCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removePrefixForGood } from '../../../lambdas/services/publish-export.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../../scripts/local/embedded-s3.js';
import { listAllKeys } from '../../workflow/support/s3-keys.js';

const BUCKET = 'staging-removal';

/**
 * Staged copies removed for good: the objects, and on a versioned bucket
 * every version and delete marker, so no noncurrent copy of the data stays
 * behind for the lifecycle rule. The embedded S3 keeps no versions (it
 * answers ListObjectVersions with MethodNotAllowed); what a versioned bucket
 * lists is played by a middleware that answers ListObjectVersions as S3 does
 * for one, while the DeleteObjects go to the embedded S3 for real.
 */
describe('removePrefixForGood', () => {
  let s3: EmbeddedS3;
  let client: S3Client;
  let versionsListed: ((prefix: string) => Record<string, unknown>) | undefined;
  const deletes: { Key: string; VersionId?: string }[][] = [];

  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    client = new S3Client(s3.clientConfig);
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as {
          Prefix?: string;
          Delete?: { Objects: { Key: string; VersionId?: string }[] };
        };
        if (context.commandName === 'ListObjectVersionsCommand' && versionsListed) {
          return { output: { $metadata: {}, ...versionsListed(input.Prefix ?? '') }, response: {} } as never;
        }
        if (context.commandName === 'DeleteObjectsCommand') deletes.push(input.Delete!.Objects);
        return next(args);
      },
      { step: 'initialize', name: 'versionedBucket' },
    );
  }, 30_000);
  afterAll(async () => {
    client?.destroy();
    await s3?.close();
  });

  const listed = (prefix: string) => listAllKeys(client, BUCKET, prefix);
  const stage = async (keys: string[]) => {
    for (const Key of keys)
      await client.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body: `{"k":"${Key}"}\n` }));
  };

  it('without versioning (the embedded S3): removes every object under the prefix and nothing else', async () => {
    versionsListed = undefined;
    await expect(client.send(new ListObjectVersionsCommand({ Bucket: BUCKET }))).rejects.toMatchObject({
      name: 'MethodNotAllowed',
    });
    await stage([
      'a/_staging/type=Patient/part-0001.ndjson',
      'a/_staging/type=Patient/part-0002.ndjson',
      'a/type=Patient/part-0001.ndjson',
    ]);

    expect(await removePrefixForGood(client, BUCKET, 'a/_staging/', listed)).toEqual({
      objects: 2,
      versions: 0,
    });
    expect(await listAllKeys(client, BUCKET, 'a/')).toEqual(['a/type=Patient/part-0001.ndjson']);
  });

  it('on a versioned bucket: then deletes every version and delete marker by its id, across pages', async () => {
    deletes.length = 0;
    await stage(['b/_staging/type=Observation/part-0001.ndjson']);
    const pages = [
      {
        IsTruncated: true,
        NextKeyMarker: 'b/_staging/type=Observation/part-0001.ndjson',
        NextVersionIdMarker: 'v1',
        Versions: [{ Key: 'b/_staging/type=Observation/part-0001.ndjson', VersionId: 'v1', IsLatest: false }],
        DeleteMarkers: [
          { Key: 'b/_staging/type=Observation/part-0001.ndjson', VersionId: 'dm1', IsLatest: true },
        ],
      },
      {
        IsTruncated: false,
        // An object written before versioning was enabled: deleting it by key was enough.
        Versions: [{ Key: 'b/_staging/type=Observation/part-0000.ndjson', VersionId: 'null' }],
      },
    ];
    const prefixes: string[] = [];
    versionsListed = (prefix) => {
      prefixes.push(prefix);
      return pages[prefixes.length - 1]!;
    };

    expect(await removePrefixForGood(client, BUCKET, 'b/_staging/', listed)).toEqual({
      objects: 1,
      versions: 2,
    });
    expect(prefixes).toEqual(['b/_staging/', 'b/_staging/']);
    expect(deletes).toEqual([
      [{ Key: 'b/_staging/type=Observation/part-0001.ndjson' }],
      [
        { Key: 'b/_staging/type=Observation/part-0001.ndjson', VersionId: 'v1' },
        { Key: 'b/_staging/type=Observation/part-0001.ndjson', VersionId: 'dm1' },
      ],
    ]);
    expect(await listAllKeys(client, BUCKET, 'b/')).toEqual([]);
  });

  it('a version listing refused for another reason is an error naming the prefix, not a silent leftover', async () => {
    versionsListed = () => {
      throw Object.assign(new Error('Access Denied'), {
        name: 'AccessDenied',
        $metadata: { httpStatusCode: 403 },
      });
    };
    await expect(removePrefixForGood(client, BUCKET, 'c/_staging/', listed)).rejects.toThrow(
      /cannot list the versions under s3:\/\/staging-removal\/c\/_staging\/: AccessDenied/,
    );
  });
});
