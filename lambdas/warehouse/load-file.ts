/**
 * Loads one data file of an export into its tables' Parquet parts (one item of the load stage's Map): the
 * file is streamed from S3 once, each line parsed once and given to every target table whose view reads its
 * type (a file organized by patient holds several types), and each table's part streams back into S3 as its
 * row groups fill. A `deleted` file's Bundles become rows of the `deleted` table.
 *
 * All or nothing per call: any failure aborts every part's upload (an aborted multipart upload leaves no
 * object) and fails the call; a re-run writes the same keys with the same bytes.
 */
import type { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { describeS3Error } from '../adapters/s3-store.js';
import { PipelineError, StorageError } from '../errors.js';
import { DELETED_COLUMNS, deletedRowsOfLine } from './deleted.js';
import { DELETED_TABLE } from './layout.js';
import {
  ParquetPartWriter,
  type ParquetSettings,
  ParquetValueError,
  type S3ParquetSinkOptions,
  s3ParquetSink,
} from './parquet.js';
import type { FileLoad, FileLoaded, TablePartLoaded } from './types.js';
import { type CompiledView, ViewDefinitionError } from './view-definition/index.js';
import type { ColumnSchema, Row } from './view-definition/types.js';

/** What loading needs from the outside: the Runtime has all of it (`runtime.store.bucket` is the bucket). */
export interface LoadFileDeps {
  readonly s3: S3Client;
  readonly store: { readonly bucket: string };
  /** SSE-KMS key for the Parquet parts, on AWS. */
  readonly sseKmsKeyId?: string;
  /** Longest line accepted, in bytes: the Lambda's memory is sized for lines this long. @default 256 MiB */
  readonly maxLineBytes?: number;
  /** Row group bounds and codec. @default PARQUET_DEFAULTS */
  readonly parquet?: Partial<ParquetSettings>;
  /** S3 part size and parts in flight of each Parquet part's upload. */
  readonly upload?: S3ParquetSinkOptions;
}

/**
 * A data file that cannot be loaded as it is: a line that is not JSON, a resource its view cannot give rows
 * for, a value its column's type cannot hold, a target without a view. Names the file and line, never content.
 */
export class WarehouseLoadError extends PipelineError {
  readonly code = 'ERR_WAREHOUSE_LOAD';
}

const DEFAULT_MAX_LINE_BYTES = 256 * 1024 * 1024;

interface Target {
  readonly table: string;
  readonly partKey: string;
  readonly writer: ParquetPartWriter;
  /** The rows of one line (a view's rows of a resource, a deleted Bundle's entries). */
  readonly rowsOf: (line: string, parsed: unknown, lineNumber: number) => readonly Row[];
}

export async function loadFile(
  deps: LoadFileDeps,
  item: FileLoad,
  views: ReadonlyMap<string, CompiledView>,
): Promise<FileLoaded> {
  const { dataKey } = item;
  const bucket = deps.store.bucket;
  const targets: Target[] = item.targets.map(({ table, partKey }) => {
    const part = (columns: readonly ColumnSchema[]) =>
      new ParquetPartWriter({
        table,
        columns,
        sink: s3ParquetSink(
          deps.s3,
          { bucket, key: partKey, ...(deps.sseKmsKeyId ? { sseKmsKeyId: deps.sseKmsKeyId } : {}) },
          deps.upload,
        ),
        ...(deps.parquet ? { settings: deps.parquet } : {}),
        ...(deps.upload?.partBytes ? { chunkBytes: deps.upload.partBytes } : {}),
      });
    if (item.kind === 'deleted') {
      if (table !== DELETED_TABLE) {
        throw new WarehouseLoadError(
          `the deleted file ${dataKey} targets table ${table}: expected the ${DELETED_TABLE} table only`,
        );
      }
      return {
        table,
        partKey,
        writer: part(DELETED_COLUMNS),
        rowsOf: (line, _parsed, lineNumber) => deletedRowsOfLine(line, dataKey, lineNumber),
      };
    }
    const view = views.get(table);
    if (!view) {
      throw new WarehouseLoadError(
        `${dataKey} targets table ${table}, which has no view: expected one of ${[...views.keys()].join(', ')}`,
      );
    }
    return { table, partKey, writer: part(view.columns), rowsOf: (_line, parsed) => view.rowsOf(parsed) };
  });
  /** Resource type → the targets whose view reads it; lines of other types are skipped. */
  const byType = new Map<string, Target[]>();
  if (item.kind === 'output') {
    for (const target of targets) {
      const type = views.get(target.table)!.view.resource;
      byType.set(type, [...(byType.get(type) ?? []), target]);
    }
  }

  let lines = 0;
  const maxLineBytes = deps.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const decoder = new TextDecoder('utf-8', { fatal: true });

  const loadLine = async (bytes: Uint8Array): Promise<void> => {
    if (isBlank(bytes)) return;
    lines++;
    let text: string;
    try {
      text = decoder.decode(bytes);
    } catch {
      throw new WarehouseLoadError(`${dataKey}, line ${lines}: not UTF-8`);
    }
    let lineTargets: readonly Target[] = targets;
    let parsed: unknown;
    if (item.kind === 'output') {
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new WarehouseLoadError(`${dataKey}, line ${lines}: not valid JSON (expected a FHIR resource)`);
      }
      const type = (parsed as { resourceType?: unknown } | null)?.resourceType;
      if (typeof type !== 'string') {
        throw new WarehouseLoadError(`${dataKey}, line ${lines}: no resourceType (expected a FHIR resource)`);
      }
      lineTargets = byType.get(type) ?? [];
    }
    for (const target of lineTargets) {
      let rows: readonly Row[];
      try {
        rows = target.rowsOf(text, parsed, lines);
      } catch (error) {
        if (error instanceof ViewDefinitionError) {
          throw new WarehouseLoadError(`${dataKey}, line ${lines}, table ${target.table}: ${error.message}`, {
            cause: error,
          });
        }
        throw error;
      }
      for (const row of rows) {
        let full: Promise<void> | undefined;
        try {
          full = target.writer.add(row);
        } catch (error) {
          if (error instanceof ParquetValueError) {
            throw new WarehouseLoadError(`${dataKey}, line ${lines}: ${error.message}`, { cause: error });
          }
          throw error;
        }
        if (full) await full;
      }
    }
  };

  try {
    const body = await openDataFile(deps.s3, bucket, dataKey);
    // A line's pieces until its newline comes: joined once, however many chunks it spans.
    let pieces: Uint8Array[] = [];
    let pieceBytes = 0;
    for await (const raw of body as AsyncIterable<Uint8Array>) {
      const chunk = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
      let start = 0;
      for (let newline = chunk.indexOf(10, start); newline >= 0; newline = chunk.indexOf(10, start)) {
        const tail = chunk.subarray(start, newline);
        const line = pieces.length > 0 ? Buffer.concat([...pieces, tail]) : tail;
        pieces = [];
        pieceBytes = 0;
        start = newline + 1;
        if (line.length > maxLineBytes) throw lineTooLong(dataKey, lines + 1, maxLineBytes);
        await loadLine(line);
      }
      if (start < chunk.length) {
        pieces.push(chunk.subarray(start));
        pieceBytes += chunk.length - start;
        if (pieceBytes > maxLineBytes) throw lineTooLong(dataKey, lines + 1, maxLineBytes);
      }
    }
    if (pieces.length > 0) await loadLine(Buffer.concat(pieces));

    const parts: TablePartLoaded[] = [];
    for (const target of targets) {
      const written = await target.writer.close();
      parts.push({ table: target.table, partKey: target.partKey, rows: written.rows, bytes: written.bytes });
    }
    return { dataKey, lines, parts };
  } catch (error) {
    // Parts already closed are whole objects and stay (a re-run overwrites them with the same bytes);
    // the rest are aborted so no half-written part is left.
    await Promise.allSettled(targets.map((t) => t.writer.abort()));
    if (error instanceof PipelineError) throw error;
    throw new WarehouseLoadError(`loading ${dataKey} failed at line ${lines}: ${(error as Error).name}`, {
      cause: error,
    });
  }
}

async function openDataFile(s3: S3Client, bucket: string, key: string): Promise<Readable> {
  try {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return response.Body as Readable;
  } catch (error) {
    throw new StorageError(`S3 GetObject of s3://${bucket}/${key} failed: ${describeS3Error(error)}`, {
      cause: error,
    });
  }
}

function lineTooLong(dataKey: string, line: number, max: number): WarehouseLoadError {
  return new WarehouseLoadError(
    `${dataKey}, line ${line}: longer than ${max} bytes (the load's maxLineBytes)`,
  );
}

function isBlank(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0x20 && b !== 0x09 && b !== 0x0d) return false;
  return true;
}
