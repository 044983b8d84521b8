import { mapInOrder } from '../core/concurrency.js';
import {
  claimedBy,
  claimKey,
  completionMarkerKey,
  describeClaim,
  type ExportClaim,
  failureReceiptKey,
  inFlightPrefix,
  jobRecordKey,
  receiptKey,
  resultKey,
} from '../core/layout.js';
import {
  type DuplicateListing,
  type Receipt,
  type ReceiptChunking,
  type ReceiptDuplicateResources,
  type ReceiptFile,
  summarizeFiles,
} from '../core/receipt.js';
import { decideWatermark } from '../core/watermark.js';
import { VerificationError } from '../errors.js';
import type { Runtime } from '../runtime.js';
import type { ExportContext, FileItem, FileResult, FinalizeResult, ManifestSummary } from '../state.js';
import { countDuplicateResources } from './duplicate-resources.js';
import type { FailureReceipt, JobRecord } from './export-lifecycle.js';
import { landingKey, publishObjects, verifyPublished } from './publish-export.js';
import { readWatermark } from './watermark.js';

export interface FinalizeExportEvent {
  readonly export: ExportContext;
  readonly manifest: ManifestSummary;
}

/**
 * Verifies that every manifest file landed and matches, then writes the
 * receipt and, after it, the completion marker: downstream never sees a
 * marker without a receipt. Everything after the marker (watermark, the
 * server job's DELETE, the lock, the success event) is Complete Export's, and
 * can only add warnings: a verified export is never reported as failed. The
 * server job is kept until the files are verified, so a failed verification
 * can still be resumed.
 */
export async function finalizeExport(runtime: Runtime, event: FinalizeExportEvent): Promise<FinalizeResult> {
  const { export: context, manifest } = event;
  const items = (await runtime.store.getJson<FileItem[]>(manifest.filesKey)) ?? [];
  if (items.length !== manifest.fileCount) {
    throw new VerificationError(
      `file list ${manifest.filesKey} has ${items.length} entries, expected ${manifest.fileCount}`,
    );
  }
  const files = await mapInOrder(items, VERIFY_CONCURRENCY, (item) => verifyFile(runtime, context, item));
  await abortAbandonedUploads(runtime, context, manifest.exportRoot);
  await verifyFolderClaim(runtime, context, manifest.exportRoot);
  // Verified: only now do the data files appear where readers of the layout look.
  const toPublish = items
    .map((item, at) => ({ item, file: files[at]! }))
    .filter(({ item }) => item.kind === 'output')
    .map(({ item, file }) => ({
      from: landingKey(item),
      to: item.key,
      bytes: file.bytes,
      sha256: file.sha256,
    }));
  const published = await publishObjects(
    runtime.s3,
    {
      bucket: context.bucket,
      objects: toPublish,
      ...(runtime.sseKmsKeyId ? { sseKmsKeyId: runtime.sseKmsKeyId } : {}),
    },
    { logger: runtime.logger },
  );
  await verifyPublished(runtime.s3, { bucket: context.bucket, objects: published });
  const duplicates = await readDuplicates(runtime, manifest);
  const chunking = (await runtime.store.getJson<{ chunking?: ReceiptChunking }>(manifest.manifestKey))
    ?.chunking;
  const duplicateResources = chunking ? await countChunkDuplicates(runtime, context, items) : undefined;

  const summary = summarizeFiles(files);
  const current = await readWatermark(runtime, context.sourceId);
  const failure = await runtime.store.getJson<FailureReceipt>(
    failureReceiptKey(runtime.prefix, context.sourceId, context.executionName),
  );
  const resumed = failure ? { error: failure.error, failedAt: failure.failedAt } : undefined;
  const continuedIn = (
    await runtime.store.getJson<JobRecord>(jobRecordKey(context.workPrefix))
  )?.executions?.map((execution) => execution.executionName);
  const watermark = decideWatermark({
    advancesWatermark: context.advancesWatermark,
    current: current?.transactionTime,
    transactionTime: manifest.transactionTime,
    now: runtime.now(),
  });
  const receipt: Receipt = {
    receiptVersion: 1,
    status: 'succeeded',
    sourceId: context.sourceId,
    executionName: context.executionName,
    transactionTime: manifest.transactionTime,
    request: {
      ...(context.request.since ? { since: context.request.since } : {}),
      ...(context.request.until ? { until: context.request.until } : {}),
      types: context.request.types,
      level: context.request.level,
      ...(context.request.groupId ? { groupId: context.request.groupId } : {}),
    },
    startedAt: context.startedAt,
    finishedAt: runtime.now().toISOString(),
    ...summary,
    files,
    filesListedMoreThanOnce: duplicates,
    // Complete Export does both after the marker, and corrects these when it could not.
    serverJobDeleted: false,
    watermark: { advanced: watermark.advance, reason: watermark.reason },
    ...(chunking ? { chunking } : {}),
    ...(duplicateResources ? { duplicateResources } : {}),
    ...(resumed ? { resumedAfter: resumed } : {}),
    ...(continuedIn?.length ? { continuedIn } : {}),
  };
  const receiptObjectKey = receiptKey(manifest.exportRoot);
  const markerKey = completionMarkerKey(manifest.exportRoot);
  await runtime.store.putJson(receiptObjectKey, receipt);
  await runtime.store.putJson(markerKey, {
    sourceId: context.sourceId,
    transactionTime: manifest.transactionTime,
    receiptKey: receiptObjectKey,
    totals: summary.totals,
    byType: summary.byType,
  });
  runtime.progress?.({ kind: 'phase', phase: 'finalized' });
  return {
    status: 'succeeded',
    sourceId: context.sourceId,
    transactionTime: manifest.transactionTime,
    receiptKey: receiptObjectKey,
    completionMarkerKey: markerKey,
    totals: summary.totals,
    // What Complete Export is to do; it reports what it did.
    watermarkAdvanced: watermark.advance,
    ...(watermark.advance ? { watermarkTransactionTime: watermark.transactionTime } : {}),
  };
}

/**
 * Files checked at once. Each check is a GET and a HEAD: one by one, 20,000
 * files (an Oracle Health export) take 7 to 20 minutes of in-Region S3 latency,
 * against Finalize's 15-minute limit.
 */
const VERIFY_CONCURRENCY = 16;

/**
 * A chunked export's resources that landed more than once (a Practitioner
 * shared by patients of two chunks): counted from the ids each download
 * kept, and said in the log and on the receipt. Every copy stays: which one
 * a reader keeps is downstream's rule (docs/layout.md).
 */
async function countChunkDuplicates(
  runtime: Runtime,
  context: ExportContext,
  items: readonly FileItem[],
): Promise<ReceiptDuplicateResources> {
  const results = await mapInOrder(items, VERIFY_CONCURRENCY, async (item) => {
    const result = await runtime.store.getJson<FileResult>(resultKey(context.workPrefix, item.index));
    if (!result)
      throw new VerificationError(`file ${item.index} (${item.kind} ${item.type}) has no download result`);
    return result;
  });
  const counted = await countDuplicateResources(runtime, results);
  if (counted.extraCopies > 0) {
    runtime.logger.info('resources landed in more than one chunk; every copy is kept', {
      sourceId: context.sourceId,
      resources: counted.resources,
      extraCopies: counted.extraCopies,
      types: Object.keys(counted.byType),
    });
  }
  return counted;
}

async function verifyFile(runtime: Runtime, context: ExportContext, item: FileItem): Promise<ReceiptFile> {
  const result = await runtime.store.getJson<FileResult>(resultKey(context.workPrefix, item.index));
  if (!result)
    throw new VerificationError(`file ${item.index} (${item.kind} ${item.type}) has no download result`);
  const landed = landingKey(item);
  if (result.key !== landed)
    throw new VerificationError(`file ${item.index} landed at ${result.key}, expected ${landed}`);
  // A retried Finalize may meet a file it published already (and a resumed one, its staged copy gone).
  const head =
    (await runtime.store.head(landed)) ??
    (landed !== item.key ? await runtime.store.head(item.key) : undefined);
  if (!head) throw new VerificationError(`s3://${context.bucket}/${landed} is missing`);
  if (head.size !== result.bytes) {
    throw new VerificationError(
      `s3://${context.bucket}/${landed} holds ${head.size} bytes, the download wrote ${result.bytes}`,
    );
  }
  if (head.metadata.sha256 !== undefined && head.metadata.sha256 !== result.sha256) {
    throw new VerificationError(
      `s3://${context.bucket}/${landed} sha256 metadata does not match the download's hash`,
    );
  }
  if (item.count !== undefined && item.count !== result.lines + result.invalidLines) {
    throw new VerificationError(
      `${item.kind} file ${item.index} (${item.type}): the manifest says ${item.count} resources, ${result.lines} landed`,
    );
  }
  return {
    kind: item.kind,
    type: item.type,
    key: item.key,
    bytes: result.bytes,
    lines: result.lines,
    sha256: result.sha256,
    ...(item.count === undefined ? {} : { serverCount: item.count }),
    invalidLines: result.invalidLines,
    ...(result.quarantineKey ? { quarantineKey: result.quarantineKey } : {}),
  };
}

/**
 * Every file is verified, so an upload still open under the export belongs to
 * a Download File invocation that was killed mid-file (a Lambda timeout) and
 * whose retry started the file over. Its parts cost storage until the bucket's
 * lifecycle rule reaps them; abort them now. Best effort: it changes no data.
 */
async function abortAbandonedUploads(runtime: Runtime, context: ExportContext, exportRoot: string) {
  try {
    // Likewise the lease such an invocation could not remove on its way out.
    for (const key of await runtime.store.listKeys(inFlightPrefix(context.workPrefix))) {
      await runtime.store.delete(key);
    }
    const aborted = await runtime.store.abortUploads(exportRoot);
    if (aborted > 0) {
      runtime.logger.info('aborted abandoned multipart uploads', { sourceId: context.sourceId, aborted });
    }
  } catch (error) {
    runtime.logger.warn('could not abort abandoned multipart uploads', {
      sourceId: context.sourceId,
      error: (error as Error).name,
    });
  }
}

/**
 * The folder must still be this execution's before its receipt and marker
 * go there (Poll Export Status claimed it). No claim means an execution that
 * started before folders were claimed.
 */
async function verifyFolderClaim(runtime: Runtime, context: ExportContext, exportRoot: string) {
  const claim = await runtime.store.getJson<ExportClaim>(claimKey(exportRoot));
  if (claim && !claimedBy(claim, context)) {
    throw new VerificationError(
      `${exportRoot} belongs to ${describeClaim(claim)}, not to this one (${context.executionName} started ${context.startedAt}); its receipt and marker are not overwritten`,
    );
  }
}

async function readDuplicates(runtime: Runtime, manifest: ManifestSummary): Promise<DuplicateListing[]> {
  if (!manifest.duplicateFilesKey) return [];
  const duplicates = await runtime.store.getJson<DuplicateListing[]>(manifest.duplicateFilesKey);
  if (!Array.isArray(duplicates)) {
    throw new VerificationError(
      `the list of files listed more than once, ${manifest.duplicateFilesKey}, is missing`,
    );
  }
  return duplicates;
}
