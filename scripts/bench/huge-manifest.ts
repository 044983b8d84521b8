/**
 * `huge-manifest`: a 200,000-file export (Oracle Health splits an export into
 * many small files; MAX_MANIFEST_FILES) against the limits Poll Export
 * Status, Verify Files, Publish Files and Finalize Export run under on AWS.
 * No download goes through the sandbox (too slow locally for 200,000 files):
 *
 * 1. `poll-manifest`: Poll Export Status's work on a 200,000-entry manifest,
 *    in process and without S3 (JSON.parse of the body, validation, the file
 *    list, the JSON it writes): its peak heap and RSS against 512 MB.
 * 2. `verify-publish-finalize`: an export of `files` tiny files seeded as
 *    landed downloads leave it (scripts/bench/landed-export.ts) in the
 *    embedded S3, then the real handlers run as the state machine runs them:
 *    the file list batched by the ASL's own ItemBatcher, Verify File Batch
 *    per batch, then Publish File Batch per batch, then Finalize Export. Wall
 *    time per step, S3 requests per step, the largest batch (a Map item and a
 *    Lambda payload) against 256 KiB, Finalize's peak memory.
 * 3. `finalize-aggregation`: Finalize Export alone over 200,000 files: the
 *    verification records of 200,000 files seeded directly (seeding 400,000
 *    objects in the embedded S3 takes too long), then aggregated, with the
 *    file index streamed: its peak memory and time.
 *
 * Memory is the process's (the embedded S3 runs in a process of its own),
 * sampled every 5 ms, as a peak and as the rise over the baseline before the
 * step; run with `--expose-gc` for steadier baselines.
 */
import { readFileSync } from 'node:fs';
import type { S3Client } from '@aws-sdk/client-s3';
import { mapInOrder } from '../../lambdas/core/concurrency.js';
import { type ExportLocation, exportRoot, fileKey, verifiedBatchKey } from '../../lambdas/core/layout.js';
import { MAX_MANIFEST_FILES, parseCompletionManifest } from '../../lambdas/core/manifest.js';
import { type ReceiptFile, summarizeFiles } from '../../lambdas/core/receipt.js';
import { finalizeExport } from '../../lambdas/services/finalize-export.js';
import {
  publishFileBatch,
  type VerifiedBatch,
  verifyFileBatch,
} from '../../lambdas/services/verify-files.js';
import type { FileItem } from '../../lambdas/state.js';
import { batchItems, type ItemBatcherSettings, MAX_BATCH_INPUT_BYTES } from '../local/asl-adapter.js';
import type { EmbeddedS3 } from '../local/embedded-s3.js';
import { DEFINITION_PATH } from '../local/runner.js';
import { createLocalRuntime } from '../local/runtime.js';
import { progress } from './children.js';
import {
  landedExportContext,
  landedFileItems,
  landedManifestSummary,
  seedLandedExport,
} from './landed-export.js';

export interface HugeManifestOptions {
  readonly s3: EmbeddedS3;
  /** Files seeded for the whole verify → publish → finalize run. */
  readonly files: number;
  /** Files of the manifest parse and of Finalize's aggregation alone. @default MAX_MANIFEST_FILES */
  readonly hugeFiles?: number;
  /** Batches run at once (the Maps' MaxConcurrency is 20 on AWS; 2 shared cores here). @default 4 */
  readonly batchConcurrency?: number;
}

const MB = 1024 * 1024;
const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

/** Peak process memory while `work` runs, and the rise over the moment before. */
async function measured<T>(work: () => Promise<T>) {
  (globalThis as { gc?: () => void }).gc?.();
  const before = process.memoryUsage();
  let peakRss = before.rss;
  let peakHeap = before.heapUsed;
  const sample = () => {
    const now = process.memoryUsage();
    peakRss = Math.max(peakRss, now.rss);
    peakHeap = Math.max(peakHeap, now.heapUsed);
  };
  const timer = setInterval(sample, 5);
  const started = performance.now();
  try {
    const result = await work();
    sample();
    return {
      result,
      seconds: round((performance.now() - started) / 1000, 2),
      peakRssMb: round(peakRss / MB),
      peakHeapMb: round(peakHeap / MB),
      rssRiseMb: round((peakRss - before.rss) / MB),
      heapRiseMb: round((peakHeap - before.heapUsed) / MB),
    };
  } finally {
    clearInterval(timer);
  }
}

/** S3 requests by command, counted on the client the handlers use. */
function countRequests(s3: S3Client) {
  const counts: Record<string, number> = {};
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      const name = String(context.commandName ?? 'unknown').replace(/Command$/, '');
      counts[name] = (counts[name] ?? 0) + 1;
      return next(args);
    },
    { step: 'initialize', name: 'benchRequestCounter' },
  );
  return {
    take() {
      const taken = { ...counts };
      for (const key of Object.keys(counts)) delete counts[key];
      return taken;
    },
  };
}

/** The ItemBatcher of Verify Files, as the ASL says (the bench batches as AWS would). */
function verifyBatcher(): ItemBatcherSettings {
  const definition = JSON.parse(readFileSync(DEFINITION_PATH, 'utf8')) as {
    States: Record<string, { ItemBatcher?: ItemBatcherSettings }>;
  };
  const batcher = definition.States['Verify Files']?.ItemBatcher;
  if (!batcher) throw new Error('Verify Files has no ItemBatcher in the ASL');
  return { MaxItemsPerBatch: batcher.MaxItemsPerBatch, MaxInputBytesPerBatch: batcher.MaxInputBytesPerBatch };
}

let runs = 0;

export async function runHugeManifest(options: HugeManifestOptions): Promise<string[]> {
  const hugeFiles = options.hugeFiles ?? MAX_MANIFEST_FILES;
  const lines: string[] = [];
  for (const urlBytes of [90, 600]) lines.push(JSON.stringify(await pollManifest(hugeFiles, urlBytes)));
  lines.push(JSON.stringify(await verifyPublishFinalize(options)));
  lines.push(JSON.stringify(await finalizeAggregation(options.s3, hugeFiles)));
  return lines;
}

/** Poll Export Status at completion: the body parsed, validated, turned into the file list and written as JSON. */
async function pollManifest(files: number, urlBytes: number) {
  progress(`huge-manifest: parsing a ${files}-file manifest (URLs of ~${urlBytes} bytes)`);
  const padding = 'x'.repeat(Math.max(0, urlBytes - 60));
  const body = JSON.stringify({
    transactionTime: '2026-12-01T00:00:00.000Z',
    request: 'https://fhir.example.org/$export',
    requiresAccessToken: true,
    output: Array.from({ length: files }, (_, index) => ({
      type: 'Observation',
      url: `https://files.example.org/export/part-${index}.ndjson?sig=${padding}`,
      count: 10,
    })),
    error: [],
  });
  const location: ExportLocation = {
    prefix: '',
    sourceId: 'huge',
    transactionTime: '2026-12-01T00:00:00.000Z',
  };
  const memory = await measured(async () => {
    const manifest = parseCompletionManifest(JSON.parse(body), false);
    const items: FileItem[] = manifest.files.map((file, index) => ({
      index,
      kind: file.kind,
      type: file.type,
      resourceType: file.resourceType,
      key: fileKey(location, file.kind, file.type, index + 1),
      ...(file.count === undefined ? {} : { count: file.count }),
    }));
    // What putJson writes: the manifest, the URL list, the file list (pretty-printed, as the store does).
    const written = [
      JSON.stringify(manifest, null, 2).length,
      JSON.stringify(
        manifest.files.map((file) => file.url),
        null,
        2,
      ).length,
      JSON.stringify(items, null, 2).length,
    ];
    return { fileListBytes: written[2]!, writtenBytes: written.reduce((a, b) => a + b, 0) };
  });
  return {
    scenario: 'huge-manifest',
    case: 'poll-manifest',
    files,
    urlBytes,
    manifestBodyMb: round(body.length / MB),
    fileListMb: round(memory.result.fileListBytes / MB),
    writtenMb: round(memory.result.writtenBytes / MB),
    seconds: memory.seconds,
    peakHeapMb: memory.peakHeapMb,
    peakRssMb: memory.peakRssMb,
    heapRiseMb: memory.heapRiseMb,
    rssRiseMb: memory.rssRiseMb,
    lambdaMemoryMb: 512,
  };
}

async function verifyPublishFinalize({ s3, files, batchConcurrency = 4 }: HugeManifestOptions) {
  runs++;
  const bucket = `bench-huge-${runs}`;
  await s3.createBucket(bucket);
  const local = createLocalRuntime({ sources: [], s3ClientConfig: s3.clientConfig, bucket });
  const requests = countRequests(local.runtime.s3);
  progress(`huge-manifest: seeding ${files} landed files`);
  const seedStarted = performance.now();
  const landed = await seedLandedExport(local.runtime, {
    files,
    onProgress: (done) => done % 10_000 === 0 && progress(`  seeded ${done}`),
  });
  const seedSeconds = round((performance.now() - seedStarted) / 1000, 2);
  requests.take();
  const batches = batchItems(landed.items, {
    ...verifyBatcher(),
    BatchInput: { export: landed.context, manifest: landed.manifest },
  }) as unknown as Parameters<typeof verifyFileBatch>[1][];
  const largestBatchBytes = Math.max(
    ...batches.map((batch) => Buffer.byteLength(JSON.stringify({ ...batch, step: 'publish' }))),
  );
  const step = async (
    name: string,
    run: (batch: Parameters<typeof verifyFileBatch>[1]) => Promise<unknown>,
  ) => {
    progress(`huge-manifest: ${name} over ${batches.length} batches`);
    const started = performance.now();
    await mapInOrder(batches, batchConcurrency, run);
    return { seconds: round((performance.now() - started) / 1000, 2), s3Requests: requests.take() };
  };
  const verify = await step('verify', (batch) =>
    verifyFileBatch(local.runtime, { ...batch, step: 'verify' }),
  );
  const publish = await step('publish', (batch) =>
    publishFileBatch(local.runtime, { ...batch, step: 'publish' }),
  );
  progress('huge-manifest: finalize');
  const finalize = await measured(() =>
    finalizeExport(local.runtime, { export: landed.context, manifest: landed.manifest }),
  );
  const finalizeRequests = requests.take();
  local.runtime.s3.destroy();
  const perFile = (seconds: number) => seconds / files;
  return {
    scenario: 'huge-manifest',
    case: 'verify-publish-finalize',
    files,
    batches: batches.length,
    batchConcurrency,
    largestBatchBytes,
    payloadLimitBytes: MAX_BATCH_INPUT_BYTES,
    seedSeconds,
    verifySeconds: verify.seconds,
    publishSeconds: publish.seconds,
    finalizeSeconds: finalize.seconds,
    finalizePeakRssMb: finalize.peakRssMb,
    finalizePeakHeapMb: finalize.peakHeapMb,
    finalizeRssRiseMb: finalize.rssRiseMb,
    finalizeHeapRiseMb: finalize.heapRiseMb,
    s3Requests: { verify: verify.s3Requests, publish: publish.s3Requests, finalize: finalizeRequests },
    // Linear in files at this machine's embedded-S3 speed; AWS runs 20 batches at once on its own Lambdas.
    extrapolatedTo200kSeconds: {
      verify: round(perFile(verify.seconds) * MAX_MANIFEST_FILES),
      publish: round(perFile(publish.seconds) * MAX_MANIFEST_FILES),
    },
    slowestBatchSecondsEstimate: round((verify.seconds / batches.length) * batchConcurrency, 2),
  };
}

/** Finalize over 200,000 files: their verification records seeded directly, 500 files each (the ASL's batch). */
async function finalizeAggregation(s3: EmbeddedS3, files: number) {
  runs++;
  const bucket = `bench-huge-${runs}`;
  await s3.createBucket(bucket);
  const local = createLocalRuntime({ sources: [], s3ClientConfig: s3.clientConfig, bucket });
  const requests = countRequests(local.runtime.s3);
  const context = landedExportContext(local.runtime, 'huge-aggregation', 'huge-aggregation-run');
  const transactionTime = '2026-12-01T00:00:00.000Z';
  const location: ExportLocation = { prefix: '', sourceId: context.sourceId, transactionTime };
  const items = landedFileItems(location, files);
  const perBatch = verifyBatcher().MaxItemsPerBatch ?? 500;
  progress(`huge-manifest: seeding the verification records of ${files} files`);
  const starts = Array.from({ length: Math.ceil(files / perBatch) }, (_, at) => at * perBatch);
  await mapInOrder(starts, 8, async (first) => {
    const slice = items.slice(first, first + perBatch);
    const receiptFiles: ReceiptFile[] = slice.map((item) => ({
      kind: item.kind,
      type: item.type,
      key: item.key,
      bytes: 44,
      lines: 1,
      sha256: 'a'.repeat(64),
      serverCount: 1,
      invalidLines: 0,
    }));
    const batch: VerifiedBatch = {
      first,
      last: first + slice.length - 1,
      files: receiptFiles,
      summary: summarizeFiles(receiptFiles),
    };
    await local.runtime.store.putJson(verifiedBatchKey(context.workPrefix, first), batch);
  });
  const manifest = landedManifestSummary(context, transactionTime, files, exportRoot(location));
  await local.runtime.store.putJson(manifest.manifestKey, { transactionTime });
  requests.take();
  progress('huge-manifest: finalize over 200,000 files');
  const finalize = await measured(() => finalizeExport(local.runtime, { export: context, manifest }));
  const finalizeRequests = requests.take();
  const receipt = await local.runtime.store.head(finalize.result.receiptKey);
  const index = await local.runtime.store.head(`${manifest.exportRoot}_receipt.files.ndjson`);
  local.runtime.s3.destroy();
  return {
    scenario: 'huge-manifest',
    case: 'finalize-aggregation',
    files,
    batches: starts.length,
    finalizeSeconds: finalize.seconds,
    finalizePeakRssMb: finalize.peakRssMb,
    finalizePeakHeapMb: finalize.peakHeapMb,
    finalizeRssRiseMb: finalize.rssRiseMb,
    finalizeHeapRiseMb: finalize.heapRiseMb,
    lambdaMemoryMb: 512,
    receiptBytes: receipt?.size,
    fileIndexMb: round((index?.size ?? 0) / MB),
    s3Requests: finalizeRequests,
  };
}
