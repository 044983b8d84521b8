import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { StorageError } from '../errors.js';
import { describeS3Error } from './s3-store.js';

/**
 * Writes one S3 object as a multipart upload that can stop in one Lambda
 * invocation and continue in the next.
 *
 * Why not @aws-sdk/lib-storage's `Upload`: it cannot adopt an existing
 * UploadId, so it cannot resume; and it decides part boundaries itself,
 * while a checkpoint needs to end a part where we say (at a line boundary).
 * This writer is the three S3 calls plus a small queue: up to `concurrency`
 * parts in flight, and `uploadPart()` waits for a free slot, which is the
 * backpressure that slows the download down when S3 is the slower end.
 *
 * Every S3 failure becomes a StorageError with the SDK error as `cause`; a
 * failed part fails the next call on the writer. Nothing is swallowed.
 */

export const NDJSON_CONTENT_TYPE = 'application/fhir+ndjson';
/** S3's minimum size for every part but the last. */
export const S3_MIN_PART_BYTES = 5 * 1024 * 1024;
export const S3_MAX_PARTS = 10_000;

export interface S3ObjectTarget {
  readonly bucket: string;
  readonly key: string;
  /** SSE-KMS with this key (and an S3 Bucket Key, to keep KMS calls and cost down). */
  readonly sseKmsKeyId?: string;
}

export interface CompletedPart {
  readonly PartNumber: number;
  readonly ETag: string;
}

/** What a later invocation needs to carry on with the same upload. */
export interface MultipartProgress {
  readonly uploadId: string;
  readonly nextPartNumber: number;
  /** Parts 1 … nextPartNumber-1, in order. */
  readonly parts: readonly CompletedPart[];
}

export interface S3MultipartWriterOptions {
  /** Parts in flight at once. @default 3 */
  readonly concurrency?: number;
  /** Content-Type of the object (fixed at creation). @default NDJSON_CONTENT_TYPE */
  readonly contentType?: string;
}

export function encryptionParams(target: S3ObjectTarget) {
  return target.sseKmsKeyId
    ? { ServerSideEncryption: 'aws:kms' as const, SSEKMSKeyId: target.sseKmsKeyId, BucketKeyEnabled: true }
    : {};
}

function storageError(action: string, bucket: string, key: string, error: unknown): StorageError {
  if (error instanceof StorageError) return error;
  return new StorageError(`S3 ${action} of s3://${bucket}/${key} failed: ${describeS3Error(error)}`, {
    cause: error,
  });
}

export class S3MultipartWriter {
  readonly #s3: S3Client;
  readonly #target: S3ObjectTarget;
  readonly #uploadId: string;
  readonly #concurrency: number;
  #nextPartNumber: number;
  readonly #parts: CompletedPart[];
  readonly #inFlight = new Set<Promise<void>>();
  #failure: StorageError | undefined;
  #closed = false;

  private constructor(
    s3: S3Client,
    target: S3ObjectTarget,
    progress: MultipartProgress,
    options: S3MultipartWriterOptions,
  ) {
    const concurrency = options.concurrency ?? 3;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new TypeError(`concurrency must be a positive integer, got ${concurrency}`);
    }
    this.#s3 = s3;
    this.#target = target;
    this.#uploadId = progress.uploadId;
    this.#concurrency = concurrency;
    this.#nextPartNumber = progress.nextPartNumber;
    this.#parts = [...progress.parts];
  }

  /** Starts a new multipart upload. `metadata` must be known now: S3 fixes it at creation. */
  static async create(
    s3: S3Client,
    target: S3ObjectTarget,
    metadata: Record<string, string>,
    options: S3MultipartWriterOptions = {},
  ): Promise<S3MultipartWriter> {
    let uploadId: string | undefined;
    try {
      const created = await s3.send(
        new CreateMultipartUploadCommand({
          Bucket: target.bucket,
          Key: target.key,
          ContentType: options.contentType ?? NDJSON_CONTENT_TYPE,
          Metadata: metadata,
          ...encryptionParams(target),
        }),
      );
      uploadId = created.UploadId;
    } catch (error) {
      throw storageError('CreateMultipartUpload', target.bucket, target.key, error);
    }
    if (!uploadId) {
      throw new StorageError(
        `S3 CreateMultipartUpload of s3://${target.bucket}/${target.key} returned no UploadId`,
      );
    }
    return new S3MultipartWriter(s3, target, { uploadId, nextPartNumber: 1, parts: [] }, options);
  }

  /** Adopts an upload started by an earlier invocation. */
  static resume(
    s3: S3Client,
    target: S3ObjectTarget,
    progress: MultipartProgress,
    options: S3MultipartWriterOptions = {},
  ): S3MultipartWriter {
    const { parts, nextPartNumber } = progress;
    if (parts.length !== nextPartNumber - 1 || parts.some((part, i) => part.PartNumber !== i + 1)) {
      throw new StorageError(
        `Cannot resume upload to s3://${target.bucket}/${target.key}: the part list is not parts 1…${nextPartNumber - 1}`,
      );
    }
    return new S3MultipartWriter(s3, target, progress, options);
  }

  get uploadId(): string {
    return this.#uploadId;
  }

  get nextPartNumber(): number {
    return this.#nextPartNumber;
  }

  /**
   * Queues the next part. Resolves as soon as the part is on its way (after
   * waiting for a free slot), not when S3 has it; {@link flush} waits for that.
   * `release` is called once the request has settled either way: from then
   * on the SDK no longer reads `body`, and the caller may reuse its memory.
   */
  async uploadPart(body: Uint8Array, release?: () => void): Promise<void> {
    this.#throwIfUnusable();
    while (this.#inFlight.size >= this.#concurrency) {
      await Promise.race(this.#inFlight);
      this.#throwIfUnusable();
    }
    const partNumber = this.#nextPartNumber;
    if (partNumber > S3_MAX_PARTS) {
      throw new StorageError(
        `s3://${this.#target.bucket}/${this.#target.key} would need more than ${S3_MAX_PARTS} parts`,
      );
    }
    this.#nextPartNumber++;
    const task = this.#send(partNumber, body).finally(() => {
      this.#inFlight.delete(task);
      release?.();
    });
    this.#inFlight.add(task);
  }

  async #send(partNumber: number, body: Uint8Array): Promise<void> {
    try {
      const response = await this.#s3.send(
        new UploadPartCommand({
          Bucket: this.#target.bucket,
          Key: this.#target.key,
          UploadId: this.#uploadId,
          PartNumber: partNumber,
          Body: body,
          ContentLength: body.length,
        }),
      );
      if (!response.ETag) throw new Error('UploadPart returned no ETag');
      this.#parts.push({ PartNumber: partNumber, ETag: response.ETag });
    } catch (error) {
      this.#failure ??= storageError(
        `UploadPart ${partNumber}`,
        this.#target.bucket,
        this.#target.key,
        error,
      );
    }
  }

  /** Waits for every part in flight; throws the first failure. Returns what a checkpoint needs. */
  async flush(): Promise<MultipartProgress> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
    this.#throwIfUnusable();
    const parts = [...this.#parts].sort((a, b) => a.PartNumber - b.PartNumber);
    return { uploadId: this.#uploadId, nextPartNumber: this.#nextPartNumber, parts };
  }

  /** Completes the upload from the parts uploaded so far. */
  async complete(): Promise<void> {
    const { parts } = await this.flush();
    if (parts.length === 0) {
      throw new StorageError(`Cannot complete s3://${this.#target.bucket}/${this.#target.key}: no parts`);
    }
    try {
      await this.#s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.#target.bucket,
          Key: this.#target.key,
          UploadId: this.#uploadId,
          MultipartUpload: { Parts: parts.map(({ PartNumber, ETag }) => ({ PartNumber, ETag })) },
        }),
      );
    } catch (error) {
      throw storageError('CompleteMultipartUpload', this.#target.bucket, this.#target.key, error);
    } finally {
      this.#closed = true;
    }
  }

  /**
   * Aborts the upload, after letting parts in flight settle (a part that
   * lands after the abort would otherwise keep the upload, and its storage
   * cost, alive). Throws StorageError if S3 refuses; the caller decides
   * whether that outranks the error that made it abort.
   */
  async abort(): Promise<void> {
    this.#closed = true;
    await abortMultipartUpload(this.#s3, this.#target, this.#uploadId, [...this.#inFlight]);
  }

  #throwIfUnusable(): void {
    if (this.#failure) throw this.#failure;
    if (this.#closed)
      throw new StorageError(`Upload to s3://${this.#target.bucket}/${this.#target.key} is closed`);
  }
}

/** Aborts an upload by id, e.g. one a checkpoint refers to but that this invocation has no writer for. */
export async function abortMultipartUpload(
  s3: S3Client,
  target: S3ObjectTarget,
  uploadId: string,
  settleFirst: readonly Promise<unknown>[] = [],
): Promise<void> {
  await Promise.allSettled(settleFirst);
  try {
    await s3.send(
      new AbortMultipartUploadCommand({ Bucket: target.bucket, Key: target.key, UploadId: uploadId }),
    );
  } catch (error) {
    // Already gone is what we wanted.
    if ((error as { name?: string }).name === 'NoSuchUpload') return;
    throw storageError('AbortMultipartUpload', target.bucket, target.key, error);
  }
}

/** A whole object in one PutObject (files smaller than one part, and scratch objects). */
export async function putObjectBytes(
  s3: S3Client,
  target: S3ObjectTarget,
  body: Uint8Array,
  options: {
    readonly contentType?: string;
    readonly metadata?: Record<string, string>;
    readonly tags?: Record<string, string>;
  } = {},
): Promise<void> {
  try {
    await s3.send(
      new PutObjectCommand({
        Bucket: target.bucket,
        Key: target.key,
        Body: body,
        ContentLength: body.length,
        ContentType: options.contentType ?? NDJSON_CONTENT_TYPE,
        ...(options.metadata ? { Metadata: options.metadata } : {}),
        ...(options.tags ? { Tagging: new URLSearchParams(options.tags).toString() } : {}),
        ...encryptionParams(target),
      }),
    );
  } catch (error) {
    throw storageError('PutObject', target.bucket, target.key, error);
  }
}

/** Reads a whole (small) object; `undefined` when it does not exist. */
export async function getObjectBytes(
  s3: S3Client,
  bucket: string,
  key: string,
): Promise<Uint8Array | undefined> {
  try {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    if (!response.Body) return new Uint8Array(0);
    return await response.Body.transformToByteArray();
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw storageError('GetObject', bucket, key, error);
  }
}

/** Size of an object; `undefined` when it does not exist. */
export async function headObjectSize(s3: S3Client, bucket: string, key: string): Promise<number | undefined> {
  try {
    const response = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return response.ContentLength;
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw storageError('HeadObject', bucket, key, error);
  }
}

export async function deleteObject(s3: S3Client, bucket: string, key: string): Promise<void> {
  try {
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  } catch (error) {
    if (isNotFound(error)) return;
    throw storageError('DeleteObject', bucket, key, error);
  }
}

export async function tagObject(s3: S3Client, bucket: string, key: string, tags: Record<string, string>) {
  try {
    await s3.send(
      new PutObjectTaggingCommand({
        Bucket: bucket,
        Key: key,
        Tagging: { TagSet: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) },
      }),
    );
  } catch (error) {
    throw storageError('PutObjectTagging', bucket, key, error);
  }
}

function isNotFound(error: unknown): boolean {
  const { name, $metadata } = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return name === 'NoSuchKey' || name === 'NotFound' || $metadata?.httpStatusCode === 404;
}
