import { describe, expect, it } from 'vitest';
import { createDataset } from '../../../scripts/sandbox/data/dataset.js';
import type { ExportableType } from '../../../scripts/sandbox/data/types.js';
import { type Coding, codingsOf, idsOf, type Resource, resourcesOf } from './support.js';

const dataset = createDataset({ patientCount: 250 });

const has =
  (element: string, system: string | undefined, ...codes: string[]) =>
  (resource: Resource): boolean =>
    codingsOf(resource[element]).some(
      (coding: Coding) =>
        (system === undefined || coding.system === system) && codes.includes(coding.code ?? ''),
    );
const is =
  (element: string, ...values: string[]) =>
  (resource: Resource): boolean =>
    values.includes(resource[element] as string);
const updated =
  (test: (ms: number) => boolean) =>
  (resource: Resource): boolean =>
    test(Date.parse(resource.meta.lastUpdated));
const both =
  (a: (resource: Resource) => boolean, b: (resource: Resource) => boolean) =>
  (resource: Resource): boolean =>
    a(resource) && b(resource);
const at = (instant: string): number => Date.parse(instant);

const OBSERVATION_CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';

const cases: [ExportableType, string, (resource: Resource) => boolean][] = [
  ['Observation', 'category=laboratory', has('category', undefined, 'laboratory')],
  [
    'Observation',
    `category=${OBSERVATION_CATEGORY}|vital-signs`,
    has('category', OBSERVATION_CATEGORY, 'vital-signs'),
  ],
  [
    'Observation',
    'category=social-history,laboratory',
    has('category', undefined, 'social-history', 'laboratory'),
  ],
  ['Observation', 'code=8867-4', has('code', undefined, '8867-4')],
  ['Observation', 'code=http://loinc.org|4548-4', has('code', 'http://loinc.org', '4548-4')],
  ['Observation', 'code=59408-5', has('code', undefined, '59408-5')],
  ['Observation', 'status=final', is('status', 'final')],
  [
    'Observation',
    'category=laboratory&status=final,amended',
    both(has('category', undefined, 'laboratory'), is('status', 'final', 'amended')),
  ],
  ['Condition', 'clinical-status=active', has('clinicalStatus', undefined, 'active')],
  [
    'Condition',
    'clinical-status=http://terminology.hl7.org/CodeSystem/condition-clinical|resolved',
    has('clinicalStatus', undefined, 'resolved'),
  ],
  ['Condition', 'category=problem-list-item', has('category', undefined, 'problem-list-item')],
  [
    'Condition',
    'code=http://hl7.org/fhir/sid/icd-10-cm|I10',
    has('code', 'http://hl7.org/fhir/sid/icd-10-cm', 'I10'),
  ],
  ['Encounter', 'status=finished', is('status', 'finished')],
  [
    'Encounter',
    'status=http://hl7.org/fhir/encounter-status|cancelled,in-progress',
    is('status', 'cancelled', 'in-progress'),
  ],
  ['Encounter', 'class=EMER', (resource) => (resource.class as Coding).code === 'EMER'],
  ['Encounter', 'type=http://snomed.info/sct|185349003', has('type', 'http://snomed.info/sct', '185349003')],
  ['MedicationRequest', 'status=active', is('status', 'active')],
  ['MedicationRequest', 'code=860975', has('medicationCodeableConcept', undefined, '860975')],
  ['AllergyIntolerance', 'clinical-status=active', has('clinicalStatus', undefined, 'active')],
  ['AllergyIntolerance', 'category=food', (resource) => (resource.category as string[]).includes('food')],
  ['Procedure', 'status=completed', is('status', 'completed')],
  ['Procedure', 'code=430193006', has('code', undefined, '430193006')],
  [
    'Immunization',
    'vaccine-code=http://hl7.org/fhir/sid/cvx|140',
    has('vaccineCode', 'http://hl7.org/fhir/sid/cvx', '140'),
  ],
  ['Immunization', 'status=completed', is('status', 'completed')],
  ['DocumentReference', 'type=11506-3', has('type', undefined, '11506-3')],
  ['DocumentReference', 'status=current', is('status', 'current')],
  ['Patient', 'gender=female', is('gender', 'female')],
  ['Observation', '_lastUpdated=gt2024-01-01', updated((ms) => ms >= at('2024-01-02T00:00:00Z'))],
  ['Observation', '_lastUpdated=ge2024-01', updated((ms) => ms >= at('2024-01-01T00:00:00Z'))],
  ['Observation', '_lastUpdated=lt2023', updated((ms) => ms < at('2023-01-01T00:00:00Z'))],
  ['Observation', '_lastUpdated=le2023-06-30', updated((ms) => ms < at('2023-07-01T00:00:00Z'))],
  [
    'Observation',
    '_lastUpdated=2023',
    updated((ms) => ms >= at('2023-01-01T00:00:00Z') && ms < at('2024-01-01T00:00:00Z')),
  ],
  [
    'Condition',
    '_lastUpdated=ge2022-01-01T00:00:00Z&_lastUpdated=lt2022-07-01T00:00:00%2B02:00',
    updated((ms) => ms >= at('2022-01-01T00:00:00Z') && ms < at('2022-06-30T22:00:00Z')),
  ],
  [
    'Encounter',
    '_lastUpdated=gt2022-03-04T05:06:07.890Z',
    updated((ms) => ms > at('2022-03-04T05:06:07.890Z')),
  ],
  [
    'Encounter',
    'status=finished&_lastUpdated=ge2025-01-01',
    both(
      is('status', 'finished'),
      updated((ms) => ms >= at('2025-01-01T00:00:00Z')),
    ),
  ],
  ['Practitioner', '_lastUpdated=lt2023', updated((ms) => ms < at('2023-01-01T00:00:00Z'))],
];

describe('_typeFilter', () => {
  it.each(cases)('selects exactly the %s resources matching %s', (type, query, predicate) => {
    // Prepare
    const all = resourcesOf(dataset, { type });

    // Act
    const selected = resourcesOf(dataset, { type, typeFilters: [query] });

    // Assess
    expect(dataset.checkTypeFilter(type, query)).toBeUndefined();
    expect(idsOf(selected)).toEqual(idsOf(all.filter(predicate)));
    expect(selected.length).toBeGreaterThan(0);
    expect(selected.length).toBeLessThan(all.length);
    expect(dataset.count({ type, typeFilters: [query] })).toBe(selected.length);
  });

  it.each([
    ['Observation', 'code=http://snomed.info/sct|8867-4'],
    ['Observation', 'category=imaging'],
    ['Condition', 'clinical-status=|active'],
  ] as const)('selects no %s resource for %s', (type, query) => {
    // Act / Assess
    expect(dataset.checkTypeFilter(type, query)).toBeUndefined();
    expect(dataset.count({ type, typeFilters: [query] })).toBe(0);
  });

  it('matches every resource for a system-only token', () => {
    // Act / Assess
    expect(dataset.count({ type: 'Observation', typeFilters: ['code=http://loinc.org|'] })).toBe(
      dataset.count({ type: 'Observation' }),
    );
  });

  it('ORs several filters of one type, keeping the export order', () => {
    // Prepare
    const all = resourcesOf(dataset, { type: 'Observation' });
    const laboratory = has('category', undefined, 'laboratory');
    const heartRate = has('code', 'http://loinc.org', '8867-4');

    // Act
    const selected = resourcesOf(dataset, {
      type: 'Observation',
      typeFilters: ['category=laboratory', 'code=http://loinc.org|8867-4'],
    });

    // Assess
    expect(idsOf(selected)).toEqual(
      idsOf(all.filter((resource) => laboratory(resource) || heartRate(resource))),
    );
    expect(selected.some(laboratory)).toBe(true);
    expect(selected.some(heartRate)).toBe(true);
  });

  it('ANDs the filters with since and with the patient scope', () => {
    // Prepare
    const patients = [1, 5, 8, 13, 21, 34];
    const since = '2023-01-01T00:00:00Z';
    const all = resourcesOf(dataset, { type: 'Condition', patientIndexes: patients });

    // Act
    const selected = resourcesOf(dataset, {
      type: 'Condition',
      since,
      patientIndexes: patients,
      typeFilters: ['clinical-status=active'],
    });

    // Assess
    const expected = all.filter(
      (resource) =>
        has('clinicalStatus', undefined, 'active')(resource) &&
        Date.parse(resource.meta.lastUpdated) > at(since),
    );
    expect(idsOf(selected)).toEqual(idsOf(expected));
  });
});

describe('checkTypeFilter', () => {
  it.each([
    ['Observation', 'category=laboratory'],
    ['Observation', 'code=http://loinc.org|4548-4,http://loinc.org|2339-0'],
    ['Condition', '_lastUpdated=gt2024-01-01T00:00:00+02:00'],
    ['MedicationRequest', 'status=active&code=860975'],
    ['Practitioner', '_lastUpdated=ge2020'],
  ] as const)('accepts %s?%s', (type, query) => {
    // Act / Assess
    expect(dataset.checkTypeFilter(type, query)).toBeUndefined();
  });

  it.each([
    [
      'Observation',
      'foo=bar',
      '_typeFilter Observation?foo=bar: search parameter "foo" is not supported for Observation (supported: _lastUpdated, category, code, status)',
    ],
    [
      'Observation',
      'code:text=heart',
      '_typeFilter Observation?code:text=heart: modifier ":text" on "code" is not supported',
    ],
    ['Observation', '', '_typeFilter Observation?: the query has no search parameter'],
    [
      'Observation',
      'category=',
      '_typeFilter Observation?category=: search parameter "category" has no value',
    ],
    [
      'Observation',
      'category=laboratory,',
      '_typeFilter Observation?category=laboratory,: search parameter "category" has an empty token in "laboratory,"',
    ],
    [
      'Condition',
      '_lastUpdated=ne2024-01-01',
      '_typeFilter Condition?_lastUpdated=ne2024-01-01: prefix "ne" of _lastUpdated is not supported (use one of eq, gt, ge, lt, le)',
    ],
    [
      'Condition',
      '_lastUpdated=gt2024-02-30',
      '_typeFilter Condition?_lastUpdated=gt2024-02-30: _lastUpdated value "gt2024-02-30" is not a FHIR date or dateTime, with an optional prefix (eq, gt, ge, lt, le)',
    ],
    [
      'Patient',
      '_count=10',
      '_typeFilter Patient?_count=10: search parameter "_count" is not supported for Patient (supported: _lastUpdated, gender)',
    ],
    [
      'Practitioner',
      'name=Smith',
      '_typeFilter Practitioner?name=Smith: search parameter "name" is not supported for Practitioner (supported: _lastUpdated)',
    ],
    ['Medication', 'code=123', 'resource type Medication is not exportable'],
  ])('rejects %s?%s', (type, query, message) => {
    // Act / Assess
    expect(dataset.checkTypeFilter(type as ExportableType, query)).toBe(message);
  });
});
