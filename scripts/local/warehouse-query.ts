/**
 * The local side of the warehouse (issue 18): an embedded DuckDB over the Parquet tables the load wrote to S3.
 * DuckDB cannot read S3 here (no extension can be downloaded, so no httpfs), so the `warehouse/` objects are
 * first mirrored, by key, into a local cache through the S3 API, which works the same against the embedded S3,
 * another endpoint or real S3. A second run downloads only what changed (size and ETag) and removes what S3 no
 * longer has, so a query never reads a part that was replaced or dropped.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  GetObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { describeS3Error } from '../../lambdas/adapters/s3-store.js';
import { DELETED_TABLE, warehousePrefix } from '../../lambdas/warehouse/layout.js';
import {
  createLatestViewSql,
  duckdbEmptyDeletedViewSql,
  duckdbTableViewSql,
  latestViewName,
  missingLatestColumns,
  quoteIdentifier,
} from '../../lambdas/warehouse/sql.js';
import type { LoadedMarker } from '../../lambdas/warehouse/types.js';
import { DEFAULT_VIEW_DEFINITIONS } from '../../lambdas/warehouse/views.js';

export interface WarehouseLocation {
  readonly s3ClientConfig: S3ClientConfig;
  readonly bucket: string;
  /** The pipeline's prefix ('' or ending in '/'). */
  readonly prefix?: string;
  /** The local cache: objects land at `<cacheDirectory>/<bucket>/<key>`. */
  readonly cacheDirectory: string;
}

/** The bucket has no warehouse tables yet: nothing was loaded. */
export class NoWarehouseError extends Error {
  override readonly name = 'NoWarehouseError';
}

export interface CacheSync {
  /** The local folder mirroring `<prefix>warehouse/`. */
  readonly root: string;
  readonly objects: number;
  readonly downloaded: number;
  readonly removed: number;
  /** Table name → its Parquet parts' keys (tables with at least one part). */
  readonly tables: ReadonlyMap<string, readonly string[]>;
}

interface Manifest {
  [key: string]: { size: number; etag: string };
}

const MANIFEST = '.warehouse-cache.json';
const DOWNLOADS_AT_ONCE = 4;

/** Mirrors `<prefix>warehouse/` into the cache: new and changed objects downloaded, gone ones removed. */
export async function syncWarehouseCache(location: WarehouseLocation): Promise<CacheSync> {
  const keyPrefix = warehousePrefix(location.prefix ?? '');
  const bucketDir = join(location.cacheDirectory, location.bucket);
  const root = join(bucketDir, ...keyPrefix.split('/').filter(Boolean));
  const s3 = new S3Client(location.s3ClientConfig);
  try {
    const listed = await listObjects(s3, location.bucket, keyPrefix);
    const manifestPath = join(bucketDir, MANIFEST);
    const manifest = await readManifest(manifestPath);
    const next: Manifest = {};
    const toDownload: { key: string; size: number; etag: string }[] = [];
    for (const object of listed) {
      const known = manifest[object.key];
      if (known && known.size === object.size && known.etag === object.etag) next[object.key] = known;
      else toDownload.push(object);
    }
    // Anything on disk under the mirrored prefix that S3 no longer lists, or that will be replaced.
    const wanted = new Set(Object.keys(next));
    let removed = 0;
    for (const file of await filesUnder(root)) {
      const key = relative(bucketDir, file).split(sep).join('/');
      if (!wanted.has(key) && !toDownload.some((object) => object.key === key)) {
        await rm(file, { force: true });
        removed += 1;
      }
    }
    await removeEmptyFolders(root);
    await inBatches(toDownload, DOWNLOADS_AT_ONCE, async (object) => {
      await download(s3, location.bucket, object.key, join(bucketDir, ...object.key.split('/')));
      next[object.key] = { size: object.size, etag: object.etag };
    });
    await mkdir(bucketDir, { recursive: true });
    await writeFile(manifestPath, `${JSON.stringify(next)}\n`);
    const tables = new Map<string, string[]>();
    for (const { key } of listed) {
      const match = /^view=([^/]+)\/.+\.parquet$/.exec(key.slice(keyPrefix.length));
      if (!match) continue;
      const parts = tables.get(match[1]!) ?? [];
      parts.push(key);
      tables.set(match[1]!, parts);
    }
    return { root, objects: listed.length, downloaded: toDownload.length, removed, tables };
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchBucket') {
      throw new NoWarehouseError(
        `no bucket ${location.bucket}, so no warehouse: run \`npm run export\` or \`npm run demo\` first`,
      );
    }
    if ((error as { $metadata?: unknown }).$metadata !== undefined) {
      throw new Error(`cannot read s3://${location.bucket}/${keyPrefix}: ${describeS3Error(error)}`);
    }
    throw error;
  } finally {
    s3.destroy();
  }
}

export interface TableInfo {
  readonly name: string;
  /** A table the load wrote, its latest view, or the deleted ids. */
  readonly kind: 'table' | 'latest' | 'deleted';
  readonly columns: readonly { readonly name: string; readonly type: string }[];
  readonly rows: number;
}

export interface QueryResult {
  readonly columns: readonly { readonly name: string; readonly type: string }[];
  /** DuckDB's JSON form of each value: text, a number, a boolean, null, or nested lists/objects. */
  readonly rows: readonly (readonly unknown[])[];
}

export interface Warehouse {
  readonly sync: CacheSync;
  /** Tables with no latest view, and why (say so rather than leave the user to guess). */
  readonly notes: readonly string[];
  tables(): Promise<TableInfo[]>;
  query(sql: string): Promise<QueryResult>;
  close(): void;
}

/** A failed query: DuckDB's own message, with the values it quotes taken out (see `withoutQuotedValues`). */
export class QueryError extends Error {
  override readonly name = 'QueryError';
}

/**
 * DuckDB's messages name columns and tables in double quotes, but some quote a value from the data in single
 * quotes (`Could not convert string 'Campbell' to INT32`): those are blanked. The `LINE 1: …` excerpt after the
 * message is the user's own SQL and stays as written.
 */
export function withoutQuotedValues(message: string): string {
  const excerpt = message.indexOf('\nLINE ');
  const head = excerpt === -1 ? message : message.slice(0, excerpt);
  const tail = excerpt === -1 ? '' : message.slice(excerpt);
  return head.replace(/'(?:[^']|'')*'/g, "'…'") + tail;
}

/**
 * Syncs the cache and opens an in-memory DuckDB with one view per table, `<table>_latest` for those with
 * id and last_updated, and `deleted`.
 */
export async function openWarehouse(location: WarehouseLocation): Promise<Warehouse> {
  const sync = await syncWarehouseCache(location);
  const dataTables = [...sync.tables.keys()].filter((name) => name !== DELETED_TABLE).sort();
  if (dataTables.length === 0) {
    throw new NoWarehouseError(
      `no warehouse tables in s3://${location.bucket}/${warehousePrefix(location.prefix ?? '')}: nothing has been loaded yet. Run \`npm run export\` or \`npm run demo\` first`,
    );
  }
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  const notes: string[] = [];
  const latest: string[] = [];
  try {
    for (const table of dataTables) await connection.run(duckdbTableViewSql(table, sync.root));
    await connection.run(
      sync.tables.has(DELETED_TABLE)
        ? duckdbTableViewSql(DELETED_TABLE, sync.root)
        : duckdbEmptyDeletedViewSql(),
    );
    let resources = defaultViewResources();
    if (dataTables.some((table) => !resources.has(table))) {
      resources = new Map([...resources, ...(await markerResources(location, sync))]);
    }
    for (const table of dataTables) {
      const columns = (await describe(connection, table))
        .map((column) => column.name)
        .filter((name) => name !== 'source' && name !== 'export');
      const missing = missingLatestColumns(columns);
      const resourceType = resources.get(table);
      if (missing.length > 0) {
        notes.push(`${table} has no ${missing.join(' or ')} column: no ${latestViewName(table)} view`);
      } else if (!resourceType) {
        notes.push(
          `${table}: its resource type is in no default view and no _LOADED.json marker: no ${latestViewName(table)} view`,
        );
      } else {
        await connection.run(createLatestViewSql(table, columns, 'duckdb', { resourceType }));
        latest.push(table);
      }
    }
  } catch (error) {
    connection.closeSync();
    instance.closeSync();
    throw error;
  }
  return {
    sync,
    notes,
    async tables() {
      const names: [string, TableInfo['kind']][] = [
        ...dataTables.flatMap((table): [string, TableInfo['kind']][] =>
          latest.includes(table)
            ? [
                [table, 'table'],
                [latestViewName(table), 'latest'],
              ]
            : [[table, 'table']],
        ),
        [DELETED_TABLE, 'deleted'],
      ];
      const infos: TableInfo[] = [];
      for (const [name, kind] of names) {
        const columns = await describe(connection, name);
        const count = await connection.runAndReadAll(`SELECT count(*) FROM ${quoteIdentifier(name)}`);
        infos.push({ name, kind, columns, rows: Number(count.getRowsJson()[0]![0]) });
      }
      return infos;
    },
    async query(sql: string) {
      let reader: Awaited<ReturnType<DuckDBConnection['runAndReadAll']>>;
      try {
        reader = await connection.runAndReadAll(sql);
      } catch (error) {
        throw new QueryError(withoutQuotedValues((error as Error).message));
      }
      const types = reader.columnTypes().map(String);
      const columns = reader.columnNames().map((name, i) => ({ name, type: types[i]! }));
      return { columns, rows: reader.getRowsJson() };
    },
    close() {
      connection.closeSync();
      instance.closeSync();
    },
  };
}

async function describe(connection: DuckDBConnection, table: string) {
  const reader = await connection.runAndReadAll(`DESCRIBE ${quoteIdentifier(table)}`);
  return reader.getRowObjectsJson().map((row) => ({
    name: String(row.column_name),
    type: String(row.column_type),
  }));
}

function defaultViewResources(): Map<string, string> {
  const resources = new Map<string, string>();
  for (const definition of DEFAULT_VIEW_DEFINITIONS as { name: string; resource: string }[]) {
    resources.set(definition.name, definition.resource);
  }
  return resources;
}

/**
 * A source's own views are known only to its registration; the `_LOADED.json` marker of each export the
 * warehouse holds (its folder read off the parts' keys) names each table's resource type.
 */
async function markerResources(location: WarehouseLocation, sync: CacheSync): Promise<Map<string, string>> {
  const prefix = location.prefix ?? '';
  const folders = new Set<string>();
  for (const parts of sync.tables.values()) {
    for (const key of parts) {
      const match = /\/(source=[^/]+\/export=[^/]+\/)[^/]+$/.exec(key);
      if (match) folders.add(`${prefix}${match[1]}`);
    }
  }
  const s3 = new S3Client(location.s3ClientConfig);
  const resources = new Map<string, string>();
  try {
    for (const folder of [...folders].sort()) {
      let body: string | undefined;
      try {
        const object = await s3.send(
          new GetObjectCommand({ Bucket: location.bucket, Key: `${folder}_LOADED.json` }),
        );
        body = await object.Body?.transformToString();
      } catch (error) {
        if (error instanceof NoSuchKey) continue;
        throw error;
      }
      const marker = JSON.parse(body ?? '{}') as Partial<LoadedMarker>;
      for (const [table, { resource }] of Object.entries(marker.tables ?? {})) resources.set(table, resource);
    }
  } finally {
    s3.destroy();
  }
  return resources;
}

async function listObjects(s3: S3Client, bucket: string, prefix: string) {
  const objects: { key: string; size: number; etag: string }[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) {
      // A key that would climb out of the cache folder is not one the load writes.
      if (!object.Key || object.Key.endsWith('/') || object.Key.split('/').includes('..')) continue;
      objects.push({ key: object.Key, size: object.Size ?? 0, etag: object.ETag ?? '' });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return objects;
}

async function download(s3: S3Client, bucket: string, key: string, path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const partial = `${path}.partial`;
  // Written aside and renamed: an interrupted download never leaves a truncated Parquet file to read.
  await pipeline(object.Body as NodeJS.ReadableStream, createWriteStream(partial));
  await rename(partial, path);
}

async function readManifest(path: string): Promise<Manifest> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Manifest;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw error;
  }
}

async function filesUnder(folder: string): Promise<string[]> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(folder, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const files: string[] = [];
  for (const entry of entries) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) files.push(...(await filesUnder(path)));
    else files.push(path);
  }
  return files;
}

/** Empty partition folders left by removed parts (DuckDB would read them as empty partitions anyway). */
async function removeEmptyFolders(folder: string): Promise<boolean> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(folder, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw error;
  }
  let empty = true;
  for (const entry of entries) {
    if (!entry.isDirectory() || !(await removeEmptyFolders(join(folder, entry.name)))) empty = false;
  }
  if (empty) await rmdir(folder);
  return empty;
}

async function inBatches<T>(items: readonly T[], size: number, task: (item: T) => Promise<void>) {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(task));
}

/** The result as aligned text: a header, a rule, numbers right-aligned, then `(N rows)`. */
export function renderTextTable(result: QueryResult): string {
  const cells = result.rows.map((row) => row.map(displayValue));
  const widths = result.columns.map((column, i) =>
    Math.max(column.name.length, ...cells.map((row) => row[i]!.length)),
  );
  const numeric = result.columns.map((column) => NUMERIC.test(column.type));
  const line = (values: readonly string[]) =>
    values
      .map((value, i) => (numeric[i] ? value.padStart(widths[i]!) : value.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [
    line(result.columns.map((column) => column.name)),
    widths.map((width) => '-'.repeat(width)).join('  '),
    ...cells.map(line),
    rowCount(result.rows.length),
  ].join('\n');
}

export const rowCount = (rows: number) => `(${rows} ${rows === 1 ? 'row' : 'rows'})`;

/** RFC 4180: a header line, then one line per row; a field with a comma, quote or line break quoted. */
export function renderCsv(result: QueryResult): string {
  const field = (text: string) => (/[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text);
  return [
    result.columns.map((column) => field(column.name)).join(','),
    ...result.rows.map((row) =>
      row.map((value) => (value === null ? '' : field(displayValue(value)))).join(','),
    ),
  ].join('\n');
}

/** An array of row objects; integers that fit a JS number are numbers (DuckDB gives BIGINT as text). */
export function renderJson(result: QueryResult): string {
  const rows = result.rows.map((row) =>
    Object.fromEntries(
      result.columns.map((column, i) => {
        const value = row[i];
        const integer =
          INTEGER.test(column.type) && typeof value === 'string' && Number.isSafeInteger(Number(value));
        return [column.name, integer ? Number(value) : value];
      }),
    ),
  );
  return JSON.stringify(rows, null, 2);
}

const NUMERIC =
  /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|DOUBLE|DECIMAL)/;
const INTEGER = /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT)$/;

function displayValue(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

/** The query `npm run demo` ends with when it has no export of its own to show: every export's newest patients. */
export const DEMO_QUERY =
  'SELECT gender, count(*) AS patients FROM patient_latest GROUP BY gender ORDER BY patients DESC, gender';

/** The demo's query for the export it just loaded: its partition only, so the counts are that export's. */
export const demoExportQuery = (exportToken: string) =>
  `SELECT gender, count(*) AS patients FROM patient WHERE export = '${exportToken.replaceAll("'", "''")}' GROUP BY gender ORDER BY patients DESC, gender`;

/**
 * What the demo prints last: its query and the result, or, when no table was loaded (`--no-load`), that there
 * is nothing to query. A query that fails on a loaded warehouse is an error, not a note.
 */
export async function demoQueryReport(location: WarehouseLocation, exportToken?: string): Promise<string> {
  let warehouse: Warehouse;
  try {
    warehouse = await openWarehouse(location);
  } catch (error) {
    if (!(error instanceof NoWarehouseError)) throw error;
    return `No warehouse tables in s3://${location.bucket}/${warehousePrefix(location.prefix ?? '')}: the load was off (--no-load) or loaded nothing, so there is nothing to query.`;
  }
  try {
    const sql = exportToken === undefined ? DEMO_QUERY : demoExportQuery(exportToken);
    const result = await warehouse.query(sql);
    return [
      exportToken === undefined
        ? `Warehouse (every export in s3://${location.bucket}, newest version of each patient):`
        : `Warehouse (this export's patients; \`patient_latest\` has the newest version of each across exports):`,
      `npm run query -- --bucket ${location.bucket} "${sql}"`,
      '',
      renderTextTable(result),
    ].join('\n');
  } finally {
    warehouse.close();
  }
}
