/**
 * `npm run bench`: throughput, memory, CPU and AWS cost figures of the
 * pipeline, each next to what the two ends manage alone, measured side by
 * side in one run.
 *
 *   npm run bench -- [--scenario name[,name]] [--full] [--size-mb N] [--files N]
 *                    [--huge-files N] [--huge-mb N] [--map-concurrency N[,N]] [--files-per-batch N[,N]]
 *                    [--source sandbox|local] [--concurrency N] [--cpu-prof-dir DIR]
 *                    [--staging-gib N] [--staging-files N] [--copy-part-mib N] [--manifest-files N]
 *
 * Scenarios (default: all eleven at quick sizes, a few minutes; --full: the big sizes):
 *   single-file       one file through transferFile vs raw download and raw upload (100 MB | 1 GB)
 *   gzip              the same transfer with gzip on and off, each vs its own raw download
 *   resume            the same file cut by a dropped connection and by a checkpoint, landed byte for byte
 *   many-small-files  an Oracle Health-like export through the whole local workflow (2,000 | 20,000 files)
 *   huge-files        a few huge files through the whole local workflow (3 × 300 MB | 3 × 1 GB)
 *   long-lines        peak memory of 15 MiB and 60 MiB lines against short lines (120 MiB | 600 MiB files)
 *   staging-cost      publishing a staged export (copy, verify, remove staging) vs removing a given-up one (1 | 10 GiB, 40 files)
 *   long-export       a 7-day job answering Retry-After: 5, on a simulated clock: polls, executions, history events
 *   huge-manifest     a 200,000-file manifest: Poll's parse, Verify/Publish/Finalize in batches over seeded files
 *                     (2,000 | 20,000 files), Finalize's aggregation of 200,000 (--manifest-files N)
 *   validate          US Core validation: the rule engine on the sandbox mix (resources/s per core), and Validate
 *                     Batch over one file streamed from S3 (100 MB | 1 GB, --validate-mb N): peak RSS, flat or not
 *                     (--validate-heap-mb N: that child's V8 heap limit)
 *   warehouse         NDJSON → Parquet over every default view: loadFile over an export streamed from S3 (30 | 300 MB,
 *                     --warehouse-mb N): rows/s and MB/s per core, peak RSS, Parquet vs NDJSON bytes; and the same
 *                     rows written by hyparquet-writer (each codec) and by DuckDB, side by side
 *                     (--warehouse-heap-mb N: the load child's V8 heap limit)
 *
 * MB = 10^6 bytes. One JSON line per measured case on stdout; progress on stderr.
 */
import '../local/node-version.js';
import { parseCommandLine, parseOrExit, resolveFromCaller, UsageError } from '../local/command.js';
import { startEmbeddedS3 } from '../local/embedded-s3.js';
import { bundleTransferChild, progress, transferChildRunner } from './children.js';
import { runHugeManifest } from './huge-manifest.js';
import { runLongExport } from './long-export.js';
import { runLongLines } from './long-lines.js';
import { machineFacts } from './process-stats.js';
import { prepareSingleFile, type SingleFileBench } from './single-file.js';
import { runStagingCost } from './staging-cost.js';
import { runValidateBench } from './validate.js';
import { runWarehouseBench } from './warehouse.js';
import { runHugeFiles, runManySmallFiles } from './workflow.js';

const SCENARIOS = [
  'single-file',
  'gzip',
  'resume',
  'many-small-files',
  'huge-files',
  'long-lines',
  'staging-cost',
  'long-export',
  'huge-manifest',
  'validate',
  'warehouse',
] as const;
type Scenario = (typeof SCENARIOS)[number];

const SIZES = {
  quick: {
    sizeMb: 100,
    files: 2_000,
    hugeFiles: 3,
    hugeMb: 300,
    longLinesMib: 120,
    stagingGib: 1,
    manifestFiles: 2_000,
    validateMb: 100,
    warehouseMb: 30,
  },
  full: {
    sizeMb: 1_000,
    files: 20_000,
    hugeFiles: 3,
    hugeMb: 1_000,
    longLinesMib: 600,
    stagingGib: 10,
    manifestFiles: 20_000,
    validateMb: 1_000,
    warehouseMb: 300,
  },
} as const;

const USAGE = `usage: npm run -s bench -- [--scenario name[,name]] [--full] [--size-mb N] [--files N]
                           [--huge-files N] [--huge-mb N] [--map-concurrency N[,N]] [--files-per-batch N[,N]]
                           [--source sandbox|local] [--concurrency N] [--cpu-prof-dir DIR]
                           [--staging-gib N] [--staging-files N] [--copy-part-mib N]
                           [--manifest-files N] [--validate-mb N] [--validate-heap-mb N] [--warehouse-mb N]
                           [--warehouse-heap-mb N]
  scenarios: ${SCENARIOS.join(', ')} (default: all, at quick sizes; --full: the big sizes)
  One JSON line per measured case on stdout; progress on stderr.`;

function isBenchSource(source: string): source is 'sandbox' | 'local' {
  return source === 'sandbox' || source === 'local';
}

function positive(name: string, raw: string | undefined, fallback: number, integer = true): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new UsageError(`--${name} must be a positive ${integer ? 'integer' : 'number'}, got ${raw}`);
  }
  return value;
}

const {
  values,
  scenarios,
  sizeBytes,
  files,
  hugeFiles,
  hugeBytes,
  mapConcurrencies,
  filesPerBatches,
  concurrency,
  longLinesMib,
  source,
  staging,
  manifestFiles,
  validateBytes,
  validateHeapMb,
  warehouseBytes,
  warehouseHeapMb,
} = parseOrExit('bench', USAGE, () => {
  const { values } = parseCommandLine(process.argv.slice(2), {
    scenario: { type: 'string' },
    full: { type: 'boolean', default: false },
    'size-mb': { type: 'string' },
    files: { type: 'string' },
    'huge-files': { type: 'string' },
    'huge-mb': { type: 'string' },
    /** Map MaxConcurrency of the many-small-files export; several values run it once each. */
    'map-concurrency': { type: 'string', default: '4' },
    /** The source's filesPerBatch in the many-small-files export (1: a child per file, as before batching); several values run it once each. */
    'files-per-batch': { type: 'string', default: '50' },
    source: { type: 'string', default: 'sandbox' },
    /** Parts in flight in the transfer (and in the raw upload, to compare like with like). */
    concurrency: { type: 'string', default: '3' },
    /** Write V8 CPU profiles of the transfer and workflow children into this folder. */
    'cpu-prof-dir': { type: 'string' },
    /** Size and file count of the staging-cost export (GiB = 2^30 bytes). */
    'staging-gib': { type: 'string' },
    'staging-files': { type: 'string', default: '40' },
    /** staging-cost: copy every file part by part (UploadPartCopy), as files above 5 GiB are. */
    'copy-part-mib': { type: 'string' },
    /** huge-manifest: files seeded for the verify → publish → finalize run. */
    'manifest-files': { type: 'string' },
    /** validate: size of the file Validate Batch streams. */
    'validate-mb': { type: 'string' },
    /** validate: the Validate Batch child's V8 heap limit in MB (--max-old-space-size). */
    'validate-heap-mb': { type: 'string' },
    /** warehouse: NDJSON of the export loadFile loads (the sandbox cohort is sized to it). */
    'warehouse-mb': { type: 'string' },
    /** warehouse: the load child's V8 heap limit in MB (--max-old-space-size). */
    'warehouse-heap-mb': { type: 'string' },
  });
  const sizes = values.full ? SIZES.full : SIZES.quick;
  const source = values.source;
  if (!isBenchSource(source)) throw new UsageError('--source must be sandbox or local');
  return {
    values: {
      ...values,
      ...(values['cpu-prof-dir'] ? { 'cpu-prof-dir': resolveFromCaller(values['cpu-prof-dir']) } : {}),
    },
    scenarios: (values.scenario
      ? values.scenario.split(',').map((name) => {
          const trimmed = name.trim();
          if (!(SCENARIOS as readonly string[]).includes(trimmed)) {
            throw new UsageError(`--scenario ${trimmed} is not one of ${SCENARIOS.join(', ')}`);
          }
          return trimmed as Scenario;
        })
      : SCENARIOS) as readonly Scenario[],
    sizeBytes: positive('size-mb', values['size-mb'], sizes.sizeMb, false) * 1e6,
    files: positive('files', values.files, sizes.files),
    hugeFiles: positive('huge-files', values['huge-files'], sizes.hugeFiles),
    hugeBytes: positive('huge-mb', values['huge-mb'], sizes.hugeMb, false) * 1e6,
    mapConcurrencies: values['map-concurrency']
      .split(',')
      .map((value) => positive('map-concurrency', value.trim(), 4)),
    filesPerBatches: values['files-per-batch']
      .split(',')
      .map((value) => positive('files-per-batch', value.trim(), 50)),
    concurrency: positive('concurrency', values.concurrency, 3),
    longLinesMib: sizes.longLinesMib,
    manifestFiles: positive('manifest-files', values['manifest-files'], sizes.manifestFiles),
    validateBytes: positive('validate-mb', values['validate-mb'], sizes.validateMb, false) * 1e6,
    validateHeapMb: values['validate-heap-mb']
      ? positive('validate-heap-mb', values['validate-heap-mb'], 0)
      : undefined,
    warehouseBytes: positive('warehouse-mb', values['warehouse-mb'], sizes.warehouseMb, false) * 1e6,
    warehouseHeapMb: values['warehouse-heap-mb']
      ? positive('warehouse-heap-mb', values['warehouse-heap-mb'], 0)
      : undefined,
    source,
    staging: {
      totalBytes: Math.round(
        positive('staging-gib', values['staging-gib'], sizes.stagingGib, false) * 1024 ** 3,
      ),
      files: positive('staging-files', values['staging-files'], 40),
      ...(values['copy-part-mib']
        ? { copyPartBytes: positive('copy-part-mib', values['copy-part-mib'], 512) * 1024 ** 2 }
        : {}),
    },
  };
});

const facts = machineFacts();
progress(
  `${facts.nproc} CPUs (${facts.cpuModel}), load average ${facts.loadAverage.join(' ')}, Node ${facts.node}; scenarios: ${scenarios.join(', ')}${values.full ? ' (full sizes)' : ''}`,
);
const profiling = values['cpu-prof-dir'] ? { cpuProfDir: values['cpu-prof-dir'] } : {};
const emit = (line: string) => process.stdout.write(`${line}\n`);

const s3 = await startEmbeddedS3();
const s3Pid = s3.pid;
let singleFile: SingleFileBench | undefined;
// One esbuild bundle of the transfer child for every scenario that runs it.
let transferChildCommand: Promise<string[]> | undefined;
const transferChildren = async () => {
  transferChildCommand ??= bundleTransferChild();
  return transferChildRunner(await transferChildCommand, values['cpu-prof-dir']);
};
try {
  for (const scenario of scenarios.filter(
    (name) => name === 'single-file' || name === 'gzip' || name === 'resume',
  )) {
    singleFile ??= await prepareSingleFile({
      sizeBytes,
      source,
      concurrency,
      s3,
      s3Pid,
      children: await transferChildren(),
    });
    for (const line of await singleFile.run(scenario)) emit(line);
  }
  await singleFile?.close();
  singleFile = undefined;

  if (scenarios.includes('many-small-files')) {
    for (const mapConcurrency of mapConcurrencies) {
      for (const filesPerBatch of filesPerBatches) {
        emit(await runManySmallFiles({ s3, s3Pid, files, mapConcurrency, filesPerBatch, ...profiling }));
      }
    }
  }
  if (scenarios.includes('huge-files')) {
    emit(await runHugeFiles({ s3, s3Pid, files: hugeFiles, fileBytes: hugeBytes, ...profiling }));
  }
  if (scenarios.includes('long-lines')) {
    await s3.createBucket('bench-long-lines');
    for (const line of await runLongLines({
      runner: await transferChildren(),
      s3Endpoint: s3.endpoint,
      bucket: 'bench-long-lines',
      lineMib: [15, 60],
      fileMib: longLinesMib,
      gzip: false,
    })) {
      emit(line);
    }
  }
  if (scenarios.includes('staging-cost')) {
    for (const line of await runStagingCost({ s3, s3Pid, concurrency: 8, ...staging })) emit(line);
  }
  if (scenarios.includes('long-export')) {
    emit(await runLongExport({ s3, jobDays: 7, retryAfterSeconds: 5 }));
  }
  if (scenarios.includes('huge-manifest')) {
    for (const line of await runHugeManifest({ s3, files: manifestFiles })) emit(line);
  }
  if (scenarios.includes('validate')) {
    for (const line of await runValidateBench({
      s3,
      fileBytes: validateBytes,
      ...(validateHeapMb ? { heapMb: validateHeapMb } : {}),
    })) {
      emit(line);
    }
  }
  if (scenarios.includes('warehouse')) {
    for (const line of await runWarehouseBench({
      s3,
      ndjsonBytes: warehouseBytes,
      ...(warehouseHeapMb ? { heapMb: warehouseHeapMb } : {}),
    })) {
      emit(line);
    }
  }
  const after = machineFacts();
  progress(`done; load average ${after.loadAverage.join(' ')}`);
} finally {
  await singleFile?.close();
  await s3.close();
}
