import { describe, expect, it } from 'vitest';
import {
  groupMemberReferences,
  parseChunkWindow,
  planPatientChunks,
  planTimeChunks,
} from '../../../lambdas/core/chunks.js';

const patients = (count: number) => Array.from({ length: count }, (_, index) => `Patient/p${index}`);

describe('planPatientChunks', () => {
  it('slices the cohort in order, each patient in exactly one chunk, the last chunk smaller', () => {
    // Act
    const chunks = planPatientChunks(patients(2_501), 1_000);
    // Assess
    expect(chunks.map((chunk) => [chunk.index, chunk.patients.length])).toStrictEqual([
      [0, 1_000],
      [1, 1_000],
      [2, 501],
    ]);
    expect(chunks.flatMap((chunk) => chunk.patients)).toStrictEqual(patients(2_501));
  });

  it.each([0, 1.5, 10_001])('refuses a chunk size of %s', (size) => {
    expect(() => planPatientChunks(patients(3), size)).toThrow(
      `chunk.size must be an integer from 1 to 10000 (got ${size})`,
    );
  });

  it('refuses an empty cohort', () => {
    expect(() => planPatientChunks([], 10)).toThrow('the cohort has no members to split into chunks');
  });
});

describe('planTimeChunks', () => {
  it('covers [since, until) with consecutive windows, no instant left out or asked twice', () => {
    // Act
    const chunks = planTimeChunks('2026-01-01T00:00:00Z', '2026-03-15T00:00:00Z', '30d');
    // Assess
    expect(chunks.map(({ since, until }) => [since, until])).toStrictEqual([
      ['2026-01-01T00:00:00.000Z', '2026-01-31T00:00:00.000Z'],
      ['2026-01-31T00:00:00.000Z', '2026-03-02T00:00:00.000Z'],
      ['2026-03-02T00:00:00.000Z', '2026-03-15T00:00:00.000Z'],
    ]);
  });

  it('refuses an empty or backwards span', () => {
    expect(() => planTimeChunks('2026-02-01T00:00:00Z', '2026-01-01T00:00:00Z', '1d')).toThrow(
      'a time-chunked export needs since earlier than until, both ISO 8601 instants with a timezone',
    );
  });
});

describe('parseChunkWindow', () => {
  it.each([
    ['30d', 30 * 86_400_000],
    ['12h', 12 * 3_600_000],
  ])('reads %s', (text, ms) => {
    expect(parseChunkWindow(text)).toBe(ms);
  });

  it.each(['0d', '30', '1w', '-1d', ' 30d'])('refuses %j, saying what it expected', (text) => {
    expect(() => parseChunkWindow(text)).toThrow(
      'chunk.window must be a whole number of days or hours such as 30d or 12h',
    );
  });
});

describe('groupMemberReferences', () => {
  const group = (member: unknown[]) => ({ resourceType: 'Group', id: 'cohort', member });

  it('reads current Patient members in order, counting inactive, ended and repeated ones apart', () => {
    // Act
    const members = groupMemberReferences(
      group([
        { entity: { reference: 'Patient/a' } },
        { entity: { reference: 'https://ehr.example.org/fhir/Patient/b/_history/3' } },
        { entity: { reference: 'Patient/c' }, inactive: true },
        { entity: { reference: 'Patient/d' }, period: { end: '2020-01-01T00:00:00Z' } },
        { entity: { reference: 'Patient/a' } },
      ]),
      'cohort',
      new Date('2026-12-01T00:00:00Z'),
    );
    // Assess
    expect(members).toStrictEqual({ patients: ['Patient/a', 'Patient/b'], inactive: 2, repeated: 1 });
  });

  it.each([
    [
      'a member named only by an identifier',
      [{ entity: { identifier: { system: 'urn:mrn', value: 'T-1' } } }],
      'Group/cohort member[0] names its patient only by an identifier (member.entity.identifier, no member.entity.reference); the patient parameter needs Patient/<id>: search Patient?identifier=<system>|<value> on the server and list the patients by reference',
    ],
    [
      'a Practitioner member',
      [{ entity: { reference: 'Practitioner/x' } }],
      'Group/cohort member[0] references a Practitioner resource, not a Patient: only Patient members can be sent as the patient parameter',
    ],
    [
      'a contained member',
      [{ entity: { reference: '#p1' } }],
      'Group/cohort member[0] references a contained resource, not a Patient: only Patient members can be sent as the patient parameter',
    ],
    [
      'only inactive members',
      [{ entity: { reference: 'Patient/a' }, inactive: true }],
      'Group/cohort has no current Patient members (searched member[].entity.reference; 1 inactive)',
    ],
  ])('refuses %s, saying where and what was searched', (_, member, message) => {
    expect(() => groupMemberReferences(group(member), 'cohort')).toThrow(message);
  });

  it('refuses what is not a Group', () => {
    expect(() => groupMemberReferences({ resourceType: 'OperationOutcome' }, 'cohort')).toThrow(
      'GET Group/cohort did not return a Group resource',
    );
  });
});
