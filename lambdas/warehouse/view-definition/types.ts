/**
 * A SQL on FHIR v2 ViewDefinition (https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html), as
 * the runner holds it once parsed: only the elements that decide which rows and columns a view produces.
 */

export interface ViewDefinition {
  readonly resourceType?: 'ViewDefinition';
  readonly name?: string;
  readonly url?: string;
  readonly status?: string;
  /** The FHIR resource type the view runs over: `Patient`. */
  readonly resource: string;
  readonly constant: readonly ViewConstant[];
  readonly select: readonly ViewSelect[];
  readonly where: readonly ViewWhere[];
}

export interface ViewConstant {
  readonly name: string;
  /** The constant's value from its `value[x]`: a number for integer and decimal kinds, a boolean, or a string. */
  readonly value: string | number | boolean;
  /** The FHIR type named by its `value[x]` suffix: `code` for `valueCode`. */
  readonly type: string;
}

export interface ViewSelect {
  readonly column: readonly ViewColumn[];
  readonly select: readonly ViewSelect[];
  readonly unionAll: readonly ViewSelect[];
  readonly forEach?: string;
  readonly forEachOrNull?: string;
  readonly repeat?: readonly string[];
}

export interface ViewColumn {
  readonly name: string;
  readonly path: string;
  /** The declared FHIR type; absent, the runner infers one (see column-types.ts). */
  readonly type?: string;
  readonly collection: boolean;
  readonly description?: string;
}

export interface ViewWhere {
  readonly path: string;
  readonly description?: string;
}

/** One output column, what a table writer (Parquet) needs to declare it. */
export interface ColumnSchema {
  readonly name: string;
  /** FHIR type: `string`, `boolean`, `integer`, `integer64`, `decimal`, `date`, `dateTime`, `CodeableConcept`… */
  readonly type: string;
  /** True when the view declared no `type` and the runner worked it out from the path (or fell back to string). */
  readonly inferred: boolean;
  /** A `collection: true` column: every value is an array (empty when the path found nothing). */
  readonly collection: boolean;
}

/**
 * A column's value: null when the path found nothing; a string for string-like and date/time types (FHIR's
 * ISO 8601 text, unchanged); a number for integer and decimal kinds; a bigint for integer64; a boolean; a
 * plain object for a complex FHIR type (a column declared `CodeableConcept`); an array of those for a
 * collection column.
 */
export type ColumnValue = string | number | bigint | boolean | Record<string, unknown> | null | ColumnValue[];

export type Row = Record<string, ColumnValue>;
