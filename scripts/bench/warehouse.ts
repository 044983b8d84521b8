/**
 * The `warehouse` scenario: NDJSON → Parquet over every default view.
 *
 * - load: loadFile, the Lambda's own code, over an export of the sandbox's cohort (one NDJSON file per type
 *   a default view reads, --warehouse-mb in all) streamed from the embedded S3, its Parquet parts streamed
 *   back: rows/s and NDJSON MB/s per core (per CPU second: the load is single-threaded), wall, peak RSS, and
 *   Parquet bytes against NDJSON bytes.
 * - writers: the same views' rows (computed before the clock starts) written by hyparquet-writer with each
 *   codec and by DuckDB (appender + COPY TO parquet, one thread), side by side, so the writer and codec are
 *   chosen by measurement.
 *
 * Each runs bundled in a child process, as the Lambda runs its bundle.
 */
import { Readable } from 'node:stream';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { viewsFor } from '../../lambdas/warehouse/views.js';
import type { EmbeddedS3 } from '../local/embedded-s3.js';
import { createDataset } from '../sandbox/data/dataset.js';
import { bundleChild, progress, runNodeChild } from './children.js';

export interface WarehouseBenchOptions {
  readonly s3: EmbeddedS3;
  /** NDJSON of the load case, about: the cohort is sized to it. */
  readonly ndjsonBytes: number;
  /** The load child's V8 old-space limit (--max-old-space-size), as a smaller Lambda has. @default V8's */
  readonly heapMb?: number;
  /** Patients whose rows the writers case writes… @default 300 */
  readonly writerPatients?: number;
  /** …this many times over (ids suffixed per copy). @default 10 */
  readonly writerCopies?: number;
}

interface LoadResult {
  readonly lines: number;
  readonly rows: number;
  readonly parquetBytes: number;
  readonly seconds: number;
  readonly cpuSeconds: number;
  readonly peakRssMb: number;
  readonly peakHeapUsedMb: number;
}

interface WriterCase {
  readonly codec: string;
  readonly rows: number;
  readonly parquetBytes: number;
  readonly seconds: number;
  readonly cpuSeconds: number;
}

interface WritersResult {
  /** JSON.parse and the views alone, before the rows are copied (hyparquet child only). */
  readonly viewing?: { readonly rows: number; readonly seconds: number; readonly cpuSeconds: number };
  readonly cases: readonly WriterCase[];
  readonly rowsHeldRssMb: number;
  readonly peakRssMb: number;
}

const BUCKET = 'bench-warehouse';
const EXPORT_FOLDER = 'source=bench/export=2026-01-01T000000.000Z/';
/** NDJSON per sandbox patient, over the types the default views read (measured: about 21 KB in all). */
const BYTES_PER_PATIENT = 20_000;

export async function runWarehouseBench(options: WarehouseBenchOptions): Promise<string[]> {
  const command = await bundleChild('warehouse-child.ts');
  const out: string[] = [];
  const patients = Math.max(1, Math.round(options.ndjsonBytes / BYTES_PER_PATIENT));
  const types = [...new Set([...viewsFor().values()].map((view) => view.view.resource))];

  await options.s3.createBucket(BUCKET);
  progress(`warehouse: uploading the export of a ${patients}-patient cohort (${types.length} types)`);
  const dataset = createDataset({ patientCount: patients });
  const client = new S3Client(options.s3.clientConfig);
  const files: { key: string; type: string }[] = [];
  let ndjsonBytes = 0;
  try {
    for (const type of types) {
      const key = `${EXPORT_FOLDER}type=${type}/part-0001.ndjson`;
      const body = Readable.from(
        (function* () {
          for (const line of dataset.lines({ type } as never)) {
            const piece = Buffer.from(`${String(line)}\n`);
            ndjsonBytes += piece.length;
            yield piece;
          }
        })(),
      );
      await new Upload({ client, params: { Bucket: BUCKET, Key: key, Body: body } }).done();
      files.push({ key, type });
    }
  } finally {
    client.destroy();
  }

  progress(`warehouse: loadFile over ${(ndjsonBytes / 1e6).toFixed(1)} MB of NDJSON`);
  const heapFlags = options.heapMb ? [`--max-old-space-size=${options.heapMb}`] : [];
  const load = await runNodeChild<LoadResult>(
    [...heapFlags, ...command],
    ['load', JSON.stringify({ endpoint: options.s3.endpoint, bucket: BUCKET, files })],
  );
  out.push(
    JSON.stringify({
      scenario: 'warehouse',
      case: 'loadFile, every default view, NDJSON streamed from S3, Parquet (ZSTD) streamed back',
      patients,
      ndjsonMb: +(ndjsonBytes / 1e6).toFixed(1),
      resources: load.lines,
      rows: load.rows,
      seconds: +load.seconds.toFixed(1),
      cpuSeconds: +load.cpuSeconds.toFixed(1),
      rowsPerCpuSecond: Math.round(load.rows / load.cpuSeconds),
      ndjsonMbPerCpuSecond: +(ndjsonBytes / 1e6 / load.cpuSeconds).toFixed(2),
      rowsPerSecond: Math.round(load.rows / load.seconds),
      heapLimitMb: options.heapMb ?? null,
      peakRssMb: load.peakRssMb,
      peakHeapUsedMb: load.peakHeapUsedMb,
      parquetMb: +(load.parquetBytes / 1e6).toFixed(2),
      parquetPercentOfNdjson: +((load.parquetBytes * 100) / ndjsonBytes).toFixed(1),
    }),
  );

  const writerPatients = options.writerPatients ?? 300;
  const copies = options.writerCopies ?? 10;
  for (const writer of ['hyparquet', 'duckdb'] as const) {
    progress(`warehouse: ${writer} writing the views' rows of ${writerPatients} patients, ${copies} times`);
    const result = await runNodeChild<WritersResult>(command, [
      writer,
      JSON.stringify({ patients: writerPatients, copies }),
    ]);
    if (result.viewing) {
      out.push(
        JSON.stringify({
          scenario: 'warehouse',
          case: 'views alone: JSON.parse and every default view, no Parquet',
          rows: result.viewing.rows,
          cpuSeconds: +result.viewing.cpuSeconds.toFixed(2),
          rowsPerCpuSecond: Math.round(result.viewing.rows / result.viewing.cpuSeconds),
        }),
      );
    }
    for (const c of result.cases) {
      out.push(
        JSON.stringify({
          scenario: 'warehouse',
          case: `writer: ${writer === 'hyparquet' ? 'hyparquet-writer' : 'DuckDB appender + COPY TO, 1 thread'}, ${c.codec}`,
          rows: c.rows,
          seconds: +c.seconds.toFixed(2),
          cpuSeconds: +c.cpuSeconds.toFixed(2),
          rowsPerCpuSecond: Math.round(c.rows / c.cpuSeconds),
          parquetMb: +(c.parquetBytes / 1e6).toFixed(2),
          // The child's RSS once the rows are held, and its peak after writing them all.
          rowsHeldRssMb: result.rowsHeldRssMb,
          peakRssMb: result.peakRssMb,
        }),
      );
    }
  }
  return out;
}
