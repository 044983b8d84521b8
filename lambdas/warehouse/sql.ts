/**
 * The warehouse's SQL text (issue 18), for both engines that read its Parquet tables: the embedded DuckDB of
 * `npm run query` and Athena over the Glue tables. Pure builders, no I/O: the same `latest` logic runs in
 * both, and a unit test reads the statements.
 *
 * Deltas: each export adds a partition (`source=<id>/export=<token>/`), so a table holds every version of a
 * resource that any export carried. `<table>_latest` keeps, per (source, id), every row of its newest version
 * and drops the resources the exports' `deleted` files list.
 */
import { DELETED_TABLE } from './layout.js';

export type SqlDialect = 'duckdb' | 'athena';

/** What `<table>_latest` is called. */
export const latestViewName = (table: string) => `${table}_latest`;

/** The columns a latest view needs: the resource's id and its `meta.lastUpdated`. */
export const LATEST_VIEW_COLUMNS = ['id', 'last_updated'] as const;

/** The columns of `columns` a latest view needs and does not find (none: it can have one). */
export function missingLatestColumns(columns: readonly string[]): string[] {
  return LATEST_VIEW_COLUMNS.filter((name) => !columns.includes(name));
}

/** A quoted identifier, for both dialects (ANSI double quotes, a quote in the name doubled). */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A SQL string literal, for both dialects. */
export function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

export interface LatestViewOptions {
  /** The view's FHIR resource type: the `deleted` table's `resource_type` its ids are matched under. */
  readonly resourceType: string;
  /** Athena: the Glue database to name the tables in, so the view does not depend on the session's. */
  readonly database?: string;
}

/**
 * The SELECT of `<table>_latest`. Per (source, id), the newest version is the one with the newest
 * `last_updated`, compared as a timestamp (FHIR instants carry offsets, so text order is wrong across zones),
 * and on a tie the one from the newer export (the token sorts as time does). rank(), not row_number(): a
 * view with forEach gives several rows per resource version, and all of them are kept. A resource is dropped
 * when a `deleted` file of the same source lists it in an export at or after its newest version's export;
 * one re-created in a later export comes back.
 *
 * DuckDB reads `source` and `export` as Hive partition columns. Athena's Glue tables have `source` only (an
 * injected projection), so the export token comes from the object's `$path`.
 */
export function latestViewSql(
  table: string,
  columns: readonly string[],
  dialect: SqlDialect,
  options: LatestViewOptions,
): string {
  const missing = missingLatestColumns(columns);
  if (missing.length > 0) {
    throw new Error(
      `table ${table} has no ${missing.join(' or ')} column: a latest view needs id and last_updated (the resource's id and meta.lastUpdated)`,
    );
  }
  const tableRef = qualified(table, dialect, options.database);
  const deletedRef = qualified(DELETED_TABLE, dialect, options.database);
  const exportOf = (alias: string) =>
    dialect === 'duckdb' ? `${alias}."export"` : `regexp_extract(${alias}."$path", '/export=([^/]+)/', 1)`;
  const lastUpdated =
    dialect === 'duckdb'
      ? 'TRY_CAST(t."last_updated" AS TIMESTAMPTZ)'
      : 'try(from_iso8601_timestamp(t."last_updated"))';
  const selected = columns.map((name) => `t.${quoteIdentifier(name)}`).join(', ');
  const outer = [...columns, 'source', 'export'].map((name) => `r.${quoteIdentifier(name)}`).join(', ');
  return [
    `WITH ranked AS (`,
    `  SELECT ${selected}, t."source", ${exportOf('t')} AS "export",`,
    `    rank() OVER (PARTITION BY t."source", t."id" ORDER BY ${lastUpdated} DESC NULLS LAST, ${exportOf('t')} DESC) AS "version_rank"`,
    `  FROM ${tableRef} t`,
    `)`,
    `SELECT ${outer}`,
    `FROM ranked r`,
    `WHERE r."version_rank" = 1`,
    `  AND NOT EXISTS (`,
    `    SELECT 1 FROM ${deletedRef} d`,
    `    WHERE d."source" = r."source" AND d."resource_type" = ${quoteLiteral(options.resourceType)} AND d."id" = r."id"`,
    `      AND ${exportOf('d')} >= r."export"`,
    `  )`,
  ].join('\n');
}

/** The statement that makes (or replaces) `<table>_latest`: one Athena named query per table. */
export function createLatestViewSql(
  table: string,
  columns: readonly string[],
  dialect: SqlDialect,
  options: LatestViewOptions,
): string {
  const name = qualified(latestViewName(table), dialect, options.database);
  return `CREATE OR REPLACE VIEW ${name} AS\n${latestViewSql(table, columns, dialect, options)}`;
}

/**
 * DuckDB: a table as a view over its Parquet parts in a local folder mirroring the bucket's keys
 * (`<root>view=<table>/source=…/export=…/part-NNNN.parquet`). The partition values stay text (a source id
 * of digits is still an id), and the `view=` level of the path is not a column. union_by_name: a view
 * changed between exports (a column added) still reads as one table.
 */
export function duckdbTableViewSql(table: string, warehouseRoot: string): string {
  const root = warehouseRoot.endsWith('/') ? warehouseRoot : `${warehouseRoot}/`;
  const glob = `${root}view=${table}/**/*.parquet`;
  return [
    `CREATE OR REPLACE VIEW ${quoteIdentifier(table)} AS`,
    `SELECT * EXCLUDE ("view") FROM read_parquet(${quoteLiteral(glob)}, hive_partitioning = true, union_by_name = true,`,
    `  hive_types = {'view': VARCHAR, 'source': VARCHAR, 'export': VARCHAR})`,
  ].join('\n');
}

/** DuckDB: the `deleted` table when no export listed a deleted resource, so latest views still read it. */
export function duckdbEmptyDeletedViewSql(): string {
  return [
    `CREATE OR REPLACE VIEW ${quoteIdentifier(DELETED_TABLE)} AS`,
    `SELECT CAST(NULL AS VARCHAR) AS "resource_type", CAST(NULL AS VARCHAR) AS "id",`,
    `  CAST(NULL AS VARCHAR) AS "source", CAST(NULL AS VARCHAR) AS "export" WHERE false`,
  ].join('\n');
}

function qualified(name: string, dialect: SqlDialect, database: string | undefined): string {
  return dialect === 'athena' && database !== undefined
    ? `${quoteIdentifier(database)}.${quoteIdentifier(name)}`
    : quoteIdentifier(name);
}
