import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkResourceLine,
  describeLineProblem,
  emptyIdSpan,
  expectResourceType,
  idBytes,
  type LineProblem,
} from '../../../lambdas/core/ndjson/check-line.js';

const PATIENT = expectResourceType('Patient');

function check(line: string): LineProblem | undefined {
  const bytes = Buffer.from(line, 'utf8');
  return checkResourceLine(bytes, 0, bytes.length, PATIENT);
}

/** What JSON.parse says about the same line: the reference the scanner must agree with. */
function reference(line: string): 'ok' | 'invalid' {
  try {
    const value = JSON.parse(line) as unknown;
    const ok =
      value !== null &&
      typeof value === 'object' &&
      !Array.isArray(value) &&
      (value as { resourceType?: unknown }).resourceType === 'Patient';
    return ok ? 'ok' : 'invalid';
  } catch {
    return 'invalid';
  }
}

describe('checkResourceLine', () => {
  it.each([
    '{"resourceType":"Patient"}',
    '{"id":"1","resourceType":"Patient","active":true}',
    ' \t{ "resourceType" : "Patient" , "a" : [ 1 , -2.5e+3 , 0.0 , 1E2 , true , false , null , { } , [ ] ] }\r',
    '{"resourceType":"Observation","resourceType":"Patient"}',
    '{"resource\\u0054ype":"Patient"}',
    '{"resourceType":"Pat\\u0069ent"}',
    '{"resourceType":"Patient","text":"tab\\t quote\\" slash\\/ uni\\u00e9 \\ud83d\\ude00 naïve 😀"}',
    '{"contained":[{"resourceType":"Organization"}],"resourceType":"Patient"}',
  ])('accepts %s', (line) => {
    // Act
    const problem = check(line);
    // Assess
    expect(problem).toBeUndefined();
  });

  it.each<[string, string, string]>([
    ['{"resourceType":"Patient"', 'end-of-line', 'not valid JSON (the line ends inside a value)'],
    ['{"resourceType":"Patient",}', 'syntax', 'not valid JSON (unexpected byte at column 27)'],
    ["{'resourceType':'Patient'}", 'syntax', 'not valid JSON (unexpected byte at column 2)'],
    ['{"resourceType":"Patient"} x', 'syntax', 'not valid JSON (unexpected byte at column 28)'],
    ['{"resourceType":"Patient"}{}', 'syntax', 'not valid JSON (unexpected byte at column 27)'],
    ['{"a":01,"resourceType":"Patient"}', 'syntax', 'not valid JSON (unexpected byte at column 7)'],
    ['{"a":1.,"resourceType":"Patient"}', 'syntax', 'not valid JSON (unexpected byte at column 8)'],
    ['{"a":"\\x","resourceType":"Patient"}', 'syntax', 'not valid JSON (unexpected byte at column 8)'],
    ['{"a":"\\u12G4","resourceType":"Patient"}', 'syntax', 'not valid JSON (unexpected byte at column 11)'],
    ['{"a":"raw\ttab","resourceType":"Patient"}', 'syntax', 'not valid JSON (unexpected byte at column 10)'],
    ['{"a":tru,"resourceType":"Patient"}', 'syntax', 'not valid JSON (unexpected byte at column 9)'],
    ['{"a":[1,2},"resourceType":"Patient"}', 'syntax', 'not valid JSON (unexpected byte at column 10)'],
    ['{"a" 1}', 'syntax', 'not valid JSON (unexpected byte at column 6)'],
    ['\uFEFF{"resourceType":"Patient"}', 'syntax', 'not valid JSON (unexpected byte at column 1)'],
    ['[{"resourceType":"Patient"}]', 'not-an-object', 'a JSON array, not an object'],
    ['"Patient"', 'not-an-object', 'a JSON string, not an object'],
    ['42', 'not-an-object', 'a JSON number, not an object'],
    ['null', 'not-an-object', 'a JSON null, not an object'],
    ['{"id":"1"}', 'no-resource-type', 'no top-level resourceType'],
    ['{"contained":{"resourceType":"Patient"}}', 'no-resource-type', 'no top-level resourceType'],
    ['{"resourceType":{"a":1}}', 'resource-type-not-a-string', 'resourceType is not a string'],
    [
      '{"resourceType":"Patient","resourceType":7}',
      'resource-type-not-a-string',
      'resourceType is not a string',
    ],
    [
      '{"resourceType":"Observation"}',
      'wrong-resource-type',
      'resourceType is Observation, expected Patient',
    ],
    [
      '{"resourceType":"John Smith, 1970-01-01"}',
      'wrong-resource-type',
      'resourceType is (not a FHIR type name), expected Patient',
    ],
  ])('rejects %s as %s', (line, kind, message) => {
    // Act
    const problem = check(line);
    // Assess
    expect(problem?.kind).toBe(kind);
    expect(describeLineProblem(problem!, 'Patient')).toBe(message);
    expect(reference(line)).toBe('invalid');
  });

  it('only looks inside its window of the buffer', () => {
    // Prepare
    const bytes = Buffer.from('xx{"resourceType":"Patient"}{"resourceType":"Patient"}');
    // Act
    const problem = checkResourceLine(bytes, 2, 28, PATIENT);
    // Assess
    expect(problem).toBeUndefined();
  });

  it('agrees with JSON.parse on arbitrary JSON objects', () => {
    const resource = fc.tuple(
      fc.dictionary(fc.string({ unit: 'binary' }), fc.jsonValue()),
      fc.constantFrom('Patient', 'Observation', 7),
    );
    fc.assert(
      fc.property(resource, ([fields, type]) => {
        // Prepare
        const line = JSON.stringify({ ...fields, resourceType: type });
        // Act
        const verdict = check(line) === undefined ? 'ok' : 'invalid';
        // Assess
        expect(verdict).toBe(reference(line));
      }),
      { numRuns: 500 },
    );
  });

  it('agrees with JSON.parse on damaged JSON (any byte removed, replaced or inserted)', () => {
    const damaged = fc
      .tuple(
        fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }),
        fc.nat(),
        fc.constantFrom('delete', 'replace', 'insert'),
        fc.constantFrom(...'{}[]":,-.0e+\\u tfn \t\r'.split('')),
      )
      .map(([fields, at, edit, char]) => {
        const line = JSON.stringify({ resourceType: 'Patient', ...fields });
        const i = at % line.length;
        if (edit === 'delete') return line.slice(0, i) + line.slice(i + 1);
        if (edit === 'replace') return line.slice(0, i) + char + line.slice(i + 1);
        return line.slice(0, i) + char + line.slice(i);
      });
    fc.assert(
      fc.property(damaged, (line) => {
        // Act
        const verdict = check(line) === undefined ? 'ok' : 'invalid';
        // Assess
        expect(verdict).toBe(reference(line));
      }),
      { numRuns: 3000 },
    );
  });
});

/** The top-level id the scanner found in a line it accepted, as a string; null when it found none. */
function scannedId(line: string): string | null {
  const bytes = Buffer.from(line, 'utf8');
  const span = emptyIdSpan();
  const problem = checkResourceLine(bytes, 0, bytes.length, PATIENT, span);
  if (problem !== undefined) throw new Error(`line rejected: ${problem.kind}`);
  const id = idBytes(bytes, span);
  return id === undefined ? null : Buffer.from(id).toString('utf8');
}

describe('checkResourceLine with the id asked for', () => {
  it.each<[string, string, string | null]>([
    ['a plain id', '{"resourceType":"Patient","id":"p-1"}', 'p-1'],
    ['the id before the type', '{"id":"p-1","resourceType":"Patient"}', 'p-1'],
    ['the last of duplicate ids, as JSON.parse keeps', '{"resourceType":"Patient","id":"a","id":"b"}', 'b'],
    [
      'no id after a string id was overwritten by a number',
      '{"resourceType":"Patient","id":"a","id":7}',
      null,
    ],
    ['a string id that overwrote an object id', '{"resourceType":"Patient","id":{"x":1},"id":"c"}', 'c'],
    ['an escaped id, decoded', '{"resourceType":"Patient","id":"a\\u0062\\"c\\\\"}', 'ab"c\\'],
    ['an escaped key spelling id', '{"resourceType":"Patient","\\u0069d":"k"}', 'k'],
    ['a non-ASCII id, as its UTF-8', '{"resourceType":"Patient","id":"müller-😀"}', 'müller-😀'],
    ['no id at all', '{"resourceType":"Patient","active":true}', null],
    ['an empty object id', '{"resourceType":"Patient","id":{}}', null],
    ['null', '{"resourceType":"Patient","id":null}', null],
    ['only nested ids', '{"resourceType":"Patient","meta":{"id":"m"},"contained":[{"id":"c1"}]}', null],
    [
      'the top-level id among nested ones',
      '{"contained":[{"id":"c1"}],"id":"top","meta":{"id":"m"},"resourceType":"Patient"}',
      'top',
    ],
    ['a key that only starts with id', '{"resourceType":"Patient","idx":"no","identifier":[]}', null],
    ['an id-like value of another key', '{"resourceType":"Patient","name":"id","x":"id"}', null],
  ])('%s', (_name, line, expected) => {
    // Act
    const id = scannedId(line);
    // Assess
    expect(id).toBe(expected);
    const parsed = (JSON.parse(line) as { id?: unknown }).id;
    expect(id).toBe(typeof parsed === 'string' ? parsed : null);
  });

  it('forgets the previous line’s id', () => {
    // Prepare
    const span = emptyIdSpan();
    const first = Buffer.from('{"resourceType":"Patient","id":"one"}');
    const second = Buffer.from('{"resourceType":"Patient"}');
    checkResourceLine(first, 0, first.length, PATIENT, span);
    // Act
    checkResourceLine(second, 0, second.length, PATIENT, span);
    // Assess
    expect(idBytes(second, span)).toBeUndefined();
  });

  it('agrees with JSON.parse on the id of arbitrary JSON objects', () => {
    const resource = fc.tuple(
      fc.dictionary(
        fc.constantFrom('id', 'ids', 'meta', 'i', 'd', 'resourceType'),
        fc.jsonValue({ maxDepth: 2 }),
      ),
      fc.oneof(fc.string({ unit: 'binary' }), fc.jsonValue({ maxDepth: 1 })),
      fc.boolean(),
    );
    fc.assert(
      fc.property(resource, ([fields, id, idFirst]) => {
        // Prepare
        const rest = { ...fields, resourceType: 'Patient' };
        const line = JSON.stringify(idFirst ? { id, ...rest } : { ...rest, id });
        const expected = (JSON.parse(line) as { id?: unknown }).id;
        // Act
        const found = scannedId(line);
        // Assess
        expect(found).toBe(
          typeof expected === 'string' ? Buffer.from(expected, 'utf8').toString('utf8') : null,
        );
      }),
      { numRuns: 500 },
    );
  });
});
