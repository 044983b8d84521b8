import type { FileItem } from '../state.js';

/**
 * Which manifest files one Download Files child lands together.
 *
 * A child per file costs five state transitions and two Lambda invocations
 * per file, which dominates the cost of exports made of thousands of small
 * files (Oracle Health splits its output that way). A child per batch pays
 * that once per batch; one token is minted per batch.
 *
 * Why not Step Functions' `ItemBatcher`: it cuts consecutive items by count
 * or by the bytes of the items' JSON, blind to how big each file is, so a
 * 2 GB file would be serialized behind 49 small ones in one child. Here a
 * file the manifest says is large goes alone, and small files are grouped
 * by type, whose resources are of a similar size.
 */
export interface FileBatch {
  /** The batch's place in the list, for logs and people. */
  readonly batch: number;
  /** Files in manifest order; each keeps its manifest index. */
  readonly files: readonly FileItem[];
}

export interface FileBatchOptions {
  /** At most this many files per batch (the source's `filesPerBatch`); 1 = a child per file. */
  readonly filesPerBatch: number;
  /** The Map's concurrency: files without `count` are batched so that all children still have work. */
  readonly maxConcurrency: number;
}

/**
 * Typical serialized size of one resource, by type, to estimate a file's
 * size from the manifest's `count`. Rough figures from US Core and CARIN
 * exports; they only need to tell kilobytes from megabytes per resource.
 */
export const TYPICAL_RESOURCE_BYTES: Readonly<Record<string, number>> = Object.freeze({
  Binary: 256_000,
  DocumentReference: 16_000,
  ExplanationOfBenefit: 12_000,
  Claim: 6_000,
  DiagnosticReport: 4_000,
  Patient: 3_000,
  Encounter: 2_500,
  Observation: 1_500,
  Condition: 1_500,
  Procedure: 1_500,
  MedicationRequest: 1_500,
  Immunization: 1_200,
  OperationOutcome: 1_000,
});

/** A resource type not in the table: most FHIR resources serialize to 1–3 KB. */
export const DEFAULT_RESOURCE_BYTES = 2_000;

/**
 * A file estimated above this gets a child of its own: it may need several
 * invocations (checkpoints) and should not hold small files up behind it,
 * nor be held up by them.
 */
export const LARGE_FILE_BYTES = 16 * 1024 * 1024;

/**
 * The estimated bytes one batch carries at most: a few seconds of transfer
 * per file, far inside one Download invocation (15 minutes), so a batch of
 * small files seldom needs a checkpoint.
 */
export const MAX_BATCH_BYTES = 64 * 1024 * 1024;

/**
 * Batches per concurrent child the planner aims for at least: without
 * `count` to estimate from, per type, so a few big files of one type still
 * run in parallel; with counts, over the whole list, so a few hundred small
 * files still fill the Map (a batch lands its files one after the other, and
 * a Map with fewer batches than its concurrency would leave children idle).
 */
export const BATCHES_PER_CONCURRENT_CHILD = 4;

/** The bytes the manifest's `count` suggests, or undefined without a count. */
export function estimatedFileBytes(file: Pick<FileItem, 'count' | 'resourceType'>): number | undefined {
  if (file.count === undefined) return undefined;
  return file.count * (TYPICAL_RESOURCE_BYTES[file.resourceType] ?? DEFAULT_RESOURCE_BYTES);
}

/**
 * The file list cut into batches: grouped by kind and type (in order of each
 * type's first file, files in list order within it); a file estimated large
 * alone; other files up to MAX_BATCH_BYTES estimated and
 * `ceil(files / (maxConcurrency × BATCHES_PER_CONCURRENT_CHILD))` files,
 * between 1 and `filesPerBatch`, where `files` is the whole list's count, or
 * for a type whose files have no `count`, that type's. Every file is in
 * exactly one batch.
 */
export function planFileBatches(items: readonly FileItem[], options: FileBatchOptions): FileBatch[] {
  const { filesPerBatch, maxConcurrency } = options;
  if (!Number.isInteger(filesPerBatch) || filesPerBatch < 1)
    throw new RangeError(`filesPerBatch must be a positive integer, got ${filesPerBatch}`);
  if (!Number.isInteger(maxConcurrency) || maxConcurrency < 1)
    throw new RangeError(`maxConcurrency must be a positive integer, got ${maxConcurrency}`);

  const groups = new Map<string, FileItem[]>();
  for (const item of items) {
    const group = `${item.kind}/${item.type}`;
    const files = groups.get(group);
    if (files) files.push(item);
    else groups.set(group, [item]);
  }

  const fillTheMap = (files: number) =>
    Math.min(filesPerBatch, Math.max(1, Math.ceil(files / (maxConcurrency * BATCHES_PER_CONCURRENT_CHILD))));
  const withCountLimit = fillTheMap(items.length);
  const batches: FileBatch[] = [];
  const emit = (files: FileItem[]) => {
    if (files.length > 0) batches.push({ batch: batches.length, files });
  };
  for (const files of groups.values()) {
    const withoutCount = files.filter((file) => file.count === undefined).length;
    const limit = withoutCount === 0 ? withCountLimit : fillTheMap(withoutCount);
    let current: FileItem[] = [];
    let currentBytes = 0;
    for (const file of files) {
      const bytes = estimatedFileBytes(file) ?? 0;
      if (bytes > LARGE_FILE_BYTES) {
        emit([file]);
        continue;
      }
      if (current.length >= limit || (current.length > 0 && currentBytes + bytes > MAX_BATCH_BYTES)) {
        emit(current);
        current = [];
        currentBytes = 0;
      }
      current.push(file);
      currentBytes += bytes;
    }
    emit(current);
  }
  return batches;
}
