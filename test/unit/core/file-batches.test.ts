import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RESOURCE_BYTES,
  estimatedFileBytes,
  LARGE_FILE_BYTES,
  MAX_BATCH_BYTES,
  planFileBatches,
} from '../../../lambdas/core/file-batches.js';
import type { FileItem } from '../../../lambdas/state.js';

let next = 0;
/** A manifest file as landManifest lists it, with a long but realistic key. */
function file(type: string, count?: number, kind: FileItem['kind'] = 'output'): FileItem {
  const index = next++;
  return {
    index,
    kind,
    type,
    resourceType: type,
    key: `some/long/prefix/source=oracle-health-production/export=2026-12-07T034455.403Z_exec-0123456789abcdef/type=${type}/part-${String(index + 1).padStart(4, '0')}.ndjson`,
    ...(count === undefined ? {} : { count }),
  };
}

const indexes = (batches: ReturnType<typeof planFileBatches>) =>
  batches.map((batch) => batch.files.map((item) => item.index));

describe('planFileBatches', () => {
  it('groups small files by kind and type, in list order within a type, each file in exactly one batch', () => {
    // Prepare
    next = 0;
    const items = [
      file('Patient', 10),
      file('Observation', 10),
      file('Patient', 10),
      file('OperationOutcome', 1, 'error'),
      file('Observation', 10),
      file('Patient', 10),
    ];
    // Act: six files for one child: ceil(6 / 4) = 2 files a batch, so the child gets several.
    const batches = planFileBatches(items, { filesPerBatch: 50, maxConcurrency: 1 });
    // Assess
    expect(indexes(batches)).toStrictEqual([[0, 2], [5], [1, 4], [3]]);
    expect(batches.map((batch) => batch.batch)).toStrictEqual([0, 1, 2, 3]);
  });

  it('cuts a type at filesPerBatch files', () => {
    next = 0;
    const items = Array.from({ length: 220 }, () => file('Observation', 20));
    const batches = planFileBatches(items, { filesPerBatch: 50, maxConcurrency: 1 });
    expect(batches.map((batch) => batch.files.length)).toStrictEqual([50, 50, 50, 50, 20]);
    expect(batches.flatMap((batch) => batch.files)).toStrictEqual(items);
  });

  it('gives a file estimated large a batch of its own, and the small files of its type go on together', () => {
    // Prepare: 16 MiB / 12 KB per ExplanationOfBenefit is about 1,400 resources.
    next = 0;
    const items = Array.from({ length: 41 }, (_, at) => file('ExplanationOfBenefit', at === 1 ? 5_000 : 10));
    // Act: 41 files for one child: 11 a batch.
    const batches = planFileBatches(items, { filesPerBatch: 50, maxConcurrency: 1 });
    // Assess
    expect(estimatedFileBytes(items[1]!)).toBeGreaterThan(LARGE_FILE_BYTES);
    expect(indexes(batches).slice(0, 2)).toStrictEqual([[1], [0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]]);
    expect(batches.flatMap((batch) => batch.files).filter((item) => item.index === 1)).toHaveLength(1);
    expect(batches.slice(1).map((batch) => batch.files.length)).toStrictEqual([11, 11, 11, 7]);
  });

  it('keeps a batch under MAX_BATCH_BYTES estimated', () => {
    // Prepare: 24 files of 8,000 Observations (~12 MB each) for one child (6 a batch): five fit in 64 MiB, not six.
    next = 0;
    const items = Array.from({ length: 24 }, () => file('Observation', 8_000));
    // Act
    const batches = planFileBatches(items, { filesPerBatch: 50, maxConcurrency: 1 });
    // Assess
    for (const batch of batches) {
      const bytes = batch.files.reduce((sum, item) => sum + estimatedFileBytes(item)!, 0);
      expect(bytes).toBeLessThanOrEqual(MAX_BATCH_BYTES);
    }
    expect(batches.map((batch) => batch.files.length)).toStrictEqual([5, 5, 5, 5, 4]);
  });

  it('estimates a type not in the table at the default size per resource', () => {
    expect(estimatedFileBytes({ resourceType: 'Basic', count: 1_000 })).toBe(1_000 * DEFAULT_RESOURCE_BYTES);
    expect(estimatedFileBytes({ resourceType: 'Basic' })).toBeUndefined();
  });

  it('without counts, cuts a type so each concurrent child gets several batches', () => {
    next = 0;
    // 10 files, concurrency 4: ceil(10 / 16) = 1 file per batch, so all ten can run in parallel.
    const few = Array.from({ length: 10 }, () => file('Binary'));
    expect(
      planFileBatches(few, { filesPerBatch: 50, maxConcurrency: 4 }).map((b) => b.files.length),
    ).toStrictEqual(Array.from({ length: 10 }, () => 1));
    // 100 files, concurrency 4: ceil(100 / 16) = 7 per batch.
    const some = Array.from({ length: 100 }, () => file('Observation'));
    const sized = planFileBatches(some, { filesPerBatch: 50, maxConcurrency: 4 });
    expect(sized.map((b) => b.files.length)).toStrictEqual([...Array.from({ length: 14 }, () => 7), 2]);
    // 20,000 files: capped at filesPerBatch.
    const many = Array.from({ length: 20_000 }, () => file('Observation'));
    const capped = planFileBatches(many, { filesPerBatch: 50, maxConcurrency: 4 });
    expect(capped).toHaveLength(400);
  });

  it('with counts, sizes batches over the whole list so that a few hundred small files still fill the Map', () => {
    next = 0;
    // 510 files, concurrency 4: ceil(510 / 16) = 32 a batch, 16 batches, rather than 11 of 50.
    const some = Array.from({ length: 510 }, () => file('Observation', 10));
    expect(planFileBatches(some, { filesPerBatch: 50, maxConcurrency: 4 })).toHaveLength(16);
    // 20,000 files: 50 a batch, filesPerBatch's cap.
    const many = Array.from({ length: 20_000 }, () => file('Observation', 10));
    expect(planFileBatches(many, { filesPerBatch: 50, maxConcurrency: 4 })).toHaveLength(400);
  });

  it('with filesPerBatch 1, plans a batch per file as before batching', () => {
    next = 0;
    const items = [file('Patient', 10), file('Patient', 10), file('Observation')];
    expect(indexes(planFileBatches(items, { filesPerBatch: 1, maxConcurrency: 4 }))).toStrictEqual([
      [0],
      [1],
      [2],
    ]);
  });

  it('keeps a full batch far below the 256 KiB a Map item may carry', () => {
    // Prepare: 100 files (filesPerBatch's maximum) with chunk annotations and long keys.
    next = 0;
    const items = Array.from({ length: 400 }, () => ({
      ...file('MedicationRequest', 100),
      chunk: 123,
      chunkFileIndex: 4_567,
      requiresAccessToken: true,
    }));
    // Act
    const [batch] = planFileBatches(items, { filesPerBatch: 100, maxConcurrency: 1 });
    const bytes = Buffer.byteLength(JSON.stringify(batch));
    // Assess: about 30 KB; the item travels inside the child's input beside the export context.
    expect(batch!.files).toHaveLength(100);
    expect(bytes).toBeLessThan(64 * 1024);
  });

  it.each([0, 1.5, -1])('refuses filesPerBatch %s', (filesPerBatch) => {
    expect(() => planFileBatches([], { filesPerBatch, maxConcurrency: 4 })).toThrow(RangeError);
  });

  it('plans no batch for no file', () => {
    expect(planFileBatches([], { filesPerBatch: 50, maxConcurrency: 4 })).toStrictEqual([]);
  });
});
