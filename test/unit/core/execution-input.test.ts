import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkInputAgainstSource,
  executionNameForWindow,
  parseExecutionInput,
  splitIntoWindows,
} from '../../../lambdas/core/execution-input.js';
import { InvalidExecutionInputError } from '../../../lambdas/errors.js';
import { thrown } from '../../support/thrown.js';

function errorShape(error: Error): { name: string; code: unknown; message: string } {
  return { name: error.name, code: (error as { code?: unknown }).code, message: error.message };
}

const invalidInput = (message: string) => ({
  name: 'InvalidExecutionInputError',
  code: 'ERR_INVALID_EXECUTION_INPUT',
  message,
});

describe('parseExecutionInput', () => {
  it('reads a scheduled input and drops the scheduler time', () => {
    // Act
    const input = parseExecutionInput({
      sourceId: 'epic',
      since: 'auto',
      scheduledTime: '2026-11-26T12:00:00Z',
    });
    // Assess
    expect(input).toStrictEqual({ sourceId: 'epic', since: 'auto' });
  });

  it('reads an input with only a source', () => {
    expect(parseExecutionInput({ sourceId: 'epic' })).toStrictEqual({ sourceId: 'epic' });
  });

  it('reads a backfill input with every key', () => {
    // Act
    const input = parseExecutionInput({
      sourceId: 'cerner',
      since: '2026-01-01T00:00:00Z',
      until: '2026-02-01T00:00:00.000+01:00',
      types: ['Patient', 'Observation'],
      typeFilters: ['Observation?category=laboratory,vital-signs'],
      groupId: 'g-1',
      level: 'group',
      patient: ['Patient/p1'],
      includeAssociatedData: ['LatestProvenanceResources', '_history'],
    });
    // Assess
    expect(input).toStrictEqual({
      sourceId: 'cerner',
      since: '2026-01-01T00:00:00Z',
      until: '2026-02-01T00:00:00.000+01:00',
      types: ['Patient', 'Observation'],
      typeFilters: ['Observation?category=laboratory,vital-signs'],
      groupId: 'g-1',
      level: 'group',
      patient: ['Patient/p1'],
      includeAssociatedData: ['LatestProvenanceResources', '_history'],
    });
  });

  it('accepts since auto with an until', () => {
    expect(
      parseExecutionInput({ sourceId: 'epic', since: 'auto', until: '2026-02-01T00:00:00Z' }),
    ).toStrictEqual({
      sourceId: 'epic',
      since: 'auto',
      until: '2026-02-01T00:00:00Z',
    });
  });

  it.each([
    ['null', null, 'execution input must be a JSON object (got null)'],
    ['a string', '{"sourceId":"epic"}', 'execution input must be a JSON object (got a string)'],
    ['an array', [{ sourceId: 'epic' }], 'execution input must be a JSON object (got an array)'],
    ['a number', 42, 'execution input must be a JSON object (got number)'],
    [
      'an unknown key',
      { sourceId: 'epic', sinse: 'auto' },
      'execution input has unknown key(s) sinse; expected only sourceId, since, until, types, typeFilters, groupId, level, patient, includeAssociatedData, chunk, scheduledTime',
    ],
    [
      'two unknown keys',
      { sourceId: 'epic', a: 1, b: 2 },
      'execution input has unknown key(s) a, b; expected only sourceId, since, until, types, typeFilters, groupId, level, patient, includeAssociatedData, chunk, scheduledTime',
    ],
    ['no sourceId', {}, 'input.sourceId is required: a non-empty string'],
    [
      'an empty sourceId',
      { sourceId: ' ' },
      'input.sourceId must be a non-empty string (got a string of only white space)',
    ],
    ['a numeric sourceId', { sourceId: 7 }, 'input.sourceId must be a non-empty string (got number)'],
    [
      'since not an instant',
      { sourceId: 'epic', since: 'yesterday' },
      'input.since must be an ISO 8601 instant with a timezone, e.g. 2026-01-31T00:00:00Z',
    ],
    [
      'since without timezone',
      { sourceId: 'epic', since: '2026-01-01T00:00:00' },
      'input.since must be an ISO 8601 instant with a timezone, e.g. 2026-01-31T00:00:00Z',
    ],
    [
      'since a date only',
      { sourceId: 'epic', since: '2026-01-01' },
      'input.since must be an ISO 8601 instant with a timezone, e.g. 2026-01-31T00:00:00Z',
    ],
    ['since null', { sourceId: 'epic', since: null }, 'input.since must be a non-empty string (got null)'],
    [
      'since "AUTO"',
      { sourceId: 'epic', since: 'AUTO' },
      'input.since must be an ISO 8601 instant with a timezone, e.g. 2026-01-31T00:00:00Z',
    ],
    [
      'until in month 13',
      { sourceId: 'epic', until: '2026-13-01T00:00:00Z' },
      'input.until must be an ISO 8601 instant with a timezone, e.g. 2026-01-31T00:00:00Z',
    ],
    [
      'since after until',
      { sourceId: 'epic', since: '2026-02-01T00:00:00Z', until: '2026-01-01T00:00:00Z' },
      'input.since must be earlier than input.until',
    ],
    [
      'since equal to until in another offset',
      { sourceId: 'epic', since: '2026-01-01T01:00:00+01:00', until: '2026-01-01T00:00:00Z' },
      'input.since must be earlier than input.until',
    ],
    [
      'types not an array',
      { sourceId: 'epic', types: 'Patient' },
      'input.types must be an array of strings (got a string)',
    ],
    [
      'a lower-case type',
      { sourceId: 'epic', types: ['Patient', 'observation'] },
      'input.types[1] must be a FHIR resource type such as Patient',
    ],
    [
      'an empty type',
      { sourceId: 'epic', types: [''] },
      'input.types[0] must be a non-empty string (got an empty string)',
    ],
    [
      'a numeric type',
      { sourceId: 'epic', types: [1] },
      'input.types[0] must be a non-empty string (got number)',
    ],
    [
      'a typeFilter without a query',
      { sourceId: 'epic', typeFilters: ['Observation'] },
      'input.typeFilters[0] must be a query like Observation?category=laboratory',
    ],
    [
      'a typeFilter with an empty query',
      { sourceId: 'epic', typeFilters: ['Observation?'] },
      'input.typeFilters[0] must be a query like Observation?category=laboratory',
    ],
    [
      'a typeFilter with a lower-case type',
      { sourceId: 'epic', typeFilters: ['observation?category=laboratory'] },
      'input.typeFilters[0] must be a query like Observation?category=laboratory',
    ],
    [
      'an empty groupId',
      { sourceId: 'epic', groupId: '' },
      'input.groupId must be a non-empty string (got an empty string)',
    ],
    [
      'an unknown level',
      { sourceId: 'epic', level: 'grp' },
      'input.level must be one of system, patient, group (got "grp")',
    ],
    [
      'a numeric level',
      { sourceId: 'epic', level: 1 },
      'input.level must be one of system, patient, group (got number)',
    ],
    [
      'a patient that is a bare id',
      { sourceId: 'epic', patient: ['123'] },
      'input.patient[0] must be a Patient reference such as Patient/123',
    ],
    [
      'patient at the system level',
      { sourceId: 'epic', level: 'system', patient: ['Patient/1'] },
      'input.patient applies to patient or group level exports only; set input.level to patient or group',
    ],
    [
      'an includeAssociatedData value the IG does not define and without _',
      { sourceId: 'epic', includeAssociatedData: ['Provenance'] },
      'input.includeAssociatedData[0] must be LatestProvenanceResources, RelevantProvenanceResources or a server-defined value starting with _',
    ],
  ])('rejects %s', (_, raw, message) => {
    // Act
    const error = thrown(() => parseExecutionInput(raw));
    // Assess
    expect(error).toBeInstanceOf(InvalidExecutionInputError);
    expect(errorShape(error)).toStrictEqual(invalidInput(message));
  });
});

describe('parseExecutionInput: chunk', () => {
  it('reads a chunk, and false for a run in one piece', () => {
    expect(
      parseExecutionInput({ sourceId: 'epic', chunk: { by: 'time', window: '30d' } }).chunk,
    ).toStrictEqual({
      by: 'time',
      window: '30d',
    });
    expect(parseExecutionInput({ sourceId: 'epic', chunk: false }).chunk).toBe(false);
  });

  it.each([
    [{ by: 'week' }, 'input.chunk.by must be one of patients, time (got "week")'],
    [
      { by: 'time', window: '30' },
      'input.chunk.window must be a whole number of days or hours such as 30d or 12h',
    ],
    ['patients', 'input.chunk must be a JSON object (got a string)'],
  ])('refuses %j, naming what it expected', (chunk, message) => {
    // Act
    const error = thrown(() => parseExecutionInput({ sourceId: 'epic', chunk }));
    // Assess
    expect(errorShape(error)).toStrictEqual(invalidInput(message));
  });
});

describe('checkInputAgainstSource', () => {
  const GROUP_POST = { level: 'group', groupId: 'cohort', method: 'POST' } as const;

  it.each([
    ['a patient override for a POST group source', { sourceId: 'epic', patient: ['Patient/1'] }],
    [
      'a system-level override that drops the source’s list',
      { sourceId: 'epic', level: 'system', patient: [] },
    ],
    [
      'patient chunks for a POST group source',
      { sourceId: 'epic', chunk: { by: 'patients', size: 100 }, patient: [] },
    ],
    ['time chunks for any source', { sourceId: 'epic', chunk: { by: 'time', window: '7d' } }],
    ['no chunks, whatever the source says', { sourceId: 'epic', chunk: false }],
  ] as const)('accepts %s', (_, input) => {
    // Act
    const act = () => checkInputAgainstSource(input, { ...GROUP_POST, patient: ['Patient/9'] });
    // Assess
    expect(act).not.toThrow();
  });

  it.each([
    [
      'a patient override for a GET source',
      { sourceId: 'epic', patient: ['Patient/1'] },
      { ...GROUP_POST, method: 'GET' },
      'input.patient needs export.method POST (the IG defines patient for POST kick-offs only)',
    ],
    [
      'a patient override for a system-level source',
      { sourceId: 'epic', patient: ['Patient/1'] },
      { level: 'system', method: 'POST' },
      'input.patient applies to patient or group level exports only; set input.level to patient or group',
    ],
    [
      'patient chunks for a GET source',
      { sourceId: 'epic', chunk: { by: 'patients', size: 100 } },
      { ...GROUP_POST, method: 'GET' },
      'input.chunk.by patients sends the patient parameter, which needs export.method POST (GET cannot carry it)',
    ],
    [
      'patient chunks of a system-level run',
      { sourceId: 'epic', level: 'system', patient: [], chunk: { by: 'patients', size: 100 } },
      GROUP_POST,
      'input.chunk.by patients applies to patient or group level exports only; set input.level to patient or group, or chunk by time',
    ],
    [
      'a system-level override of a source with a patient list',
      { sourceId: 'epic', level: 'system' },
      { ...GROUP_POST, patient: ['Patient/1'] },
      'input.level system cannot carry the source’s export.patient; also pass "patient": []',
    ],
  ] as const)('refuses %s, naming the fix', (_, input, settings, message) => {
    // Act
    const error = thrown(() => checkInputAgainstSource(input, settings));
    // Assess
    expect(errorShape(error)).toStrictEqual(invalidInput(message));
  });
});

describe('executionNameForWindow', () => {
  it.each([
    ['epic', '2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', 'epic-20260101T000000Z-20260201T000000Z'],
    [
      'epic',
      '2026-01-01T01:00:00+01:00',
      '2026-02-01T00:00:00.000Z',
      'epic-20260101T000000Z-20260201T000000Z',
    ],
    ['epic', undefined, '2026-02-01T00:00:00Z', 'epic-open-20260201T000000Z'],
    ['epic', '2026-01-01T00:00:00Z', undefined, 'epic-20260101T000000Z-open'],
    ['cms-bcda', undefined, undefined, 'cms-bcda-open-open'],
  ])('%s [%s, %s) → %s', (sourceId, since, until, name) => {
    expect(executionNameForWindow(sourceId, since, until)).toBe(name);
  });

  it('fits a 46 character source id and a closed window in exactly 80 characters', () => {
    // Act
    const name = executionNameForWindow('a'.repeat(46), '2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z');
    // Assess
    expect(name).toBe(`${'a'.repeat(46)}-20260101T000000Z-20260201T000000Z`);
    expect(name).toHaveLength(80);
  });

  it('is the same for the same window and at most 80 characters of [A-Za-z0-9-_] (whole-second instants)', () => {
    // Prepare
    const sourceId = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,62}$/);
    const wholeSecond = fc
      .date({
        min: new Date('1970-01-01T00:00:00Z'),
        max: new Date('9999-12-31T23:59:59Z'),
        noInvalidDate: true,
      })
      .map((date) => new Date(Math.floor(date.getTime() / 1000) * 1000).toISOString());
    const instant = fc.option(wholeSecond, { nil: undefined });
    fc.assert(
      fc.property(sourceId, instant, instant, (id, since, until) => {
        // Act
        const name = executionNameForWindow(id, since, until);
        // Assess
        expect(name).toMatch(/^[A-Za-z0-9_-]{1,80}$/);
        expect(executionNameForWindow(id, since, until)).toBe(name);
      }),
    );
  });
});

describe('splitIntoWindows', () => {
  it('splits into whole windows', () => {
    expect(splitIntoWindows('2026-01-01T00:00:00Z', '2026-01-04T00:00:00Z', 1)).toStrictEqual([
      { since: '2026-01-01T00:00:00.000Z', until: '2026-01-02T00:00:00.000Z' },
      { since: '2026-01-02T00:00:00.000Z', until: '2026-01-03T00:00:00.000Z' },
      { since: '2026-01-03T00:00:00.000Z', until: '2026-01-04T00:00:00.000Z' },
    ]);
  });

  it('ends with a short window', () => {
    expect(splitIntoWindows('2026-01-01T00:00:00Z', '2026-03-01T00:00:00Z', 30)).toStrictEqual([
      { since: '2026-01-01T00:00:00.000Z', until: '2026-01-31T00:00:00.000Z' },
      { since: '2026-01-31T00:00:00.000Z', until: '2026-03-01T00:00:00.000Z' },
    ]);
  });

  it('returns one window when the range is shorter than a window', () => {
    expect(splitIntoWindows('2026-01-01T00:00:00+01:00', '2026-01-01T06:00:00Z', 30)).toStrictEqual([
      { since: '2025-12-31T23:00:00.000Z', until: '2026-01-01T06:00:00.000Z' },
    ]);
  });

  it('accepts fractional days', () => {
    expect(splitIntoWindows('2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z', 0.5)).toStrictEqual([
      { since: '2026-01-01T00:00:00.000Z', until: '2026-01-01T12:00:00.000Z' },
      { since: '2026-01-01T12:00:00.000Z', until: '2026-01-02T00:00:00.000Z' },
    ]);
  });

  it('covers [from, to) exactly, without gaps or overlaps', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 4_000_000_000_000 }),
        fc.integer({ min: 1, max: 400 * 86_400_000 }),
        fc.integer({ min: 1, max: 60 }),
        (start, length, windowDays) => {
          // Prepare
          const from = new Date(start).toISOString();
          const to = new Date(start + length).toISOString();
          // Act
          const windows = splitIntoWindows(from, to, windowDays);
          // Assess
          expect(windows[0]?.since).toBe(from);
          expect(windows.at(-1)?.until).toBe(to);
          expect(windows).toHaveLength(Math.ceil(length / (windowDays * 86_400_000)));
          for (const [index, window] of windows.entries()) {
            expect(Date.parse(window.since)).toBeLessThan(Date.parse(window.until));
            if (index > 0) expect(window.since).toBe(windows[index - 1]?.until);
          }
        },
      ),
    );
  });

  it.each([
    [
      'from after to',
      '2026-02-01T00:00:00Z',
      '2026-01-01T00:00:00Z',
      30,
      'backfill needs --from earlier than --to, both ISO 8601 instants',
    ],
    [
      'from equal to to',
      '2026-01-01T00:00:00Z',
      '2026-01-01T00:00:00Z',
      30,
      'backfill needs --from earlier than --to, both ISO 8601 instants',
    ],
    [
      'a bad from',
      'last year',
      '2026-01-01T00:00:00Z',
      30,
      'backfill needs --from earlier than --to, both ISO 8601 instants',
    ],
    [
      'a bad to',
      '2026-01-01T00:00:00Z',
      '',
      30,
      'backfill needs --from earlier than --to, both ISO 8601 instants',
    ],
    [
      'a zero window',
      '2026-01-01T00:00:00Z',
      '2026-02-01T00:00:00Z',
      0,
      'backfill --window must be a positive number of days, e.g. 30d',
    ],
    [
      'a negative window',
      '2026-01-01T00:00:00Z',
      '2026-02-01T00:00:00Z',
      -1,
      'backfill --window must be a positive number of days, e.g. 30d',
    ],
    [
      'a NaN window',
      '2026-01-01T00:00:00Z',
      '2026-02-01T00:00:00Z',
      Number.NaN,
      'backfill --window must be a positive number of days, e.g. 30d',
    ],
    [
      'an infinite window',
      '2026-01-01T00:00:00Z',
      '2026-02-01T00:00:00Z',
      Number.POSITIVE_INFINITY,
      'backfill --window must be a positive number of days, e.g. 30d',
    ],
  ])('rejects %s', (_, from, to, windowDays, message) => {
    // Act
    const error = thrown(() => splitIntoWindows(from, to, windowDays));
    // Assess
    expect(error).toBeInstanceOf(InvalidExecutionInputError);
    expect(errorShape(error)).toStrictEqual(invalidInput(message));
  });
});

describe('executionNameForWindow: names Step Functions and CloudWatch accept, one per window', () => {
  const VALID = /^[A-Za-z0-9_-]{1,80}$/;

  it('keeps milliseconds without a dot', () => {
    expect(executionNameForWindow('epic', '2026-01-01T00:00:00.123Z', '2026-02-01T00:00:00Z')).toBe(
      'epic-20260101T000000123Z-20260201T000000Z',
    );
  });

  it('names since=auto and an open end', () => {
    expect(executionNameForWindow('epic', 'auto', undefined)).toBe('epic-auto-open');
  });

  it('gives two windows of a 63-character source id two names, each at most 80 characters', () => {
    const id = 'a'.repeat(63);
    const january = executionNameForWindow(id, '2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z');
    const february = executionNameForWindow(id, '2026-01-01T00:00:00Z', '2026-03-01T00:00:00Z');
    expect(january).not.toBe(february);
    expect(january).toMatch(VALID);
    expect(february).toMatch(VALID);
  });

  it('rejects a bound that is not an instant with an InvalidExecutionInputError', () => {
    expect(() => executionNameForWindow('epic', 'yesterday', undefined)).toThrow(InvalidExecutionInputError);
  });
});

describe('splitIntoWindows: instants only', () => {
  it.each([
    ['2026-01-01T00:00:00', '2026-01-02T00:00:00Z'],
    ['January 1, 2026', '2026-01-02T00:00:00Z'],
    ['2026-02-30T00:00:00Z', '2026-03-02T00:00:00Z'],
  ])('refuses %j (no timezone, or no such day) rather than guessing', (from, to) => {
    expect(() => splitIntoWindows(from, to, 1)).toThrow(InvalidExecutionInputError);
  });
});
