import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { putObjectBytes } from '../../../lambdas/adapters/s3-multipart.js';
import { StorageError, VerificationError } from '../../../lambdas/errors.js';
import { countDuplicateResources, resourceIdsKey } from '../../../lambdas/services/duplicate-resources.js';
import type { FileResult } from '../../../lambdas/state.js';
import { seededRandom } from './support/ndjson-body.js';
import { useTransferBed } from './support/transfer-bed.js';

const BUCKET = 'work';
let exportCounter = 0;

const idHash = (id: string) => createHash('sha256').update(id, 'utf8').digest().subarray(0, 8);

describe('countDuplicateResources', () => {
  const bed = useTransferBed(BUCKET, {});
  const source = () => ({ s3: bed.client, store: { bucket: BUCKET } });

  /** Lands the id objects of chunk files as Download File does, and returns their results. */
  async function landed(
    files: readonly {
      type: string;
      chunk?: number;
      kind?: FileResult['kind'];
      ids: readonly string[];
      lines?: number;
    }[],
  ): Promise<FileResult[]> {
    exportCounter++;
    const work = `exports/_work/source=test/run-${exportCounter}/`;
    return Promise.all(
      files.map(async (file, index) => {
        const key = resourceIdsKey(work, index);
        await putObjectBytes(bed.client, { bucket: BUCKET, key }, Buffer.concat(file.ids.map(idHash)));
        return {
          index,
          kind: file.kind ?? 'output',
          type: file.type,
          key: `exports/source=test/type=${file.type}/part-${index}.ndjson`,
          bytes: 100 * file.ids.length,
          lines: file.lines ?? file.ids.length,
          blankLines: 0,
          invalidLines: 0,
          sha256: '0'.repeat(64),
          invocations: 1,
          chunk: file.chunk ?? 0,
          resourceIdsKey: key,
        } satisfies FileResult;
      }),
    );
  }

  it('counts the Practitioners two chunks share, once per resource and once per extra copy', async () => {
    // Prepare
    const results = await landed([
      { type: 'Practitioner', chunk: 0, ids: ['pr-1', 'pr-2', 'pr-3'] },
      { type: 'Patient', chunk: 0, ids: ['a', 'b'] },
      { type: 'Practitioner', chunk: 1, ids: ['pr-2', 'pr-3', 'pr-4'] },
      { type: 'Patient', chunk: 1, ids: ['c'] },
      { type: 'Practitioner', chunk: 2, ids: ['pr-3'] },
    ]);
    // Act
    const duplicates = await countDuplicateResources(source(), results);
    // Assess
    expect(duplicates).toEqual({
      resources: 2,
      extraCopies: 3,
      byType: { Practitioner: { resources: 2, extraCopies: 3 } },
    });
  });

  it('finds nothing when no resource landed twice, not even the same id under two types', async () => {
    // Prepare
    const results = await landed([
      { type: 'Patient', chunk: 0, ids: ['1', '2'] },
      { type: 'Practitioner', chunk: 1, ids: ['1', '2'] },
      { type: 'Organization', chunk: 1, ids: [] },
    ]);
    // Act
    const duplicates = await countDuplicateResources(source(), results);
    // Assess
    expect(duplicates).toEqual({ resources: 0, extraCopies: 0, byType: {} });
  });

  it('counts the same id twice within one file of one chunk too', async () => {
    // Prepare
    const results = await landed([{ type: 'Observation', ids: ['o-1', 'o-2', 'o-1', 'o-1', 'o-3', 'o-3'] }]);
    // Act
    const duplicates = await countDuplicateResources(source(), results);
    // Assess
    expect(duplicates).toEqual({
      resources: 2,
      extraCopies: 3,
      byType: { Observation: { resources: 2, extraCopies: 3 } },
    });
  });

  it('leaves out error and deleted files, and files without resource ids', async () => {
    // Prepare
    const [output, error, deleted, plain] = await landed([
      { type: 'Patient', chunk: 0, ids: ['p'] },
      { type: 'Patient', chunk: 1, kind: 'error', ids: ['p'] },
      { type: 'Patient', chunk: 1, kind: 'deleted', ids: ['p'] },
      { type: 'Patient', ids: ['p'] },
    ]);
    const { resourceIdsKey: _notChunked, ...withoutIds } = plain!;
    // Act
    const duplicates = await countDuplicateResources(source(), [output!, error!, deleted!, withoutIds]);
    // Assess
    expect(duplicates).toEqual({ resources: 0, extraCopies: 0, byType: {} });
  });

  it('agrees with counting ids in a map, over many files and repeats', async () => {
    // Prepare
    const random = seededRandom(14);
    const files = Array.from({ length: 6 }, (_, chunk) => ({
      type: chunk % 2 === 0 ? 'Practitioner' : 'Location',
      chunk,
      ids: Array.from({ length: 3000 }, () => `id-${Math.floor(random() * 5000)}`),
    }));
    const copies = new Map<string, number>();
    for (const file of files)
      for (const id of file.ids)
        copies.set(`${file.type}/${id}`, (copies.get(`${file.type}/${id}`) ?? 0) + 1);
    const repeated = [...copies.entries()].filter(([, n]) => n > 1);
    const results = await landed(files);
    // Act
    const duplicates = await countDuplicateResources(source(), results);
    // Assess
    expect(duplicates.resources).toBe(repeated.length);
    expect(duplicates.extraCopies).toBe(repeated.reduce((sum, [, n]) => sum + n - 1, 0));
    const practitioners = repeated.filter(([key]) => key.startsWith('Practitioner/'));
    expect(duplicates.byType.Practitioner).toEqual({
      resources: practitioners.length,
      extraCopies: practitioners.reduce((sum, [, n]) => sum + n - 1, 0),
    });
  });

  it('fails when a file’s ids are missing rather than count without them', async () => {
    // Prepare
    const [file] = await landed([{ type: 'Patient', ids: ['p'] }]);
    const missing = { ...file!, resourceIdsKey: `${file!.resourceIdsKey}.gone` };
    // Act
    const failure = await countDuplicateResources(source(), [missing]).catch((error: unknown) => error);
    // Assess
    expect(failure).toBeInstanceOf(StorageError);
  });

  it('fails on an ids object that does not fit the file: not 8 bytes a line, or more ids than lines', async () => {
    // Prepare
    const [file] = await landed([{ type: 'Patient', ids: ['p', 'q'] }]);
    const truncatedKey = `${file!.resourceIdsKey}.truncated`;
    await putObjectBytes(bed.client, { bucket: BUCKET, key: truncatedKey }, Buffer.alloc(12));
    // Act
    const truncated = await countDuplicateResources(source(), [
      { ...file!, resourceIdsKey: truncatedKey },
    ]).catch((error: unknown) => error);
    const tooMany = await countDuplicateResources(source(), [{ ...file!, lines: 1 }]).catch(
      (error: unknown) => error,
    );
    // Assess
    expect(truncated).toBeInstanceOf(VerificationError);
    expect(tooMany).toBeInstanceOf(VerificationError);
  });
});
