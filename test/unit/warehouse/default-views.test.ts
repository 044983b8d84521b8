/**
 * The default views (warehouse/views/*.json) over the sandbox's resources: each view's rows must equal rows
 * computed here straight from the resources' JSON, without FHIRPath, so that a wrong path in a view (or a
 * wrong runner) shows as a difference. One row per resource in every default view.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileView, type Row } from '../../../lambdas/warehouse/view-definition/index.js';
import { DEFAULT_VIEW_DEFINITIONS, viewsFor } from '../../../lambdas/warehouse/views.js';
import { createDataset } from '../../../scripts/sandbox/data/dataset.js';

// biome-ignore lint/suspicious/noExplicitAny: the expectations walk free FHIR JSON, as a reader of the resources would
type Json = Record<string, any>;
const dir = join(import.meta.dirname, '../../../warehouse/views');
const dataset = createDataset({ patientCount: 20 });
const resourcesOf = (type: string): Json[] =>
  [...dataset.lines({ type } as never)].map((line) => JSON.parse(String(line)) as Json);

const or = <T>(v: T | undefined): T | null => (v === undefined ? null : v);
/** The id a relative reference `Type/id` names, when its type is `type` (any type when none is given). */
const refId = (reference: Json | undefined, type?: string): string | null => {
  const match = /^([A-Z][A-Za-z]+)\/([^/]+)$/.exec(reference?.reference ?? '');
  return match && (type === undefined || match[1] === type) ? (match[2] as string) : null;
};
const coding = (prefix: string, concept: Json | undefined, codeName = `${prefix}_code`): Json => {
  const c = concept?.coding?.[0];
  return {
    [`${prefix}_system`]: or(c?.system),
    [codeName]: or(c?.code),
    [`${prefix}_display`]: or(c?.display),
  };
};
const meta = (r: Json) => ({ version_id: or(r.meta?.versionId), last_updated: or(r.meta?.lastUpdated) });
const head = (r: Json, patient: Json | undefined) => ({ id: r.id, patient_id: refId(patient, 'Patient') });
const extension = (r: Json, url: string): Json | undefined => r.extension?.find((e: Json) => e.url === url);
const US_CORE = 'http://hl7.org/fhir/us/core/StructureDefinition/';

const expected: Record<string, (r: Json) => Json> = {
  patient: (r) => ({
    id: r.id,
    active: or(r.active),
    gender: or(r.gender),
    birth_date: or(r.birthDate),
    deceased_boolean: or(r.deceasedBoolean),
    deceased_datetime: or(r.deceasedDateTime),
    family_name: or(r.name?.[0]?.family),
    given_name: or(r.name?.[0]?.given?.[0]),
    race_code: or(
      extension(r, `${US_CORE}us-core-race`)?.extension?.find((e: Json) => e.url === 'ombCategory')
        ?.valueCoding?.code,
    ),
    ethnicity_code: or(
      extension(r, `${US_CORE}us-core-ethnicity`)?.extension?.find((e: Json) => e.url === 'ombCategory')
        ?.valueCoding?.code,
    ),
    birth_sex: or(extension(r, `${US_CORE}us-core-birthsex`)?.valueCode),
    marital_status_code: or(r.maritalStatus?.coding?.[0]?.code),
    city: or(r.address?.[0]?.city),
    state: or(r.address?.[0]?.state),
    postal_code: or(r.address?.[0]?.postalCode),
    managing_organization_id: refId(r.managingOrganization, 'Organization'),
    ...meta(r),
  }),
  encounter: (r) => ({
    ...head(r, r.subject),
    status: r.status,
    class_code: or(r.class?.code),
    ...coding('type', r.type?.[0]),
    period_start: or(r.period?.start),
    period_end: or(r.period?.end),
    practitioner_id: or(
      (r.participant ?? [])
        .map((p: Json) => refId(p.individual, 'Practitioner'))
        .find((id: string | null) => id),
    ),
    service_provider_id: refId(r.serviceProvider, 'Organization'),
    ...meta(r),
  }),
  condition: (r) => ({
    ...head(r, r.subject),
    encounter_id: refId(r.encounter, 'Encounter'),
    clinical_status: or(r.clinicalStatus?.coding?.[0]?.code),
    verification_status: or(r.verificationStatus?.coding?.[0]?.code),
    category_code: or(r.category?.[0]?.coding?.[0]?.code),
    ...coding('code', r.code, 'code'),
    code_text: or(r.code?.text),
    snomed_code: or(r.code?.coding?.find((c: Json) => c.system === 'http://snomed.info/sct')?.code),
    icd10cm_code: or(
      r.code?.coding?.find((c: Json) => c.system === 'http://hl7.org/fhir/sid/icd-10-cm')?.code,
    ),
    onset_datetime: or(r.onsetDateTime),
    abatement_datetime: or(r.abatementDateTime),
    recorded_date: or(r.recordedDate),
    ...meta(r),
  }),
  observation: (r) => ({
    ...head(r, r.subject),
    encounter_id: refId(r.encounter, 'Encounter'),
    status: r.status,
    category_code: or(
      (r.category ?? [])
        .flatMap((c: Json) => c.coding ?? [])
        .find((c: Json) => c.system === 'http://terminology.hl7.org/CodeSystem/observation-category')?.code,
    ),
    ...coding('code', r.code, 'code'),
    code_text: or(r.code?.text),
    effective_datetime: or(r.effectiveDateTime),
    issued: or(r.issued),
    value_quantity_value: or(r.valueQuantity?.value),
    value_quantity_unit: or(r.valueQuantity?.unit),
    value_quantity_system: or(r.valueQuantity?.system),
    value_quantity_code: or(r.valueQuantity?.code),
    ...coding('value_codeable_concept', r.valueCodeableConcept),
    value_string: or(r.valueString),
    value_boolean: or(r.valueBoolean),
    value_integer: or(r.valueInteger),
    value_datetime: or(r.valueDateTime),
    ...meta(r),
  }),
  medication_request: (r) => ({
    ...head(r, r.subject),
    encounter_id: refId(r.encounter, 'Encounter'),
    status: r.status,
    intent: r.intent,
    category_code: or(r.category?.[0]?.coding?.[0]?.code),
    ...coding('medication', r.medicationCodeableConcept),
    medication_id: refId(r.medicationReference, 'Medication'),
    authored_on: or(r.authoredOn),
    requester_id: refId(r.requester),
    dosage_text: or(r.dosageInstruction?.[0]?.text),
    ...meta(r),
  }),
  immunization: (r) => ({
    ...head(r, r.patient),
    encounter_id: refId(r.encounter, 'Encounter'),
    status: r.status,
    ...coding('vaccine', r.vaccineCode),
    occurrence_datetime: or(r.occurrenceDateTime),
    primary_source: or(r.primarySource),
    lot_number: or(r.lotNumber),
    ...meta(r),
  }),
  procedure: (r) => ({
    ...head(r, r.subject),
    encounter_id: refId(r.encounter, 'Encounter'),
    status: r.status,
    ...coding('code', r.code, 'code'),
    code_text: or(r.code?.text),
    performed_datetime: or(r.performedDateTime),
    performed_period_start: or(r.performedPeriod?.start),
    performed_period_end: or(r.performedPeriod?.end),
    ...meta(r),
  }),
  allergy_intolerance: (r) => ({
    ...head(r, r.patient),
    encounter_id: refId(r.encounter, 'Encounter'),
    clinical_status: or(r.clinicalStatus?.coding?.[0]?.code),
    verification_status: or(r.verificationStatus?.coding?.[0]?.code),
    type: or(r.type),
    category: or(r.category?.[0]),
    criticality: or(r.criticality),
    ...coding('code', r.code, 'code'),
    code_text: or(r.code?.text),
    recorded_date: or(r.recordedDate),
    reaction_severity: or(r.reaction?.[0]?.severity),
    ...meta(r),
  }),
  document_reference: (r) => ({
    ...head(r, r.subject),
    status: r.status,
    doc_status: or(r.docStatus),
    ...coding('type', r.type),
    category_code: or(r.category?.[0]?.coding?.[0]?.code),
    date: or(r.date),
    author_id: refId(r.author?.[0]),
    custodian_id: refId(r.custodian, 'Organization'),
    encounter_id: refId(r.context?.encounter?.[0], 'Encounter'),
    period_start: or(r.context?.period?.start),
    period_end: or(r.context?.period?.end),
    content_type: or(r.content?.[0]?.attachment?.contentType),
    attachment_size: or(r.content?.[0]?.attachment?.size),
    attachment_title: or(r.content?.[0]?.attachment?.title),
    ...meta(r),
  }),
};

const files = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort();

describe('default views', () => {
  it('ships one view per US Core type the sandbox exports, named as its file', () => {
    expect(files.map((f) => f.replace(/\.json$/, ''))).toEqual(Object.keys(expected).sort());
  });

  for (const file of files) {
    const json = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    const name = file.replace(/\.json$/, '');
    it(`${name}: rows equal those computed from the sandbox's ${json.resource} resources`, () => {
      const view = compileView(json);
      expect(view.view.name).toBe(name);
      // Shareable: every column's type declared, none left to inference.
      expect(view.columns.filter((c) => c.inferred).map((c) => c.name)).toEqual([]);
      const resources = resourcesOf(view.view.resource);
      expect(resources.length).toBeGreaterThan(10);
      const rows: Row[] = resources.flatMap((r) => view.rowsOf(r));
      const want = resources.map((r) => (expected[name] as (r: Json) => Json)(r));
      expect(rows).toEqual(want);
      expect(Object.keys(rows[0] ?? {})).toEqual(view.columns.map((c) => c.name));
      // The expectation is not vacuous: every column but the ones the sandbox never fills has a value somewhere.
      const neverFilled = view.columns
        .filter((c) => want.every((row) => row[c.name] === null))
        .map((c) => c.name);
      expect(neverFilled).toEqual(NEVER_IN_SANDBOX[name] ?? []);
    });
  }
});

/** Columns for data the sandbox does not generate (choices of value[x] it never picks, deceased patients). */
const NEVER_IN_SANDBOX: Record<string, string[]> = {
  patient: ['deceased_boolean', 'deceased_datetime'],
  observation: ['value_string', 'value_boolean', 'value_integer', 'value_datetime'],
  medication_request: ['medication_id'],
  procedure: ['performed_datetime'],
};

describe('viewsFor: the defaults and a source’s own views', () => {
  const ownPatient = {
    name: 'patient',
    resource: 'Patient',
    select: [{ column: [{ name: 'id', path: 'getResourceKey()', type: 'id' }] }],
  };
  const vitals = {
    name: 'blood_pressure',
    resource: 'Observation',
    where: [{ path: "code.coding.exists(system = 'http://loinc.org' and code = '85354-9')" }],
    select: [
      { column: [{ name: 'id', path: 'getResourceKey()', type: 'id' }] },
      {
        forEach: 'component',
        column: [
          { name: 'code', path: 'code.coding.first().code', type: 'code' },
          { name: 'value', path: 'value.ofType(Quantity).value', type: 'decimal' },
        ],
      },
    ],
  };

  it('gives the nine defaults, by table name, bundled from warehouse/views', () => {
    expect([...viewsFor().keys()]).toEqual([
      'patient',
      'encounter',
      'condition',
      'observation',
      'medication_request',
      'immunization',
      'procedure',
      'allergy_intolerance',
      'document_reference',
    ]);
    expect(DEFAULT_VIEW_DEFINITIONS).toEqual(
      files.map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8'))).sort(byOrder),
    );
  });

  it('a source’s view replaces the default of its name and adds the others', () => {
    const views = viewsFor([ownPatient, vitals]);
    expect([...views.keys()]).toEqual([...viewsFor().keys(), 'blood_pressure']);
    expect(views.get('patient')?.columns.map((c) => c.name)).toEqual(['id']);
    const rows = resourcesOf('Observation').flatMap((r) => views.get('blood_pressure')?.rowsOf(r) ?? []);
    const bp = resourcesOf('Observation').filter((o) =>
      o.code?.coding?.some((c: Json) => c.system === 'http://loinc.org' && c.code === '85354-9'),
    );
    expect(bp.length).toBeGreaterThan(0);
    expect(rows).toEqual(
      bp.flatMap((o) =>
        (o.component ?? []).map((c: Json) => ({
          id: o.id,
          code: c.code.coding[0].code,
          value: or(c.valueQuantity?.value),
        })),
      ),
    );
  });

  it('refuses a view without a table name, with one no SQL engine takes unquoted, or two of one name', () => {
    expect(() => viewsFor([{ ...vitals, name: undefined }])).toThrow(
      "the source's views[0]: ViewDefinition (unnamed): name: expected lower-case letters",
    );
    expect(() => viewsFor([{ ...vitals, name: 'Blood Pressure' }])).toThrow(
      /views\[0\].*name: expected lower-case/,
    );
    expect(() => viewsFor([vitals, vitals])).toThrow(
      `the source's views[1]: a second view named "blood_pressure"`,
    );
  });
});

const ORDER = [
  'patient',
  'encounter',
  'condition',
  'observation',
  'medication_request',
  'immunization',
  'procedure',
  'allergy_intolerance',
  'document_reference',
];
const byOrder = (a: Json, b: Json) => ORDER.indexOf(a.name) - ORDER.indexOf(b.name);
