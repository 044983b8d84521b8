import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Receipt, ReceiptFile } from '../../lambdas/core/receipt.js';
import { createWriteValidationReportHandler } from '../../lambdas/handlers/write-validation-report.js';
import type { IssueLine, ValidationSummary } from '../../lambdas/validation/report.js';
import type { ValidatedMarker } from '../../lambdas/validation/stage.js';
import { runLocalValidation } from '../../scripts/local/local-validation.js';
import { createLocalRuntime } from '../../scripts/local/runtime.js';
import type { NonConformantPlan } from '../../scripts/sandbox/export/non-conformance.js';
import { type Harness, receiptOf, type ScenarioResult, startHarness } from './support/harness.js';

/**
 * The validation stage end to end, with the real parts: an export from the sandbox (real ASL,
 * real handlers, embedded S3), its `_SUCCESS.json`, then validate-export.asl.json started with
 * the S3 Object Created event of that marker, and the report read back from S3.
 */
/** What the sandbox breaks (exact counts per export): 5 Patients and 4 Observations fail, 1 Condition warns (con-3). */
const BROKEN = {
  missingPatientIdentifier: 3,
  genderOutsideValueSet: 2,
  observationWithoutCategory: 4,
  conditionWithoutClinicalStatus: 1,
} satisfies NonConformantPlan;

/** The server job's status URL, from the Kick Off Export state's output. */
function statusUrlOf(result: ScenarioResult): string {
  for (const event of result.run.events) {
    if (event.type !== 'StateExited' || event.state?.name !== 'Kick Off Export') continue;
    const kickoff = (event.state.output as { kickoff?: { statusUrl?: string } }).kickoff;
    if (kickoff?.statusUrl) return kickoff.statusUrl;
  }
  throw new Error('the export has no Kick Off Export with a status URL');
}

describe('US Core validation of an export (validate-export.asl.json)', () => {
  let harness: Harness;
  let reported: ScenarioResult;
  let gated: ScenarioResult;
  beforeAll(async () => {
    harness = await startHarness({
      patientCount: 30,
      jobDurationMs: 0,
      retryAfterSeconds: 0,
      resourcesPerFile: 60,
    });
    reported = await harness.exportWith({
      sourceId: 'validate-report',
      validate: true,
      waitOverrideMs: 20,
      faults: { nonConformant: BROKEN },
    });
    gated = await harness.exportWith({
      sourceId: 'validate-gate',
      validate: true,
      waitOverrideMs: 20,
      faults: { nonConformant: { missingPatientIdentifier: 1 } },
      source: { validation: { mode: 'gate', minConformantPercent: 100 } },
    });
  }, 120_000);
  afterAll(async () => {
    await harness?.close();
  });

  const folderOf = (result: ScenarioResult) =>
    receiptOf(result).fileIndex.key.replace(/_receipt\.files\.ndjson$/, '');
  const json = async <T>(key: string): Promise<T> => {
    const text = await harness.getText(key);
    if (text === undefined) throw new Error(`no object ${key}`);
    return JSON.parse(text) as T;
  };
  const issueLinesOf = async (folder: string): Promise<{ key: string; lines: IssueLine[] }[]> => {
    const parts = await harness.listKeys(`${folder}_validation/issues/`);
    return Promise.all(
      parts.map(async (key) => ({
        key,
        lines: ((await harness.getText(key)) ?? '')
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as IssueLine),
      })),
    );
  };
  const dataFiles = async (receipt: Receipt): Promise<ReceiptFile[]> =>
    ((await harness.getText(receipt.fileIndex.key)) ?? '')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as ReceiptFile)
      .filter((file) => file.kind === 'output');

  it('checks every resource the receipt lists, and the counts add up per type and profile', async () => {
    expect(reported.validation?.run.status).toBe('SUCCEEDED');
    const receipt = receiptOf(reported);
    const folder = folderOf(reported);
    const summary = await json<ValidationSummary>(`${folder}_validation/summary.json`);
    expect(summary.ruleSet).toBe('hl7.fhir.us.core#6.1.0');
    expect(Object.keys(summary.byType).sort()).toEqual(Object.keys(receipt.byType).sort());
    for (const [type, totals] of Object.entries(receipt.byType)) {
      const validated = summary.byType[type]!;
      expect(validated.checked, type).toBe(totals.resources);
      expect(validated.conformant + validated.nonConformant, type).toBe(validated.checked);
      for (const profile of Object.values(validated.profiles)) {
        expect(profile.conformant + profile.nonConformant).toBe(profile.checked);
        for (const percent of Object.values(profile.mustSupportCoverage)) {
          expect(percent).toBeGreaterThanOrEqual(0);
          expect(percent).toBeLessThanOrEqual(100);
        }
      }
    }
    expect(summary.totals.checked).toBe(receipt.totals.resources);
    expect(summary.files).toBe((await dataFiles(receipt)).length);

    // One issues part per data part that has a non-conformant resource; one line per such resource and profile.
    const parts = await issueLinesOf(folder);
    const listed = new Map<string, Set<string>>();
    for (const { key, lines } of parts) {
      expect(key).toMatch(/_validation\/issues\/type=[A-Za-z]+\/part-\d{4}\.ndjson$/);
      for (const line of lines) {
        expect(Object.keys(line).sort()).toEqual(['id', 'issues', 'profile', 'resourceType']);
        expect(line.issues.some((issue) => issue.severity === 'error')).toBe(true);
        for (const issue of line.issues) {
          expect(Object.keys(issue).sort()).toEqual(['expression', 'message', 'rule', 'severity']);
        }
        const ids = listed.get(line.resourceType) ?? new Set();
        ids.add(line.id ?? '');
        listed.set(line.resourceType, ids);
      }
    }
    for (const [type, validated] of Object.entries(summary.byType)) {
      expect(listed.get(type)?.size ?? 0, type).toBe(validated.nonConformant);
    }

    // Exactly what the sandbox broke, and only that: the rest of its data conforms to US Core 6.1.0.
    const broken = harness.sandbox.nonConformantResources(statusUrlOf(reported));
    const nonConformant = Object.fromEntries(
      Object.entries(summary.byType)
        .filter(([, validated]) => validated.nonConformant > 0)
        .map(([type, validated]) => [type, validated.nonConformant]),
    );
    expect(nonConformant).toEqual({ Patient: 5, Observation: 4 });
    expect([...(listed.get('Patient') ?? [])].sort()).toEqual(
      [...broken.missingPatientIdentifier, ...broken.genderOutsideValueSet].sort(),
    );
    expect([...(listed.get('Observation') ?? [])].sort()).toEqual(
      [...broken.observationWithoutCategory].sort(),
    );
    const rulesOf = (type: string) => {
      const counts: Record<string, number> = {};
      for (const profile of Object.values(summary.byType[type]!.profiles)) {
        for (const [rule, count] of Object.entries(profile.issues))
          counts[rule] = (counts[rule] ?? 0) + count;
      }
      return counts;
    };
    expect(rulesOf('Patient')['cardinality:Patient.identifier']).toBe(3);
    expect(rulesOf('Patient')['binding:Patient.gender']).toBe(2);
    // con-3 is a warning: the Condition conforms, its warning is counted, and it has no issue line.
    expect(rulesOf('Condition')['invariant:con-3']).toBe(1);
    expect(summary.byType.Condition!.withWarningsOnly).toBeGreaterThanOrEqual(1);

    const marker = await json<ValidatedMarker>(`${folder}_VALIDATED.json`);
    expect(marker).toMatchObject({
      passed: true,
      mode: 'report',
      totals: summary.totals,
      sourceId: 'validate-report',
    });
    expect(marker.reason).toBeUndefined();
    const event = reported.emittedEvents.find((e) => e.detailType === 'Bulk Export Validated');
    expect(event?.detail).toMatchObject({
      sourceId: 'validate-report',
      passed: true,
      mode: 'report',
      exportFolder: folder,
    });
    // The work objects are gone once the report is written.
    expect(await harness.listKeys(`_work/validation/source=validate-report/`)).toEqual([]);
  });

  it('a gate withholds passed: true below its threshold and says why, in the marker and the event', async () => {
    expect(gated.validation?.run.status).toBe('SUCCEEDED');
    const folder = folderOf(gated);
    const summary = await json<ValidationSummary>(`${folder}_validation/summary.json`);
    const marker = await json<ValidatedMarker>(`${folder}_VALIDATED.json`);
    const event = gated.emittedEvents.find((e) => e.detailType === 'Bulk Export Validated')!;
    // One Patient without its identifier: one resource short of the gate's 100%.
    expect(summary.totals.nonConformant).toBe(1);
    expect(marker).toMatchObject({ mode: 'gate', minConformantPercent: 100, passed: false });
    expect(marker.reason).toBe(
      `${summary.totals.checked - 1} of ${summary.totals.checked} resources (${marker.conformantPercent}%) conform to US Core, below the gate's minConformantPercent of 100%`,
    );
    expect(marker.conformantPercent).toBeLessThan(100);
    expect(event.detail).toMatchObject({ passed: false, mode: 'gate', reason: marker.reason });
  });

  it('a file validated over several invocations (checkpoints) gives the same report, byte for byte; a re-run rewrites it', async () => {
    const folder = folderOf(reported);
    const before = new Map<string, Buffer>();
    for (const key of [
      `${folder}_validation/summary.json`,
      ...(await harness.listKeys(`${folder}_validation/issues/`)),
    ]) {
      before.set(key, (await harness.getBytes(key))!);
    }
    const again = await runLocalValidation({
      s3ClientConfig: harness.s3.clientConfig,
      bucket: harness.bucket,
      markerKey: `${folder}_SUCCESS.json`,
      retryOverrideMs: 10,
      // 7 lines an invocation and 300-byte issue parts: every file checkpoints, mid-line-run and mid-upload.
      validation: { linesPerInvocation: 7, issuePartBytes: 300 },
    });
    expect(again.run.status).toBe('SUCCEEDED');
    const batches = (await dataFiles(receiptOf(reported))).length;
    expect(again.run.invocations.ValidateFile).toBeGreaterThan(batches * 2);
    const after = [
      `${folder}_validation/summary.json`,
      ...(await harness.listKeys(`${folder}_validation/issues/`)),
    ];
    expect(after.sort()).toEqual([...before.keys()].sort());
    for (const key of after) expect((await harness.getBytes(key))!.equals(before.get(key)!), key).toBe(true);
  });

  it('no element values in the report, the marker, the events or the execution history', async () => {
    const receipt = receiptOf(reported);
    const values = new Set<string>();
    for (const file of await dataFiles(receipt)) {
      if (file.type !== 'Patient') continue;
      for (const line of ((await harness.getText(file.key)) ?? '').split('\n').filter(Boolean)) {
        const patient = JSON.parse(line) as {
          name?: { family?: string; given?: string[] }[];
          identifier?: { value?: string }[];
          birthDate?: string;
        };
        for (const name of patient.name ?? []) {
          if (name.family) values.add(name.family);
          for (const given of name.given ?? []) values.add(given);
        }
        for (const identifier of patient.identifier ?? []) if (identifier.value) values.add(identifier.value);
        if (patient.birthDate) values.add(patient.birthDate);
      }
    }
    expect(values.size).toBeGreaterThan(10);
    const folder = folderOf(reported);
    const places: { where: string; text: string }[] = [
      { where: 'summary', text: (await harness.getText(`${folder}_validation/summary.json`))! },
      { where: 'marker', text: (await harness.getText(`${folder}_VALIDATED.json`))! },
      { where: 'events', text: JSON.stringify(reported.emittedEvents) },
      { where: 'execution history', text: JSON.stringify(reported.validation?.run.events) },
    ];
    for (const { key, lines } of await issueLinesOf(folder))
      places.push({ where: key, text: JSON.stringify(lines) });
    for (const { where, text } of places) {
      for (const value of values) {
        // Whole JSON strings only: a 4-letter family name may be a substring of a rule id.
        expect(text.includes(`"${value}"`), `${where} holds a value of the data`).toBe(false);
      }
    }
  });

  it('Write Validation Report retried after it had finished (work objects gone) answers as it did', async () => {
    const folder = folderOf(reported);
    const local = createLocalRuntime({
      sources: [],
      s3ClientConfig: harness.s3.clientConfig,
      bucket: harness.bucket,
    });
    try {
      const write = createWriteValidationReportHandler(local.runtime);
      const answer = await write({
        validation: {
          bucket: harness.bucket,
          exportFolder: folder,
          workPrefix: `_work/validation/${folder}`,
        },
      });
      const marker = await json<ValidatedMarker>(`${folder}_VALIDATED.json`);
      expect(answer).toEqual({
        passed: marker.passed,
        mode: marker.mode,
        validatedMarkerKey: `${folder}_VALIDATED.json`,
        summaryKey: `${folder}_validation/summary.json`,
        totals: marker.totals,
      });
    } finally {
      await local.close();
    }
  });

  it('refuses a marker that is not a _SUCCESS.json, and a validation that cannot finish writes no _VALIDATED.json', async () => {
    const folder = folderOf(gated);
    const validate = (markerKey: string) =>
      runLocalValidation({
        s3ClientConfig: harness.s3.clientConfig,
        bucket: harness.bucket,
        markerKey,
        retryOverrideMs: 10,
      });
    // S3 notifications URL-encode keys (= as %3D): the same marker, encoded, is found.
    const encoded = await validate(encodeURIComponent(`${folder}_SUCCESS.json`).replace(/%2F/g, '/'));
    expect(encoded.run.status).toBe('SUCCEEDED');
    expect(encoded.marker?.exportFolder).toBe(folder);

    const partial = await validate(`${folder}_PARTIAL.json`);
    expect(partial.run.status).toBe('FAILED');
    expect(partial.run.error).toBe('ValidationInputError');
    expect(partial.run.cause).toContain(`${folder}_PARTIAL.json is not an export's completion marker`);

    // A data file gone (a lifecycle rule, a hand): the validation fails, saying which, and no marker says otherwise.
    const [patients] = (await dataFiles(receiptOf(gated))).filter((file) => file.type === 'Patient');
    await harness.client.send(
      new DeleteObjectCommand({ Bucket: harness.bucket, Key: `${folder}_VALIDATED.json` }),
    );
    await harness.client.send(new DeleteObjectCommand({ Bucket: harness.bucket, Key: patients!.key }));
    const incomplete = await validate(`${folder}_SUCCESS.json`);
    expect(incomplete.run.status).toBe('FAILED');
    expect(JSON.stringify([incomplete.run.error, incomplete.run.cause])).toContain(
      `the data file ${patients!.key} the receipt lists is missing`,
    );
    expect(await harness.getText(`${folder}_VALIDATED.json`)).toBeUndefined();
  });

  it('a source with validation.enabled false is not validated: no report, no marker', async () => {
    const registration = '_registry/sources/validate-report.json';
    const record = JSON.parse((await harness.getText(registration))!) as {
      settings: { validation: Record<string, unknown> };
    };
    record.settings.validation = { ...record.settings.validation, enabled: false };
    await harness.client.send(
      new PutObjectCommand({ Bucket: harness.bucket, Key: registration, Body: JSON.stringify(record) }),
    );
    const folder = folderOf(reported);
    await harness.client.send(
      new DeleteObjectCommand({ Bucket: harness.bucket, Key: `${folder}_VALIDATED.json` }),
    );
    const off = await runLocalValidation({
      s3ClientConfig: harness.s3.clientConfig,
      bucket: harness.bucket,
      markerKey: `${folder}_SUCCESS.json`,
    });
    expect(off.run.status).toBe('SUCCEEDED');
    expect(off.run.output).toEqual({
      enabled: false,
      sourceId: 'validate-report',
      reason: "the source's validation.enabled is false",
    });
    expect(off.run.invocations.ValidateFile).toBeUndefined();
    expect(await harness.getText(`${folder}_VALIDATED.json`)).toBeUndefined();
  });
});
