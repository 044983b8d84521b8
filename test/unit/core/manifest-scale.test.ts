import { describe, expect, it } from 'vitest';
import { planFileBatches } from '../../../lambdas/core/file-batches.js';
import { MAX_MANIFEST_FILES, parseCompletionManifest } from '../../../lambdas/core/manifest.js';
import { fileItemsOf } from '../../../lambdas/services/export-status.js';
import { thrown } from '../../support/thrown.js';

/**
 * A 200,000-file manifest (Oracle Health splits an export into many small
 * files), parsed and planned as Poll Export Status does, in process: every
 * file in exactly one download batch, and every batch, as a Map item, far
 * below Step Functions' 256 KiB. The whole workflow at this size is the
 * bench's `huge-manifest` (too slow for CI on these machines).
 */
describe('a 200,000-file manifest', () => {
  const TYPES = ['Observation', 'Condition', 'Encounter', 'MedicationRequest'];
  const presignedUrl = (n: number) =>
    `https://exports.example.org/bucket/job-1/file-${n}.ndjson?X-Amz-Signature=${'a'.repeat(480)}`;
  const body = (files: number) => ({
    transactionTime: '2026-12-07T00:00:00.000Z',
    request: 'https://ehr.example.org/fhir/Group/cohort/$export',
    requiresAccessToken: false,
    output: Array.from({ length: files }, (_, n) => ({
      type: TYPES[n % TYPES.length],
      url: presignedUrl(n),
      count: 10,
    })),
    error: [],
  });

  it('parses, and plans every file into exactly one batch of at most 50, each far below 256 KiB', () => {
    // Act
    const manifest = parseCompletionManifest(body(MAX_MANIFEST_FILES), false);
    const location = { prefix: '', sourceId: 'oracle', transactionTime: manifest.transactionTime };
    const items = fileItemsOf(manifest.files, location);
    const batches = planFileBatches(items, { filesPerBatch: 50, maxConcurrency: 4 });
    // Assess
    expect(manifest.files).toHaveLength(200_000);
    expect(batches).toHaveLength(4_000);
    expect(Math.max(...batches.map((batch) => batch.files.length))).toBe(50);
    const seen = new Uint8Array(items.length);
    for (const batch of batches) for (const file of batch.files) seen[file.index]! += 1;
    expect(seen.every((times) => times === 1)).toBe(true);
    const largest = Math.max(...batches.map((batch) => Buffer.byteLength(JSON.stringify(batch))));
    expect(largest).toBeLessThan(32 * 1024);
  }, 60_000);

  it('refuses one file more, saying how many it takes', () => {
    expect(thrown(() => parseCompletionManifest(body(MAX_MANIFEST_FILES + 1), false)).message).toMatch(
      /lists more than 200000 files; refusing to process it/,
    );
  }, 60_000);
});
