/**
 * FHIRPath for views: HL7's `fhirpath` package with the R4 model, plus what SQL on FHIR v2 adds to it —
 * `getResourceKey()`, `getReferenceKey([type])`, `%rowIndex` and the view's `%constants`.
 */
import fhirpath from 'fhirpath';
import r4model from 'fhirpath/fhir-context/r4';
import { ViewDefinitionError } from './errors.js';
import type { ViewConstant } from './types.js';

/** Variables every evaluation gets: the iteration index and the resource being viewed. */
export interface EvaluationVariables {
  rowIndex: number;
  resource: unknown;
  rootResource: unknown;
}

/** A compiled expression: the focus (a resource, or a node from an earlier evaluation) → a collection. */
export type Evaluate = (focus: unknown, vars: EvaluationVariables) => unknown[];

/**
 * Environment variables FHIRPath or this runner define (`%resource`, `%ucum`, `%rowIndex`…); any other
 * `%name` must be one of the view's constants.
 */
const BUILT_IN_VARIABLES = new Set([
  'rowIndex',
  'resource',
  'rootResource',
  'context',
  'ucum',
  'sct',
  'loinc',
]);
const BUILT_IN_PREFIXES = ['vs-', 'ext-'];

/**
 * The reference forms a key is taken from: relative `Patient/123` (the spec's MUST), optionally versioned, and
 * absolute `https://server/fhir/Patient/123` (a MAY). Contained (`#id`) and `urn:uuid:` references point at
 * no row of a view, so they have no key.
 */
const LITERAL_REFERENCE =
  /(?:^|\/)([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

interface TypeSpecifier {
  readonly name: string;
  readonly namespace?: string;
}

/**
 * A resource's key is its id: getReferenceKey() reads the id from a reference, so the two are equal exactly
 * when the reference points at the resource, and a view is of one resource type, so ids are unique in it.
 */
function getResourceKey(inputs: unknown[]): string[] {
  const keys: string[] = [];
  for (const input of inputs) {
    const id = (input as { resourceType?: unknown; id?: unknown } | null)?.id;
    if (typeof (input as { resourceType?: unknown })?.resourceType === 'string' && typeof id === 'string') {
      keys.push(id);
    }
  }
  return keys;
}

function getReferenceKey(inputs: unknown[], type?: TypeSpecifier): string[] {
  const keys: string[] = [];
  for (const input of inputs) {
    const reference = (input as { reference?: unknown } | null)?.reference;
    if (typeof reference !== 'string') continue;
    const match = LITERAL_REFERENCE.exec(reference);
    if (!match) continue;
    if (type !== undefined && type.name !== match[1]) continue;
    keys.push(match[2] as string);
  }
  return keys;
}

/**
 * join() of nothing is the empty string, not an empty collection: the suite's shareable fhirpath tests
 * ("string join") expect `''` for a patient without given names, where fhirpath 5.2 returns nothing.
 */
function join(inputs: unknown[], separator?: unknown): string[] {
  const sep = Array.isArray(separator) ? separator[0] : separator;
  if (sep !== undefined && typeof sep !== 'string') throw new Error('join() takes a string separator');
  if (inputs.some((v) => typeof v === 'object' && v !== null))
    throw new Error('join() takes primitive values');
  return [inputs.map((v) => String(v)).join(sep ?? '')];
}

const SQL_ON_FHIR_FUNCTIONS = {
  join: { fn: join, arity: { 0: [], 1: ['String'] } },
  getResourceKey: { fn: getResourceKey, arity: { 0: [] } },
  getReferenceKey: { fn: getReferenceKey, arity: { 0: [], 1: ['TypeSpecifier'] } },
} as const;

/** FHIRPath has no exponent notation: 1e-7 is written 0.0000001 (toFixed's 20 digits, trailing zeros dropped). */
function decimalLiteral(value: number): string {
  const text = String(value);
  if (!/e/i.test(text)) return text;
  const fixed = Math.abs(value) >= 1e21 ? BigInt(value).toString() : value.toFixed(20).replace(/\.?0+$/, '');
  return fixed;
}

/** How a constant is written as a FHIRPath literal, by its FHIR type: the spec substitutes it before evaluation. */
function literalOf(constant: ViewConstant): string {
  const { type, value } = constant;
  switch (type) {
    case 'decimal':
      return decimalLiteral(value as number);
    case 'boolean':
    case 'integer':
    case 'positiveInt':
    case 'unsignedInt':
    case 'integer64':
      return String(value);
    case 'date':
      return `@${value}`;
    case 'dateTime':
    case 'instant':
      return String(value).includes('T') ? `@${value}` : `@${value}T`;
    case 'time':
      return `@T${value}`;
    default:
      return `'${String(value).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  }
}

/**
 * Replaces each `%name` that is a constant by its literal, skipping string literals, delimited identifiers and
 * comments; throws for a `%name` that is neither a constant nor a variable FHIRPath or SQL on FHIR defines.
 */
export function substituteConstants(
  expression: string,
  constants: ReadonlyMap<string, ViewConstant>,
  where: () => string,
): string {
  let out = '';
  let i = 0;
  const n = expression.length;
  while (i < n) {
    const c = expression[i] as string;
    if (c === "'" || c === '`') {
      const end = endOfQuoted(expression, i);
      out += expression.slice(i, end);
      i = end;
    } else if (c === '/' && expression[i + 1] === '/') {
      const end = expression.indexOf('\n', i);
      i = end === -1 ? n : end;
    } else if (c === '/' && expression[i + 1] === '*') {
      const end = expression.indexOf('*/', i + 2);
      i = end === -1 ? n : end + 2;
    } else if (c === '%') {
      let name: string;
      let end: number;
      const next = expression[i + 1];
      if (next === "'" || next === '`') {
        end = endOfQuoted(expression, i + 1);
        name = expression.slice(i + 2, end - 1);
      } else {
        const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(expression.slice(i + 1));
        name = m ? m[0] : '';
        end = i + 1 + name.length;
      }
      const constant = constants.get(name);
      if (constant) {
        out += literalOf(constant);
      } else if (BUILT_IN_VARIABLES.has(name) || BUILT_IN_PREFIXES.some((p) => name.startsWith(p))) {
        out += expression.slice(i, end);
      } else {
        const known = [...constants.keys()].map((k) => `%${k}`).join(', ') || 'none';
        throw new ViewDefinitionError(
          `${where()}: %${name} is not a constant of the view (its constants: ${known}) nor a FHIRPath or SQL on FHIR variable`,
        );
      }
      i = end;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

function endOfQuoted(s: string, start: number): number {
  const quote = s[start];
  let i = start + 1;
  while (i < s.length) {
    if (s[i] === '\\') i += 2;
    else if (s[i] === quote) return i + 1;
    else i++;
  }
  return s.length;
}

export interface CompileOptions {
  /** Nodes keep their FHIR type for the expressions evaluated on them (forEach, repeat); values are plain JSON. */
  readonly result: 'nodes' | 'values';
}

/** Compiles once; `where` names the expression's place in the view for errors (`select[0].column[2].path`). */
export function compileExpression(
  expression: string,
  constants: ReadonlyMap<string, ViewConstant>,
  options: CompileOptions,
  where: () => string,
): Evaluate {
  const substituted = substituteConstants(expression, constants, where);
  let compiled: (focus: unknown, vars: unknown) => unknown;
  try {
    compiled = fhirpath.compile(substituted, r4model, {
      resolveInternalTypes: options.result === 'values',
      userInvocationTable: SQL_ON_FHIR_FUNCTIONS as never,
      // trace() would print resource content.
      traceFn: () => {},
    }) as (focus: unknown, vars: unknown) => unknown;
  } catch (e) {
    throw new ViewDefinitionError(`${where()}: the FHIRPath does not parse: ${firstLine(e)}`, { cause: e });
  }
  return (focus, vars) => {
    try {
      return compiled(focus, vars) as unknown[];
    } catch {
      // fhirpath's evaluation messages can quote the data (a value it could not convert): not repeated here.
      throw new ViewDefinitionError(
        `${where()}: the FHIRPath failed to evaluate on a ${describeFocus(focus)}`,
      );
    }
  };
}

function describeFocus(focus: unknown): string {
  const type = (focus as { resourceType?: unknown } | null)?.resourceType;
  return typeof type === 'string' && /^[A-Z][A-Za-z]{1,63}$/.test(type)
    ? `${type} resource`
    : 'node of the resource';
}

/** fhirpath's messages name the expression's tokens and positions, never the data; the first line is enough. */
function firstLine(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  return message.split('\n')[0]?.slice(0, 300) ?? '';
}
