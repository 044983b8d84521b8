/**
 * The sandbox's data against the pipeline's US Core 6.1.0 rule engine: the sandbox imports nothing from
 * lambdas/, so this test is where the two meet. The default dataset must have no error; the
 * nonConformant fault's resources must fail exactly the rules their kind breaks, and nothing else may.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadUsCoreValidator } from '../../lambdas/validation/engine/index.js';
import type { ResourceValidation } from '../../lambdas/validation/types.js';
import type { NonConformantPlan } from '../../scripts/sandbox/export/non-conformance.js';
import type { FaultPlan } from '../../scripts/sandbox/faults.js';
import {
  accessToken,
  exportAndWait,
  ndjsonLines,
  registerTestClient,
  startTestSandbox,
  type TestSandbox,
} from './support/sandbox.js';

type Resource = Record<string, unknown> & { resourceType: string; id: string };

/** Enough Observations to reach every Observation profile the sandbox makes. */
const PLAN = {
  missingPatientIdentifier: 3,
  genderOutsideValueSet: 2,
  observationWithoutCategory: 150,
  conditionWithoutClinicalStatus: 1,
} satisfies NonConformantPlan;

const errorsOf = (validation: ResourceValidation) =>
  validation.profiles.flatMap((p) => p.issues.filter((i) => i.severity === 'error'));
const rulesOf = (validation: ResourceValidation, severity: 'error' | 'warning') =>
  [
    ...new Set(
      validation.profiles.flatMap((p) => p.issues.filter((i) => i.severity === severity).map((i) => i.rule)),
    ),
  ].sort();

describe('US Core 6.1.0 conformance of the sandbox data', () => {
  const validator = loadUsCoreValidator('6.1.0');
  let t: TestSandbox;
  beforeAll(async () => {
    t = await startTestSandbox({ patientCount: 50, jobDurationMs: 0, retryAfterSeconds: 0 });
  });
  afterAll(() => t.sandbox.close());

  /** Every resource of a system export with these client faults, downloaded over HTTP. */
  const exported = async (faults: FaultPlan, query = '') => {
    const client = await registerTestClient(t.sandbox, { faults });
    const token = await accessToken(t, client);
    const { statusUrl, manifest } = await exportAndWait(t, token, `${t.sandbox.baseUrl}/$export${query}`);
    const bodies = await Promise.all(
      manifest.output.map(async (file) => {
        const response = await fetch(file.url, { headers: { authorization: `Bearer ${token}` } });
        expect(response.status).toBe(200);
        return ndjsonLines(Buffer.from(await response.arrayBuffer())) as Resource[];
      }),
    );
    return { statusUrl, resources: bodies.flat() };
  };

  it('has no error in any resource of the default dataset, each checked against the profile it claims', async () => {
    // Act
    const { resources } = await exported({});
    const validations = resources.map((resource) => ({ resource, validation: validator.validate(resource) }));
    // Assess
    const types = new Set(resources.map((r) => r.resourceType));
    expect([...types].sort()).toEqual(
      [
        'AllergyIntolerance',
        'Condition',
        'DocumentReference',
        'Encounter',
        'Group',
        'Immunization',
        'MedicationRequest',
        'Observation',
        'Organization',
        'Patient',
        'Practitioner',
        'Procedure',
      ].sort(),
    );
    const errors = validations.flatMap(({ resource, validation }) =>
      errorsOf(validation).map((i) => `${resource.resourceType}/${resource.id} ${i.rule} at ${i.expression}`),
    );
    expect(errors).toEqual([]);
    for (const { resource, validation } of validations) {
      if (resource.resourceType === 'Group') {
        // US Core has no Group profile.
        expect(validation.profiles).toEqual([]);
        continue;
      }
      const claimed = (resource.meta as { profile: string[] }).profile[0];
      expect(validation.profiles.filter((p) => p.claimed).map((p) => p.profile)).toEqual([claimed]);
      expect(validation.conformant).toBe(true);
    }
    // Every Observation profile the sandbox makes is exercised, not only the common ones.
    const observationProfiles = new Set(
      validations
        .filter(({ resource }) => resource.resourceType === 'Observation')
        .flatMap(({ validation }) => validation.profiles.map((p) => p.profile.split('/').at(-1))),
    );
    expect([...observationProfiles].sort()).toEqual([
      'us-core-blood-pressure',
      'us-core-bmi',
      'us-core-body-height',
      'us-core-body-temperature',
      'us-core-body-weight',
      'us-core-heart-rate',
      'us-core-observation-lab',
      'us-core-pulse-oximetry',
      'us-core-respiratory-rate',
      'us-core-simple-observation',
      'us-core-smokingstatus',
    ]);
  });

  it('finds exactly the nonConformant fault’s resources, each failing the rules its kind breaks', async () => {
    // Act
    const { statusUrl, resources } = await exported(
      { nonConformant: PLAN },
      '?_type=Patient,Observation,Condition',
    );
    const broken = t.sandbox.nonConformantResources(statusUrl);
    const byId = new Map(resources.map((r) => [`${r.resourceType}/${r.id}`, validator.validate(r)]));
    const validationOf = (type: string, id: string) => byId.get(`${type}/${id}`)!;
    // Assess
    expect(Object.fromEntries(Object.entries(broken).map(([kind, ids]) => [kind, ids.length]))).toEqual(PLAN);
    const nonConformant = [...byId].filter(([, v]) => !v.conformant).map(([key]) => key);
    expect(nonConformant.sort()).toEqual(
      [
        ...broken.missingPatientIdentifier.map((id) => `Patient/${id}`),
        ...broken.genderOutsideValueSet.map((id) => `Patient/${id}`),
        ...broken.observationWithoutCategory.map((id) => `Observation/${id}`),
      ].sort(),
    );
    for (const id of broken.missingPatientIdentifier) {
      expect(rulesOf(validationOf('Patient', id), 'error')).toEqual(['cardinality:Patient.identifier']);
    }
    for (const id of broken.genderOutsideValueSet) {
      expect(rulesOf(validationOf('Patient', id), 'error')).toEqual(['binding:Patient.gender']);
    }
    for (const id of broken.observationWithoutCategory) {
      // The element (1..*) and the category slice of the profile the Observation claims (1..1);
      // us-core-simple-observation's slice is 0..*, so the element alone.
      const validation = validationOf('Observation', id);
      const simple = validation.profiles.some((p) => p.profile.endsWith('/us-core-simple-observation'));
      const rules = rulesOf(validation, 'error');
      expect(rules[0]).toBe('cardinality:Observation.category');
      expect(rules.slice(1)).toHaveLength(simple ? 0 : 1);
      for (const rule of rules.slice(1)) {
        expect(rule).toMatch(/^cardinality:Observation\.category:(us-core|VSCat|SocialHistory)$/);
      }
    }
    const brokenProfiles = new Set(
      broken.observationWithoutCategory.flatMap((id) =>
        validationOf('Observation', id).profiles.map((p) => p.profile.split('/').at(-1)),
      ),
    );
    expect(brokenProfiles.size).toBe(11);
    // con-3 is a warning in base R4 and US Core 6.1.0: the Condition stays conformant.
    for (const id of broken.conditionWithoutClinicalStatus) {
      const validation = validationOf('Condition', id);
      expect(validation.conformant).toBe(true);
      expect(rulesOf(validation, 'warning')).toContain('invariant:con-3');
    }
    const con3 = [...byId].filter(([, v]) => rulesOf(v, 'warning').includes('invariant:con-3'));
    expect(con3.map(([key]) => key)).toEqual(
      broken.conditionWithoutClinicalStatus.map((id) => `Condition/${id}`),
    );
  });
});
