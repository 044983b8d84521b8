import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createDataset, parsePatientId, patientId } from '../../../scripts/sandbox/data/dataset.js';
import {
  type DatasetOptions,
  EXPORTABLE_TYPES,
  type ExportableType,
  type ResourceSelection,
} from '../../../scripts/sandbox/data/types.js';
import { codingsOf, idsOf, linesOf, type Resource, resourcesOf } from './support.js';

const CLINICAL_TYPES = [
  'Encounter',
  'Observation',
  'Condition',
  'MedicationRequest',
  'AllergyIntolerance',
  'Procedure',
  'Immunization',
  'DocumentReference',
] as const satisfies readonly ExportableType[];

const EPOCH = '2026-01-01T00:00:00Z';
const FIVE_YEARS_MS = 5 * 365.25 * 86_400_000;

function digest(options: DatasetOptions): string {
  const dataset = createDataset(options);
  const hash = createHash('sha256');
  for (const type of EXPORTABLE_TYPES) for (const line of dataset.lines({ type })) hash.update(`${line}\n`);
  return hash.digest('hex');
}

describe('createDataset', () => {
  it('resolves defaults and freezes the options', () => {
    // Act
    const dataset = createDataset();

    // Assess
    expect(dataset.options).toEqual({ seed: 42, patientCount: 1000, epoch: EPOCH });
    expect(Object.isFrozen(dataset.options)).toBe(true);
  });

  it.each([
    [{ patientcount: 10 }, 'unknown dataset option "patientcount" (expected seed, patientCount, epoch)'],
    [{ seed: 1.5 }, 'dataset option "seed" must be an integer, got 1.5'],
    [{ patientCount: 0 }, 'dataset option "patientCount" must be a positive integer, got 0'],
    [{ patientCount: -3 }, 'dataset option "patientCount" must be a positive integer, got -3'],
    [{ patientCount: 2.5 }, 'dataset option "patientCount" must be a positive integer, got 2.5'],
    [{ patientCount: 5_000_001 }, 'dataset option "patientCount" must be at most 5000000, got 5000001'],
    [{ epoch: 'yesterday' }, 'dataset option "epoch" must be an ISO 8601 instant, got "yesterday"'],
  ])('rejects %j', (options, message) => {
    // Act / Assess
    expect(() => createDataset(options as DatasetOptions)).toThrow(message);
  });
});

describe('determinism', () => {
  it('yields byte-identical lines for the same options, and different ones for another seed', () => {
    // Prepare
    const options = { seed: 7, patientCount: 40 };

    // Act
    const first = digest(options);
    const second = digest(options);
    const otherSeed = digest({ ...options, seed: 8 });

    // Assess
    expect(second).toBe(first);
    expect(otherSeed).not.toBe(first);
  });

  it('yields the same bytes in another process', () => {
    // Prepare
    const options = { seed: 7, patientCount: 40, epoch: '2024-06-30T12:00:00Z' };
    const module = fileURLToPath(new URL('../../../scripts/sandbox/data/dataset.ts', import.meta.url));
    const script = `
      const { createHash } = await import('node:crypto');
      const { createDataset } = await import(${JSON.stringify(module)});
      const { EXPORTABLE_TYPES } = await import(${JSON.stringify(module.replace('dataset.ts', 'types.ts'))});
      const dataset = createDataset(${JSON.stringify(options)});
      const hash = createHash('sha256');
      for (const type of EXPORTABLE_TYPES) for (const line of dataset.lines({ type })) hash.update(line + '\\n');
      process.stdout.write(hash.digest('hex'));`;

    // Act
    const child = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...process.env, TZ: 'Pacific/Chatham' },
    });

    // Assess
    expect(child).toBe(digest(options));
  });

  it('generates a resource the same whether or not the ones before it were generated', () => {
    // Prepare
    const full = linesOf(createDataset({ patientCount: 60 }), { type: 'Observation' });

    // Act
    const alone = linesOf(createDataset({ patientCount: 60 }), { type: 'Observation' }, 250, 1);

    // Assess
    expect(alone).toEqual([full[250]]);
  });
});

describe('lines', () => {
  const dataset = createDataset({ patientCount: 120 });
  const epochMs = Date.parse(EPOCH);

  it.each(EXPORTABLE_TYPES)('renders %s as single-line JSON of that type with unique ids', (type) => {
    // Act
    const lines = linesOf(dataset, { type });

    // Assess
    expect(lines.length).toBeGreaterThan(0);
    const resources = lines.map((line) => JSON.parse(line) as Resource);
    for (const [i, line] of lines.entries()) {
      expect(line).not.toMatch(/[\r\n\u2028\u2029]/);
      expect(resources[i]!.resourceType).toBe(type);
    }
    expect(new Set(idsOf(resources)).size).toBe(resources.length);
    for (const resource of resources) expect(resource.id).toMatch(/^[A-Za-z0-9\-.]{1,64}$/);
  });

  it.each(EXPORTABLE_TYPES)('dates %s lastUpdated within the five years before the epoch', (type) => {
    // Act
    const updated = resourcesOf(dataset, { type }).map((resource) => Date.parse(resource.meta.lastUpdated));

    // Assess
    for (const ms of updated) {
      expect(ms).toBeLessThanOrEqual(epochMs);
      expect(ms).toBeGreaterThanOrEqual(epochMs - FIVE_YEARS_MS);
    }
  });

  it('gives each patient several resources of each clinical type, varying between patients', () => {
    // Act
    const perType = Object.fromEntries(
      CLINICAL_TYPES.map((type) => [type, dataset.count({ type }) / dataset.options.patientCount]),
    );
    const encountersPerPatient = new Set(
      Array.from({ length: 20 }, (_, p) => dataset.count({ type: 'Encounter', patientIndexes: [p] })),
    );

    // Assess
    expect(perType.Encounter).toBeGreaterThan(2);
    expect(perType.Observation).toBeGreaterThan(5);
    expect(perType.Condition).toBeGreaterThan(1.5);
    for (const type of CLINICAL_TYPES) expect(perType[type]).toBeGreaterThan(0.3);
    expect(encountersPerPatient.size).toBeGreaterThan(2);
  });

  it('makes the default 1,000-patient cohort about 20 MB of NDJSON', () => {
    // Prepare
    const defaults = createDataset();

    // Act
    let bytes = 0;
    for (const type of EXPORTABLE_TYPES)
      for (const line of defaults.lines({ type })) bytes += Buffer.byteLength(line) + 1;

    // Assess
    expect(bytes).toBeGreaterThan(10_000_000);
    expect(bytes).toBeLessThan(25_000_000);
  });

  it.each([
    [-1, undefined, 'skip must be a non-negative integer, got -1'],
    [1.5, undefined, 'skip must be a non-negative integer, got 1.5'],
    [0, -2, 'limit must be a non-negative integer or Infinity, got -2'],
    [0, Number.NaN, 'limit must be a non-negative integer or Infinity, got NaN'],
  ])('rejects skip %s and limit %s', (skip, limit, message) => {
    // Act / Assess
    expect(() => dataset.lines({ type: 'Patient' }, skip, limit)).toThrow(message);
  });

  it.each([
    [{ type: 'Medication' }, 'resource type Medication is not exportable'],
    [{ type: 'Patient', since: 'last week' }, 'selection since must be an ISO 8601 instant, got "last week"'],
    [
      { type: 'Patient', until: '2025-13-45' },
      'selection until must be an ISO 8601 instant, got "2025-13-45"',
    ],
    [
      { type: 'Observation', typeFilters: ['foo=bar'] },
      '_typeFilter Observation?foo=bar: search parameter "foo" is not supported for Observation (supported: _lastUpdated, category, code, status)',
    ],
  ])('rejects the selection %j', (selection, message) => {
    // Act / Assess
    expect(() => dataset.lines(selection as ResourceSelection)).toThrow(message);
    expect(() => dataset.count(selection as ResourceSelection)).toThrow(message);
  });
});

describe('count', () => {
  const dataset = createDataset({ patientCount: 700 });
  const diabetes = dataset.groups.find((group) => group.id === 'diabetes')!.patientIndexes;
  const selections: ResourceSelection[] = [
    ...EXPORTABLE_TYPES.map((type) => ({ type })),
    ...EXPORTABLE_TYPES.map((type) => ({ type, since: '2024-02-29T10:00:00Z' })),
    ...EXPORTABLE_TYPES.map((type) => ({ type, patientIndexes: diabetes })),
    { type: 'Observation', since: '2022-01-01T00:00:00Z', until: '2023-01-01T00:00:00Z' },
    { type: 'Observation', until: '2021-06-01T00:00:00Z' },
    { type: 'Observation', typeFilters: ['category=laboratory', 'code=http://loinc.org|8867-4'] },
    { type: 'Observation', typeFilters: ['category=vital-signs'], since: '2025-01-01T00:00:00Z' },
    { type: 'Condition', typeFilters: ['clinical-status=active'], patientIndexes: [3, 1, 4, 1, 5, 9, 2, 6] },
    { type: 'Encounter', typeFilters: ['status=finished', '_lastUpdated=lt2022'] },
    { type: 'MedicationRequest', typeFilters: ['status=active,on-hold'] },
    { type: 'Practitioner', patientIndexes: [0, 1, 2] },
    { type: 'Organization', patientIndexes: [0] },
    { type: 'Group', patientIndexes: [4] },
    { type: 'Patient', patientIndexes: [] },
    { type: 'Patient', since: EPOCH },
  ];

  it.each(selections)('equals the number of lines for %j', (selection) => {
    // Act
    const counted = dataset.count(selection);
    const lines = linesOf(dataset, selection);

    // Assess
    expect(counted).toBe(lines.length);
  });

  it('is zero for a window after the epoch and for an empty patient list', () => {
    // Act / Assess
    expect(dataset.count({ type: 'Observation', since: EPOCH })).toBe(0);
    expect(dataset.count({ type: 'Observation', patientIndexes: [] })).toBe(0);
    expect(dataset.count({ type: 'Practitioner', patientIndexes: [] })).toBe(0);
  });
});

describe('slices', () => {
  const dataset = createDataset({ patientCount: 1000 });

  it.each([
    [{ type: 'Observation' } as const, 1000],
    [{ type: 'Observation' } as const, 4096],
    [{ type: 'Observation', since: '2023-05-01T00:00:00Z' } as const, 777],
    [{ type: 'Condition', typeFilters: ['clinical-status=resolved,active'] } as const, 300],
    [{ type: 'Encounter', patientIndexes: [900, 10, 500, 11, 12] } as const, 2],
    [{ type: 'Practitioner' } as const, 3],
  ])('concatenate to the whole selection for %j in slices of %i', (selection, size) => {
    // Prepare
    const whole = linesOf(dataset, selection);

    // Act
    const sliced: string[] = [];
    for (let skip = 0; skip < whole.length; skip += size)
      sliced.push(...linesOf(dataset, selection, skip, size));

    // Assess
    expect(whole.length).toBeGreaterThan(0);
    expect(sliced).toEqual(whole);
  });

  it.each([
    [0, 0, 0],
    [6000, 5, 5],
    [4095, 2, 2],
    [10_000_000, 5, 0],
  ])('skipping %i with limit %i yields %i lines', (skip, limit, expected) => {
    // Act
    const lines = linesOf(dataset, { type: 'Observation' }, skip, limit);

    // Assess
    expect(lines).toHaveLength(expected);
  });

  it('slices a two-million-patient cohort without generating what it skips', () => {
    // Prepare
    const huge = createDataset({ patientCount: 2_000_000 });

    // Act
    const patients = linesOf(huge, { type: 'Patient' }, 1_999_998).map(
      (line) => JSON.parse(line) as Resource,
    );
    const encounters = linesOf(huge, { type: 'Encounter', patientIndexes: [1_999_999] });

    // Assess
    expect(huge.count({ type: 'Patient' })).toBe(2_000_000);
    expect(idsOf(patients)).toEqual(['pt-1999998', 'pt-1999999']);
    expect(encounters.length).toBeGreaterThan(0);
    for (const line of encounters) expect(line).toContain('"subject":{"reference":"Patient/pt-1999999"}');
  });
});

describe('since and until', () => {
  const dataset = createDataset({ patientCount: 300 });
  const sinces = [
    '2021-06-01T00:00:00Z',
    '2022-06-01T00:00:00Z',
    '2023-06-01T00:00:00Z',
    '2024-06-01T00:00:00Z',
    '2025-06-01T00:00:00Z',
  ];

  it.each([...CLINICAL_TYPES, 'Patient'] as const)(
    'selects strictly fewer %s resources for each later since',
    (type) => {
      // Act
      const counts = [dataset.count({ type }), ...sinces.map((since) => dataset.count({ type, since }))];

      // Assess
      for (let i = 1; i < counts.length; i++) expect(counts[i]).toBeLessThan(counts[i - 1]!);
      expect(counts.at(-1)).toBeGreaterThan(0);
    },
  );

  it.each(CLINICAL_TYPES)('selects exactly the %s resources updated after since and up to until', (type) => {
    // Prepare
    const since = '2022-03-15T08:00:00Z';
    const until = '2024-09-01T00:00:00Z';
    const all = resourcesOf(dataset, { type });

    // Act
    const selected = resourcesOf(dataset, { type, since, until });

    // Assess
    const expected = all.filter((resource) => {
      const ms = Date.parse(resource.meta.lastUpdated);
      return ms > Date.parse(since) && ms <= Date.parse(until);
    });
    expect(idsOf(selected)).toEqual(idsOf(expected));
    expect(selected.length).toBeGreaterThan(0);
    expect(selected.length).toBeLessThan(all.length);
  });

  it('treats since as exclusive and until as inclusive', () => {
    // Prepare
    const [first] = resourcesOf(dataset, { type: 'Observation' });
    const instant = first!.meta.lastUpdated;

    // Act
    const after = idsOf(resourcesOf(dataset, { type: 'Observation', since: instant }));
    const upTo = idsOf(resourcesOf(dataset, { type: 'Observation', until: instant }));

    // Assess
    expect(after).not.toContain(first!.id);
    expect(upTo).toContain(first!.id);
  });
});

describe('_elements', () => {
  const dataset = createDataset({ patientCount: 20 });

  it('keeps the listed elements and the mandatory ones, and tags the resource SUBSETTED', () => {
    // Prepare
    const full = resourcesOf(dataset, { type: 'Observation' });

    // Act
    const subsetted = resourcesOf(dataset, {
      type: 'Observation',
      elements: ['code', 'subject', 'notAnElement'],
    });

    // Assess
    expect(subsetted).toHaveLength(full.length);
    for (const [i, resource] of subsetted.entries()) {
      const original = full[i]!;
      expect(Object.keys(resource)).toEqual(['resourceType', 'id', 'meta', 'code', 'subject']);
      expect(resource.code).toEqual(original.code);
      expect(resource.subject).toEqual(original.subject);
      expect(resource.meta).toEqual({
        ...original.meta,
        tag: [
          {
            system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue',
            code: 'SUBSETTED',
            display: 'subsetted',
          },
        ],
      });
    }
  });

  it('leaves resources whole when no elements are listed', () => {
    // Act / Assess
    expect(linesOf(dataset, { type: 'Patient', elements: [] })).toEqual(
      linesOf(dataset, { type: 'Patient' }),
    );
  });
});

describe('groups', () => {
  const dataset = createDataset({ patientCount: 400 });
  const group = (id: string) => dataset.groups.find((candidate) => candidate.id === id)!;

  it('offers the whole cohort, a diabetes registry, the first ten patients and a technical-id Group', () => {
    // Act
    const ids = dataset.groups.map((candidate) => candidate.id);

    // Assess
    expect(ids).toEqual(['cohort', 'diabetes', 'small', 'cohort-technical-ids']);
    expect(group('cohort-technical-ids').patientIndexes).toEqual(Array.from({ length: 25 }, (_, i) => i));
    expect(group('cohort').patientIndexes).toEqual(Array.from({ length: 400 }, (_, i) => i));
    expect(group('small').patientIndexes).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(group('diabetes').patientIndexes.length).toBeGreaterThan(20);
    expect(group('diabetes').patientIndexes.length).toBeLessThan(100);
  });

  it('gives every diabetes registry member a type 2 diabetes Condition, and no one else', () => {
    // Prepare
    const members = new Set(group('diabetes').patientIndexes.map(patientId));

    // Act
    const diabetic = new Set(
      resourcesOf(dataset, { type: 'Condition', typeFilters: ['code=http://snomed.info/sct|44054006'] }).map(
        (condition) => (condition.subject as { reference: string }).reference.replace('Patient/', ''),
      ),
    );

    // Assess
    expect(diabetic).toEqual(members);
  });

  it('lists the members of each Group resource as Patient references', () => {
    // Act
    const groups = resourcesOf(dataset, { type: 'Group' });

    // Assess
    expect(idsOf(groups)).toEqual(['cohort', 'diabetes', 'small', 'cohort-technical-ids']);
    for (const resource of groups) {
      const members = (resource.member as { entity: { reference: string } }[]).map(
        (member) => member.entity.reference,
      );
      // The technical-id Group names its members by their MRN, as some EHRs do.
      const memberId =
        resource.id === 'cohort-technical-ids' ? (p: number) => `M${10_000_000 + p}` : patientId;
      expect(members).toEqual(group(resource.id).patientIndexes.map((p) => `Patient/${memberId(p)}`));
      expect(resource.quantity).toBe(members.length);
      expect(resource).toMatchObject({ type: 'person', actual: true });
    }
  });

  it('scopes a Group export to the members: their resources and the Groups they belong to', () => {
    // Prepare
    const members = group('small').patientIndexes;

    // Act
    const patients = idsOf(resourcesOf(dataset, { type: 'Patient', patientIndexes: members }));
    const groups = idsOf(resourcesOf(dataset, { type: 'Group', patientIndexes: members }));
    const subjects = new Set(
      resourcesOf(dataset, { type: 'Observation', patientIndexes: members }).map(
        (observation) => (observation.subject as { reference: string }).reference,
      ),
    );

    // Assess
    expect(patients).toEqual(members.map(patientId));
    expect(groups).toContain('cohort');
    expect(groups).toContain('small');
    expect([...subjects].sort()).toEqual(members.map((p) => `Patient/${patientId(p)}`).sort());
  });
});

describe('deletions', () => {
  const dataset = createDataset({ patientCount: 1000 });
  const since = '2024-01-01T00:00:00Z';

  it.each(EXPORTABLE_TYPES)('lists no deleted %s without since', (type) => {
    // Act / Assess
    expect(dataset.deletions({ type })).toEqual([]);
  });

  it.each(['Patient', ...CLINICAL_TYPES] as const)(
    'lists about one %s in a hundred as deleted after since, under ids no live resource has',
    (type) => {
      // Prepare
      const live = new Set(idsOf(resourcesOf(dataset, { type })));

      // Act
      const deleted = dataset.deletions({ type, since });

      // Assess
      const wholeHistory = dataset.deletions({ type, since: '2000-01-01T00:00:00Z' });
      expect(wholeHistory.length).toBeGreaterThanOrEqual(Math.floor(live.size * 0.005));
      expect(wholeHistory.length).toBeLessThanOrEqual(Math.ceil(live.size * 0.02));
      expect(deleted.length).toBeGreaterThan(0);
      expect(deleted.length).toBeLessThan(wholeHistory.length);
      for (const entry of deleted) {
        expect(entry.type).toBe(type);
        expect(live.has(entry.id)).toBe(false);
        expect(Date.parse(entry.lastUpdated)).toBeGreaterThan(Date.parse(since));
      }
      expect(new Set(deleted.map((entry) => entry.id)).size).toBe(deleted.length);
    },
  );

  it.each([
    ['Practitioner', ['pract-10']],
    ['Organization', ['org-3']],
    ['Group', []],
  ] as const)('lists deleted %s resources past the live ones: %j', (type, ids) => {
    // Act
    const deleted = dataset.deletions({ type, since: '2000-01-01T00:00:00Z' });

    // Assess
    expect(deleted.map((entry) => entry.id)).toEqual(ids);
  });

  it('respects until and is deterministic', () => {
    // Act
    const windowed = dataset.deletions({ type: 'Observation', since, until: '2024-06-01T00:00:00Z' });
    const again = createDataset({ patientCount: 1000 }).deletions({
      type: 'Observation',
      since,
      until: '2024-06-01T00:00:00Z',
    });

    // Assess
    expect(windowed.length).toBeGreaterThan(0);
    for (const entry of windowed)
      expect(Date.parse(entry.lastUpdated)).toBeLessThanOrEqual(Date.parse('2024-06-01T00:00:00Z'));
    expect(again).toEqual(windowed);
  });

  it("only lists a patient-scoped selection's own deleted records", () => {
    // Prepare
    const all = dataset.deletions({ type: 'Observation', since: '2000-01-01T00:00:00Z' });
    const owners = all.slice(0, 3).map((entry) => Number(entry.id.split('-')[1]));

    // Act
    const scoped = dataset.deletions({
      type: 'Observation',
      since: '2000-01-01T00:00:00Z',
      patientIndexes: owners,
    });
    const patients = dataset.deletions({
      type: 'Patient',
      since: '2000-01-01T00:00:00Z',
      patientIndexes: owners,
    });

    // Assess
    expect(scoped).toEqual(all.slice(0, 3));
    expect(patients).toEqual([]);
  });
});

describe('patient ids', () => {
  it.each([
    ['pt-0', 0],
    ['pt-1999999', 1_999_999],
    ['pt-01', undefined],
    ['pt-', undefined],
    ['obs-1-2', undefined],
    ['Patient/pt-3', undefined],
  ])('parses %s as %s', (id, index) => {
    // Act / Assess
    expect(parsePatientId(id)).toBe(index);
  });

  it('round-trips an index', () => {
    // Act / Assess
    expect(parsePatientId(patientId(123_456))).toBe(123_456);
  });
});

describe('codings', () => {
  const dataset = createDataset({ patientCount: 50 });

  it.each([
    ['Observation', 'code', 'http://loinc.org'],
    ['Condition', 'code', 'http://snomed.info/sct'],
    ['MedicationRequest', 'medicationCodeableConcept', 'http://www.nlm.nih.gov/research/umls/rxnorm'],
    ['Immunization', 'vaccineCode', 'http://hl7.org/fhir/sid/cvx'],
    ['Procedure', 'code', 'http://snomed.info/sct'],
    ['DocumentReference', 'type', 'http://loinc.org'],
  ] as const)('codes %s.%s in %s with display text', (type, element, system) => {
    // Act
    const resources = resourcesOf(dataset, { type });

    // Assess
    for (const resource of resources) {
      const codings = codingsOf(resource[element]);
      const coding = codings.find((candidate) => candidate.system === system) as
        | { code: string; display: string }
        | undefined;
      expect(coding?.code).toMatch(/^[0-9A-Za-z.-]+$/);
      expect(coding?.display.length).toBeGreaterThan(2);
    }
  });
});
