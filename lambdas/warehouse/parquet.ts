/**
 * One table's Parquet part, written as rows arrive: the rows gather in one row group's column arrays, and a
 * full row group is encoded and handed to a sink (an S3 multipart upload in the pipeline), so memory is one
 * row group whatever the part's size.
 *
 * Columns are typed from the view's declared FHIR types through warehouseType() (types.ts), every one
 * OPTIONAL, so the Parquet footer, Glue and DuckDB agree on each column. The footer holds no time and a fixed
 * `created_by`: the same rows give the same bytes, so a re-run rewrites a part identically.
 *
 * The writer is hyparquet-writer (pure JS: it bundles with esbuild and runs on arm64 as is); the choice of it
 * over DuckDB's COPY TO, and of the codec, is measured by `npm run bench -- --scenario warehouse`.
 */
// A namespace import: zstd arrived in Node 22.15, and a named import of it would stop an older Node at link
// time, before the CLIs' one-line version check can speak.
import * as zlib from 'node:zlib';
import type { S3Client } from '@aws-sdk/client-s3';
import { ByteWriter, ParquetWriter, type SchemaElement } from 'hyparquet-writer';
import {
  putObjectBytes,
  S3_MIN_PART_BYTES,
  S3MultipartWriter,
  type S3ObjectTarget,
} from '../adapters/s3-multipart.js';
import { type WarehouseType, warehouseType } from './types.js';
import type { ColumnSchema, ColumnValue, Row } from './view-definition/types.js';

export type ParquetCodec = 'UNCOMPRESSED' | 'SNAPPY' | 'GZIP' | 'ZSTD';

export interface ParquetSettings {
  /** A row group is written when it holds this many rows… */
  readonly rowGroupRows: number;
  /** …or this many bytes of values (their text length; 8 per number), whichever comes first. */
  readonly rowGroupBytes: number;
  readonly codec: ParquetCodec;
}

/**
 * ZSTD: on the default views' rows it is the smallest of the codecs Athena and DuckDB both read (half of
 * SNAPPY's size) for a little more CPU than SNAPPY, about 1 % of a load whose cost is the views. 64k rows or
 * 32 MB of value text keeps a Lambda's heap to one row group per table while giving Athena row groups worth
 * skipping by their statistics. The figures: docs/warehouse.md, "Parquet writer and codec, by measurement".
 */
export const PARQUET_DEFAULTS: ParquetSettings = {
  rowGroupRows: 65_536,
  rowGroupBytes: 32 * 1024 * 1024,
  codec: 'ZSTD',
};

export const PARQUET_CONTENT_TYPE = 'application/vnd.apache.parquet';

/** Fixed, without a version: a version or time in the footer would change the bytes of a re-run. */
const CREATED_BY = 'fhir-bulk-export warehouse (hyparquet-writer)';

const COMPRESSORS = {
  GZIP: (input: Uint8Array) => new Uint8Array(zlib.gzipSync(input)),
  ZSTD: (input: Uint8Array) => new Uint8Array(zlib.zstdCompressSync(input)),
};

/** Where a part's bytes go, in order. `close` once all are written; `abort` leaves nothing behind. */
export interface ParquetSink {
  write(bytes: Uint8Array): Promise<void>;
  close(): Promise<void>;
  abort(): Promise<void>;
}

/** JSON is UTF8 text, not Parquet's JSON type: Glue and DuckDB then both see a string column. */
const PHYSICAL: Readonly<Record<WarehouseType, Pick<SchemaElement, 'type' | 'converted_type'>>> = {
  string: { type: 'BYTE_ARRAY', converted_type: 'UTF8' },
  json: { type: 'BYTE_ARRAY', converted_type: 'UTF8' },
  boolean: { type: 'BOOLEAN' },
  int32: { type: 'INT32' },
  int64: { type: 'INT64' },
  double: { type: 'DOUBLE' },
};

/** The Parquet schema of a table: a flat list of OPTIONAL leaves under the root. */
export function parquetSchema(columns: readonly ColumnSchema[]): SchemaElement[] {
  return [
    { name: 'root', num_children: columns.length },
    ...columns.map(
      (column): SchemaElement => ({
        name: column.name,
        repetition_type: 'OPTIONAL',
        ...PHYSICAL[warehouseType(column)],
      }),
    ),
  ];
}

/** Thrown for a value its column's type cannot hold: names the table, column and types, never the value. */
export class ParquetValueError extends Error {
  override readonly name = 'ParquetValueError';
}

/**
 * Collects a row group at a time into a ByteWriter whose bytes go to the sink once they reach `chunkBytes`
 * (the writer's offsets stay the file's: only its buffer index restarts).
 */
class SinkWriter extends ByteWriter {
  readonly #sink: ParquetSink;
  readonly #chunkBytes: number;
  written = 0;

  constructor(sink: ParquetSink, chunkBytes: number) {
    super(64 * 1024);
    this.#sink = sink;
    this.#chunkBytes = chunkBytes;
  }

  flush(): Promise<void> | undefined {
    return this.index >= this.#chunkBytes ? this.#drain() : undefined;
  }

  override finish(): Promise<void> {
    return this.#drain();
  }

  #drain(): Promise<void> {
    if (this.index === 0) return Promise.resolve();
    // A copy: the buffer is reused for the next row group while S3 still reads this one.
    const bytes = new Uint8Array(this.buffer.slice(0, this.index));
    this.index = 0;
    this.written += bytes.length;
    return this.#sink.write(bytes);
  }
}

export interface ParquetPartOptions {
  /** The table's name, for errors. */
  readonly table: string;
  readonly columns: readonly ColumnSchema[];
  readonly sink: ParquetSink;
  readonly settings?: Partial<ParquetSettings>;
  /** Bytes handed to the sink at once (an S3 part). @default S3's 5 MiB minimum part */
  readonly chunkBytes?: number;
}

export interface ParquetPartWritten {
  readonly rows: number;
  readonly bytes: number;
}

/**
 * A Parquet part being written. `add()` takes a row; it returns a promise only when the row filled a row
 * group (then it must be awaited before the next row: that is the backpressure from S3), so the common
 * row costs no promise. `close()` writes the last row group and the footer; a part of no rows is still a
 * valid file with the table's schema.
 */
export class ParquetPartWriter {
  readonly #table: string;
  readonly #columns: readonly ColumnSchema[];
  readonly #types: readonly WarehouseType[];
  readonly #settings: ParquetSettings;
  readonly #sink: ParquetSink;
  readonly #bytes: SinkWriter;
  readonly #parquet: ParquetWriter;
  #data: unknown[][];
  #groupRows = 0;
  #groupBytes = 0;
  #rows = 0;
  #closed = false;
  /** The sink has the whole part: nothing to abort any more. */
  #complete = false;

  constructor(options: ParquetPartOptions) {
    this.#table = options.table;
    this.#columns = options.columns;
    this.#types = options.columns.map((c) => warehouseType(c));
    this.#settings = { ...PARQUET_DEFAULTS, ...options.settings };
    this.#sink = options.sink;
    this.#bytes = new SinkWriter(options.sink, options.chunkBytes ?? S3_MIN_PART_BYTES);
    this.#parquet = new ParquetWriter({
      writer: this.#bytes,
      schema: parquetSchema(options.columns),
      codec: this.#settings.codec,
      compressors: COMPRESSORS,
      statistics: true,
      createdBy: CREATED_BY,
    });
    this.#data = this.#columns.map(() => []);
  }

  get rows(): number {
    return this.#rows;
  }

  add(row: Row): Promise<void> | undefined {
    if (this.#closed) throw new Error(`the Parquet part of table ${this.#table} is closed`);
    let bytes = 0;
    for (let i = 0; i < this.#columns.length; i++) {
      const value = this.#value(i, row[this.#columns[i]!.name] ?? null);
      bytes += typeof value === 'string' ? value.length : value === null ? 0 : 8;
      this.#data[i]!.push(value);
    }
    this.#rows++;
    this.#groupRows++;
    this.#groupBytes += bytes;
    if (this.#groupRows >= this.#settings.rowGroupRows || this.#groupBytes >= this.#settings.rowGroupBytes) {
      return this.#writeGroup();
    }
    return undefined;
  }

  /** Writes what is left and the footer; resolves once the sink has every byte. */
  async close(): Promise<ParquetPartWritten> {
    if (this.#closed) throw new Error(`the Parquet part of table ${this.#table} is closed`);
    await this.#writeGroup();
    this.#closed = true;
    await this.#parquet.finish();
    await this.#sink.close();
    this.#complete = true;
    return { rows: this.#rows, bytes: this.#bytes.written };
  }

  /** Leaves nothing behind (an aborted multipart upload has no object). */
  async abort(): Promise<void> {
    if (this.#complete) return;
    this.#closed = true;
    this.#data = [];
    await this.#sink.abort();
  }

  async #writeGroup(): Promise<void> {
    if (this.#groupRows === 0) return;
    const columnData = this.#columns.map((column, i) => ({
      name: column.name,
      data: this.#data[i]!,
    }));
    const rows = this.#groupRows;
    this.#data = this.#columns.map(() => []);
    this.#groupRows = 0;
    this.#groupBytes = 0;
    // biome-ignore lint/suspicious/noExplicitAny: hyparquet-writer's DecodedArray admits nulls in OPTIONAL columns
    await this.#parquet.write({ columnData: columnData as any, rowGroupSize: rows });
  }

  #value(i: number, value: ColumnValue): string | number | bigint | boolean | null {
    if (value === null) return null;
    const type = this.#types[i]!;
    switch (type) {
      case 'json':
        return JSON.stringify(value, jsonReplacer);
      case 'string':
        if (typeof value === 'string') return value;
        // A view whose declared type is text but whose path found a number, boolean or object keeps its text.
        return typeof value === 'object' ? JSON.stringify(value, jsonReplacer) : String(value);
      case 'boolean':
        if (typeof value === 'boolean') return value;
        break;
      case 'int32':
        if (typeof value === 'number' && Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31)
          return value;
        break;
      case 'int64':
        if (typeof value === 'bigint') return value;
        if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
        break;
      case 'double':
        if (typeof value === 'number') return value;
        if (typeof value === 'bigint') return Number(value);
        break;
    }
    const column = this.#columns[i]!;
    throw new ParquetValueError(
      `table ${this.#table}, column ${column.name}: expected a value of type ${column.type} (${type}), found ${describe(value)}`,
    );
  }
}

/** A bigint inside a JSON value (an integer64 element of a collection) as its decimal digits, without loss. */
function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

function describe(value: ColumnValue): string {
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer out of range' : 'a decimal';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

export interface S3ParquetSinkOptions {
  /** S3 part size. @default 8 MiB (S3's minimum is 5 MiB) */
  readonly partBytes?: number;
  /** Parts in flight. @default 2 */
  readonly concurrency?: number;
}

/**
 * A part's bytes into one S3 object: a PutObject when the whole part is smaller than one S3 part, a
 * multipart upload otherwise (started with the first full part, so small parts cost one request).
 */
export function s3ParquetSink(
  s3: S3Client,
  target: S3ObjectTarget,
  options: S3ParquetSinkOptions = {},
): ParquetSink {
  const partBytes = Math.max(options.partBytes ?? 8 * 1024 * 1024, 1);
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let upload: S3MultipartWriter | undefined;
  const take = (): Uint8Array => {
    const bytes = pending.length === 1 ? pending[0]! : Buffer.concat(pending);
    pending = [];
    pendingBytes = 0;
    return bytes;
  };
  return {
    async write(bytes) {
      pending.push(bytes);
      pendingBytes += bytes.length;
      if (pendingBytes < partBytes) return;
      upload ??= await S3MultipartWriter.create(
        s3,
        target,
        {},
        { contentType: PARQUET_CONTENT_TYPE, concurrency: options.concurrency ?? 2 },
      );
      await upload.uploadPart(take());
    },
    async close() {
      if (!upload) {
        await putObjectBytes(s3, target, take(), { contentType: PARQUET_CONTENT_TYPE });
        return;
      }
      if (pendingBytes > 0) await upload.uploadPart(take());
      await upload.complete();
    },
    async abort() {
      pending = [];
      pendingBytes = 0;
      await upload?.abort();
    },
  };
}

/** A part in memory (tests, the bench). */
export function memoryParquetSink(): ParquetSink & { bytes(): Uint8Array } {
  const chunks: Uint8Array[] = [];
  return {
    async write(bytes) {
      chunks.push(bytes);
    },
    async close() {},
    async abort() {
      chunks.length = 0;
    },
    bytes: () => new Uint8Array(Buffer.concat(chunks)),
  };
}
