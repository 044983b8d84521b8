import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { ConfigurationError, StorageError } from '../errors.js';

/**
 * Small JSON documents the workflow keeps in S3: manifests, file lists,
 * per-file results, receipts, markers, the watermark. Every failure is a
 * StorageError; a missing object is `undefined`, never an exception.
 *
 * S3 is sometimes briefly unavailable (503 SlowDown while a prefix scales,
 * 500s, connections reset): the SDK's own three quick attempts span well
 * under a second, so each operation here is retried with backoff for several
 * seconds more before it fails. A Task that fails anyway is retried by the
 * state machine, but a failed Finalize costs its whole verification pass.
 */
export interface JsonStore {
  readonly bucket: string;
  getJson<T>(key: string): Promise<T | undefined>;
  putJson(key: string, value: unknown, options?: { ifNoneMatch?: boolean }): Promise<void>;
  head(key: string): Promise<{ size: number; metadata: Record<string, string> } | undefined>;
  delete(key: string): Promise<void>;
  /** Aborts every open multipart upload under a prefix; returns how many it aborted. */
  abortUploads(prefix: string): Promise<number>;
  /** Every key under a prefix, in key order. */
  listKeys(prefix: string): Promise<string[]>;
}

/** How long an operation keeps trying through an S3 outage. */
export interface StorageRetryPolicy {
  /** Attempts per operation, the first included (each one is up to three SDK attempts). */
  readonly maxAttempts: number;
  /** The pause after the first failed attempt; each later pause doubles, up to `maxDelayMs`. */
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

/**
 * Pauses of 250 ms, 0.5, 1, 2, 4, 4 s, each between half and all of that:
 * an outage of about 6 s is always ridden out, and an operation gives up
 * within 12 s (the SDK's own attempts aside), far inside any Lambda timeout.
 */
export const DEFAULT_STORAGE_RETRY: StorageRetryPolicy = {
  maxAttempts: 7,
  baseDelayMs: 250,
  maxDelayMs: 4000,
};

export interface S3StoreOptions {
  readonly s3: S3Client;
  readonly bucket: string;
  /** SSE-KMS key for everything written (on AWS). */
  readonly kmsKeyId?: string;
  /** @default DEFAULT_STORAGE_RETRY */
  readonly retry?: Partial<StorageRetryPolicy>;
  /** @default a timer */
  readonly sleep?: (ms: number) => Promise<void>;
  /** Spreads the pauses, so that parallel operations do not retry in step. @default Math.random */
  readonly random?: () => number;
}

const KNOWN_OPTIONS = new Set(['s3', 'bucket', 'kmsKeyId', 'retry', 'sleep', 'random']);
const KNOWN_RETRY_OPTIONS = new Set(Object.keys(DEFAULT_STORAGE_RETRY));

/**
 * Whether a failed request may be sent again. `unapplied`: S3 surely did not
 * act on it (the connection was refused, or S3 answered 503 Slow Down), so
 * even a conditional write may be retried. `transient`: worth another attempt
 * if sending it twice is harmless; a conditional write whose first attempt may
 * have landed would then be refused by its own copy, so it is not retried.
 */
type Retryability = 'unapplied' | 'transient' | 'final';

const UNAPPLIED_NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);
const TRANSIENT_NETWORK_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);
const UNAPPLIED_NAMES = new Set(['SlowDown', 'ServiceUnavailable']);
const TRANSIENT_NAMES = new Set([
  'InternalError',
  'RequestTimeout',
  'TimeoutError',
  'RequestTimeoutException',
  'Throttling',
  'ThrottlingException',
  'RequestThrottled',
  'BandwidthLimitExceeded',
]);

interface SdkError {
  readonly name?: string;
  readonly code?: string;
  readonly message?: string;
  readonly cause?: unknown;
  readonly $metadata?: { readonly httpStatusCode?: number };
}

/** The system error code of a network failure (`ECONNREFUSED`), on the error or its cause. */
function networkCode(error: unknown): string | undefined {
  for (let current = error as SdkError | undefined, depth = 0; current && depth < 3; depth++) {
    if (typeof current.code === 'string' && /^(E[A-Z]+|UND_ERR_[A-Z_]+)$/.test(current.code))
      return current.code;
    current = current.cause as SdkError | undefined;
  }
  return undefined;
}

function retryability(error: unknown): Retryability {
  const { name = '', $metadata } = error as SdkError;
  const status = $metadata?.httpStatusCode;
  const code = networkCode(error);
  if ((code && UNAPPLIED_NETWORK_CODES.has(code)) || UNAPPLIED_NAMES.has(name) || status === 503) {
    return 'unapplied';
  }
  if (
    (code && TRANSIENT_NETWORK_CODES.has(code)) ||
    TRANSIENT_NAMES.has(name) ||
    status === 500 ||
    status === 502 ||
    status === 504
  ) {
    return 'transient';
  }
  return 'final';
}

/** `SlowDown (HTTP 503): Please reduce your request rate.`, `ECONNREFUSED: connect ECONNREFUSED …` */
export function describeS3Error(error: unknown): string {
  const { name, message, $metadata } = error as SdkError;
  const code = networkCode(error) ?? (name && name !== 'Error' ? name : undefined);
  const status = $metadata?.httpStatusCode;
  const what = `${code ?? 'Error'}${status === undefined ? '' : ` (HTTP ${status})`}`;
  // The SDK makes the message of an unknown error its name; saying it twice tells nothing.
  return message && message !== code && message !== name ? `${what}: ${message}` : what;
}

/** No such object. A missing bucket is a 404 too, but an error: it must not read as "no watermark yet". */
const isNotFound = (error: unknown) => {
  const { name, $metadata } = error as SdkError;
  if (name === 'NoSuchBucket') return false;
  return name === 'NoSuchKey' || name === 'NotFound' || $metadata?.httpStatusCode === 404;
};

function retryPolicy(options: S3StoreOptions): StorageRetryPolicy {
  const unknown = Object.keys(options).filter((key) => !KNOWN_OPTIONS.has(key));
  if (unknown.length > 0) throw new ConfigurationError(`unknown S3 store option(s): ${unknown.join(', ')}`);
  const given = options.retry ?? {};
  const unknownRetry = Object.keys(given).filter((key) => !KNOWN_RETRY_OPTIONS.has(key));
  if (unknownRetry.length > 0) {
    throw new ConfigurationError(
      `unknown S3 store retry option(s): ${unknownRetry.join(', ')} (expected ${[...KNOWN_RETRY_OPTIONS].join(', ')})`,
    );
  }
  const policy = { ...DEFAULT_STORAGE_RETRY, ...given };
  const check = (key: keyof StorageRetryPolicy, min: number) => {
    const value = policy[key];
    if (!Number.isInteger(value) || value < min) {
      throw new ConfigurationError(
        `S3 store retry.${key} must be an integer of at least ${min} (got ${String(value)})`,
      );
    }
  };
  check('maxAttempts', 1);
  check('baseDelayMs', 0);
  check('maxDelayMs', policy.baseDelayMs);
  return policy;
}

const timer = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function createS3Store(options: S3StoreOptions): JsonStore {
  const { s3, bucket, kmsKeyId } = options;
  const policy = retryPolicy(options);
  const sleep = options.sleep ?? timer;
  const random = options.random ?? Math.random;
  const encryption = kmsKeyId
    ? { ServerSideEncryption: 'aws:kms' as const, SSEKMSKeyId: kmsKeyId, BucketKeyEnabled: true }
    : {};

  /** Runs one S3 operation, retrying what is worth retrying; every failure becomes a StorageError. */
  const attempt = async <T>(
    action: string,
    key: string,
    operation: () => Promise<T>,
    { conditional = false } = {},
  ): Promise<T> => {
    for (let attempts = 1; ; attempts++) {
      try {
        return await operation();
      } catch (error) {
        const kind = retryability(error);
        const worthRetrying = kind === 'unapplied' || (kind === 'transient' && !conditional);
        if (!worthRetrying || attempts >= policy.maxAttempts) {
          const tries = attempts === 1 ? '' : ` after ${attempts} attempts`;
          throw new StorageError(
            `S3 ${action} of s3://${bucket}/${key} failed${tries}: ${describeS3Error(error)}`,
            { cause: error },
          );
        }
        const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempts - 1));
        // Half the pause is fixed, so a run of attempts always spans the outage it is meant to outlast.
        await sleep(Math.round(ceiling / 2 + (random() * ceiling) / 2));
      }
    }
  };

  return {
    bucket,
    async getJson<T>(key: string) {
      const text = await attempt('GetObject', key, async () => {
        try {
          const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
          return (await response.Body?.transformToString('utf8')) ?? '';
        } catch (error) {
          if (isNotFound(error)) return undefined;
          throw error;
        }
      });
      if (text === undefined) return undefined;
      try {
        return JSON.parse(text) as T;
      } catch (error) {
        throw new StorageError(`s3://${bucket}/${key} is not valid JSON`, { cause: error });
      }
    },
    async putJson(key, value, putOptions = {}) {
      const body = `${JSON.stringify(value, null, 2)}\n`;
      await attempt(
        'PutObject',
        key,
        () =>
          s3.send(
            new PutObjectCommand({
              Bucket: bucket,
              Key: key,
              Body: body,
              ContentType: 'application/json',
              ...(putOptions.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
              ...encryption,
            }),
          ),
        { conditional: putOptions.ifNoneMatch === true },
      );
    },
    async head(key) {
      return attempt('HeadObject', key, async () => {
        try {
          const response = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
          return { size: response.ContentLength ?? 0, metadata: response.Metadata ?? {} };
        } catch (error) {
          if (isNotFound(error)) return undefined;
          throw error;
        }
      });
    },
    async delete(key) {
      await attempt('DeleteObject', key, () =>
        s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })),
      );
    },
    async listKeys(prefix) {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await attempt('ListObjectsV2', prefix, () =>
          s3.send(
            new ListObjectsV2Command({
              Bucket: bucket,
              Prefix: prefix,
              ...(token ? { ContinuationToken: token } : {}),
            }),
          ),
        );
        for (const object of page.Contents ?? []) if (object.Key) keys.push(object.Key);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return keys;
    },
    async abortUploads(prefix) {
      let aborted = 0;
      let keyMarker: string | undefined;
      let uploadIdMarker: string | undefined;
      do {
        const page = await attempt('ListMultipartUploads', prefix, () =>
          s3.send(
            new ListMultipartUploadsCommand({
              Bucket: bucket,
              Prefix: prefix,
              ...(keyMarker ? { KeyMarker: keyMarker } : {}),
              ...(uploadIdMarker ? { UploadIdMarker: uploadIdMarker } : {}),
            }),
          ),
        );
        for (const upload of page.Uploads ?? []) {
          if (!upload.Key || !upload.UploadId) continue;
          const { Key, UploadId } = upload;
          const gone = await attempt('AbortMultipartUpload', Key, async () => {
            try {
              await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId }));
              return false;
            } catch (error) {
              // Completed or aborted meanwhile (or by our own attempt whose answer was lost).
              if ((error as SdkError).name === 'NoSuchUpload') return true;
              throw error;
            }
          });
          if (!gone) aborted += 1;
        }
        keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
        uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
      } while (keyMarker);
      return aborted;
    },
  };
}
