import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  ListObjectVersionsCommand,
  type S3Client,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import {
  abortMultipartUpload,
  encryptionParams,
  S3_MAX_PARTS,
  S3_MIN_PART_BYTES,
} from '../adapters/s3-multipart.js';
import { describeS3Error } from '../adapters/s3-store.js';
import { mapInOrder } from '../core/concurrency.js';
import { ConfigurationError, StorageError, VerificationError } from '../errors.js';
import type { Logger } from '../logger.js';

/**
 * Publishing an export: its data files land under `_staging/` inside the
 * export folder, which every reader of the layout skips (a leading `_`), and
 * are copied to their final keys only once the export has succeeded. A
 * failed or cancelled export thus never shows a reader a partial partition,
 * and a resumable one keeps its files (staged) for the resume.
 *
 * On S3 a copy is server-side: no data passes through the Lambda. Every step
 * is idempotent, so a retried or redriven Finalize publishes again harmlessly.
 */

/** S3's largest CopyObject; a larger object is copied part by part (UploadPartCopy). */
export const S3_MAX_COPY_OBJECT_BYTES = 5 * 1024 ** 3;
/** Parts of a multipart copy: 20 parts for a 10 GiB file, and each part is one request of a few seconds. */
export const DEFAULT_COPY_PART_BYTES = 512 * 1024 ** 2;
/** Copy requests in flight at once, across objects and parts. */
export const DEFAULT_PUBLISH_CONCURRENCY = 8;
/** DeleteObjects takes at most this many keys per request. */
export const S3_MAX_DELETE_KEYS = 1000;

const STAGING_FOLDER = '_staging';
/** `…/export=<id>/type=<Type>/<file>` (or `organizedBy=Patient/<file>`): the only data files a reader of the layout sees. */
const PUBLISHED_KEY = /^((?:.*\/)?export=[^/]+\/)((?:type|organizedBy)=[^/]+\/[^/]+)$/;
const STAGED_KEY = /^((?:.*\/)?export=[^/]+\/)_staging\/((?:type|organizedBy)=[^/]+\/[^/]+)$/;

/** `…/export=T/type=Patient/part-0001.ndjson` → `…/export=T/_staging/type=Patient/part-0001.ndjson` */
/** The staging folder of an export folder (`exportRoot`, ending in `/`). */
export const stagingPrefix = (exportRoot: string) => `${exportRoot}_staging/`;

export function stagingKey(publishedKey: string): string {
  const match = PUBLISHED_KEY.exec(publishedKey);
  if (!match) {
    throw new RangeError(
      `${publishedKey} is not the key of an output file (…/export=<id>/type=<Type>/<file>); only those are staged`,
    );
  }
  return `${match[1]}${STAGING_FOLDER}/${match[2]}`;
}

/**
 * Where a file lands first: a data file under the export folder's `_staging/`
 * (unseen by readers of the layout) until Finalize publishes the verified
 * export; error and deleted files, hidden anyway, at their final keys.
 */
export const landingKey = (file: { readonly kind: string; readonly key: string }) =>
  file.kind === 'output' ? stagingKey(file.key) : file.key;

/** The inverse of {@link stagingKey}. */
export function publishedKey(stagedKey: string): string {
  const match = STAGED_KEY.exec(stagedKey);
  if (!match) {
    throw new RangeError(`${stagedKey} is not a staging key (…/export=<id>/_staging/type=<Type>/<file>)`);
  }
  return `${match[1]}${match[2]}`;
}

export interface ObjectToPublish {
  /** The staging key. */
  readonly from: string;
  /** The published key. */
  readonly to: string;
  /** What the download wrote; a staging object of another size is not published. */
  readonly bytes: number;
  /** What the download hashed, when known; the staging object must record the same. */
  readonly sha256?: string;
}

export interface PublishRequest {
  readonly bucket: string;
  readonly objects: readonly ObjectToPublish[];
  /** SSE-KMS key of the published objects (a copy is encrypted anew; S3 would use the bucket default). */
  readonly sseKmsKeyId?: string;
  /** Copy requests (CopyObject or UploadPartCopy) in flight at once. @default DEFAULT_PUBLISH_CONCURRENCY */
  readonly concurrency?: number;
  /** Objects larger than this are copied part by part. @default S3_MAX_COPY_OBJECT_BYTES */
  readonly multipartCopyThresholdBytes?: number;
  /** Part size of a multipart copy; grows when the object would need more than 10,000 parts. @default DEFAULT_COPY_PART_BYTES */
  readonly copyPartBytes?: number;
}

export interface PublishedObject {
  readonly from: string;
  readonly to: string;
  /** The published object's size (the staging object's, which equals the expected bytes). */
  readonly bytes: number;
  /** The staging object's sha256, which the published object's metadata now carries. */
  readonly sha256: string;
  /** The staging object's version (on a versioned bucket): removing it by version frees its storage at once. */
  readonly fromVersionId?: string;
  readonly copiedBy: 'CopyObject' | 'UploadPartCopy' | 'already-published';
}

/** A key to remove, or one version of it (deleting a version is permanent; deleting a key leaves a noncurrent version). */
export type ObjectToRemove = string | { readonly key: string; readonly versionId?: string };

export interface PublishContext {
  readonly logger?: Logger;
}

const PUBLISH_OPTIONS = new Set([
  'bucket',
  'objects',
  'sseKmsKeyId',
  'concurrency',
  'multipartCopyThresholdBytes',
  'copyPartBytes',
]);

/**
 * What the download recorded about a file: in the metadata of an object
 * written in one PUT, in tags of a multipart one (its metadata is fixed
 * before the hash exists). The published object carries them as metadata, so
 * that one HEAD verifies it.
 */
const RECORDED_FACTS = ['sha256', 'lines'] as const;

/**
 * Copies each staging object to its published key, keeping its content
 * headers, user metadata and tags, and returns what was published. An object
 * already published (same size and sha256) is not copied again, so a retry
 * after a partial publish, or after the staging objects were removed, only
 * does what is left. Nothing is deleted here: see {@link removeObjects}.
 */
export async function publishObjects(
  s3: S3Client,
  request: PublishRequest,
  { logger }: PublishContext = {},
): Promise<PublishedObject[]> {
  const settings = publishSettings(request);
  const slot = slots(settings.concurrency);
  const published = await mapInOrder(request.objects, settings.concurrency, (object) =>
    publishObject(s3, request.bucket, object, settings, slot, logger),
  );
  const count = (by: PublishedObject['copiedBy']) => published.filter((p) => p.copiedBy === by).length;
  logger?.info('published the staged files', {
    objects: published.length,
    bytes: published.reduce((sum, p) => sum + p.bytes, 0),
    copyObject: count('CopyObject'),
    uploadPartCopy: count('UploadPartCopy'),
    alreadyPublished: count('already-published'),
  });
  return published;
}

export interface VerifyRequest {
  readonly bucket: string;
  readonly objects: readonly Pick<PublishedObject, 'to' | 'bytes' | 'sha256'>[];
  /** HEAD requests in flight at once. @default 16 */
  readonly concurrency?: number;
}

/**
 * HEADs every published object: it must exist, hold the expected bytes and
 * carry the expected sha256 in its metadata. Throws one VerificationError
 * that names each object that does not (the first ten, and how many more).
 */
export async function verifyPublished(s3: S3Client, request: VerifyRequest): Promise<void> {
  const { bucket, objects } = request;
  const concurrency = positiveInteger('concurrency', request.concurrency ?? 16);
  const problems = (
    await mapInOrder(objects, concurrency, async (object) => {
      const head = await headObject(s3, bucket, object.to);
      const expected = `expected ${object.bytes} bytes with sha256 ${object.sha256}`;
      const where = `s3://${bucket}/${object.to}`;
      if (!head) return `${where} is missing (${expected})`;
      const size = head.ContentLength ?? 0;
      const sha256 = head.Metadata?.sha256;
      if (size !== object.bytes) return `${where} holds ${size} bytes (${expected})`;
      if (sha256 !== object.sha256) {
        return `${where} has ${sha256 === undefined ? 'no sha256 metadata' : `sha256 metadata ${sha256}`} (${expected})`;
      }
      return undefined;
    })
  ).filter((problem) => problem !== undefined);
  if (problems.length > 0) {
    throw new VerificationError(
      `${problems.length} of ${objects.length} published object(s) do not match their staging object: ${listed(problems)}`,
    );
  }
}

export interface RemoveOptions {
  /** DeleteObjects requests in flight at once. @default 4 */
  readonly concurrency?: number;
}

/**
 * Deletes objects with DeleteObjects, 1000 keys a request. Every batch is
 * tried; then, if any key could not be deleted (S3 reports them one by one
 * in an answer of 200, or the request failed), one StorageError names them.
 * A key that does not exist counts as deleted, as S3 says. Returns how many
 * keys were deleted.
 */
export async function removeObjects(
  s3: S3Client,
  bucket: string,
  objects: readonly ObjectToRemove[],
  options: RemoveOptions = {},
): Promise<number> {
  const concurrency = positiveInteger('concurrency', options.concurrency ?? 4);
  const unique = new Map<string, { Key: string; VersionId?: string }>();
  for (const object of objects) {
    const { key, versionId } = typeof object === 'string' ? { key: object, versionId: undefined } : object;
    unique.set(`${key}\u0000${versionId ?? ''}`, {
      Key: key,
      ...(versionId ? { VersionId: versionId } : {}),
    });
  }
  const all = [...unique.values()];
  const batches: (typeof all)[] = [];
  for (let start = 0; start < all.length; start += S3_MAX_DELETE_KEYS) {
    batches.push(all.slice(start, start + S3_MAX_DELETE_KEYS));
  }
  let firstCause: unknown;
  const failures = (
    await mapInOrder(batches, concurrency, async (batch) => {
      try {
        const response = await s3.send(
          new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: batch, Quiet: true } }),
        );
        return (response.Errors ?? []).map(
          (error) =>
            `${error.Key ?? '(no key)'} (${error.Code ?? 'Error'}: ${error.Message ?? 'no message'})`,
        );
      } catch (error) {
        firstCause ??= error;
        const reason = describeS3Error(error);
        return batch.map(({ Key }) => `${Key} (the request failed: ${reason})`);
      }
    })
  ).flat();
  if (failures.length > 0) {
    throw new StorageError(
      `S3 DeleteObjects in s3://${bucket} left ${failures.length} of ${all.length} object(s) undeleted: ${listed(failures)}`,
      { cause: firstCause },
    );
  }
  return all.length;
}

/**
 * Removes everything under a prefix for good: the current objects, then, on
 * a versioned bucket (the export bucket is), every version and delete marker
 * under it. Staged copies are data: removed by key only, their bytes would
 * stay as noncurrent versions until the lifecycle rule expires them, a
 * second copy of patients' data for weeks. A store without versioning (the
 * embedded S3 refuses ListObjectVersions) has nothing more to remove. Returns how many current objects and how many versions
 * were removed.
 */
export async function removePrefixForGood(
  s3: S3Client,
  bucket: string,
  prefix: string,
  /** The store's listing (JsonStore.listKeys, with its retries). */
  listKeys: (prefix: string) => Promise<string[]>,
): Promise<{ readonly objects: number; readonly versions: number }> {
  const keys = await listKeys(prefix);
  const objects = await removeObjects(s3, bucket, keys);

  const versions: { key: string; versionId: string }[] = [];
  let keyMarker: string | undefined;
  let versionIdMarker: string | undefined;
  try {
    do {
      const page = await s3.send(
        new ListObjectVersionsCommand({
          Bucket: bucket,
          Prefix: prefix,
          ...(keyMarker ? { KeyMarker: keyMarker } : {}),
          ...(versionIdMarker ? { VersionIdMarker: versionIdMarker } : {}),
        }),
      );
      for (const entry of [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])]) {
        // An unversioned object is listed with the version id "null": deleting it by key did that already.
        if (entry.Key && entry.VersionId && entry.VersionId !== 'null')
          versions.push({ key: entry.Key, versionId: entry.VersionId });
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      versionIdMarker = page.IsTruncated ? page.NextVersionIdMarker : undefined;
    } while (keyMarker);
  } catch (error) {
    // A store that keeps no versions (the embedded S3 answers MethodNotAllowed) has none to remove.
    const name = (error as { name?: string }).name;
    if (name === 'NotImplemented' || name === 'MethodNotAllowed') return { objects, versions: 0 };
    throw new StorageError(
      `cannot list the versions under s3://${bucket}/${prefix}: ${describeS3Error(error)}`,
      {
        cause: error,
      },
    );
  }
  return { objects, versions: versions.length === 0 ? 0 : await removeObjects(s3, bucket, versions) };
}

interface PublishSettings {
  readonly sseKmsKeyId: string | undefined;
  readonly concurrency: number;
  readonly multipartCopyThresholdBytes: number;
  readonly copyPartBytes: number;
}

function publishSettings(request: PublishRequest): PublishSettings {
  const unknown = Object.keys(request).filter((key) => !PUBLISH_OPTIONS.has(key));
  if (unknown.length > 0) {
    throw new ConfigurationError(
      `unknown publish option(s): ${unknown.join(', ')} (expected ${[...PUBLISH_OPTIONS].join(', ')})`,
    );
  }
  const threshold = request.multipartCopyThresholdBytes ?? S3_MAX_COPY_OBJECT_BYTES;
  if (!Number.isInteger(threshold) || threshold < 0 || threshold > S3_MAX_COPY_OBJECT_BYTES) {
    throw new ConfigurationError(
      `multipartCopyThresholdBytes must be an integer from 0 to ${S3_MAX_COPY_OBJECT_BYTES} (S3's CopyObject limit), got ${threshold}`,
    );
  }
  const partBytes = request.copyPartBytes ?? DEFAULT_COPY_PART_BYTES;
  if (!Number.isInteger(partBytes) || partBytes < S3_MIN_PART_BYTES || partBytes > S3_MAX_COPY_OBJECT_BYTES) {
    throw new ConfigurationError(
      `copyPartBytes must be an integer from ${S3_MIN_PART_BYTES} to ${S3_MAX_COPY_OBJECT_BYTES} (S3's part limits), got ${partBytes}`,
    );
  }
  return {
    sseKmsKeyId: request.sseKmsKeyId,
    concurrency: positiveInteger('concurrency', request.concurrency ?? DEFAULT_PUBLISH_CONCURRENCY),
    multipartCopyThresholdBytes: threshold,
    copyPartBytes: partBytes,
  };
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new ConfigurationError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/** Up to `limit` calls of `run` at once; the rest wait their turn. */
function slots(limit: number) {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async <T>(work: () => Promise<T>): Promise<T> => {
    while (active >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await work();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}
type Slot = ReturnType<typeof slots>;

/** The first ten, then how many more: a message must fit in an execution's history. */
function listed(items: readonly string[]): string {
  const shown = items.slice(0, 10).join('; ');
  return items.length > 10 ? `${shown}; and ${items.length - 10} more` : shown;
}

function isNotFound(error: unknown): boolean {
  const { name, $metadata } = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  if (name === 'NoSuchBucket') return false;
  return name === 'NoSuchKey' || name === 'NotFound' || $metadata?.httpStatusCode === 404;
}

function storageError(action: string, bucket: string, key: string, error: unknown): StorageError {
  if (error instanceof StorageError) return error;
  return new StorageError(`S3 ${action} of s3://${bucket}/${key} failed: ${describeS3Error(error)}`, {
    cause: error,
  });
}

async function headObject(s3: S3Client, bucket: string, key: string) {
  try {
    return await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw storageError('HeadObject', bucket, key, error);
  }
}

async function objectTags(s3: S3Client, bucket: string, key: string): Promise<Record<string, string>> {
  try {
    const response = await s3.send(new GetObjectTaggingCommand({ Bucket: bucket, Key: key }));
    return Object.fromEntries((response.TagSet ?? []).map(({ Key, Value }) => [Key ?? '', Value ?? '']));
  } catch (error) {
    throw storageError('GetObjectTagging', bucket, key, error);
  }
}

/** `bucket/key`, URL-encoded as S3 requires (the `=` of every partition would otherwise be ambiguous). */
const copySource = (bucket: string, key: string) =>
  `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;

/** The headers a copy with REPLACE (or a multipart copy) must state again, or S3 drops them. */
function contentHeaders(head: HeadObjectCommandOutput) {
  return {
    ...(head.ContentType ? { ContentType: head.ContentType } : {}),
    ...(head.ContentEncoding ? { ContentEncoding: head.ContentEncoding } : {}),
    ...(head.ContentDisposition ? { ContentDisposition: head.ContentDisposition } : {}),
    ...(head.ContentLanguage ? { ContentLanguage: head.ContentLanguage } : {}),
    ...(head.CacheControl ? { CacheControl: head.CacheControl } : {}),
  };
}

async function publishObject(
  s3: S3Client,
  bucket: string,
  object: ObjectToPublish,
  settings: PublishSettings,
  slot: Slot,
  logger: Logger | undefined,
): Promise<PublishedObject> {
  const { from, to } = object;
  const [staged, published] = await Promise.all([headObject(s3, bucket, from), headObject(s3, bucket, to)]);
  const publishedSha256 = published?.Metadata?.sha256;
  const alreadyPublished = (sha256: string | undefined) =>
    published !== undefined &&
    published.ContentLength === object.bytes &&
    publishedSha256 !== undefined &&
    publishedSha256 === sha256;

  if (!staged) {
    // A retry after the staging objects were removed: what was published stands, if it is whole.
    if (alreadyPublished(object.sha256 ?? publishedSha256)) {
      return { from, to, bytes: object.bytes, sha256: publishedSha256!, copiedBy: 'already-published' };
    }
    const found = published
      ? `holds ${published.ContentLength ?? 0} bytes with ${publishedSha256 ? `sha256 ${publishedSha256}` : 'no sha256 metadata'}`
      : 'does not exist either';
    throw new StorageError(
      `cannot publish s3://${bucket}/${from}: it does not exist, and s3://${bucket}/${to} ${found} (expected ${object.bytes} bytes${object.sha256 ? ` with sha256 ${object.sha256}` : ''})`,
    );
  }
  const size = staged.ContentLength ?? 0;
  if (size !== object.bytes) {
    throw new VerificationError(
      `s3://${bucket}/${from} holds ${size} bytes, expected ${object.bytes}; not published`,
    );
  }
  const metadata = { ...staged.Metadata };
  const multipart = size > settings.multipartCopyThresholdBytes;
  const tags = multipart || metadata.sha256 === undefined ? await objectTags(s3, bucket, from) : undefined;
  const promoted: Record<string, string> = {};
  for (const fact of RECORDED_FACTS) {
    const value = tags?.[fact];
    if (metadata[fact] === undefined && value !== undefined) promoted[fact] = value;
  }
  const sha256 = metadata.sha256 ?? promoted.sha256;
  if (sha256 === undefined) {
    throw new VerificationError(
      `s3://${bucket}/${from} records no sha256 (neither in its metadata nor in its tags); not published`,
    );
  }
  if (object.sha256 !== undefined && sha256 !== object.sha256) {
    throw new VerificationError(
      `s3://${bucket}/${from} records sha256 ${sha256}, expected ${object.sha256}; not published`,
    );
  }
  const done = {
    from,
    to,
    bytes: size,
    sha256,
    ...(staged.VersionId ? { fromVersionId: staged.VersionId } : {}),
  };
  if (alreadyPublished(sha256)) return { ...done, copiedBy: 'already-published' };

  const source = {
    bucket,
    key: from,
    copySource: copySource(bucket, from),
    // Pins the copy to the version just read: a part copied from another would go unnoticed.
    etag: staged.ETag,
  };
  const target = { bucket, key: to, sseKmsKeyId: settings.sseKmsKeyId };
  const finalMetadata = { ...metadata, ...promoted };
  if (multipart) {
    await copyInParts(s3, source, target, size, {
      headers: contentHeaders(staged),
      metadata: finalMetadata,
      tags: tags ?? {},
      partBytes: settings.copyPartBytes,
      concurrency: settings.concurrency,
      slot,
    });
  } else {
    const replace = Object.keys(promoted).length > 0;
    await slot(async () => {
      try {
        await s3.send(
          new CopyObjectCommand({
            Bucket: bucket,
            Key: to,
            CopySource: source.copySource,
            ...(source.etag ? { CopySourceIfMatch: source.etag } : {}),
            // COPY keeps content headers and metadata; REPLACE only when there are facts to add.
            MetadataDirective: replace ? 'REPLACE' : 'COPY',
            ...(replace ? { ...contentHeaders(staged), Metadata: finalMetadata } : {}),
            TaggingDirective: 'COPY',
            ...encryptionParams(target),
          }),
        );
      } catch (error) {
        throw storageError(`CopyObject from s3://${bucket}/${from}`, bucket, to, error);
      }
    });
  }
  logger?.debug('published a staged file', { from, to, bytes: size, multipart });
  return { ...done, copiedBy: multipart ? 'UploadPartCopy' : 'CopyObject' };
}

interface CopySource {
  readonly bucket: string;
  readonly key: string;
  readonly copySource: string;
  readonly etag: string | undefined;
}

/** A copy of more than CopyObject takes: parts of `partBytes` (at most 10,000), aborted on any failure. */
async function copyInParts(
  s3: S3Client,
  source: CopySource,
  target: { readonly bucket: string; readonly key: string; readonly sseKmsKeyId: string | undefined },
  size: number,
  options: {
    readonly headers: ReturnType<typeof contentHeaders>;
    readonly metadata: Record<string, string>;
    readonly tags: Record<string, string>;
    readonly partBytes: number;
    readonly concurrency: number;
    readonly slot: Slot;
  },
): Promise<void> {
  const { bucket, key } = target;
  const partBytes = Math.max(options.partBytes, Math.ceil(size / S3_MAX_PARTS));
  const ranges: { start: number; end: number }[] = [];
  for (let start = 0; start < size; start += partBytes) {
    ranges.push({ start, end: Math.min(size, start + partBytes) - 1 });
  }
  let uploadId: string | undefined;
  try {
    const created = await s3.send(
      new CreateMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        ...options.headers,
        Metadata: options.metadata,
        // A multipart copy starts with none of the source's tags.
        ...(Object.keys(options.tags).length > 0
          ? { Tagging: new URLSearchParams(options.tags).toString() }
          : {}),
        ...encryptionParams(target),
      }),
    );
    uploadId = created.UploadId;
  } catch (error) {
    throw storageError('CreateMultipartUpload', bucket, key, error);
  }
  if (!uploadId)
    throw new StorageError(`S3 CreateMultipartUpload of s3://${bucket}/${key} returned no UploadId`);
  const UploadId = uploadId;
  try {
    const parts = await mapInOrder(ranges, options.concurrency, ({ start, end }, index) =>
      options.slot(async () => {
        const PartNumber = index + 1;
        try {
          const response = await s3.send(
            new UploadPartCopyCommand({
              Bucket: bucket,
              Key: key,
              UploadId,
              PartNumber,
              CopySource: source.copySource,
              CopySourceRange: `bytes=${start}-${end}`,
              ...(source.etag ? { CopySourceIfMatch: source.etag } : {}),
            }),
          );
          const ETag = response.CopyPartResult?.ETag;
          if (!ETag) throw new Error('UploadPartCopy returned no ETag');
          return { PartNumber, ETag };
        } catch (error) {
          throw storageError(
            `UploadPartCopy ${PartNumber} (bytes ${start}-${end} of s3://${source.bucket}/${source.key})`,
            bucket,
            key,
            error,
          );
        }
      }),
    );
    try {
      await s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: parts },
        }),
      );
    } catch (error) {
      throw storageError('CompleteMultipartUpload', bucket, key, error);
    }
  } catch (error) {
    try {
      await abortMultipartUpload(s3, target, UploadId);
    } catch (abortError) {
      // The copy's failure is what the caller must see; the upload left open is said beside it.
      throw new StorageError(
        `${(error as Error).message}; aborting the upload ${UploadId} failed too: ${(abortError as Error).message}`,
        { cause: error },
      );
    }
    throw error;
  }
}
