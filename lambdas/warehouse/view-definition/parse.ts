/**
 * Reads a ViewDefinition's JSON into the runner's model, checking the structure the spec requires so that a
 * wrong view fails once, up front, with the path of what is wrong (`select[1].column[0].name`), rather than
 * on the first resource.
 */
import r4model from 'fhirpath/fhir-context/r4';
import { ViewDefinitionError } from './errors.js';
import type { ViewColumn, ViewConstant, ViewDefinition, ViewSelect, ViewWhere } from './types.js';

/** Column names must be usable as SQL identifiers in any database (the spec's `sql-name` invariant). */
const COLUMN_NAME = /^[A-Za-z][A-Za-z0-9_]*$/;
const CONSTANT_NAME = /^[A-Za-z][A-Za-z0-9_]*$/;

/** The `value[x]` choices of ViewDefinition.constant, each with the JSON type its value must have. */
const CONSTANT_KINDS: Readonly<Record<string, 'string' | 'number' | 'integer' | 'boolean'>> = {
  base64Binary: 'string',
  boolean: 'boolean',
  canonical: 'string',
  code: 'string',
  date: 'string',
  dateTime: 'string',
  decimal: 'number',
  id: 'string',
  instant: 'string',
  integer: 'integer',
  integer64: 'string',
  oid: 'string',
  string: 'string',
  positiveInt: 'integer',
  time: 'string',
  unsignedInt: 'integer',
  uri: 'string',
  url: 'string',
  uuid: 'string',
};

/** FHIR's regexes (R4/R5 datatypes) for the kinds of constant substituted without quotes. */
const UNQUOTED_FORMS: Readonly<Record<string, RegExp>> = {
  date: /^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$/,
  dateTime:
    /^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])(T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00)))?)?)?$/,
  instant:
    /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))$/,
  time: /^([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?$/,
  integer64: /^-?(0|[1-9]\d{0,18})$/,
};

const FORM_NAMES: Readonly<Record<string, string>> = {
  date: 'YYYY, YYYY-MM or YYYY-MM-DD',
  dateTime: 'a date, or YYYY-MM-DDThh:mm:ss[.fff] with Z or ±hh:mm',
  instant: 'YYYY-MM-DDThh:mm:ss[.fff] with Z or ±hh:mm',
  time: 'hh:mm:ss[.fff]',
  integer64: 'decimal digits, optionally signed',
};

const types2Parent = (r4model as unknown as { type2Parent: Record<string, string> }).type2Parent;

/** Whether `name` is an R4 resource type (the runner evaluates FHIRPath with the R4 model). */
export function isResourceType(name: string): boolean {
  let parent = types2Parent[name];
  while (parent !== undefined) {
    if (parent === 'Resource') return true;
    parent = types2Parent[parent];
  }
  return false;
}

type Json = Record<string, unknown>;

/**
 * The elements of select, column, where and constant (FHIR's id and extensions included). Anything else is
 * most likely a misspelling (`foreach`, `colunm`) that would otherwise change the rows without a word.
 */
const ELEMENTS = ['id', 'extension', 'modifierExtension'];
const SELECT_ELEMENTS = new Set([
  ...ELEMENTS,
  'column',
  'select',
  'unionAll',
  'forEach',
  'forEachOrNull',
  'repeat',
]);
const COLUMN_ELEMENTS = new Set([...ELEMENTS, 'name', 'path', 'description', 'collection', 'type', 'tag']);
const WHERE_ELEMENTS = new Set([...ELEMENTS, 'path', 'description']);
const CONSTANT_ELEMENTS = new Set([...ELEMENTS, 'name']);

class Reader {
  constructor(readonly viewName: string) {}

  fail(at: string, expected: string, found: unknown): never {
    throw new ViewDefinitionError(
      `ViewDefinition ${this.viewName}: ${at}: expected ${expected}, found ${describe(found)}`,
    );
  }

  object(value: unknown, at: string, elements?: ReadonlySet<string>): Json {
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      this.fail(at, 'an object', value);
    if (elements) {
      const allowed = () =>
        [...elements].filter((e) => !ELEMENTS.includes(e)).join(', ') +
        (elements === CONSTANT_ELEMENTS ? ', value[x]' : '');
      for (const key of Object.keys(value)) {
        if (elements.has(key) || (elements === CONSTANT_ELEMENTS && key.startsWith('value'))) continue;
        throw new ViewDefinitionError(
          `ViewDefinition ${this.viewName}: ${at}.${key}: not an element here (expected ${allowed()}, or id, extension)`,
        );
      }
    }
    return value as Json;
  }

  array(value: unknown, at: string): unknown[] {
    if (value === undefined) return [];
    if (!Array.isArray(value)) this.fail(at, 'an array', value);
    return value;
  }

  string(value: unknown, at: string): string {
    if (typeof value !== 'string' || value.trim() === '') this.fail(at, 'a non-empty string', value);
    return value;
  }

  optionalString(value: unknown, at: string): string | undefined {
    return value === undefined ? undefined : this.string(value, at);
  }
}

/** What a value was, for an error message: its JSON type, never its content (a view may be pasted with data). */
function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'string') return value.trim() === '' ? 'an empty string' : 'a string';
  return `a ${typeof value}`;
}

/** Views this module produced, so that compileView can tell them from raw JSON of the same shape. */
export const PARSED = new WeakSet<object>();

export function parseViewDefinition(json: unknown): ViewDefinition {
  const named =
    typeof json === 'object' && json !== null && typeof (json as Json).name === 'string'
      ? `"${(json as Json).name as string}"`
      : '(unnamed)';
  const r = new Reader(named);
  const view = r.object(json, 'the ViewDefinition');
  if (view.resourceType !== undefined && view.resourceType !== 'ViewDefinition') {
    r.fail('resourceType', '"ViewDefinition"', view.resourceType);
  }
  const resource = r.string(view.resource, 'resource');
  if (!isResourceType(resource)) {
    throw new ViewDefinitionError(
      `ViewDefinition ${named}: resource: expected a FHIR R4 resource type (Patient, Observation…), found "${resource}"`,
    );
  }
  const constant = r.array(view.constant, 'constant').map((c, i) => readConstant(r, c, `constant[${i}]`));
  const names = new Set<string>();
  for (const [i, c] of constant.entries()) {
    if (names.has(c.name)) r.fail(`constant[${i}].name`, 'a name not used by another constant', c.name);
    names.add(c.name);
  }
  const selects = r.array(view.select, 'select');
  if (selects.length === 0) r.fail('select', 'at least one select', view.select);
  const select = selects.map((s, i) => readSelect(r, s, `select[${i}]`));
  const where = r.array(view.where, 'where').map((w, i): ViewWhere => {
    const o = r.object(w, `where[${i}]`, WHERE_ELEMENTS);
    return {
      path: r.string(o.path, `where[${i}].path`),
      ...(o.description === undefined
        ? {}
        : { description: r.string(o.description, `where[${i}].description`) }),
    };
  });
  const parsed: ViewDefinition = {
    resourceType: 'ViewDefinition',
    ...(typeof view.name === 'string' ? { name: view.name } : {}),
    ...(typeof view.url === 'string' ? { url: view.url } : {}),
    ...(typeof view.status === 'string' ? { status: view.status } : {}),
    resource,
    constant,
    select,
    where,
  };
  PARSED.add(parsed);
  return parsed;
}

function readConstant(r: Reader, value: unknown, at: string): ViewConstant {
  const o = r.object(value, at, CONSTANT_ELEMENTS);
  const name = r.string(o.name, `${at}.name`);
  if (!CONSTANT_NAME.test(name))
    r.fail(`${at}.name`, 'a name of letters, digits and _ starting with a letter', name);
  const values = Object.keys(o).filter((k) => k.startsWith('value'));
  if (values.length !== 1) {
    throw new ViewDefinitionError(
      `ViewDefinition ${r.viewName}: ${at}: expected exactly one value[x] (valueString, valueCode, valueInteger…), found ${values.length}`,
    );
  }
  const key = values[0] as string;
  const type = key.charAt(5).toLowerCase() + key.slice(6);
  const kind = CONSTANT_KINDS[type];
  if (kind === undefined)
    r.fail(`${at}.${key}`, `one of value${Object.keys(CONSTANT_KINDS).join(', value')}`, key);
  const v = o[key];
  const ok =
    kind === 'integer'
      ? Number.isInteger(v)
      : kind === 'number'
        ? typeof v === 'number' && Number.isFinite(v)
        : kind === 'boolean'
          ? typeof v === 'boolean'
          : typeof v === 'string';
  if (!ok) r.fail(`${at}.${key}`, `a JSON ${kind}`, v);
  // These are written into the FHIRPath unquoted (`@2024-03-01`, `123`): only their FHIR form may get there.
  const form = UNQUOTED_FORMS[type];
  if (form && !form.test(v as string)) {
    throw new ViewDefinitionError(
      `ViewDefinition ${r.viewName}: ${at}.${key}: expected a FHIR ${type} (${FORM_NAMES[type]}), found "${String(v).slice(0, 40)}"`,
    );
  }
  return { name, type, value: v as string | number | boolean };
}

function readSelect(r: Reader, value: unknown, at: string): ViewSelect {
  const o = r.object(value, at, SELECT_ELEMENTS);
  const column = r.array(o.column, `${at}.column`).map((c, i) => readColumn(r, c, `${at}.column[${i}]`));
  const select = r.array(o.select, `${at}.select`).map((s, i) => readSelect(r, s, `${at}.select[${i}]`));
  const unionAll = r
    .array(o.unionAll, `${at}.unionAll`)
    .map((s, i) => readSelect(r, s, `${at}.unionAll[${i}]`));
  const forEach = r.optionalString(o.forEach, `${at}.forEach`);
  const forEachOrNull = r.optionalString(o.forEachOrNull, `${at}.forEachOrNull`);
  const repeat =
    o.repeat === undefined
      ? undefined
      : r.array(o.repeat, `${at}.repeat`).map((p, i) => r.string(p, `${at}.repeat[${i}]`));
  const iterations = [forEach, forEachOrNull, repeat].filter((x) => x !== undefined).length;
  if (iterations > 1) r.fail(at, 'at most one of forEach, forEachOrNull and repeat', `${iterations} of them`);
  if (repeat?.length === 0) r.fail(`${at}.repeat`, 'at least one path', o.repeat);
  if (column.length === 0 && select.length === 0 && unionAll.length === 0) {
    r.fail(at, 'a column, select or unionAll', 'none');
  }
  return {
    column,
    select,
    unionAll,
    ...(forEach === undefined ? {} : { forEach }),
    ...(forEachOrNull === undefined ? {} : { forEachOrNull }),
    ...(repeat === undefined ? {} : { repeat }),
  };
}

function readColumn(r: Reader, value: unknown, at: string): ViewColumn {
  const o = r.object(value, at, COLUMN_ELEMENTS);
  const name = r.string(o.name, `${at}.name`);
  if (!COLUMN_NAME.test(name)) {
    throw new ViewDefinitionError(
      `ViewDefinition ${r.viewName}: ${at}.name: expected letters, digits and _ starting with a letter (a name any database accepts), found "${name}"`,
    );
  }
  const path = r.string(o.path, `${at}.path`);
  const type = r.optionalString(o.type, `${at}.type`);
  if (o.collection !== undefined && typeof o.collection !== 'boolean')
    r.fail(`${at}.collection`, 'a boolean', o.collection);
  const description = r.optionalString(o.description, `${at}.description`);
  return {
    name,
    path,
    collection: o.collection === true,
    ...(type === undefined ? {} : { type }),
    ...(description === undefined ? {} : { description }),
  };
}
