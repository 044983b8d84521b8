/**
 * Hand-written cases for what the rule table cannot derive: which profile applies, invariants (FHIRPath),
 * datatypes inside complex types, the forms a Reference takes, must-support coverage, and that findings never
 * carry an element's value.
 */
import { describe, expect, it } from 'vitest';
import { loadUsCoreValidator, UNEVALUATED_CONSTRAINTS } from '../../../lambdas/validation/engine/index.js';
import type { ResourceValidation } from '../../../lambdas/validation/types.js';

const US_CORE = 'http://hl7.org/fhir/us/core/StructureDefinition/';
const LOINC = 'http://loinc.org';
const OBS_CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
const validator = loadUsCoreValidator();

type Json = Record<string, unknown>;
const issues = (r: ResourceValidation) =>
  r.profiles.flatMap((p) => p.issues).filter((i) => i.rule !== 'invariant:dom-6');
const errors = (r: ResourceValidation) => issues(r).filter((i) => i.severity === 'error');
const found = (r: ResourceValidation) => issues(r).map((i) => `${i.rule} @ ${i.expression}`);

const patient = (extra: Json = {}): Json => ({
  resourceType: 'Patient',
  id: 'p1',
  identifier: [{ system: 'http://hospital.example.org/mrn', value: 'MRN-0001' }],
  name: [{ family: 'Shaw', given: ['Amy'] }],
  gender: 'female',
  birthDate: '1987-02-20',
  ...extra,
});

const observation = (category: string | undefined, code: string, extra: Json = {}): Json => ({
  resourceType: 'Observation',
  id: 'o1',
  status: 'final',
  ...(category ? { category: [{ coding: [{ system: OBS_CATEGORY, code: category }] }] } : {}),
  code: { coding: [{ system: LOINC, code }] },
  subject: { reference: 'Patient/p1' },
  effectiveDateTime: '2023-03-01T10:00:00Z',
  valueQuantity: { value: 70, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  ...extra,
});

const condition = (category: string | undefined, extra: Json = {}): Json => ({
  resourceType: 'Condition',
  id: 'c1',
  clinicalStatus: {
    coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }],
  },
  verificationStatus: {
    coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: 'confirmed' }],
  },
  ...(category
    ? {
        category: [
          {
            coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-category', code: category }],
          },
        ],
      }
    : {}),
  code: { coding: [{ system: 'http://snomed.info/sct', code: '38341003' }] },
  subject: { reference: 'Patient/p1' },
  onsetDateTime: '2020-01-01',
  recordedDate: '2020-01-02',
  ...extra,
});

describe('loadUsCoreValidator', () => {
  it('compiles once per process and names its rule set', () => {
    expect(loadUsCoreValidator('6.1.0')).toBe(validator);
    expect(validator.ruleSet).toBe('hl7.fhir.us.core#6.1.0');
    expect(validator.profileTitle(`${US_CORE}us-core-patient`)).toBe('US Core Patient Profile');
  });

  it('compiles every invariant of US Core 6.1.0 except those that resolve() other resources', () => {
    validator.validate(patient());
    expect(Object.fromEntries(UNEVALUATED_CONSTRAINTS)).toEqual({
      'ctm-1': 'uses resolve(), which needs other resources or a terminology server',
      'provenance-1': 'uses resolve(), which needs other resources or a terminology server',
    });
  });
});

describe('which profile applies', () => {
  const chosen = (r: Json) =>
    validator.validate(r).profiles.map((p) => [p.profile.slice(US_CORE.length), p.claimed]);

  it.each([
    ['laboratory', '2345-7', 'us-core-observation-lab'],
    ['vital-signs', '8867-4', 'us-core-heart-rate'],
    ['vital-signs', '85354-9', 'us-core-blood-pressure'],
    ['vital-signs', '8480-6', 'us-core-vital-signs'],
    ['social-history', '72166-2', 'us-core-smokingstatus'],
    [undefined, '72166-2', 'us-core-smokingstatus'],
    ['social-history', '11341-5', 'us-core-observation-occupation'],
    ['survey', '44249-1', 'us-core-observation-screening-assessment'],
    ['exam', '8693-4', 'us-core-observation-clinical-result'],
    ['functional-status', '8693-4', 'us-core-simple-observation'],
    [undefined, '1234-5', 'us-core-simple-observation'],
  ])('Observation with category %s and LOINC %s → %s', (category, code, profile) => {
    expect(chosen(observation(category, code))).toEqual([[profile, false]]);
  });

  it.each([
    ['problem-list-item', 'us-core-condition-problems-health-concerns'],
    ['health-concern', 'us-core-condition-problems-health-concerns'],
    ['encounter-diagnosis', 'us-core-condition-encounter-diagnosis'],
    [undefined, 'us-core-condition-problems-health-concerns'],
  ])('Condition with category %s → %s', (category, profile) => {
    expect(chosen(condition(category))).toEqual([[profile, false]]);
  });

  it('uses the profiles a resource claims, and only those', () => {
    const r = observation('vital-signs', '8867-4', {
      meta: { profile: [`${US_CORE}us-core-vital-signs|6.1.0`, `${US_CORE}us-core-heart-rate`] },
    });
    expect(chosen(r)).toEqual([
      ['us-core-vital-signs', true],
      ['us-core-heart-rate', true],
    ]);
  });

  it('warns about a claimed profile it does not know and validates against the type default', () => {
    const r = validator.validate(
      observation('social-history', '72166-2', {
        meta: { profile: [`${US_CORE}us-core-observation-social-history`] },
      }),
    );
    expect(r.profiles.map((p) => [p.profile, p.claimed])).toEqual([
      [`${US_CORE}us-core-smokingstatus`, false],
    ]);
    expect(issues(r)).toContainEqual(
      expect.objectContaining({
        severity: 'warning',
        rule: 'profile:Observation.meta.profile',
        expression: 'Observation.meta.profile[0]',
      }),
    );
    expect(r.conformant).toBe(true);
  });

  it('ignores claims of base FHIR profiles (the R4 vital signs ones) and selects by content', () => {
    const r = observation('vital-signs', '8867-4', {
      meta: { profile: ['http://hl7.org/fhir/StructureDefinition/heartrate'] },
    });
    expect(chosen(r)).toEqual([['us-core-heart-rate', false]]);
    expect(issues(validator.validate(r))).toEqual([]);
  });

  it('applies no profile to a type US Core does not profile', () => {
    const r = validator.validate({ resourceType: 'Group', id: 'g', type: 'person', actual: true });
    expect(r).toEqual({ resourceType: 'Group', id: 'g', profiles: [], conformant: true });
  });
});

describe('the sandbox fault kinds', () => {
  it('a Patient without identifier', () => {
    const r = validator.validate(patient({ identifier: undefined }));
    expect(found(r)).toEqual(['cardinality:Patient.identifier @ Patient.identifier']);
    expect(r.conformant).toBe(false);
  });

  it('a gender outside administrative-gender', () => {
    expect(found(validator.validate(patient({ gender: 'F' })))).toEqual([
      'binding:Patient.gender @ Patient.gender',
    ]);
  });

  it('an Observation without category', () => {
    const r = validator.validate(observation(undefined, '1234-5'));
    expect(found(r)).toEqual(['cardinality:Observation.category @ Observation.category']);
  });

  it('a vital sign without its VSCat category', () => {
    const r = validator.validate(observation('exam', '8867-4'));
    expect(r.profiles[0]!.profile).toBe(`${US_CORE}us-core-heart-rate`);
    expect(found(r)).toEqual(['cardinality:Observation.category:VSCat @ Observation.category']);
  });

  it('a problem-list Condition without clinicalStatus (con-3, a warning in FHIR R4)', () => {
    const r = validator.validate(condition('problem-list-item', { clinicalStatus: undefined }));
    expect(found(r)).toEqual(['invariant:con-3 @ Condition']);
    expect(issues(r)[0]!.severity).toBe('warning');
  });
});

describe('slices', () => {
  const bp = (components: Json[]) =>
    observation('vital-signs', '85354-9', { valueQuantity: undefined, component: components });
  const component = (code: string) => ({
    code: { coding: [{ system: LOINC, code }] },
    valueQuantity: { value: 120, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' },
  });

  it('blood pressure with both components conforms', () => {
    expect(errors(validator.validate(bp([component('8480-6'), component('8462-4')])))).toEqual([]);
  });

  it('blood pressure without the diastolic component names the slice', () => {
    expect(found(validator.validate(bp([component('8480-6')])))).toEqual([
      'cardinality:Observation.component @ Observation.component',
      'cardinality:Observation.component:diastolic @ Observation.component',
    ]);
  });

  it("checks a slice member's own rules: a systolic value in the wrong unit system", () => {
    const systolic = component('8480-6');
    (systolic.valueQuantity as Json).system = 'http://example.org/units';
    const r = validator.validate(bp([systolic, component('8462-4')]));
    expect(found(r)).toContain(
      'fixed:Observation.component:systolic.value[x].system @ Observation.component[0].value.ofType(Quantity).system',
    );
  });
});

describe('invariants', () => {
  it('us-core-6: a Patient name needs family or given, or a data-absent-reason', () => {
    const r = validator.validate(patient({ name: [{ text: 'Amy' }] }));
    expect(found(r)).toEqual(['invariant:us-core-6 @ Patient.name[0]']);
    const absent = patient({
      name: [
        {
          extension: [
            { url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' },
          ],
        },
      ],
    });
    expect(found(validator.validate(absent))).toEqual([]);
  });

  it('us-core-2: an Observation with neither value, component nor dataAbsentReason', () => {
    const r = validator.validate(observation('laboratory', '2345-7', { valueQuantity: undefined }));
    expect(found(r)).toContain('invariant:us-core-2 @ Observation');
  });

  it('obs-6: dataAbsentReason only when there is no value', () => {
    const r = validator.validate(
      observation('laboratory', '2345-7', {
        dataAbsentReason: {
          coding: [{ system: 'http://terminology.hl7.org/CodeSystem/data-absent-reason', code: 'unknown' }],
        },
      }),
    );
    expect(found(r)).toContain('invariant:obs-6 @ Observation');
  });

  it('vs-1: a vital sign effectiveDateTime needs at least a day, judged on the concrete choice type', () => {
    const r = validator.validate(observation('vital-signs', '8867-4', { effectiveDateTime: '2023' }));
    expect(found(r)).toEqual(['invariant:vs-1 @ Observation.effective.ofType(dateTime)']);
    expect(
      found(validator.validate(observation('vital-signs', '8867-4', { effectiveDateTime: '2023-03-01' }))),
    ).toEqual([]);
  });

  it('us-core-8 (error) and a warning-severity invariant keep their declared severity', () => {
    const report = {
      resourceType: 'DiagnosticReport',
      id: 'd1',
      status: 'final',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0074', code: 'LAB' }] }],
      code: { coding: [{ system: LOINC, code: '58410-2' }] },
      subject: { reference: 'Patient/p1' },
      issued: '2023-03-01T10:00:00.000Z',
    };
    const r = validator.validate(report);
    expect(issues(r).filter((i) => i.rule.startsWith('invariant:'))).toEqual([
      expect.objectContaining({
        rule: 'invariant:us-core-8',
        severity: 'error',
        expression: 'DiagnosticReport',
      }),
    ]);
    const imm = validator.validate({
      resourceType: 'Immunization',
      id: 'i1',
      status: 'completed',
      vaccineCode: { coding: [{ system: 'http://hl7.org/fhir/sid/ndc', code: '49281-0400-10' }] },
      patient: { reference: 'Patient/p1' },
      occurrenceDateTime: '2023-03-01',
      primarySource: true,
    });
    expect(issues(imm)).toEqual([
      expect.objectContaining({
        rule: 'invariant:us-core-5',
        severity: 'warning',
        expression: 'Immunization',
      }),
    ]);
    expect(imm.conformant).toBe(true);
  });

  it('dom-3 cannot be judged by fhirpath.js once there is a contained resource: recorded, not reported', () => {
    const r = validator.validate(
      patient({ contained: [{ resourceType: 'Organization', id: 'orphan', name: 'X' }] }),
    );
    expect(found(r)).toEqual([]);
    expect(UNEVALUATED_CONSTRAINTS.get('dom-3')).toBe('fhirpath threw while evaluating it on some resources');
  });
});

describe('datatypes', () => {
  it.each([
    [{ birthDate: '1987-02-30x' }, 'datatype:Patient.birthDate @ Patient.birthDate'],
    [{ active: 'true' }, 'datatype:Patient.active @ Patient.active'],
    [{ id: 'has space' }, 'datatype:Patient.id @ Patient.id'],
    [{ gender: 7 }, 'datatype:Patient.gender @ Patient.gender'],
    [
      { deceasedDateTime: '2020-01-01T10:00' },
      'datatype:Patient.deceased[x] @ Patient.deceased.ofType(dateTime)',
    ],
    [
      { multipleBirthInteger: 1.5 },
      'datatype:Patient.multipleBirth[x] @ Patient.multipleBirth.ofType(integer)',
    ],
  ])('a malformed primitive: %j', (change, finding) => {
    expect(found(validator.validate(patient(change)))).toContain(finding);
  });

  it('inside complex types the profile does not expand: HumanName, Period, Identifier, Coding, Quantity', () => {
    const r = validator.validate(
      patient({
        name: [{ family: 'Shaw', given: ['Amy'], period: { start: 'last spring' } }],
        identifier: [{ system: 'not a uri', value: 'MRN-0001' }],
        maritalStatus: {
          coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-MaritalStatus', code: ' M' }],
        },
      }),
    );
    expect(found(r)).toEqual([
      'datatype:Patient.identifier.system @ Patient.identifier[0].system',
      'datatype:Patient.name.period.start @ Patient.name[0].period.start',
      'datatype:Patient.maritalStatus.coding.code @ Patient.maritalStatus.coding[0].code',
    ]);
    const q = validator.validate(
      observation('laboratory', '2345-7', {
        valueQuantity: { value: '5', system: 'http://unitsofmeasure.org' },
      }),
    );
    expect(found(q)).toEqual([
      'datatype:Observation.value[x].value @ Observation.value.ofType(Quantity).value',
    ]);
  });

  it('a choice value of a type the profile does not allow', () => {
    const r = validator.validate(patient({ deceasedString: 'no' }));
    expect(found(r)).toEqual(['datatype:Patient.deceased[x] @ Patient.deceased.ofType(string)']);
  });
});

describe('references', () => {
  const withSubject = (subject: Json, contained?: Json[]) =>
    validator.validate(observation('laboratory', '2345-7', { subject, ...(contained ? { contained } : {}) }));

  it.each([
    [{ reference: 'Patient/123' }],
    [{ reference: 'https://ehr.example.org/fhir/Patient/123' }],
    [{ reference: 'https://ehr.example.org/fhir/Patient/123/_history/2' }],
    [{ reference: 'urn:uuid:6b1f1a4e-4c6e-4b8b-9a56-0c5f1b5f6c1e' }],
    [{ identifier: { system: 'http://hospital.example.org/mrn', value: 'X' } }],
    [{ display: 'a patient' }],
  ])('accepts %j', (subject) => {
    expect(found(withSubject(subject))).toEqual([]);
  });

  it('resolves #contained references by their type', () => {
    const contained = [{ resourceType: 'Patient', id: 'pat' }];
    expect(found(withSubject({ reference: '#pat' }, contained))).toEqual([]);
    const wrong = [{ resourceType: 'Group', id: 'pat', type: 'person', actual: true }];
    expect(found(withSubject({ reference: '#pat' }, wrong))).toEqual([
      'reference:Observation.subject @ Observation.subject',
    ]);
    expect(found(withSubject({ reference: '#missing' }, contained))).toContain(
      'reference:Observation.subject @ Observation.subject',
    );
  });

  it('rejects a relative or absolute reference to another type', () => {
    expect(found(withSubject({ reference: 'Practitioner/1' }))).toEqual([
      'reference:Observation.subject @ Observation.subject',
    ]);
    expect(found(withSubject({ reference: 'https://ehr.example.org/fhir/Practitioner/1' }))).toEqual([
      'reference:Observation.subject @ Observation.subject',
    ]);
  });
});

describe('must-support coverage', () => {
  it('lists the profile’s must-support element ids, slices included', () => {
    const ms = validator.mustSupportElements(`${US_CORE}us-core-patient`);
    expect(ms).toContain('Patient.identifier');
    expect(ms).toContain('Patient.name.family');
    expect(validator.mustSupportElements(`${US_CORE}us-core-blood-pressure`)).toContain(
      'Observation.component:systolic',
    );
  });

  it('reports which of them a resource populates', () => {
    const [p] = validator.validate(patient()).profiles;
    expect(p!.mustSupportPopulated).toEqual([
      'Patient.identifier',
      'Patient.identifier.system',
      'Patient.identifier.value',
      'Patient.name',
      'Patient.name.family',
      'Patient.name.given',
      'Patient.gender',
      'Patient.birthDate',
    ]);
  });
});

describe('findings carry no element values', () => {
  it('names rules and expectations, never what was found', () => {
    const values = ['Zebediah', 'MRN-SECRET-77', '1911-13-31', 'x-gender-x', 'Practitioner/secret-9'];
    const r = validator.validate(
      patient({
        name: [{ text: 'Zebediah' }],
        identifier: [{ system: 'has space', value: 'MRN-SECRET-77' }],
        birthDate: '1911-13-31',
        gender: 'x-gender-x',
        managingOrganization: { reference: 'Practitioner/secret-9' },
      }),
    );
    expect(issues(r).length).toBeGreaterThanOrEqual(5);
    const text = JSON.stringify(r);
    for (const value of values) expect(text).not.toContain(value);
  });
});
