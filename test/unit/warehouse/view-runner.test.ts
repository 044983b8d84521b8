/**
 * The runner beyond the conformance suite: the errors a wrong view gets (each naming where in the view and
 * what was expected), constants as literals, column types and values as a table writer will take them,
 * reference keys, and the NDJSON stream (lines across chunks, other types skipped, rows before the end).
 */
import { describe, expect, it } from 'vitest';
import {
  compiledView,
  compileView,
  parseViewDefinition,
  type Row,
  rowsOfNdjson,
  ViewDefinitionError,
} from '../../../lambdas/warehouse/view-definition/index.js';

type Json = Record<string, unknown>;
const patientView = (
  extra: Json = {},
  select: unknown[] = [{ column: [{ name: 'id', path: 'id', type: 'id' }] }],
) => ({
  resourceType: 'ViewDefinition',
  name: 'patient_test',
  resource: 'Patient',
  select,
  ...extra,
});
const errorOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ViewDefinitionError);
    return (e as Error).message;
  }
  throw new Error('expected a ViewDefinitionError');
};

describe('a view that cannot run says where and what was expected', () => {
  it.each(
    (
      [
        [{ ...patientView(), resource: 'Patients' }, 'resource: expected a FHIR R4 resource type'],
        [{ ...patientView(), resource: undefined }, 'resource: expected a non-empty string, found nothing'],
        [patientView({}, []), 'select: expected at least one select'],
        [
          patientView({}, [{ column: [{ name: 'id' }] }]),
          'select[0].column[0].path: expected a non-empty string',
        ],
        [
          patientView({}, [{ column: [{ name: 'bad name', path: 'id' }] }]),
          'select[0].column[0].name: expected letters',
        ],
        [
          patientView({}, [{ forEach: 1, column: [{ name: 'a', path: 'id' }] }]),
          'select[0].forEach: expected a non-empty string, found a number',
        ],
        [
          patientView({}, [{ forEach: 'name', forEachOrNull: 'name', column: [{ name: 'a', path: 'id' }] }]),
          'select[0]: expected at most one of forEach, forEachOrNull and repeat',
        ],
        [
          patientView({}, [{ column: [{ name: 'a', path: 'id', type: 'varchar' }] }]),
          'select[0].column[0].type: expected a FHIR type',
        ],
        [
          patientView({}, [{ column: [{ name: 'a', path: 'name.(' }] }]),
          'select[0].column[0].path: the FHIRPath does not parse',
        ],
        [
          patientView({}, [{ foreach: 'name', column: [{ name: 'a', path: 'family' }] }]),
          'select[0].foreach: not an element here (expected column, select, unionAll, forEach, forEachOrNull, repeat, or id, extension)',
        ],
        [
          patientView({}, [{ column: [{ name: 'a', path: 'id', colection: true }] }]),
          'select[0].column[0].colection: not an element here',
        ],
        [patientView({ constant: [{ name: 'c' }] }), 'constant[0]: expected exactly one value[x]'],
        [
          patientView({ constant: [{ name: 'd', valueDate: '2024-01-01 or true' }] }),
          'constant[0].valueDate: expected a FHIR date',
        ],
        [
          patientView({ constant: [{ name: 'n', valueInteger64: '1) or (true' }] }),
          'constant[0].valueInteger64: expected a FHIR integer64',
        ],
        [
          patientView({ constant: [{ name: 'c', valueInteger: 'one' }] }),
          'constant[0].valueInteger: expected a JSON integer',
        ],
        [
          patientView({ where: [{ path: 'name.where(use = %missing).exists()' }] }),
          'where[0].path: %missing is not a constant of the view',
        ],
        [
          patientView({}, [
            { column: [{ name: 'id', path: 'id' }] },
            { column: [{ name: 'id', path: 'gender' }] },
          ]),
          'column name "id" is used twice',
        ],
        [
          patientView({}, [
            {
              unionAll: [
                { column: [{ name: 'a', path: 'id', type: 'string' }] },
                { column: [{ name: 'a', path: 'active', type: 'boolean' }] },
              ],
            },
          ]),
          'select[0].unionAll[1]: expected the same columns, in the same order and of the same types, as select[0].unionAll[0] (a: string), found a: boolean',
        ],
      ] as [unknown, string][]
    ).map(([view, message]) => ({ view, message })),
  )('$message', ({ view, message }) => {
    const error = errorOf(() => compileView(view));
    expect(error).toContain(message);
    if ((view as Json).name) expect(error).toContain('ViewDefinition "patient_test"');
  });

  it('per resource: a non-boolean where and a column with several values; no resource content in either', () => {
    const patient = {
      resourceType: 'Patient',
      id: 'secret-id',
      name: [{ family: 'Secretname' }, { family: 'Other' }],
    };
    const where = errorOf(() =>
      compileView(patientView({ where: [{ path: 'name.family.first()' }] })).rowsOf(patient),
    );
    expect(where).toContain('where[0].path: expected a boolean or nothing, found a string');
    const column = errorOf(() =>
      compileView(patientView({}, [{ column: [{ name: 'family', path: 'name.family' }] }])).rowsOf(patient),
    );
    expect(column).toContain('select[0].column[0] ("family"): the path found 2 values');
    expect(column).toContain('collection: true');
    for (const message of [where, column]) expect(message).not.toMatch(/secret|Secretname|Other/i);
  });

  it('join() of elements that are not primitives fails (rather than writing [object Object])', () => {
    const view = compileView(patientView({}, [{ column: [{ name: 'names', path: "name.join(',')" }] }]));
    expect(errorOf(() => view.rowsOf({ resourceType: 'Patient', name: [{ family: 'A' }] }))).toContain(
      'select[0].column[0].path: the FHIRPath failed to evaluate on a Patient resource',
    );
  });

  it('a value that does not fit the declared type is the view’s error, naming the column', () => {
    const view = compileView(patientView({}, [{ column: [{ name: 'g', path: 'gender', type: 'boolean' }] }]));
    expect(errorOf(() => view.rowsOf({ resourceType: 'Patient', gender: 'female' }))).toContain(
      'select[0].column[0] ("g"): a value of type string does not fit the column\'s type boolean',
    );
  });
});

describe('constants are substituted as FHIRPath literals of their type', () => {
  const obs = (id: string, extra: Json) => ({ resourceType: 'Observation', id, status: 'final', ...extra });
  it('dates, dateTimes and times compare as such; strings are quoted, even with a quote in them', () => {
    const view = compileView({
      resource: 'Observation',
      constant: [
        { name: 'day', valueDate: '2024-03-01' },
        { name: 'when', valueDateTime: '2024-03-01T10:00:00Z' },
        { name: 'at', valueTime: '08:30:00' },
        { name: 'text', valueString: "it's 'quoted'" },
        { name: 'limit', valueDecimal: 1.5 },
        { name: 'tiny', valueDecimal: 1e-7 },
      ],
      select: [
        {
          column: [
            { name: 'id', path: 'id', type: 'id' },
            { name: 'on_day', path: 'effective.ofType(dateTime) >= %day', type: 'boolean' },
            { name: 'after', path: 'issued > %when', type: 'boolean' },
            { name: 'at_time', path: 'value.ofType(time) = %at', type: 'boolean' },
            { name: 'said', path: 'note.text.first() = %text', type: 'boolean' },
            { name: 'under', path: 'value.ofType(Quantity).value < %limit', type: 'boolean' },
            { name: 'literal', path: "'%day stays text'", type: 'string' },
            { name: 'positive', path: 'value.ofType(Quantity).value > %tiny', type: 'boolean' },
          ],
        },
      ],
    });
    const rows = [
      obs('o1', {
        effectiveDateTime: '2024-03-02',
        issued: '2024-03-01T11:00:00Z',
        valueTime: '08:30:00',
        note: [{ text: "it's 'quoted'" }],
      }),
      obs('o2', {
        effectiveDateTime: '2024-02-28',
        issued: '2024-03-01T09:00:00Z',
        valueQuantity: { value: 1.2 },
      }),
    ].flatMap((r) => view.rowsOf(r));
    expect(rows).toEqual([
      {
        id: 'o1',
        on_day: true,
        after: true,
        at_time: true,
        said: true,
        under: null,
        literal: '%day stays text',
        positive: null,
      },
      {
        id: 'o2',
        on_day: false,
        after: false,
        at_time: null,
        said: null,
        under: true,
        literal: '%day stays text',
        // 1.2 > %tiny: 1e-7 written as 0.0000001, FHIRPath having no exponents.
        positive: true,
      },
    ]);
  });
});

describe('columns: types declared or inferred, values as a table writer takes them', () => {
  it('infers types from the R4 model along navigation, ofType() and functions with known results', () => {
    const view = compileView({
      resource: 'Patient',
      select: [
        {
          column: [
            { name: 'id', path: 'getResourceKey()' },
            { name: 'birth', path: 'birthDate' },
            { name: 'active', path: 'active' },
            { name: 'has_name', path: 'name.exists()' },
            { name: 'org', path: 'managingOrganization.getReferenceKey(Organization)' },
            { name: 'deceased', path: 'deceased.ofType(dateTime)' },
            { name: 'marital', path: 'maritalStatus' },
            { name: 'names', path: 'name.given', collection: true },
            { name: 'mixed', path: "gender + '!'" },
          ],
        },
        {
          forEach: 'contact',
          column: [
            { name: 'relationship', path: 'relationship.first().text' },
            { name: 'i', path: '%rowIndex' },
          ],
        },
      ],
    });
    expect(view.columns).toEqual([
      { name: 'id', type: 'string', inferred: true, collection: false },
      { name: 'birth', type: 'date', inferred: true, collection: false },
      { name: 'active', type: 'boolean', inferred: true, collection: false },
      { name: 'has_name', type: 'boolean', inferred: true, collection: false },
      { name: 'org', type: 'string', inferred: true, collection: false },
      { name: 'deceased', type: 'dateTime', inferred: true, collection: false },
      { name: 'marital', type: 'CodeableConcept', inferred: true, collection: false },
      { name: 'names', type: 'string', inferred: true, collection: true },
      // An expression with operators: the spec's rules do not say; string, as the spec allows.
      { name: 'mixed', type: 'string', inferred: true, collection: false },
      { name: 'relationship', type: 'string', inferred: true, collection: false },
      { name: 'i', type: 'integer', inferred: true, collection: false },
    ]);
    const [row] = view.rowsOf({
      resourceType: 'Patient',
      id: 'p1',
      birthDate: '1990-01-02',
      active: false,
      managingOrganization: { reference: 'Organization/org-1' },
      deceasedDateTime: '2020-05-06T07:08:09Z',
      maritalStatus: { text: 'Married' },
      name: [{ given: ['A', 'B'] }, { given: ['C'] }],
      gender: 'other',
      contact: [{ relationship: [{ text: 'friend' }] }],
    });
    expect(row).toEqual({
      id: 'p1',
      birth: '1990-01-02',
      active: false,
      has_name: true,
      org: 'org-1',
      deceased: '2020-05-06T07:08:09Z',
      marital: { text: 'Married' },
      names: ['A', 'B', 'C'],
      mixed: 'other!',
      relationship: 'friend',
      i: 0,
    });
  });

  it('integer64 as bigint, decimals and integers as numbers, an empty collection column as []', () => {
    const view = compileView({
      resource: 'Observation',
      select: [
        {
          column: [
            { name: 'big', path: "'9007199254740993'", type: 'integer64' },
            { name: 'value', path: 'value.ofType(Quantity).value', type: 'decimal' },
            { name: 'count', path: 'component.count()', type: 'integer' },
            { name: 'codes', path: 'code.coding.code', type: 'code', collection: true },
          ],
        },
      ],
    });
    expect(
      view.rowsOf({ resourceType: 'Observation', status: 'final', code: {}, valueQuantity: { value: 7.25 } }),
    ).toEqual([{ big: 9007199254740993n, value: 7.25, count: 0, codes: [] }]);
  });

  it('getReferenceKey reads relative, versioned and absolute references; not contained or urn:uuid ones', () => {
    const view = compileView({
      resource: 'Observation',
      select: [
        { column: [{ name: 'id', path: 'getResourceKey()' }] },
        {
          forEach: 'performer',
          column: [
            { name: 'any', path: 'getReferenceKey()' },
            { name: 'practitioner', path: 'getReferenceKey(Practitioner)' },
          ],
        },
      ],
    });
    const rows = view.rowsOf({
      resourceType: 'Observation',
      id: 'o9',
      status: 'final',
      code: {},
      performer: [
        { reference: 'Practitioner/pr-1' },
        { reference: 'Practitioner/pr-2/_history/3' },
        { reference: 'https://fhir.example.org/r4/Organization/org-7' },
        { reference: '#contained-1' },
        { reference: 'urn:uuid:3f1c7a52-0b1d-4a8e-9a65-2b7d2f0c1e11' },
      ],
    });
    expect(rows.map((r) => [r.id, r.any, r.practitioner])).toEqual([
      ['o9', 'pr-1', 'pr-1'],
      ['o9', 'pr-2', 'pr-2'],
      ['o9', 'org-7', null],
      ['o9', null, null],
      ['o9', null, null],
    ]);
  });

  it('compiledView compiles a view once per process, whichever object its JSON arrives in', () => {
    const first = compiledView(JSON.parse(JSON.stringify(patientView())));
    expect(compiledView(JSON.parse(JSON.stringify(patientView())))).toBe(first);
    expect(compiledView(patientView({ name: 'other' }))).not.toBe(first);
  });

  it('gives no rows for a resource of another type; a parsed view compiles as its JSON does', () => {
    const json = patientView();
    expect(compileView(json).rowsOf({ resourceType: 'Observation', id: 'o1' })).toEqual([]);
    expect(compileView(parseViewDefinition(json)).rowsOf({ resourceType: 'Patient', id: 'p1' })).toEqual([
      { id: 'p1' },
    ]);
  });
});

describe('rowsOfNdjson: a stream of lines to rows', () => {
  const view = compileView(
    patientView({}, [
      { column: [{ name: 'id', path: 'id', type: 'id' }] },
      { forEachOrNull: 'name', column: [{ name: 'family', path: 'family', type: 'string' }] },
    ]),
  );
  const collect = async (source: AsyncIterable<Uint8Array>) => {
    const rows: Row[] = [];
    for await (const row of rowsOfNdjson(view, source, { maxLineBytes: 1 << 20 })) rows.push(row);
    return rows;
  };

  it('frames lines split across chunks, skips other types, and gives each resource its rows', async () => {
    const text = [
      { resourceType: 'Patient', id: 'p1', name: [{ family: 'Åström' }, { family: 'B' }] },
      { resourceType: 'Observation', id: 'o1', status: 'final', code: {} },
      { resourceType: 'Patient', id: 'p2' },
    ]
      .map((r) => JSON.stringify(r))
      .join('\n');
    const bytes = Buffer.from(`${text}\n`);
    // Three-byte chunks: lines, and the two-byte Å, are split across chunks.
    async function* chunks() {
      for (let i = 0; i < bytes.length; i += 3) yield bytes.subarray(i, i + 3);
    }
    expect(await collect(chunks())).toEqual([
      { id: 'p1', family: 'Åström' },
      { id: 'p1', family: 'B' },
      { id: 'p2', family: null },
    ]);
  });

  it('yields a line’s rows before the source has given the next chunk (memory is one line, not the file)', async () => {
    let pulled = 0;
    async function* endless() {
      for (;;) {
        pulled++;
        yield Buffer.from(`${JSON.stringify({ resourceType: 'Patient', id: `p${pulled}` })}\n`);
      }
    }
    const rows = rowsOfNdjson(view, endless(), { maxLineBytes: 1024 });
    expect((await rows.next()).value).toEqual({ id: 'p1', family: null });
    expect((await rows.next()).value).toEqual({ id: 'p2', family: null });
    expect(pulled).toBe(2);
    await rows.return();
  });

  it('names the resource a view fails on by its place in the file', async () => {
    const strict = compileView(patientView({}, [{ column: [{ name: 'family', path: 'name.family' }] }]));
    const lines = Buffer.from(
      `${JSON.stringify({ resourceType: 'Patient', id: 'a' })}\n${JSON.stringify({ resourceType: 'Patient', id: 'b', name: [{ family: 'X' }, { family: 'Y' }] })}\n`,
    );
    async function* one() {
      yield lines;
    }
    await expect(async () => {
      for await (const _ of rowsOfNdjson(strict, one(), { maxLineBytes: 1024 })) {
        // drain
      }
    }).rejects.toThrow(/the path found 2 values.*\(resource 2 of the file\)/);
  });
});
