import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPORTABLE_TYPES } from '../../scripts/sandbox/data/types.js';
import { type Harness, receiptOf, startHarness, storedManifest } from './support/harness.js';

/**
 * The whole workflow, locally: the real ASL with the real handlers against
 * the sandbox over HTTP and the embedded S3 server.
 */
describe('bulk export workflow (local)', () => {
  let harness: Harness;
  beforeAll(async () => {
    harness = await startHarness();
  }, 60_000);
  afterAll(async () => {
    await harness?.close();
  });

  const cohort = () => harness.sandbox.dataset.groups.find((group) => group.id === 'cohort')!.patientIndexes;

  it('lands every resource of the Group once, byte for byte, then the receipt and the completion marker', async () => {
    // Act
    const result = await harness.exportWith();

    // Assess
    expect(result.run.status).toBe('SUCCEEDED');
    const receipt = receiptOf(result);
    for (const type of EXPORTABLE_TYPES) {
      const expected = harness.sandbox.dataset.count({ type, patientIndexes: cohort() });
      expect(receipt.byType[type]?.resources ?? 0, type).toBe(expected);
    }
    const manifest = await storedManifest(harness, result.sourceId, result.run.executionName);
    const dataFiles = receipt.files!.filter((file) => file.kind === 'output');
    expect(dataFiles).toHaveLength(manifest.files.filter((file) => file.kind === 'output').length);
    for (const [index, file] of manifest.files.entries()) {
      const landed = receipt.files![index]!;
      const bytes = await harness.getBytes(landed.key);
      expect(bytes?.equals(harness.sandbox.fileContent(file.url)), landed.key).toBe(true);
    }
    const output = result.run.output as { receiptKey: string; completionMarkerKey: string };
    const marker = JSON.parse((await harness.getText(output.completionMarkerKey))!);
    expect(marker).toMatchObject({
      sourceId: result.sourceId,
      transactionTime: receipt.transactionTime,
      receiptKey: output.receiptKey,
    });
    expect(output.completionMarkerKey).toMatch(
      new RegExp(`^source=${result.sourceId}/export=\\d{4}-\\d\\d-\\d\\dT\\d{6}\\.\\d{3}Z/_SUCCESS\\.json$`),
    );
    expect(receipt.serverJobDeleted).toBe(true);
    expect(harness.sandbox.jobs().find((job) => job.clientId === result.clientId)?.state).toBe('deleted');
    expect(result.emittedEvents.map((event) => event.detailType)).toEqual(['Bulk Export Succeeded']);
    expect(await harness.getText(`_state/source=${result.sourceId}/lock.json`)).toBeUndefined();
  });

  it('exports only the delta on the next run with since=auto, from the stored watermark', async () => {
    // Prepare
    const first = await harness.exportWith({ sourceId: 'delta' });
    const firstReceipt = receiptOf(first);
    harness.sandbox.clearRequestLog();

    // Act
    const second = await harness.exportWith({ sourceId: 'delta', clientId: first.clientId });

    // Assess
    const secondReceipt = receiptOf(second);
    const kickOff = harness.sandbox.requestLog.find((entry) => entry.path.endsWith('/$export'));
    expect(new URLSearchParams(kickOff!.query).get('_since')).toBe(firstReceipt.transactionTime);
    expect(secondReceipt.request.since).toBe(firstReceipt.transactionTime);
    // The synthetic history ends before the first run, so nothing changed since.
    expect(secondReceipt.totals.resources).toBeLessThan(firstReceipt.totals.resources);
    expect(secondReceipt.totals.resources).toBe(0);
    const watermark = JSON.parse((await harness.getText('_state/source=delta/watermark.json'))!);
    expect(watermark.transactionTime).toBe(secondReceipt.transactionTime);
  });

  it('waits out kick-off 429s (Retry-After) and then succeeds', async () => {
    const result = await harness.exportWith({ faults: { kickoff429: 2 } });

    expect(result.run.status).toBe('SUCCEEDED');
    const kickOffs = harness.sandbox.requestLog.filter(
      (entry) => entry.clientId === result.clientId && entry.path.endsWith('/$export'),
    );
    expect(kickOffs.map((entry) => entry.status)).toEqual([429, 429, 202]);
    const waits = result.run.events.filter(
      (event) => event.type === 'StateEntered' && event.state?.name === 'Wait Before Retrying Kick-Off',
    );
    expect(waits).toHaveLength(2);
    // The sandbox asks for 1 s; the floor is 5 s.
    expect((waits[0]!.state!.input as { kickoff: { waitSeconds: number } }).kickoff.waitSeconds).toBe(5);
  });

  it('rides out transient status errors (5xx and OperationOutcome transient)', async () => {
    const result = await harness.exportWith({ faults: { status5xx: 2, statusTransient: 2 } });

    expect(result.run.status).toBe('SUCCEEDED');
    const polls = harness.sandbox.requestLog.filter(
      (entry) =>
        entry.clientId === result.clientId &&
        entry.path.includes('/export-status/') &&
        entry.method === 'GET',
    );
    expect(
      polls
        .slice(0, 4)
        .map((entry) => entry.status)
        .sort(),
    ).toEqual([500, 500, 503, 503]);
    expect(polls.at(-1)!.status).toBe(200);
  });

  it('on a failed job runs cleanup: DELETEs the job, writes a failure receipt, no marker, no watermark', async () => {
    const result = await harness.exportWith({ faults: { jobFailure: true } });

    expect(result.run.status).toBe('FAILED');
    expect(result.run.error).toBe('ExportRequestRejectedError');
    expect(result.run.cause).toContain('the export job failed: status answered 500');
    expect(result.run.cause).toContain(`(source ${result.sourceId})`);
    const deletes = harness.sandbox.requestLog.filter(
      (entry) => entry.clientId === result.clientId && entry.method === 'DELETE',
    );
    expect(deletes).toHaveLength(1);
    expect(await harness.listKeys(`source=${result.sourceId}/`)).toEqual([]);
    expect(await harness.getText(`_state/source=${result.sourceId}/watermark.json`)).toBeUndefined();
    const failure = JSON.parse(
      (await harness.getText(`_failures/source=${result.sourceId}/${result.run.executionName}.json`))!,
    );
    expect(failure).toMatchObject({
      status: 'failed',
      error: 'ExportRequestRejectedError',
      sourceId: result.sourceId,
    });
    expect(result.emittedEvents.map((event) => event.detailType)).toEqual(['Bulk Export Failed']);
  });

  it('re-mints a token that expires while the export is still running', async () => {
    const result = await harness.exportWith({
      faults: { tokenLifetimeSeconds: 1, jobDurationMs: 2500 },
      waitOverrideMs: 600,
    });

    expect(result.run.status).toBe('SUCCEEDED');
    const tokens = harness.sandbox.requestLog.filter(
      (entry) => entry.clientId === result.clientId && entry.path.endsWith('/auth/token'),
    );
    expect(tokens.length).toBeGreaterThan(1);
    const unauthorized = harness.sandbox.requestLog.filter(
      (entry) => entry.clientId === result.clientId && entry.status === 401,
    );
    expect(unauthorized).toEqual([]);
  });

  it('under serverFileErrors "accept", lands the error[] file beside the data and marks the export partial though every count adds up', async () => {
    const result = await harness.exportWith({
      faults: { errorFile: true },
      source: { serverFileErrors: 'accept' },
    });

    const receipt = receiptOf(result);
    // The server said data is missing, and named types, not files: no file is short, the types carry the reasons.
    expect({ status: receipt.status, complete: receipt.complete }).toEqual({
      status: 'partial',
      complete: false,
    });
    expect(receipt.serverFileErrors).toMatchObject({ files: 0, missingResources: 0, exportWide: [] });
    expect(receipt.serverFileErrors!.byType.Patient).toEqual([
      'error processing: Injected fault (errorFile): some Patient resources could not be exported',
    ]);
    const output = result.run.output as { completionMarkerKey: string };
    expect(output.completionMarkerKey).toMatch(/\/_PARTIAL\.json$/);
    expect(
      await harness.getText(output.completionMarkerKey.replace(/_PARTIAL\.json$/, '_SUCCESS.json')),
    ).toBeUndefined();
    expect(JSON.parse((await harness.getText(output.completionMarkerKey))!)).toMatchObject({
      complete: false,
    });
    expect(result.emittedEvents.map((event) => event.detailType)).toEqual(['Bulk Export Partial']);
    const errorFiles = receipt.files!.filter((file) => file.kind === 'error');
    expect(errorFiles).toHaveLength(1);
    expect(errorFiles[0]!.key).toMatch(
      new RegExp(`^source=${result.sourceId}/export=[^/]+/_errors/part-0001\\.ndjson$`),
    );
    const lines = (await harness.getText(errorFiles[0]!.key))!.trim().split('\n');
    expect(lines.every((line) => JSON.parse(line).resourceType === 'OperationOutcome')).toBe(true);
    expect(receipt.errors).toEqual({ files: 1, lines: lines.length });
  });
});
