import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { StorageError } from '../errors.js';

/**
 * Small JSON documents the workflow keeps in S3: manifests, file lists,
 * per-file results, receipts, markers, the watermark. Every failure is a
 * StorageError; a missing object is `undefined`, never an exception.
 */
export interface JsonStore {
  readonly bucket: string;
  getJson<T>(key: string): Promise<T | undefined>;
  putJson(key: string, value: unknown, options?: { ifNoneMatch?: boolean }): Promise<void>;
  head(key: string): Promise<{ size: number; metadata: Record<string, string> } | undefined>;
  delete(key: string): Promise<void>;
  /** Aborts every open multipart upload under a prefix; returns how many it aborted. */
  abortUploads(prefix: string): Promise<number>;
}

export interface S3StoreOptions {
  readonly s3: S3Client;
  readonly bucket: string;
  /** SSE-KMS key for everything written (on AWS). */
  readonly kmsKeyId?: string;
}

const isNotFound = (error: unknown) => {
  const { name, $metadata } = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return name === 'NoSuchKey' || name === 'NotFound' || $metadata?.httpStatusCode === 404;
};

export function createS3Store({ s3, bucket, kmsKeyId }: S3StoreOptions): JsonStore {
  const encryption = kmsKeyId
    ? { ServerSideEncryption: 'aws:kms' as const, SSEKMSKeyId: kmsKeyId, BucketKeyEnabled: true }
    : {};
  // The code alone says nothing when the SDK throws a plain Error (no region, connection refused).
  const wrap = (action: string, key: string, error: unknown) => {
    const { name = 'Error', message } = error as Partial<Error>;
    return new StorageError(
      `S3 ${action} of s3://${bucket}/${key} failed: ${name}${message && message !== name ? `: ${message}` : ''}`,
      { cause: error },
    );
  };
  return {
    bucket,
    async getJson<T>(key: string) {
      let text: string;
      try {
        const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        text = (await response.Body?.transformToString('utf8')) ?? '';
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw wrap('GetObject', key, error);
      }
      try {
        return JSON.parse(text) as T;
      } catch (error) {
        throw new StorageError(`s3://${bucket}/${key} is not valid JSON`, { cause: error });
      }
    },
    async putJson(key, value, options = {}) {
      try {
        await s3.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key,
            Body: `${JSON.stringify(value, null, 2)}\n`,
            ContentType: 'application/json',
            ...(options.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
            ...encryption,
          }),
        );
      } catch (error) {
        throw wrap('PutObject', key, error);
      }
    },
    async head(key) {
      try {
        const response = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return { size: response.ContentLength ?? 0, metadata: response.Metadata ?? {} };
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw wrap('HeadObject', key, error);
      }
    },
    async delete(key) {
      try {
        await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      } catch (error) {
        throw wrap('DeleteObject', key, error);
      }
    },
    async abortUploads(prefix) {
      let aborted = 0;
      let keyMarker: string | undefined;
      let uploadIdMarker: string | undefined;
      try {
        do {
          const page = await s3.send(
            new ListMultipartUploadsCommand({
              Bucket: bucket,
              Prefix: prefix,
              ...(keyMarker ? { KeyMarker: keyMarker } : {}),
              ...(uploadIdMarker ? { UploadIdMarker: uploadIdMarker } : {}),
            }),
          );
          for (const upload of page.Uploads ?? []) {
            if (!upload.Key || !upload.UploadId) continue;
            await s3.send(
              new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId }),
            );
            aborted += 1;
          }
          keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
          uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
        } while (keyMarker);
      } catch (error) {
        throw wrap('ListMultipartUploads/AbortMultipartUpload', prefix, error);
      }
      return aborted;
    },
  };
}
