import { describe, expect, it } from 'vitest';
import { createDataset } from '../../../scripts/sandbox/data/dataset.js';
import { EXPORTABLE_TYPES, type ResourceSelection } from '../../../scripts/sandbox/data/types.js';
import { type Resource, referencesIn, resourcesOf } from './support.js';

const dataset = createDataset({ patientCount: 80, seed: 3 });

/** `Type/id` of every resource a set of selections yields. */
function keysOf(selections: readonly ResourceSelection[]): Set<string> {
  return new Set(
    selections.flatMap((selection) =>
      resourcesOf(dataset, selection).map((resource) => `${resource.resourceType}/${resource.id}`),
    ),
  );
}

function byKey(selections: readonly ResourceSelection[]): Map<string, Resource> {
  return new Map(
    selections.flatMap((selection) =>
      resourcesOf(dataset, selection).map(
        (resource) => [`${resource.resourceType}/${resource.id}`, resource] as const,
      ),
    ),
  );
}

const subjectOf = (resource: Resource): string =>
  ((resource.subject ?? resource.patient) as { reference: string }).reference;

describe('references', () => {
  it('resolve to resources of the same system-level export, but for the technical-id Group', () => {
    // Prepare
    const selections = EXPORTABLE_TYPES.map((type) => ({ type }));
    const existing = keysOf(selections);

    // Act
    const resources = [...byKey(selections).values()];
    const references = resources
      .filter((resource) => resource.id !== 'cohort-technical-ids')
      .flatMap(referencesIn);

    // Assess
    expect(references.length).toBeGreaterThan(1000);
    const dangling = references.filter((reference) => !existing.has(reference));
    expect(dangling).toEqual([]);
  });

  it('give the technical-id Group members that no Patient id resolves but a Patient identifier does', () => {
    // Prepare
    const patients = resourcesOf(dataset, { type: 'Patient' });
    const byIdentifier = new Map(
      patients.flatMap((patient) =>
        (patient.identifier as { value: string }[]).map(
          (identifier) => [identifier.value, patient.id] as const,
        ),
      ),
    );
    const group = resourcesOf(dataset, { type: 'Group' }).find((g) => g.id === 'cohort-technical-ids')!;

    // Act
    const members = (group.member as { entity: { reference: string } }[]).map((m) => m.entity.reference);

    // Assess
    expect(members).toHaveLength(25);
    const ids = new Set(patients.map((patient) => `Patient/${patient.id}`));
    expect(members.filter((reference) => ids.has(reference))).toEqual([]);
    expect(members.map((reference) => byIdentifier.get(reference.replace('Patient/', '')))).toEqual(
      Array.from({ length: 25 }, (_, i) => `pt-${i}`),
    );
  });

  it.each([
    'Observation',
    'Condition',
    'MedicationRequest',
    'AllergyIntolerance',
    'Procedure',
    'Immunization',
    'DocumentReference',
  ] as const)('tie each %s to an Encounter of the same patient', (type) => {
    // Prepare
    const encounters = byKey([{ type: 'Encounter' }]);

    // Act
    const resources = resourcesOf(dataset, { type });

    // Assess
    for (const resource of resources) {
      const encounter = (resource.encounter ??
        (resource.context as { encounter: unknown[] }).encounter[0]) as {
        reference: string;
      };
      expect(subjectOf(encounters.get(encounter.reference)!)).toBe(subjectOf(resource));
    }
  });

  it('tie each prescription with a reason to a Condition of the same patient', () => {
    // Prepare
    const conditions = byKey([{ type: 'Condition' }]);

    // Act
    const prescriptions = resourcesOf(dataset, { type: 'MedicationRequest' }).filter(
      (resource) => resource.reasonReference !== undefined,
    );

    // Assess
    expect(prescriptions.length).toBeGreaterThan(20);
    for (const prescription of prescriptions) {
      const [reason] = prescription.reasonReference as { reference: string }[];
      expect(subjectOf(conditions.get(reason!.reference)!)).toBe(subjectOf(prescription));
    }
  });

  it('give every patient a general practitioner and a managing organization', () => {
    // Act
    const patients = resourcesOf(dataset, { type: 'Patient' });

    // Assess
    for (const patient of patients) {
      expect((patient.generalPractitioner as { reference: string }[])[0]!.reference).toMatch(
        /^Practitioner\/pract-\d+$/,
      );
      expect((patient.managingOrganization as { reference: string }).reference).toMatch(
        /^Organization\/org-\d+$/,
      );
    }
  });

  it.each([
    ['the small group', Array.from({ length: 10 }, (_, i) => i)],
    ['one patient', [42]],
    ['scattered patients', [79, 3, 41, 3, 17]],
  ])(
    'resolve within a patient-scoped export of %s, which has exactly the referenced Practitioners and Organizations',
    (_, patientIndexes) => {
      // Prepare
      const selections = EXPORTABLE_TYPES.map((type) => ({ type, patientIndexes }));
      const existing = keysOf(selections);
      const resources = [...byKey(selections).values()];

      // Act
      const references = new Set(
        resources.filter((resource) => resource.resourceType !== 'Group').flatMap(referencesIn),
      );

      // Assess
      const dangling = [...references].filter((reference) => !existing.has(reference));
      expect(dangling).toEqual([]);
      const shared = [...existing].filter(
        (key) => key.startsWith('Practitioner/') || key.startsWith('Organization/'),
      );
      expect(shared.length).toBeGreaterThan(0);
      for (const key of shared) expect(references.has(key)).toBe(true);
    },
  );
});
