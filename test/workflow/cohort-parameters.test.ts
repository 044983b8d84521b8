import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientId } from '../../scripts/sandbox/data/model.js';
import { type Harness, receiptOf, startHarness } from './support/harness.js';

/**
 * A backfill's execution input may narrow the cohort (`patient`) and ask for
 * associated data: the kick-off carries them (POST Parameters), only those
 * patients' data lands, and such a narrower export never moves the daily
 * delta's watermark.
 */
describe('cohort parameters from the execution input (local)', () => {
  let harness: Harness;
  beforeAll(async () => {
    harness = await startHarness();
  }, 60_000);
  afterAll(async () => {
    await harness?.close();
  });

  it('sends patient and includeAssociatedData, lands only those patients, and leaves the watermark alone', async () => {
    // Prepare
    const cohort = harness.sandbox.dataset.groups.find((group) => group.id === 'cohort')!;
    const chosen = cohort.patientIndexes.slice(0, 3);
    const patientIds = chosen.map((index) => patientId(index));
    // Act
    const result = await harness.exportWith({
      sourceId: 'narrowed',
      source: { export: { level: 'group', groupId: 'cohort', method: 'POST' } },
      input: {
        patient: patientIds.map((id) => `Patient/${id}`),
        includeAssociatedData: ['LatestProvenanceResources'],
      },
    });
    // Assess
    expect(result.run.status).toBe('SUCCEEDED');
    const job = harness.sandbox.jobs().find((candidate) => candidate.clientId === result.clientId)!;
    expect(job.received.patients).toStrictEqual(patientIds);
    expect(job.received.includeAssociatedData).toStrictEqual(['LatestProvenanceResources']);
    const receipt = receiptOf(result);
    for (const type of ['Patient', 'Condition', 'Observation'] as const) {
      const expected = harness.sandbox.dataset.count({ type, patientIndexes: chosen });
      expect(receipt.byType[type]?.resources ?? 0, type).toBe(expected);
    }
    expect(receipt.byType.Patient?.resources).toBe(3);
    expect(await harness.getText('_state/source=narrowed/watermark.json')).toBeUndefined();
  });

  it('refuses a patient list for a source that kicks off with GET, naming the fix, before any request', async () => {
    // Act
    const result = await harness.exportWith({
      sourceId: 'narrowed-get',
      input: { patient: ['Patient/p1'] },
    });
    // Assess
    expect(result.run.status).toBe('FAILED');
    expect(result.run.error).toBe('InvalidExecutionInputError');
    expect(result.run.cause).toContain('input.patient needs export.method POST');
    expect(harness.sandbox.jobs().filter((job) => job.clientId === result.clientId)).toHaveLength(0);
  });
});
