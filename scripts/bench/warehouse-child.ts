/**
 * One measured warehouse case in its own process, so that its peak RSS and CPU time are its own (bundled,
 * as the Lambda is: see bundleChild):
 *
 *   node warehouse-child.mjs load '{"endpoint":…,"bucket":…,"files":[{"key":…,"type":…}]}'
 *   node warehouse-child.mjs hyparquet '{"patients":N}'
 *   node warehouse-child.mjs duckdb '{"patients":N}'
 *
 * `load` is loadFile, the Lambda's own code, over every file of the export (streamed from S3, Parquet
 * streamed back). `hyparquet` and `duckdb` write the same rows (the default views over the sandbox's
 * resources, computed before the clock starts) as Parquet with each writer, so the writers are compared
 * on the same work. Prints one JSON line on stdout.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { DuckDBInstance } from '@duckdb/node-api';
import { parquetPartKey, tablePartitionPrefix } from '../../lambdas/warehouse/layout.js';
import { loadFile } from '../../lambdas/warehouse/load-file.js';
import {
  memoryParquetSink,
  PARQUET_DEFAULTS,
  type ParquetCodec,
  ParquetPartWriter,
} from '../../lambdas/warehouse/parquet.js';
import { DUCKDB_TYPES, type TablePartLoaded, warehouseType } from '../../lambdas/warehouse/types.js';
import type { Row } from '../../lambdas/warehouse/view-definition/index.js';
import { viewsFor } from '../../lambdas/warehouse/views.js';
import { embeddedS3ClientConfig } from '../local/embedded-s3.js';
import { createDataset } from '../sandbox/data/dataset.js';

const views = viewsFor();

function measured<T>(run: () => Promise<T>): Promise<T & { seconds: number; cpuSeconds: number }> {
  const started = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  return run().then((result) => {
    const used = process.cpuUsage(cpu);
    return {
      ...result,
      seconds: Number(process.hrtime.bigint() - started) / 1e9,
      cpuSeconds: (used.user + used.system) / 1e6,
    };
  });
}

const peakRssMb = () => Math.round((process.resourceUsage().maxRSS * 1024) / 1e6);

/** V8 grows its heap lazily up to its limit, so RSS alone says little about what the load keeps: sampled. */
let peakHeapUsed = 0;
setInterval(() => {
  peakHeapUsed = Math.max(peakHeapUsed, process.memoryUsage().heapUsed);
}, 100).unref();

async function load(args: { endpoint: string; bucket: string; files: { key: string; type: string }[] }) {
  const s3 = new S3Client(embeddedS3ClientConfig(args.endpoint));
  try {
    const result = await measured(async () => {
      const parts: TablePartLoaded[] = [];
      let lines = 0;
      for (const [index, file] of args.files.entries()) {
        const tables = [...views].filter(([, view]) => view.view.resource === file.type).map(([t]) => t);
        const loaded = await loadFile(
          { s3, store: { bucket: args.bucket } },
          {
            dataKey: file.key,
            kind: 'output',
            fileIndex: index,
            resourceTypes: [file.type],
            targets: tables.map((table) => ({
              table,
              partKey: parquetPartKey(tablePartitionPrefix('', table, 'bench', 'now'), index + 1),
            })),
          },
          views,
        );
        lines += loaded.lines;
        parts.push(...loaded.parts);
      }
      return {
        lines,
        rows: parts.reduce((sum, p) => sum + p.rows, 0),
        parquetBytes: parts.reduce((sum, p) => sum + p.bytes, 0),
      };
    });
    return { ...result, peakRssMb: peakRssMb(), peakHeapUsedMb: Math.round(peakHeapUsed / 1e6) };
  } finally {
    s3.destroy();
  }
}

interface WriterArgs {
  readonly patients: number;
  /** The rows written this many times, each copy's ids suffixed so that they stay distinct. */
  readonly copies: number;
}

/**
 * The rows of every default view over the sandbox's resources, table by table, and what computing them
 * cost (JSON.parse and the views, without Parquet): the share of loadFile's time that is not the writer's.
 */
async function rowsOfViews(args: WriterArgs) {
  const dataset = createDataset({ patientCount: args.patients });
  const lines = new Map(
    [...views].map(([table, view]) => [
      table,
      [...dataset.lines({ type: view.view.resource } as never)].map(String),
    ]),
  );
  const tables = new Map<string, Row[]>();
  const viewing = await measured(async () => {
    let rows = 0;
    for (const [table, view] of views) {
      const tableRows: Row[] = [];
      for (const line of lines.get(table)!) tableRows.push(...view.rowsOf(JSON.parse(line)));
      tables.set(table, tableRows);
      rows += tableRows.length;
    }
    return { rows };
  });
  for (const [table, rows] of tables) {
    const copies = rows.slice();
    for (let copy = 1; copy < args.copies; copy++) {
      for (const row of rows) copies.push({ ...row, id: `${String(row.id)}-${copy}` });
    }
    tables.set(table, copies);
  }
  return { tables, viewing };
}

/** JIT warm-up: the first writes of a process are slower, and would count against whichever case runs first. */
const WARM_UP_ROWS = 2_000;

async function hyparquet(args: WriterArgs) {
  const { tables, viewing } = await rowsOfViews(args);
  const rssBefore = peakRssMb();
  const codecs: ParquetCodec[] = ['UNCOMPRESSED', 'SNAPPY', 'GZIP', 'ZSTD'];
  for (const codec of codecs) await writeHyparquet(tables, codec, WARM_UP_ROWS);
  const cases = [];
  for (const codec of codecs) {
    cases.push({ codec, ...(await measured(() => writeHyparquet(tables, codec))) });
  }
  return { viewing, cases, rowsHeldRssMb: rssBefore, peakRssMb: peakRssMb() };
}

async function writeHyparquet(tables: Map<string, Row[]>, codec: ParquetCodec, limit = Infinity) {
  let bytes = 0;
  let rows = 0;
  for (const [table, allRows] of tables) {
    const tableRows = allRows.slice(0, limit);
    const sink = memoryParquetSink();
    const writer = new ParquetPartWriter({
      table,
      columns: views.get(table)!.columns,
      sink,
      settings: { ...PARQUET_DEFAULTS, codec },
    });
    for (const row of tableRows) await writer.add(row);
    const written = await writer.close();
    bytes += written.bytes;
    rows += written.rows;
  }
  return { rows, parquetBytes: bytes };
}

/** DuckDB on one thread, as a Lambda's share of a core: rows appended, then COPY TO a Parquet file. */
async function duckdb(args: WriterArgs) {
  const { tables } = await rowsOfViews(args);
  const rssBefore = peakRssMb();
  const dir = await mkdtemp(join(tmpdir(), 'bench-duckdb-'));
  const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
  const connection = await instance.connect();
  const cases = [];
  const write = async (codec: string, limit = Infinity) => {
    let bytes = 0;
    let rows = 0;
    for (const [table, allRows] of tables) {
      const tableRows = allRows.slice(0, limit);
      const columns = views.get(table)!.columns;
      const types = columns.map((c) => warehouseType(c));
      await connection.run(`DROP TABLE IF EXISTS ${table}`);
      await connection.run(
        `CREATE TABLE ${table} (${columns.map((c, i) => `"${c.name}" ${DUCKDB_TYPES[types[i]!]}`).join(', ')})`,
      );
      const appender = await connection.createAppender(table);
      for (const row of tableRows) {
        for (const [i, column] of columns.entries()) {
          const value = row[column.name] ?? null;
          if (value === null) appender.appendNull();
          else if (types[i] === 'json') appender.appendVarchar(JSON.stringify(value));
          else if (types[i] === 'string') appender.appendVarchar(String(value));
          else if (types[i] === 'boolean') appender.appendBoolean(value as boolean);
          else if (types[i] === 'int32') appender.appendInteger(value as number);
          else if (types[i] === 'int64') appender.appendBigInt(BigInt(value as number));
          else appender.appendDouble(value as number);
        }
        appender.endRow();
      }
      appender.closeSync();
      const path = join(dir, `${table}.${codec}.parquet`);
      await connection.run(`COPY ${table} TO '${path}' (FORMAT parquet, COMPRESSION ${codec})`);
      bytes += (await stat(path)).size;
      rows += tableRows.length;
    }
    return { rows, parquetBytes: bytes };
  };
  try {
    for (const codec of ['snappy', 'zstd']) await write(codec, WARM_UP_ROWS);
    for (const codec of ['snappy', 'zstd']) {
      cases.push({ codec: codec.toUpperCase(), ...(await measured(() => write(codec))) });
    }
  } finally {
    connection.closeSync();
    instance.closeSync();
    await rm(dir, { recursive: true, force: true });
  }
  return { cases, rowsHeldRssMb: rssBefore, peakRssMb: peakRssMb() };
}

const [mode, raw] = process.argv.slice(2);
const args = JSON.parse(raw ?? '{}');
const result =
  mode === 'load'
    ? await load(args)
    : mode === 'hyparquet'
      ? await hyparquet(args)
      : mode === 'duckdb'
        ? await duckdb(args)
        : undefined;
if (!result) throw new Error(`unknown mode ${mode}: load, hyparquet or duckdb`);
process.stdout.write(
  `${JSON.stringify(result, (_key, value) => (typeof value === 'bigint' ? Number(value) : value))}\n`,
);
