import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NonConformantPlan } from '../../scripts/sandbox/export/non-conformance.js';
import { type FaultPlan, FaultPlanError, parseFaultSpec } from '../../scripts/sandbox/faults.js';
import {
  accessToken,
  exportAndWait,
  kickOff,
  ndjsonLines,
  registerTestClient,
  startTestSandbox,
  type TestSandbox,
} from './support/sandbox.js';

type Resource = Record<string, unknown>;

const PLAN = {
  missingPatientIdentifier: 3,
  genderOutsideValueSet: 2,
  observationWithoutCategory: 4,
  conditionWithoutClinicalStatus: 1,
} satisfies NonConformantPlan;
const ADMINISTRATIVE_GENDERS = ['male', 'female', 'other', 'unknown'];
const isProblemListItem = (condition: Resource) =>
  (condition.category as { coding: { code: string }[] }[]).some((category) =>
    category.coding.some((coding) => coding.code === 'problem-list-item'),
  );

describe('the nonConformant fault', () => {
  let t: TestSandbox;
  beforeAll(async () => {
    t = await startTestSandbox({ patientCount: 20, jobDurationMs: 0, retryAfterSeconds: 0 });
  });
  afterAll(() => t.sandbox.close());

  const exportUrl = () => `${t.sandbox.baseUrl}/$export?_type=Patient,Observation,Condition`;

  /** Exports with these client faults and downloads every output file over HTTP, in manifest order. */
  const exportFiles = async (faults: FaultPlan) => {
    const client = await registerTestClient(t.sandbox, { faults });
    const token = await accessToken(t, client);
    const { statusUrl, manifest } = await exportAndWait(t, token, exportUrl());
    const download = async (url: string) => {
      const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
      expect(response.status).toBe(200);
      return Buffer.from(await response.arrayBuffer());
    };
    const bodies = await Promise.all(manifest.output.map((file) => download(file.url)));
    const byType = (type: string) =>
      manifest.output.flatMap((file, i) => (file.type === type ? ndjsonLines(bodies[i]!) : []));
    return { statusUrl, manifest, bodies, byType, download };
  };

  it('breaks exactly the asked number of resources, the first eligible ones in export order, kinds disjoint', async () => {
    // Prepare
    const clean = await exportFiles({ resourcesPerFile: 7 });
    // Act
    const faulty = await exportFiles({ nonConformant: PLAN, resourcesPerFile: 7 });
    // Assess
    const broken = t.sandbox.nonConformantResources(faulty.statusUrl);
    const patients = faulty.byType('Patient');
    const withoutIdentifier = patients.filter((p) => p.identifier === undefined).map((p) => p.id);
    const offValueSet = patients
      .filter((p) => !ADMINISTRATIVE_GENDERS.includes(p.gender as string))
      .map((p) => p.id);
    const withoutCategory = faulty
      .byType('Observation')
      .filter((o) => o.category === undefined)
      .map((o) => o.id);
    const conditions = faulty.byType('Condition');
    const withoutClinicalStatus = conditions.filter((c) => c.clinicalStatus === undefined).map((c) => c.id);
    const cleanPatientIds = clean.byType('Patient').map((p) => p.id);
    const cleanObservationIds = clean.byType('Observation').map((o) => o.id);
    const firstProblem = clean.byType('Condition').find(isProblemListItem)!.id;

    expect(withoutIdentifier).toEqual(cleanPatientIds.slice(0, 3));
    expect(offValueSet).toEqual(cleanPatientIds.slice(3, 5));
    expect(withoutCategory).toEqual(cleanObservationIds.slice(0, 4));
    expect(withoutClinicalStatus).toEqual([firstProblem]);
    expect(broken).toEqual({
      missingPatientIdentifier: withoutIdentifier,
      genderOutsideValueSet: offValueSet,
      observationWithoutCategory: withoutCategory,
      conditionWithoutClinicalStatus: withoutClinicalStatus,
    });
    // The v2 code EHRs send instead (F for female, and so on), not some placeholder.
    const cleanGender = new Map(clean.byType('Patient').map((p) => [p.id, p.gender]));
    for (const patient of patients.filter((p) => offValueSet.includes(p.id))) {
      expect(patient.gender).toBe({ male: 'M', female: 'F' }[cleanGender.get(patient.id) as string] ?? 'U');
    }
    // Nothing else differs: same files, same counts, every other resource byte for byte.
    expect(faulty.manifest.output.map((f) => [f.type, f.count])).toEqual(
      clean.manifest.output.map((f) => [f.type, f.count]),
    );
    const brokenIds = new Set(Object.values(broken).flat());
    for (const type of ['Patient', 'Observation', 'Condition']) {
      const faultyLines = faulty.byType(type);
      const cleanLines = clean.byType(type);
      expect(faultyLines.map((r) => r.id)).toEqual(cleanLines.map((r) => r.id));
      faultyLines.forEach((resource, i) => {
        if (!brokenIds.has(resource.id as string)) expect(resource).toEqual(cleanLines[i]);
      });
    }
  });

  it('serves the same resources on every download, and fileContent gives what was served', async () => {
    // Prepare
    const faulty = await exportFiles({
      nonConformant: { observationWithoutCategory: 9 },
      resourcesPerFile: 4,
    });
    // Act
    const again = await Promise.all(faulty.manifest.output.map((file) => faulty.download(file.url)));
    // Assess
    expect(again).toEqual(faulty.bodies);
    faulty.manifest.output.forEach((file, i) => {
      expect(t.sandbox.fileContent(file.url)).toEqual(faulty.bodies[i]);
    });
    // Nine Observations over three files of four.
    const perFile = faulty.manifest.output
      .map((file, i) => [file, ndjsonLines(faulty.bodies[i]!)] as const)
      .filter(([file]) => file.type === 'Observation')
      .map(([, lines]) => lines.filter((o) => o.category === undefined).length);
    expect(perFile.slice(0, 3)).toEqual([4, 4, 1]);
    expect(perFile.slice(3).every((n) => n === 0)).toBe(true);
  });

  it('refuses at kick-off a count the export cannot meet, naming both numbers', async () => {
    // Prepare
    const clean = await exportFiles({});
    const problems = clean.byType('Condition').filter(isProblemListItem).length;
    const client = await registerTestClient(t.sandbox);
    const token = await accessToken(t, client);
    const fault = (plan: NonConformantPlan) => ({
      headers: { 'x-sandbox-fault': `nonConformant=${JSON.stringify(plan)}` },
    });
    // Act
    const tooManyConditions = await kickOff(
      exportUrl(),
      token,
      fault({ conditionWithoutClinicalStatus: problems + 1 }),
    );
    const tooManyPatients = await kickOff(
      exportUrl(),
      token,
      fault({ missingPatientIdentifier: 15, genderOutsideValueSet: 6 }),
    );
    const typeNotExported = await kickOff(
      `${t.sandbox.baseUrl}/$export?_type=Patient`,
      token,
      fault({ observationWithoutCategory: 1 }),
    );
    // Assess
    expect(tooManyConditions.status).toBe(400);
    expect(JSON.stringify(await tooManyConditions.json())).toContain(
      `faults.nonConformant.conditionWithoutClinicalStatus: ${problems + 1} Condition resources asked, but this export has only ${problems} Condition resources with category problem-list-item`,
    );
    expect(tooManyPatients.status).toBe(400);
    expect(JSON.stringify(await tooManyPatients.json())).toContain(
      'faults.nonConformant.genderOutsideValueSet: 6 Patient resources asked, but this export has only 5 Patient resources with a gender not already taken by missingPatientIdentifier',
    );
    expect(typeNotExported.status).toBe(400);
    expect(JSON.stringify(await typeNotExported.json())).toContain(
      'observationWithoutCategory: 1 Observation resources asked, but this export has only 0',
    );
    expect(t.sandbox.jobs().filter((job) => job.clientId === client.clientId)).toEqual([]);
  });

  it('is parsed from a fault spec and refuses unknown kinds and bad counts', () => {
    expect(parseFaultSpec('nonConformant={"missingPatientIdentifier":3,"genderOutsideValueSet":2}')).toEqual({
      nonConformant: { missingPatientIdentifier: 3, genderOutsideValueSet: 2 },
    });
    expect(parseFaultSpec(JSON.stringify({ nonConformant: PLAN, jobDurationMs: 0 }))).toEqual({
      nonConformant: PLAN,
      jobDurationMs: 0,
    });
    const problem = (spec: string) => {
      try {
        parseFaultSpec(spec);
      } catch (error) {
        expect(error).toBeInstanceOf(FaultPlanError);
        return (error as Error).message;
      }
      throw new Error(`${spec} was accepted`);
    };
    expect(problem('nonConformant={"missingPatientId":1}')).toBe(
      'faults.nonConformant: unknown kind "missingPatientId" (expected missingPatientIdentifier, genderOutsideValueSet, observationWithoutCategory, conditionWithoutClinicalStatus), got {"missingPatientId":1}',
    );
    expect(problem('nonConformant={"observationWithoutCategory":-1}')).toBe(
      'faults.nonConformant: kind "observationWithoutCategory": expected a non-negative integer count, got {"observationWithoutCategory":-1}',
    );
    expect(problem('nonConformant={"observationWithoutCategory":1.5}')).toContain('non-negative integer');
    expect(problem('nonConformant')).toMatch(/^faults\.nonConformant: expected an object of kind to count/);
    expect(problem('nonConformant=[1]')).toMatch(/expected an object of kind to count/);
  });

  it('exposes empty lists for an export without the fault', async () => {
    const clean = await exportFiles({});
    expect(t.sandbox.nonConformantResources(clean.statusUrl)).toEqual({
      missingPatientIdentifier: [],
      genderOutsideValueSet: [],
      observationWithoutCategory: [],
      conditionWithoutClinicalStatus: [],
    });
    expect(() => t.sandbox.nonConformantResources('no-such-export')).toThrow(/no export "no-such-export"/);
  });
});
