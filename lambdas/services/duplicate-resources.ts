import type { S3Client } from '@aws-sdk/client-s3';
import { getObjectBytes } from '../adapters/s3-multipart.js';
import { StorageError, VerificationError } from '../errors.js';
import type { FileResult } from '../state.js';

/**
 * A chunked export asks the server for one cohort as several jobs, and a
 * resource that belongs to more than one chunk (a Practitioner, an
 * Organization, a resource updated between two time windows) lands once per
 * chunk. The receipt counts those copies rather than report them as more
 * resources. Download File keeps, per chunk file, an 8-byte hash of each
 * landed line's id (lambdas/services/transfer/resource-ids.ts); this counts
 * the hashes seen more than once, per resource type.
 */

const ID_HASH_BYTES = 8;

/** Where Download File writes a chunk file's id hashes: raw 8-byte values, in the file's line order. */
export const resourceIdsKey = (workPrefix: string, fileIndex: number): string =>
  `${workPrefix}resource-ids/${String(fileIndex).padStart(6, '0')}.u64`;

export interface DuplicateCount {
  /** Distinct resources that landed more than once. */
  readonly resources: number;
  /** Lines beyond the first copy of each: landed lines minus extraCopies = distinct resources. */
  readonly extraCopies: number;
}

export interface DuplicateResources extends DuplicateCount {
  /** Only the types that have duplicates. */
  readonly byType: Readonly<Record<string, DuplicateCount>>;
}

/**
 * The id objects live in the work bucket, which the JSON store cannot read
 * as bytes: pass the runtime (its S3 client and store).
 */
export interface ResourceIdSource {
  readonly s3: S3Client;
  readonly store: { readonly bucket: string };
}

/**
 * Counts the resources of the `output` files that landed more than once,
 * over all chunks. Files without a `resourceIdsKey` (not from a chunked
 * export) take no part.
 *
 * Memory: one resource type at a time, 8 bytes per id of that type plus one
 * file's id object while it is copied in: 100 million ids of one type take
 * ~800 MB, so Finalize's memory bounds the largest type it can count.
 */
/** What counting needs of a download result; Finalize keeps only this per file of a chunked export. */
export type ResourceIdsOf = Pick<FileResult, 'index' | 'kind' | 'type' | 'lines' | 'resourceIdsKey'>;

export async function countDuplicateResources(
  source: ResourceIdSource,
  results: readonly ResourceIdsOf[],
): Promise<DuplicateResources> {
  const filesByType = new Map<string, ResourceIdsOf[]>();
  for (const result of results) {
    if (result.kind !== 'output' || result.resourceIdsKey === undefined) continue;
    const files = filesByType.get(result.type);
    if (files === undefined) filesByType.set(result.type, [result]);
    else files.push(result);
  }
  let resources = 0;
  let extraCopies = 0;
  const byType: Record<string, DuplicateCount> = {};
  for (const type of [...filesByType.keys()].sort()) {
    const hashes = await readHashes(source, filesByType.get(type)!);
    const count = countRepeats(hashes);
    if (count.extraCopies === 0) continue;
    byType[type] = count;
    resources += count.resources;
    extraCopies += count.extraCopies;
  }
  return { resources, extraCopies, byType };
}

/** Every id hash of one type's files, in one array sized by their line counts (an id per line at most). */
async function readHashes(
  source: ResourceIdSource,
  files: readonly ResourceIdsOf[],
): Promise<BigUint64Array> {
  const capacity = files.reduce((lines, file) => lines + file.lines, 0);
  const hashes = new BigUint64Array(capacity);
  const bytes = new Uint8Array(hashes.buffer);
  let filled = 0;
  for (const file of files) {
    const key = file.resourceIdsKey!;
    const object = await getObjectBytes(source.s3, source.store.bucket, key);
    if (object === undefined) {
      throw new StorageError(
        `the resource ids of file ${file.index} (s3://${source.store.bucket}/${key}) are missing`,
      );
    }
    if (object.length % ID_HASH_BYTES !== 0 || object.length / ID_HASH_BYTES > file.lines) {
      throw new VerificationError(
        `the resource ids of file ${file.index} hold ${object.length} bytes, not 8 per line for at most its ${file.lines} lines`,
      );
    }
    bytes.set(object, filled * ID_HASH_BYTES);
    filled += object.length / ID_HASH_BYTES;
  }
  return hashes.subarray(0, filled);
}

/**
 * Sorts the hashes (in place) and counts runs of equal ones. Equality is all
 * that matters, so the byte order the values are read in does not. The runs
 * are compared as 32-bit halves: reading a BigUint64Array element allocates
 * a BigInt, which for 10⁸ ids costs more than the sort.
 */
function countRepeats(hashes: BigUint64Array): DuplicateCount {
  hashes.sort();
  const halves = new Uint32Array(hashes.buffer, hashes.byteOffset, hashes.length * 2);
  let resources = 0;
  let extraCopies = 0;
  let inRun = false;
  for (let i = 2; i < halves.length; i += 2) {
    const repeat = halves[i] === halves[i - 2] && halves[i + 1] === halves[i - 1];
    if (repeat) {
      extraCopies++;
      if (!inRun) resources++;
    }
    inRun = repeat;
  }
  return { resources, extraCopies };
}
