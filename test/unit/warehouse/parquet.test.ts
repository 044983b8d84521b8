/**
 * The Parquet part writer, read back by two readers that share no code with it: DuckDB (the local query
 * engine, C++) for the column types and values, and hyparquet (pure JS) for the values and row groups.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zstdDecompressSync } from 'node:zlib';
import { DuckDBInstance } from '@duckdb/node-api';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  memoryParquetSink,
  ParquetPartWriter,
  type ParquetSettings,
  ParquetValueError,
} from '../../../lambdas/warehouse/parquet.js';
import { DUCKDB_TYPES, warehouseType } from '../../../lambdas/warehouse/types.js';
import type { ColumnSchema, Row } from '../../../lambdas/warehouse/view-definition/index.js';

const column = (name: string, type: string, collection = false): ColumnSchema => ({
  name,
  type,
  inferred: false,
  collection,
});

/** One column of every storage type, and the FHIR types that map to them. */
const COLUMNS: readonly ColumnSchema[] = [
  column('id', 'id'),
  column('birth_date', 'date'),
  column('active', 'boolean'),
  column('count', 'integer'),
  column('big', 'integer64'),
  column('value', 'decimal'),
  column('code', 'CodeableConcept'),
  column('given', 'string', true),
];

const rowAt = (i: number): Row => ({
  id: `r-${i}`,
  birth_date: i % 5 === 0 ? null : `19${String(50 + (i % 50)).padStart(2, '0')}-0${1 + (i % 9)}-1${i % 10}`,
  active: i % 3 === 0 ? null : i % 2 === 0,
  count: i % 7 === 0 ? null : i - 500,
  big: i % 11 === 0 ? null : 9_007_199_254_740_993n + BigInt(i),
  value: i % 13 === 0 ? null : i / 8,
  code: i % 4 === 0 ? null : { coding: [{ system: 'http://loinc.org', code: `${i}-0` }], text: 'é ✓' },
  given: i % 6 === 0 ? [] : [`G${i}`, 'Q'],
});

/** What a reader gives back for a row: JSON columns as their text, a collection's [] as '[]'. */
const asRead = (row: Row): Row => ({
  ...row,
  code: row.code === null ? null : JSON.stringify(row.code),
  given: JSON.stringify(row.given),
});

async function writePart(rows: readonly Row[], settings: Partial<ParquetSettings> = {}, chunkBytes = 1024) {
  const sink = memoryParquetSink();
  const writer = new ParquetPartWriter({ table: 't', columns: COLUMNS, sink, settings, chunkBytes });
  for (const row of rows) await writer.add(row);
  const written = await writer.close();
  const bytes = sink.bytes();
  expect(written).toEqual({ rows: rows.length, bytes: bytes.length });
  return bytes;
}

const readWithHyparquet = (bytes: Uint8Array) =>
  parquetReadObjects({
    file: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer,
    compressors: { ZSTD: (input: Uint8Array) => new Uint8Array(zstdDecompressSync(input)) },
  });

describe('Parquet part writer', () => {
  let dir: string;
  let duck: Awaited<ReturnType<typeof DuckDBInstance.create>>;
  let n = 0;
  const readWithDuckDb = async (bytes: Uint8Array) => {
    const path = join(dir, `part-${++n}.parquet`);
    await writeFile(path, bytes);
    const connection = await duck.connect();
    try {
      const types = (await connection.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${path}')`))
        .getRowObjectsJS()
        .map((r) => [r.column_name, r.column_type]);
      const rows = (
        await connection.runAndReadAll(`SELECT * FROM read_parquet('${path}') ORDER BY id`)
      ).getRowObjectsJS();
      return { types, rows };
    } finally {
      connection.closeSync();
    }
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'parquet-test-'));
    duck = await DuckDBInstance.create(':memory:');
  });
  afterAll(async () => {
    duck?.closeSync();
    await rm(dir, { recursive: true, force: true });
  });

  const expectedTypes = COLUMNS.map((c) => [c.name, DUCKDB_TYPES[warehouseType(c)]]);

  it('gives every column its storage type and keeps values, nulls, bigints and JSON text', async () => {
    const rows = Array.from({ length: 300 }, (_, i) => rowAt(i));
    const bytes = await writePart(rows);
    const expected = rows.map(asRead).sort((a, b) => String(a.id).localeCompare(String(b.id)));

    const duckdb = await readWithDuckDb(bytes);
    expect(duckdb.types).toEqual(expectedTypes);
    expect(duckdb.rows).toEqual(expected);

    const hyparquet = await readWithHyparquet(bytes);
    expect(hyparquet).toEqual(rows.map(asRead));
    const metadata = parquetMetadata(bytes.buffer as ArrayBuffer);
    expect(metadata.schema.slice(1).map((e) => e.repetition_type)).toEqual(COLUMNS.map(() => 'OPTIONAL'));
    // Statistics kept: Athena and DuckDB skip row groups by them.
    const big = metadata.row_groups[0]!.columns[4]!.meta_data!;
    expect(big.codec).toBe('ZSTD');
    expect(big.statistics?.null_count).toBe(BigInt(rows.filter((r) => r.big === null).length));
    expect(big.statistics?.min_value).toBe(9_007_199_254_740_994n);
  });

  it('writes a row group each time one fills, by rows or by bytes', async () => {
    const rows = Array.from({ length: 2_500 }, (_, i) => rowAt(i));
    const byRows = await writePart(rows, { rowGroupRows: 1_000 });
    expect(parquetMetadata(byRows.buffer as ArrayBuffer).row_groups.map((g) => g.num_rows)).toEqual([
      1000n,
      1000n,
      500n,
    ]);
    const byBytes = await writePart(rows, { rowGroupBytes: 20_000 });
    const groups = parquetMetadata(byBytes.buffer as ArrayBuffer).row_groups;
    expect(groups.length).toBeGreaterThan(10);
    expect((await readWithHyparquet(byBytes)).length).toBe(2_500);
    expect((await readWithDuckDb(byBytes)).rows).toEqual(
      rows.map(asRead).sort((a, b) => String(a.id).localeCompare(String(b.id))),
    );
  });

  it('writes an empty part as a valid file with the schema', async () => {
    const bytes = await writePart([]);
    const duckdb = await readWithDuckDb(bytes);
    expect(duckdb.types).toEqual(expectedTypes);
    expect(duckdb.rows).toEqual([]);
    expect(await readWithHyparquet(bytes)).toEqual([]);
  });

  it('writes the same bytes for the same rows', async () => {
    const rows = Array.from({ length: 50 }, (_, i) => rowAt(i));
    expect(Buffer.from(await writePart(rows)).equals(Buffer.from(await writePart(rows)))).toBe(true);
  });

  it.each(['UNCOMPRESSED', 'SNAPPY', 'GZIP'] as const)('reads back with the %s codec', async (codec) => {
    const rows = Array.from({ length: 40 }, (_, i) => rowAt(i));
    const bytes = await writePart(rows, { codec });
    expect(parquetMetadata(bytes.buffer as ArrayBuffer).row_groups[0]!.columns[0]!.meta_data!.codec).toBe(
      codec,
    );
    expect((await readWithDuckDb(bytes)).rows).toHaveLength(40);
  });

  it('refuses a value its column cannot hold, naming the column and not the value', () => {
    const writer = new ParquetPartWriter({ table: 'patient', columns: COLUMNS, sink: memoryParquetSink() });
    const add = () => writer.add({ ...rowAt(1), count: 'secret-text' as never });
    expect(add).toThrow(ParquetValueError);
    expect(add).toThrow(
      'table patient, column count: expected a value of type integer (int32), found a string',
    );
    expect(add).not.toThrow(/secret/);
  });
});
