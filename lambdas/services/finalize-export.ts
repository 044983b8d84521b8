import {
  completionMarkerKey,
  failureReceiptKey,
  inFlightPrefix,
  jobRecordKey,
  partialMarkerKey,
  receiptFileIndexKey,
  receiptKey,
  verifiedPrefix,
} from '../core/layout.js';
import {
  addSummary,
  type DuplicateListing,
  emptySummary,
  RECEIPT_INLINE_FILES_MAX,
  type Receipt,
  type ReceiptChunking,
  type ReceiptDuplicateResources,
  type ReceiptFile,
  type ReceiptFileIndex,
  type ReceiptServerFileErrors,
} from '../core/receipt.js';
import { decideWatermark } from '../core/watermark.js';
import { VerificationError } from '../errors.js';
import type { Runtime } from '../runtime.js';
import type { ExportContext, FinalizeResult, ManifestSummary } from '../state.js';
import { countDuplicateResources, type ResourceIdsOf } from './duplicate-resources.js';
import type { FailureReceipt, JobRecord } from './export-lifecycle.js';
import { FileIndexWriter } from './receipt-file-index.js';
import { applyFailPolicy, loadServerFileErrorTriage, type StoredTriage } from './server-file-errors.js';
import { type VerifiedBatch, verifyFolderClaim } from './verify-files.js';
import { readWatermark } from './watermark.js';

export interface FinalizeExportEvent {
  readonly export: ExportContext;
  readonly manifest: ManifestSummary;
}

/** Tests lower it to exercise the multipart index with a few files. */
export interface FinalizeOptions {
  readonly fileIndexPartBytes?: number;
}

/**
 * Writes the receipt and, after it, the completion marker: downstream never
 * sees a marker without a receipt. Verify Files has verified every file and
 * Publish Files published them, batch by batch (verify-files.ts); this adds
 * up the batches' records, reading one at a time so that memory stays
 * bounded whatever the export's size, and fails if any batch is missing.
 * Everything after the marker (watermark, the server job's DELETE, the lock,
 * the success event) is Complete Export's, and can only add warnings: a
 * verified export is never reported as failed. The server job is kept until
 * here, so a failed verification can still be resumed.
 */
export async function finalizeExport(
  runtime: Runtime,
  event: FinalizeExportEvent,
  options: FinalizeOptions = {},
): Promise<FinalizeResult> {
  const { export: context, manifest } = event;
  await abortAbandonedUploads(runtime, context, manifest.exportRoot);
  await verifyFolderClaim(runtime, context, manifest.exportRoot);

  const index = new FileIndexWriter(
    runtime.s3,
    {
      bucket: context.bucket,
      key: receiptFileIndexKey(manifest.exportRoot),
      ...(runtime.sseKmsKeyId ? { sseKmsKeyId: runtime.sseKmsKeyId } : {}),
    },
    options.fileIndexPartBytes === undefined ? {} : { partBytes: options.fileIndexPartBytes },
  );
  let read: Awaited<ReturnType<typeof readVerifiedBatches>>;
  let fileIndex: ReceiptFileIndex;
  try {
    read = await readVerifiedBatches(runtime, context, manifest, index);
    fileIndex = await index.close();
  } catch (error) {
    await index.abort();
    throw error;
  }
  const { summary, inlineFiles, resourceIds, reported } = read;
  // Verify Files applied the policy before publishing; asked again, it cannot let a partial pass as complete.
  const triage = await loadServerFileErrorTriage(runtime, context, manifest);
  applyFailPolicy(context, triage);
  const partial = triage !== undefined && triage.failures > 0;
  const serverFileErrors = triage ? receiptServerFileErrors(context, triage, reported) : undefined;
  const duplicates = await readDuplicates(runtime, manifest);
  const chunking = (await runtime.store.getJson<{ chunking?: ReceiptChunking }>(manifest.manifestKey))
    ?.chunking;
  const duplicateResources = chunking ? await countChunkDuplicates(runtime, context, resourceIds) : undefined;

  const current = await readWatermark(runtime, context.sourceId);
  const failure = await runtime.store.getJson<FailureReceipt>(
    failureReceiptKey(runtime.prefix, context.sourceId, context.executionName),
  );
  const resumed = failure ? { error: failure.error, failedAt: failure.failedAt } : undefined;
  const continuedIn = (
    await runtime.store.getJson<JobRecord>(jobRecordKey(context.workPrefix))
  )?.executions?.map((execution) => execution.executionName);
  const decided = decideWatermark({
    advancesWatermark: context.advancesWatermark,
    current: current?.transactionTime,
    transactionTime: manifest.transactionTime,
    now: runtime.now(),
  });
  // The next since=auto export asks again for what this one is missing: a partial never moves the watermark.
  const watermark = partial
    ? {
        advance: false as const,
        reason:
          "the export is partial (the server's error[] reported failed files): the next since=auto export starts from the previous watermark",
      }
    : decided;
  const receipt: Receipt = {
    receiptVersion: 2,
    status: partial ? 'partial' : 'succeeded',
    complete: !partial,
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
    fileIndex,
    ...(inlineFiles ? { files: inlineFiles } : {}),
    filesListedMoreThanOnce: duplicates,
    // Complete Export does both after the marker, and corrects these when it could not.
    serverJobDeleted: false,
    watermark: { advanced: watermark.advance, reason: watermark.reason },
    ...(chunking ? { chunking } : {}),
    ...(duplicateResources ? { duplicateResources } : {}),
    ...(resumed ? { resumedAfter: resumed } : {}),
    ...(continuedIn?.length ? { continuedIn } : {}),
    ...(serverFileErrors ? { serverFileErrors } : {}),
  };
  const receiptObjectKey = receiptKey(manifest.exportRoot);
  // Not `_SUCCESS.json` for a partial: whatever triggers on that name must not take it for complete.
  const markerKey = partial
    ? partialMarkerKey(manifest.exportRoot)
    : completionMarkerKey(manifest.exportRoot);
  await runtime.store.putJson(receiptObjectKey, receipt);
  await runtime.store.putJson(markerKey, {
    sourceId: context.sourceId,
    transactionTime: manifest.transactionTime,
    receiptKey: receiptObjectKey,
    complete: !partial,
    totals: summary.totals,
    byType: summary.byType,
    ...(partial && serverFileErrors ? { serverFileErrors } : {}),
  });
  if (partial) {
    runtime.logger.warn("landed a partial export: the server's error[] reported failed files", {
      sourceId: context.sourceId,
      failures: triage.failures,
      files: serverFileErrors?.files,
      missingResources: serverFileErrors?.missingResources,
    });
  }
  runtime.progress?.({
    kind: 'phase',
    phase: 'finalized',
    ...(partial
      ? {
          detail: `partial: ${serverFileErrors?.files} file(s), ${serverFileErrors?.missingResources} resource(s) missing as the server reported`,
        }
      : {}),
  });
  return {
    status: partial ? 'partial' : 'succeeded',
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
 * The verification batches in file-list order, one object in memory at a
 * time: their subtotals summed, their files streamed to the index. They must
 * chain from file 0 to the last without a gap: a batch missing (its child
 * never wrote, or wrote for another batching) fails the export here.
 */
async function readVerifiedBatches(
  runtime: Runtime,
  context: ExportContext,
  manifest: ManifestSummary,
  index: FileIndexWriter,
) {
  const summary = emptySummary();
  const reported: ReportedFiles = { files: 0, missingResources: 0, first: [] };
  const keepInline = manifest.fileCount <= RECEIPT_INLINE_FILES_MAX;
  const inlineFiles: ReceiptFile[] = [];
  const resourceIds: ResourceIdsOf[] = [];
  let next = 0;
  for (const key of await runtime.store.listKeys(verifiedPrefix(context.workPrefix))) {
    const batch = await runtime.store.getJson<VerifiedBatch>(key);
    if (!batch) throw new VerificationError(`the verification record ${key} vanished while it was read`);
    // A record from an earlier, differently batched attempt that this attempt's batches cover already.
    if (batch.last < next) continue;
    if (batch.first !== next || batch.files.length !== batch.last - batch.first + 1) {
      throw new VerificationError(
        `file ${next} was not verified: the next verification record starts at file ${batch.first}`,
      );
    }
    addSummary(summary, batch.summary);
    for (const file of batch.files) if (file.serverErrors) addReported(reported, file);
    await index.add(batch.files);
    if (keepInline) inlineFiles.push(...batch.files);
    for (const ids of batch.resourceIds ?? []) resourceIds.push({ ...ids, kind: 'output' });
    next = batch.last + 1;
  }
  if (next !== manifest.fileCount) {
    throw new VerificationError(
      next < manifest.fileCount
        ? `file ${next} was not verified: no verification record covers files ${next} to ${manifest.fileCount - 1}`
        : `${next} files were verified, the manifest lists ${manifest.fileCount}`,
    );
  }
  return { summary, inlineFiles: keepInline ? inlineFiles : undefined, resourceIds, reported };
}

/** The files the server's failures cover, summed while the batches stream by; the first few kept. */
interface ReportedFiles {
  files: number;
  missingResources: number;
  readonly first: ReceiptServerFileErrors['firstFiles'][number][];
}

const FIRST_REPORTED_FILES = 20;

function addReported(reported: ReportedFiles, file: ReceiptFile) {
  reported.files += 1;
  reported.missingResources += file.missing ?? 0;
  if (reported.first.length >= FIRST_REPORTED_FILES) return;
  reported.first.push({
    key: file.key,
    type: file.type,
    ...(file.serverCount === undefined ? {} : { expected: file.serverCount }),
    delivered: file.lines + file.invalidLines,
    ...(file.missing === undefined ? {} : { missing: file.missing }),
    reasons: file.serverErrors ?? [],
  });
}

function receiptServerFileErrors(
  context: ExportContext,
  triage: StoredTriage,
  reported: ReportedFiles,
): ReceiptServerFileErrors {
  return {
    policy: context.serverFileErrors ?? 'fail',
    issues: triage.issues,
    failures: triage.failures,
    files: reported.files,
    missingResources: reported.missingResources,
    firstFiles: reported.first,
    byType: triage.byType,
    exportWide: triage.exportWide,
    ...(triage.truncated ? { truncated: true } : {}),
  };
}

/**
 * A chunked export's resources that landed more than once (a Practitioner
 * shared by patients of two chunks): counted from the ids each download
 * kept, and said in the log and on the receipt. Every copy stays: which one
 * a reader keeps is downstream's rule (docs/layout.md). The verification
 * batches name the id objects, so no download result is read again.
 */
async function countChunkDuplicates(
  runtime: Runtime,
  context: ExportContext,
  files: readonly ResourceIdsOf[],
): Promise<ReceiptDuplicateResources> {
  const counted = await countDuplicateResources(runtime, files);
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
