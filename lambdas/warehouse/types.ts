/**
 * The contract between the parts of the warehouse load (issue 18): the Parquet writer and file loader, the
 * load stage (plan, Map, marker), the AWS construct (Glue tables, Athena) and the local query engine. They
 * all type a table's columns the same way, from the view's declared FHIR types, so a column is the same
 * type in the Parquet footer, in Glue and in DuckDB.
 */
import { DATE_TIME_TYPES, INTEGER_TYPES, STRING_TYPES } from './view-definition/column-types.js';
import type { ColumnSchema } from './view-definition/types.js';

/**
 * A column's storage type. FHIR's date, dateTime, instant and time stay text: their precision varies
 * (`2024`, `2024-03`, `2024-03-01T08:30:00+02:00`) and no SQL date type keeps it. decimal is a double:
 * Parquet DECIMAL needs one precision and scale per column, which FHIR does not have. A complex value
 * (CodeableConcept…) or a `collection: true` column is its JSON text, which both engines' JSON functions read.
 */
export type WarehouseType = 'string' | 'boolean' | 'int32' | 'int64' | 'double' | 'json';

const INT32 = INTEGER_TYPES;
const TEXT: ReadonlySet<string> = new Set([...STRING_TYPES, ...DATE_TIME_TYPES]);

export function warehouseType(column: Pick<ColumnSchema, 'type' | 'collection'>): WarehouseType {
  if (column.collection) return 'json';
  if (TEXT.has(column.type)) return 'string';
  if (column.type === 'boolean') return 'boolean';
  if (INT32.has(column.type)) return 'int32';
  if (column.type === 'integer64') return 'int64';
  if (column.type === 'decimal') return 'double';
  return 'json';
}

/** Glue/Athena (Hive DDL) type of a column. */
export const GLUE_TYPES: Readonly<Record<WarehouseType, string>> = {
  string: 'string',
  boolean: 'boolean',
  int32: 'int',
  int64: 'bigint',
  double: 'double',
  json: 'string',
};

/** DuckDB type of a column. */
export const DUCKDB_TYPES: Readonly<Record<WarehouseType, string>> = {
  string: 'VARCHAR',
  boolean: 'BOOLEAN',
  int32: 'INTEGER',
  int64: 'BIGINT',
  double: 'DOUBLE',
  json: 'VARCHAR',
};

/** The partition columns every table has, from its Hive path (`source=<id>/export=<token>/`), not its files. */
export const PARTITION_COLUMNS = ['source', 'export'] as const;

/**
 * One data file to load, as Plan Load puts it in the Map's items (in S3, never in state): the file, the types
 * it holds, and one Parquet part per table whose view reads one of those types. A table's parts are numbered
 * 1, 2, … in the order of the receipt's file index among the files that hold its view's type, so a re-run
 * writes the same keys.
 */
export interface FileLoad {
  /** The NDJSON data file (or a `deleted` file, whose rows go to the `deleted` table). */
  readonly dataKey: string;
  readonly kind: 'output' | 'deleted';
  /** Its line in the receipt's file index (0-based). */
  readonly fileIndex: number;
  /** The resource types in it: one, or several for a file organized by patient. */
  readonly resourceTypes: readonly string[];
  readonly targets: readonly { readonly table: string; readonly partKey: string }[];
}

export interface TablePartLoaded {
  readonly table: string;
  readonly partKey: string;
  readonly rows: number;
  /** The Parquet object's size. */
  readonly bytes: number;
}

export interface FileLoaded {
  readonly dataKey: string;
  /** Lines read from the data file (resources, or Bundles for a deleted file). */
  readonly lines: number;
  readonly parts: readonly TablePartLoaded[];
}

/** `_LOADED.json`: written last, only for a load that finished. No values, only names and counts. */
export interface LoadedMarker {
  readonly loadedVersion: 1;
  readonly sourceId: string;
  /** The export folder's `export=` value: the `export` partition of every table part it wrote. */
  readonly exportToken: string;
  /** The export folder (`source=<id>/export=<token>/`, under the prefix). */
  readonly root: string;
  /** `_VALIDATED.json` when the load followed the validation stage; absent when validation is off. */
  readonly validatedMarkerKey?: string;
  /** Per table, in view order: the view's resource type, its parts and rows. */
  readonly tables: Readonly<
    Record<
      string,
      { readonly resource: string; readonly rows: number; readonly parts: readonly TablePartLoaded[] }
    >
  >;
  readonly totals: {
    readonly files: number;
    readonly parts: number;
    readonly rows: number;
    readonly bytes: number;
  };
}
