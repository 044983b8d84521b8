import type { CompletedPart } from '../../adapters/s3-multipart.js';
import { ConfigurationError } from '../../errors.js';
import type { SavedHashState } from './file-hash.js';
import type { ResourceIdsState } from './resource-ids.js';

/**
 * Everything one invocation hands the next so that a file too big for one
 * Lambda invocation continues where it stopped. Its hash state holds the last
 * bytes hashed (resource content) and its part ETags are digests of content,
 * so it is kept in an S3 work object, never in the Step Functions state (the
 * Download File handler passes only the object's key along). A long part
 * list goes to its own S3 object (`partsKey`), and bytes fed to the upload
 * but too few for a part (S3 wants 5 MiB) go to a "carry" object.
 *
 * Every field describes the same instant: the end of the last complete line
 * fed to the upload. Retrying an older checkpoint is safe: part numbers at or
 * above its `nextPartNumber` are simply uploaded again, the part list object
 * is append-only for one upload, and carry objects are named by byte offset.
 */
export interface TransferCheckpoint {
  readonly version: 2;
  /** The multipart upload, once one was needed. */
  readonly uploadId?: string;
  readonly nextPartNumber: number;
  /** Parts 1 … nextPartNumber-1 when few enough to inline. */
  readonly parts?: readonly CompletedPart[];
  /** Otherwise the S3 key holding `{ uploadId, parts }` (only the first nextPartNumber-1 count). */
  readonly partsKey?: string;
  /** Decoded bytes of the file consumed through the last complete line: where the next Range starts. */
  readonly byteOffset: number;
  /** Bytes in the uploaded parts. */
  readonly objectBytes: number;
  /** Bytes of whole lines after the uploaded parts, held in `carryKey`. */
  readonly carryBytes: number;
  readonly carryKey?: string;
  readonly lines: number;
  readonly blankLines: number;
  readonly invalidLines: number;
  /** A file of several types (organized by patient): valid lines per resourceType through byteOffset. */
  readonly resourceTypeCounts?: Readonly<Record<string, number>>;
  /** SHA-256 of the uploaded parts (the carry is not hashed yet). */
  readonly sha256State: SavedHashState;
  /**
   * What the Range request names this version of the file by, in If-Range: its strong ETag,
   * or (after a gzip body) its strong Last-Modified date. Without one we cannot resume.
   */
  readonly resumeValidator?: string;
  /** Gzip bodies of this file could not be resumed (no strong Last-Modified): ask for it undecoded. */
  readonly avoidGzip?: boolean;
  /** Times the transfer started over from byte 0 (range refused, file changed, no range support). */
  readonly restarts: number;
  /** 401s since the last successful request; a second one in a row fails. */
  readonly tokenRejections: number;
  /** Quarantined lines so far: `segments` scratch objects holding `bytes` bytes. */
  readonly quarantine?: { readonly segments: number; readonly bytes: number };
  /** With `collectResourceIds`: the id hashes of the lines through byteOffset, in scratch objects. */
  readonly resourceIds?: ResourceIdsState;
}

/** `a/b/part-0001.ndjson` + `carry-5` → `a/b/_part-0001.ndjson.carry-5`. */
export function scratchKey(key: string, suffix: string): string {
  const slash = key.lastIndexOf('/');
  // A leading underscore: Athena, Glue and Hive skip such objects, so a
  // scratch object never reads as data even before it is cleaned up.
  return `${key.slice(0, slash + 1)}_${key.slice(slash + 1)}.${suffix}`;
}

const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;

/** Validates a checkpoint from the state; a malformed one is a bug or tampering, never guessed at. */
export function parseCheckpoint(value: unknown): TransferCheckpoint {
  const fail = (field: string, expected: string): never => {
    throw new ConfigurationError(`checkpoint.${field} must be ${expected}`);
  };
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail('', 'an object');
  let c = value as Record<string, unknown>;
  if (c.version === 1) c = fromVersion1(c);
  if (c.version !== 2) fail('version', '2');
  for (const field of [
    'byteOffset',
    'objectBytes',
    'carryBytes',
    'lines',
    'blankLines',
    'invalidLines',
    'restarts',
    'tokenRejections',
  ]) {
    if (!isCount(c[field])) fail(field, 'a non-negative integer');
  }
  if (!Number.isSafeInteger(c.nextPartNumber) || (c.nextPartNumber as number) < 1) {
    fail('nextPartNumber', 'a positive integer');
  }
  for (const field of ['uploadId', 'partsKey', 'carryKey', 'resumeValidator']) {
    if (c[field] !== undefined && (typeof c[field] !== 'string' || c[field] === '')) {
      fail(field, 'a non-empty string when present');
    }
  }
  if (c.parts !== undefined) {
    if (
      !Array.isArray(c.parts) ||
      c.parts.some(
        (part: unknown) =>
          part === null ||
          typeof part !== 'object' ||
          !Number.isSafeInteger((part as CompletedPart).PartNumber) ||
          typeof (part as CompletedPart).ETag !== 'string',
      )
    ) {
      fail('parts', 'an array of { PartNumber, ETag }');
    }
  }
  const hasParts = (c.nextPartNumber as number) > 1;
  if (hasParts && c.uploadId === undefined) fail('uploadId', 'present when parts were uploaded');
  if (hasParts && (c.parts === undefined) === (c.partsKey === undefined)) {
    fail('parts', 'given either inline or as partsKey, not both or neither');
  }
  if ((c.carryBytes as number) > 0 && c.carryKey === undefined)
    fail('carryKey', 'present when carryBytes > 0');
  const hash = c.sha256State as Record<string, unknown> | undefined;
  if (
    hash === null ||
    typeof hash !== 'object' ||
    typeof hash.implementation !== 'string' ||
    typeof hash.state !== 'string'
  ) {
    fail('sha256State', 'a saved hash state { implementation, state, bytes }');
  }
  if (hash?.bytes !== c.objectBytes) fail('sha256State', 'the state of exactly objectBytes bytes');
  if (c.avoidGzip !== undefined && c.avoidGzip !== true) fail('avoidGzip', 'true when present');
  if (c.resourceTypeCounts !== undefined) {
    const counts = c.resourceTypeCounts;
    if (
      counts === null ||
      typeof counts !== 'object' ||
      Array.isArray(counts) ||
      Object.values(counts).some((count) => !isCount(count))
    )
      fail('resourceTypeCounts', 'an object of non-negative integers per resourceType when present');
  }
  if (c.quarantine !== undefined) {
    const q = c.quarantine as Record<string, unknown>;
    if (q === null || typeof q !== 'object' || !isCount(q.segments) || !isCount(q.bytes)) {
      fail('quarantine', '{ segments, bytes } with non-negative integers');
    }
  }
  if (c.resourceIds !== undefined) {
    const ids = c.resourceIds as Record<string, unknown>;
    if (ids === null || typeof ids !== 'object' || !isCount(ids.segments) || !isCount(ids.count)) {
      fail('resourceIds', '{ segments, count } with non-negative integers');
    }
    if ((ids.count as number) > (c.lines as number)) fail('resourceIds.count', 'at most lines');
  }
  return c as unknown as TransferCheckpoint;
}

/**
 * A checkpoint of the previous version (the pure-TS hash, carried in the
 * state) is read for its upload and scratch objects only: its hash cannot be
 * continued, so the transfer aborts the upload and starts the file over.
 */
function fromVersion1(c: Record<string, unknown>): Record<string, unknown> {
  const hash = c.sha256State as { n?: unknown } | null | undefined;
  return {
    ...c,
    version: 2,
    sha256State: { implementation: 'pure-ts/sha256 (checkpoint version 1)', state: '', bytes: hash?.n },
  };
}
