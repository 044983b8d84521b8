import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverErrorTriageKey } from '../../../lambdas/core/layout.js';
import { ServerFileErrorTriager } from '../../../lambdas/core/server-file-errors.js';
import { ServerFileError, VerificationError } from '../../../lambdas/errors.js';
import { endExport } from '../../../lambdas/services/export-lifecycle.js';
import { applyFailPolicy, type StoredTriage } from '../../../lambdas/services/server-file-errors.js';
import { verifyFile } from '../../../lambdas/services/verify-files.js';
import type { ExportContext, FileItem } from '../../../lambdas/state.js';
import { type LandedExport, seedLandedExport } from '../../../scripts/bench/landed-export.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../../scripts/local/embedded-s3.js';
import { createLocalRuntime, type LocalRuntime } from '../../../scripts/local/runtime.js';

/**
 * The serverFileErrors policy: what Verify Files lets through (a shortfall
 * the server reported, under "accept") and what it never does (a shortfall
 * nobody reported, more lines than the count, a reported failure under "fail").
 */
const BUCKET = 'server-file-errors-policy';
const outcome = (...issue: unknown[]) => JSON.stringify({ resourceType: 'OperationOutcome', issue });

function triageOf(lines: readonly string[], outputs: { index: number; type: string; name: string }[] = []) {
  const triager = new ServerFileErrorTriager(outputs, ['Patient', 'Observation', 'Encounter']);
  for (const line of lines) triager.addLine(line);
  return { ...triager.result(), fileKeys: {} } satisfies StoredTriage;
}

describe('serverFileErrors policy', () => {
  let s3: EmbeddedS3;
  let local: LocalRuntime;
  let landed: LandedExport;
  let file: FileItem;
  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    local = createLocalRuntime({ sources: [], s3ClientConfig: s3.clientConfig, bucket: BUCKET });
    landed = await seedLandedExport(local.runtime, {
      sourceId: 'policy',
      executionName: 'policy-run',
      files: 3,
    });
    file = landed.items.find((item) => item.kind === 'output')!;
  });
  afterAll(async () => {
    await s3.close();
  });

  /** The seeded file's landed lines; the item is given the count the server claimed. */
  async function verifiedWithCount(count: number, triage?: StoredTriage) {
    const delivered = (await verifyFile(local.runtime, landed.context, file)).file.lines;
    return {
      delivered,
      verify: () => verifyFile(local.runtime, landed.context, { ...file, count: delivered + count }, triage),
    };
  }

  describe('applyFailPolicy', () => {
    const context = (serverFileErrors?: 'fail' | 'accept') =>
      ({ ...landed.context, ...(serverFileErrors ? { serverFileErrors } : {}) }) as ExportContext;
    const failing = () =>
      triageOf([outcome({ severity: 'error', code: 'exception', diagnostics: 'Patient lost' })]);

    it('fails under "fail", and when the execution predates the setting', () => {
      expect(() => applyFailPolicy(context('fail'), failing())).toThrow(ServerFileError);
      expect(() => applyFailPolicy(context(), failing())).toThrow(
        /type Patient: error exception; the source's serverFileErrors is "fail"/,
      );
      // The server's diagnostics (free text about exported resources) stay out of the error.
      expect(() => applyFailPolicy(context(), failing())).not.toThrow(/Patient lost/);
    });

    it('lets the export through under "accept", or when error[] holds only warnings and information', () => {
      expect(() => applyFailPolicy(context('accept'), failing())).not.toThrow();
      const notes = triageOf([
        outcome({ severity: 'information', code: 'informational', diagnostics: 'done' }),
        outcome({ severity: 'warning', code: 'not-supported', diagnostics: 'ignored _elements' }),
      ]);
      expect(() => applyFailPolicy(context('fail'), notes)).not.toThrow();
      expect(() => applyFailPolicy(context('fail'), undefined)).not.toThrow();
    });
  });

  describe('verifyFile', () => {
    it('accepts a shortfall the server reported for the file, with what is missing and why', async () => {
      const triage = triageOf(
        [outcome({ severity: 'fatal', code: 'exception', diagnostics: 'Failed to export part-a.ndjson' })],
        [{ index: file.index, type: file.type, name: 'part-a.ndjson' }],
      );
      const { verify } = await verifiedWithCount(3, triage);

      const { file: entry } = await verify();

      expect({ missing: entry.missing, serverErrors: entry.serverErrors }).toEqual({
        missing: 3,
        serverErrors: ['fatal exception: Failed to export part-a.ndjson'],
      });
    });

    it("accepts a shortfall covered by a failure of the file's type or of the whole export", async () => {
      const byType = triageOf([
        outcome({
          severity: 'error',
          code: 'processing',
          diagnostics: `some ${file.type} resources are lost`,
        }),
      ]);
      const wide = triageOf([
        outcome({ severity: 'error', code: 'exception', diagnostics: 'database went away' }),
      ]);

      const first = await (await verifiedWithCount(2, byType)).verify();
      const second = await (await verifiedWithCount(2, wide)).verify();

      expect(first.file.serverErrors).toEqual([`error processing: some ${file.type} resources are lost`]);
      expect(second.file).toMatchObject({
        missing: 2,
        serverErrors: ['error exception: database went away'],
      });
    });

    it('fails a shortfall no failing issue covers, saying the server did not report it', async () => {
      const otherType = file.type === 'Encounter' ? 'Observation' : 'Encounter';
      const triage = triageOf([
        outcome({
          severity: 'error',
          code: 'processing',
          diagnostics: `some ${otherType} resources are lost`,
        }),
        outcome({ severity: 'information', code: 'informational', diagnostics: `${file.type} is fine` }),
      ]);
      const { verify, delivered } = await verifiedWithCount(1, triage);

      await expect(verify()).rejects.toThrow(VerificationError);
      await expect(verify()).rejects.toThrow(
        `the manifest says ${delivered + 1} resources, ${delivered} landed; the server's error[] reports no failure that covers this file`,
      );
    });

    it('fails a file with more lines than its count, reported or not', async () => {
      const triage = triageOf([
        outcome({ severity: 'error', code: 'exception', diagnostics: 'database went away' }),
      ]);
      const { verify } = await verifiedWithCount(-1, triage);

      await expect(verify()).rejects.toThrow(VerificationError);
    });

    it('records the reasons of a file a failure names even when its count adds up', async () => {
      const triage = triageOf(
        [outcome({ severity: 'error', code: 'exception', diagnostics: 'Failed to export part-a.ndjson' })],
        [{ index: file.index, type: file.type, name: 'part-a.ndjson' }],
      );
      const { verify } = await verifiedWithCount(0, triage);

      const { file: entry } = await verify();

      expect({ missing: entry.missing, serverErrors: entry.serverErrors }).toEqual({
        missing: 0,
        serverErrors: ['error exception: Failed to export part-a.ndjson'],
      });
    });
  });

  it("names the server's reasons when the Verify Files Map fails without them (AWS: States.ExceedToleratedFailureThreshold)", async () => {
    const triage = triageOf([
      outcome({ severity: 'error', code: 'exception', diagnostics: 'Failed to export Patient.2.ndjson' }),
    ]);
    await local.runtime.store.putJson(serverErrorTriageKey(landed.context.workPrefix), triage);

    const ended = await endExport(local.runtime, {
      sourceId: landed.context.sourceId,
      executionName: landed.context.executionName,
      outcome: 'failed',
      failure: {
        error: 'States.ExceedToleratedFailureThreshold',
        message: 'The specified tolerated failure threshold was exceeded',
      },
      allowResume: false,
      waitForDownloads: false,
      context: landed.context,
    });

    expect(ended.cause).toMatch(
      /^The specified tolerated failure threshold was exceeded; ServerFileError: the server reported 1 failing issue\(s\) in the manifest's error\[\] \(1 error\): type Patient: error exception; the source's serverFileErrors is "fail"/,
    );
  });
});
