/**
 * Runs a ViewDefinition over resources: compiled once per view (every FHIRPath parsed once, per Lambda
 * container when the view is compiled at module scope), then applied to each resource in turn, so a file
 * of any size is viewed in constant memory.
 *
 * Row semantics, from the spec (StructureDefinition-ViewDefinition-notes): a select's own columns, its nested
 * selects and its unionAll are cross-joined; `forEach` repeats that per item of a collection and gives no
 * row for an empty one, `forEachOrNull` gives one row of nulls instead, `repeat` does it for every item found
 * by following its paths recursively; `unionAll` concatenates its branches; the view's `where` paths must
 * all be true for a resource to give rows.
 */
import { inferType, isComplexType, toColumnType } from './column-types.js';
import { ViewDefinitionError } from './errors.js';
import { compileExpression, type Evaluate, type EvaluationVariables } from './fhirpath.js';
import { PARSED, parseViewDefinition } from './parse.js';
import type { ColumnSchema, ColumnValue, Row, ViewConstant, ViewDefinition, ViewSelect } from './types.js';

export interface CompiledView {
  readonly view: ViewDefinition;
  /** The view's name, or `(unnamed)`: for messages. */
  readonly label: string;
  /** The columns in the spec's order: a select's own, then its nested selects', then its unionAll's. */
  readonly columns: readonly ColumnSchema[];
  /** The rows one resource gives; none for a resource of another type or one a `where` excludes. */
  rowsOf(resource: unknown): Row[];
}

interface CompiledColumn {
  readonly schema: ColumnSchema;
  /** `ViewDefinition "name": select[0].column[1] ("gender")`, for errors. */
  readonly place: string;
  readonly evaluate: Evaluate;
}

interface CompiledSelect {
  readonly at: string;
  readonly columns: readonly CompiledColumn[];
  readonly selects: readonly CompiledSelect[];
  readonly unionAll: readonly CompiledSelect[];
  readonly iterate?: {
    readonly kind: 'forEach' | 'forEachOrNull' | 'repeat';
    readonly paths: readonly Evaluate[];
  };
  /** Every column this select gives, own and nested, in order. */
  readonly schema: readonly ColumnSchema[];
}

const KNOWN_PRIMITIVES = new Set([
  'boolean',
  'integer',
  'integer64',
  'positiveInt',
  'unsignedInt',
  'decimal',
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
  'date',
  'dateTime',
  'instant',
  'time',
]);

/** Compiles a view (its JSON, or one already parsed); throws ViewDefinitionError naming what is wrong. */
export function compileView(definition: unknown): CompiledView {
  const view = isParsed(definition) ? definition : parseViewDefinition(definition);
  const label = view.name === undefined ? '(unnamed)' : `"${view.name}"`;
  const constants = new Map<string, ViewConstant>(view.constant.map((c) => [c.name, c]));
  const place = (at: string) => () => `ViewDefinition ${label}: ${at}`;

  const compileSelect = (select: ViewSelect, at: string, focusType: string | undefined): CompiledSelect => {
    let iterate: CompiledSelect['iterate'];
    let itemType = focusType;
    if (select.forEach !== undefined || select.forEachOrNull !== undefined) {
      const kind = select.forEach !== undefined ? 'forEach' : 'forEachOrNull';
      const path = (select.forEach ?? select.forEachOrNull) as string;
      iterate = {
        kind,
        paths: [compileExpression(path, constants, { result: 'nodes' }, place(`${at}.${kind}`))],
      };
      itemType = inferType(focusType, path);
    } else if (select.repeat !== undefined) {
      iterate = {
        kind: 'repeat',
        paths: select.repeat.map((p, i) =>
          compileExpression(p, constants, { result: 'nodes' }, place(`${at}.repeat[${i}]`)),
        ),
      };
      itemType = select.repeat[0] === undefined ? undefined : inferType(focusType, select.repeat[0]);
    }
    const columns = select.column.map((column, i): CompiledColumn => {
      const columnAt = `${at}.column[${i}]`;
      if (column.type !== undefined && !KNOWN_PRIMITIVES.has(column.type) && !isComplexType(column.type)) {
        throw new ViewDefinitionError(
          `ViewDefinition ${label}: ${columnAt}.type: expected a FHIR type (string, integer, decimal, boolean, date, dateTime, code, CodeableConcept…), found "${column.type}"`,
        );
      }
      const type = column.type ?? inferType(itemType, column.path) ?? 'string';
      return {
        place: `ViewDefinition ${label}: ${columnAt} ("${column.name}")`,
        schema: {
          name: column.name,
          type,
          inferred: column.type === undefined,
          collection: column.collection,
        },
        evaluate: compileExpression(column.path, constants, { result: 'values' }, place(`${columnAt}.path`)),
      };
    });
    const selects = select.select.map((s, i) => compileSelect(s, `${at}.select[${i}]`, itemType));
    const unionAll = select.unionAll.map((s, i) => compileSelect(s, `${at}.unionAll[${i}]`, itemType));
    const first = unionAll[0];
    for (const [i, branch] of unionAll.entries()) {
      if (i > 0 && first && !sameColumns(first.schema, branch.schema)) {
        throw new ViewDefinitionError(
          `ViewDefinition ${label}: ${at}.unionAll[${i}]: expected the same columns, in the same order and of the same types, as ${at}.unionAll[0] (${signature(first.schema)}), found ${signature(branch.schema)}`,
        );
      }
    }
    const schema = [
      ...columns.map((c) => c.schema),
      ...selects.flatMap((s) => s.schema),
      ...(first ? first.schema : []),
    ];
    return { at, columns, selects, unionAll, schema, ...(iterate ? { iterate } : {}) };
  };

  const root = view.select.map((s, i) => compileSelect(s, `select[${i}]`, view.resource));
  const columns = root.flatMap((s) => s.schema);
  const seen = new Set<string>();
  for (const c of columns) {
    if (seen.has(c.name)) {
      throw new ViewDefinitionError(
        `ViewDefinition ${label}: column name "${c.name}" is used twice: expected unique names (a unionAll's branches share theirs)`,
      );
    }
    seen.add(c.name);
  }
  const where = view.where.map((w, i) => ({
    at: `where[${i}]`,
    evaluate: compileExpression(w.path, constants, { result: 'values' }, place(`where[${i}].path`)),
  }));

  const rowsOf = (resource: unknown): Row[] => {
    if ((resource as { resourceType?: unknown } | null)?.resourceType !== view.resource) return [];
    const vars: EvaluationVariables = { rowIndex: 0, resource, rootResource: resource };
    for (const w of where) {
      const result = w.evaluate(resource, vars);
      if (result.length > 1 || (result.length === 1 && typeof result[0] !== 'boolean')) {
        throw new ViewDefinitionError(
          `ViewDefinition ${label}: ${w.at}.path: expected a boolean or nothing, found ${result.length === 1 ? `a ${typeof result[0]}` : `${result.length} values`}`,
        );
      }
      if (result[0] !== true) return [];
    }
    const parts = root.map((s) => rowsOfSelect(s, resource, 0, resource));
    return crossJoin(parts);
  };

  return { view, label, columns, rowsOf };
}

const compiledViews = new Map<string, CompiledView>();

/**
 * compileView, once per distinct view for the life of the process (a Lambda container): a handler that is
 * given its view per invocation compiles it on the first and reuses it after.
 */
export function compiledView(definition: unknown): CompiledView {
  const key = JSON.stringify(definition);
  let view = compiledViews.get(key);
  if (view === undefined) {
    view = compileView(definition);
    compiledViews.set(key, view);
  }
  return view;
}

function isParsed(definition: unknown): definition is ViewDefinition {
  return typeof definition === 'object' && definition !== null && PARSED.has(definition);
}

function sameColumns(a: readonly ColumnSchema[], b: readonly ColumnSchema[]): boolean {
  return (
    a.length === b.length &&
    a.every((c, i) => c.name === b[i]?.name && c.type === b[i]?.type && c.collection === b[i]?.collection)
  );
}

function signature(columns: readonly ColumnSchema[]): string {
  return columns.map((c) => `${c.name}: ${c.type}${c.collection ? '[]' : ''}`).join(', ') || 'no columns';
}

function rowsOfSelect(select: CompiledSelect, focus: unknown, rowIndex: number, resource: unknown): Row[] {
  let items: unknown[];
  let indexed: boolean;
  if (select.iterate === undefined) {
    items = [focus];
    indexed = false;
  } else {
    const vars: EvaluationVariables = { rowIndex, resource, rootResource: resource };
    const [first] = select.iterate.paths;
    items =
      select.iterate.kind === 'repeat'
        ? repeatedly(select.iterate.paths, focus, vars)
        : (first as Evaluate)(focus, vars);
    indexed = true;
    if (items.length === 0) {
      return select.iterate.kind === 'forEachOrNull' ? [nullRowOf(select, vars)] : [];
    }
  }
  const rows: Row[] = [];
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    const index = indexed ? i : rowIndex;
    const vars: EvaluationVariables = { rowIndex: index, resource, rootResource: resource };
    const own: Row = {};
    for (const column of select.columns) {
      own[column.schema.name] = cellOf(column, column.evaluate(item, vars));
    }
    const parts: Row[][] = [[own]];
    for (const nested of select.selects) parts.push(rowsOfSelect(nested, item, index, resource));
    if (select.unionAll.length > 0) {
      parts.push(select.unionAll.flatMap((branch) => rowsOfSelect(branch, item, index, resource)));
    }
    for (const row of crossJoin(parts)) rows.push(row);
  }
  return rows;
}

/** `repeat`: the items its paths find from the focus, then from each of those, depth first, in document order. */
function repeatedly(paths: readonly Evaluate[], focus: unknown, vars: EvaluationVariables): unknown[] {
  const found: unknown[] = [];
  const visit = (node: unknown) => {
    for (const path of paths) {
      for (const child of path(node, vars)) {
        found.push(child);
        visit(child);
      }
    }
  };
  visit(focus);
  return found;
}

function cellOf(column: CompiledColumn, values: unknown[]): ColumnValue {
  const { schema, place } = column;
  if (schema.collection) return values.map((v) => toColumnType(v, schema.type, schema.inferred, place));
  if (values.length === 0) return null;
  if (values.length > 1) {
    throw new ViewDefinitionError(
      `${place}: the path found ${values.length} values; a column holds one unless it is declared collection: true`,
    );
  }
  return toColumnType(values[0], schema.type, schema.inferred, place);
}

/**
 * forEachOrNull over nothing: one row, its columns null, except that the select's own columns are still
 * evaluated (on an empty focus) so that `%rowIndex` is 0 and `%resource` paths have their values, as the
 * suite's row_index tests expect.
 */
function nullRowOf(select: CompiledSelect, vars: EvaluationVariables): Row {
  const row: Row = {};
  for (const c of select.schema) row[c.name] = null;
  const focus = { ...vars, rowIndex: 0 };
  for (const column of select.columns) row[column.schema.name] = cellOf(column, column.evaluate([], focus));
  return row;
}

/**
 * Every combination of one row from each part, merged; no rows when a part has none. The parts' rows are
 * this resource's own fresh objects, so the common case (each part one row) merges into the first in place.
 */
function crossJoin(parts: readonly Row[][]): Row[] {
  if (parts.length === 0) return [{}];
  let rows = parts[0] as Row[];
  for (let p = 1; p < parts.length; p++) {
    const part = parts[p] as Row[];
    if (part.length === 1) {
      const only = part[0] as Row;
      for (const row of rows) Object.assign(row, only);
      continue;
    }
    const next: Row[] = [];
    for (const left of rows) for (const right of part) next.push({ ...left, ...right });
    rows = next;
  }
  return rows;
}
