/**
 * Column types: the declared `type` when there is one; otherwise what the spec's inference rules give for
 * the path (a navigation from a known type, `ofType(T)`, a function with a known result type), else string
 * ("It is reasonable for an implementation to treat any non-specified types as strings"). And each value's
 * conversion to its column's type, which a table writer can then rely on.
 */
import r4model from 'fhirpath/fhir-context/r4';
import { ViewDefinitionError } from './errors.js';
import type { ColumnValue } from './types.js';

const model = r4model as unknown as {
  path2Type: Record<string, string>;
  pathsDefinedElsewhere: Record<string, string>;
  choiceTypePaths: Record<string, string[]>;
};

/** FHIR's 32-bit integer types (integer64 is apart: it is a bigint). */
export const INTEGER_TYPES: ReadonlySet<string> = new Set(['integer', 'positiveInt', 'unsignedInt']);
/** Kept as FHIR's ISO 8601 text: their precision varies. */
export const DATE_TIME_TYPES: ReadonlySet<string> = new Set(['date', 'dateTime', 'instant', 'time']);
/** FHIR's string-like primitives. */
export const STRING_TYPES: ReadonlySet<string> = new Set([
  'string',
  'code',
  'id',
  'uri',
  'url',
  'canonical',
  'oid',
  'uuid',
  'markdown',
  'base64Binary',
  'xhtml',
]);
const BOOLEAN_FUNCTIONS = new Set([
  'exists',
  'empty',
  'not',
  'hasValue',
  'all',
  'allTrue',
  'anyTrue',
  'allFalse',
  'anyFalse',
  'subsetOf',
  'supersetOf',
  'isDistinct',
  'contains',
  'startsWith',
  'endsWith',
  'matches',
  'is',
]);
const SAME_TYPE_FUNCTIONS = new Set(['first', 'last', 'single', 'where', 'distinct', 'tail', 'skip', 'take']);
const BOUNDARY_FUNCTIONS = new Set(['lowBoundary', 'highBoundary']);
const SYSTEM_TYPES: Readonly<Record<string, string>> = {
  'System.String': 'string',
  'System.Boolean': 'boolean',
  'System.Integer': 'integer',
  'System.Decimal': 'decimal',
  'System.Date': 'date',
  'System.DateTime': 'dateTime',
  'System.Time': 'time',
};

/** Whether a FHIR type is one whose values are JSON objects (CodeableConcept, Reference, a backbone element). */
export function isComplexType(type: string): boolean {
  return /^[A-Z]/.test(type);
}

/** A choice element (`value[x]`): its type is known only after an `ofType()`. */
const CHOICE = '[x]';

/** Splits `a.b(c.d).e[0]` at its top-level dots, leaving parentheses, brackets and quotes whole. */
function steps(path: string): string[] | undefined {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < path.length; i++) {
    const c = path[i];
    if (c === "'" || c === '`') {
      const close = path.indexOf(c, i + 1);
      if (close === -1) return undefined;
      i = close;
    } else if (c === '(' || c === '[') depth++;
    else if (c === ')' || c === ']') depth--;
    else if (c === '.' && depth === 0) {
      out.push(path.slice(start, i).trim());
      start = i + 1;
    } else if (depth === 0 && /\s|[=<>!+\-*/|&]/.test(c as string)) {
      // An operator: the spec's inference rules cover navigation and functions only.
      return undefined;
    }
  }
  out.push(path.slice(start).trim());
  return out;
}

/** The type of element `name` of `typePath` in the R4 model; a backbone element's type is its own path. */
function childType(typePath: string, name: string): string | undefined {
  let candidate = `${typePath}.${name}`;
  candidate = model.pathsDefinedElsewhere[candidate] ?? candidate;
  const type = model.path2Type[candidate];
  if (type === undefined) return model.choiceTypePaths[candidate] ? CHOICE : undefined;
  if (type === 'BackboneElement' || type === 'Element') return candidate;
  return SYSTEM_TYPES[type] ?? type;
}

/**
 * The FHIR type a path yields from a focus of type `focusType` (a type name, or a backbone element's path
 * such as `Patient.contact`), or undefined when the rules do not tell.
 */
export function inferType(focusType: string | undefined, path: string): string | undefined {
  const trimmed = path.trim();
  if (trimmed === '%rowIndex') return 'integer';
  if (/^'.*'$/s.test(trimmed)) return 'string';
  if (trimmed === 'true' || trimmed === 'false') return 'boolean';
  if (/^-?\d+$/.test(trimmed)) return 'integer';
  if (/^-?\d+\.\d+$/.test(trimmed)) return 'decimal';
  const parts = steps(trimmed);
  if (parts === undefined) return undefined;
  let type = focusType;
  for (const part of parts) {
    const call = /^([A-Za-z_][A-Za-z0-9_]*)\((.*)\)$/s.exec(part);
    if (call) {
      const [, fn, arg] = call as unknown as [string, string, string];
      if (fn === 'ofType') type = arg.trim().replace(/^FHIR\./, '');
      else if (fn === 'getResourceKey' || fn === 'getReferenceKey' || fn === 'join') type = 'string';
      else if (fn === 'count') type = 'integer';
      else if (BOOLEAN_FUNCTIONS.has(fn)) type = 'boolean';
      else if (fn === 'extension') type = 'Extension';
      else if (!SAME_TYPE_FUNCTIONS.has(fn) && !BOUNDARY_FUNCTIONS.has(fn)) return undefined;
      continue;
    }
    const indexed = /^([A-Za-z_][A-Za-z0-9_]*|\$this)(\[\d+\])?$/.exec(part);
    if (!indexed) return undefined;
    const name = indexed[1] as string;
    if (name === '$this') continue;
    if (type === undefined || type === CHOICE) return undefined;
    type = childType(type, name);
    if (type === undefined) return undefined;
  }
  return type === CHOICE ? undefined : type;
}

/** A value of another type than its column's: the view's error, naming the column and the types, not the value. */
function misfit(value: unknown, type: string, column: string, expected: string): never {
  throw new ViewDefinitionError(
    `${column}: a value of type ${typeof value === 'object' ? 'object' : typeof value} does not fit the column's type ${type} (expected ${expected})`,
  );
}

/**
 * Converts one value fhirpath returned to its column's type. fhirpath gives JSON-like values (numbers,
 * strings, booleans, objects); a mismatch with a declared type is the view's error, named with the column.
 */
export function toColumnType(value: unknown, type: string, inferred: boolean, column: string): ColumnValue {
  if (type === 'boolean')
    return typeof value === 'boolean' ? value : misfit(value, type, column, 'a boolean');
  if (INTEGER_TYPES.has(type))
    return Number.isInteger(value) ? (value as number) : misfit(value, type, column, 'an integer');
  if (type === 'integer64') {
    if (typeof value === 'bigint') return value;
    if (Number.isInteger(value) || (typeof value === 'string' && /^-?\d+$/.test(value))) {
      return BigInt(value as number | string);
    }
    return misfit(value, type, column, 'an integer');
  }
  if (type === 'decimal') {
    if (typeof value === 'number') return value;
    if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value)))
      return Number(value);
    return misfit(value, type, column, 'a number');
  }
  if (DATE_TIME_TYPES.has(type))
    return typeof value === 'string' ? value : misfit(value, type, column, 'an ISO 8601 string');
  if (STRING_TYPES.has(type)) {
    if (typeof value === 'string') return value;
    if (inferred || typeof value === 'number' || typeof value === 'boolean') {
      return typeof value === 'object' ? JSON.stringify(value) : String(value);
    }
    return misfit(value, type, column, 'a string');
  }
  if (isComplexType(type)) {
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : misfit(value, type, column, `a ${type} object`);
  }
  throw new ViewDefinitionError(
    `${column}: ${type} is not a FHIR type this runner knows how to hold in a column`,
  );
}
