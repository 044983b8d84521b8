import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, receiptOf, startHarness } from './support/harness.js';

/**
 * The outcome metrics of whole local runs (the real ASL and handlers): what
 * the local recorder holds is what EMF carries on AWS, one record per event.
 */
describe('outcome metrics of a local export', () => {
  let harness: Harness;
  beforeAll(async () => {
    harness = await startHarness();
  }, 60_000);
  afterAll(async () => {
    await harness?.close();
  });

  it('records one ExportsSucceeded with the receipt totals, and one FileSize per file', async () => {
    // Act
    const result = await harness.exportWith();
    // Assess
    expect(result.run.status).toBe('SUCCEEDED');
    const receipt = receiptOf(result);
    const { metrics, sourceId } = { metrics: result.metrics, sourceId: result.sourceId };
    expect(metrics.countOf('ExportsSucceeded')).toBe(1);
    expect(metrics.countOf('ExportsFailed')).toBe(0);
    expect(metrics.total('ResourcesExported', sourceId)).toBe(receipt.totals.resources);
    expect(metrics.total('BytesExported', sourceId)).toBe(receipt.totals.bytes);
    expect(metrics.total('ExportDuration', sourceId)).toBeGreaterThan(0);
    expect(metrics.countOf('FileSize', sourceId)).toBe(receipt.files!.length);
    expect(
      metrics.records
        .flatMap((record) => record.metrics)
        .filter((metric) => metric.name === 'FileSize')
        .map((metric) => metric.value)
        .sort((a, b) => a - b),
    ).toEqual(receipt.files!.map((file) => file.bytes).sort((a, b) => a - b));
    // Written to the run's log as EMF too, where the tests' secret scans read them.
    const emf = result.logLines.filter((line) => line.includes('"_aws"'));
    expect(emf).toHaveLength(metrics.records.length);
  });

  it('records one ExportsFailed, in its category, for a kick-off the server refuses', async () => {
    // Act
    const result = await harness.exportWith({ faults: { kickoffErrorStatus: 400 } });
    // Assess
    expect(result.run.status).toBe('FAILED');
    expect(result.emittedEvents.map((event) => event.detailType)).toEqual(['Bulk Export Failed']);
    expect(result.metrics.records.map((record) => record.dimensions)).toEqual([
      { SourceId: result.sourceId, ErrorCategory: 'kick-off-refused' },
    ]);
  });
});
