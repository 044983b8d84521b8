import { mapInOrder } from '../core/concurrency.js';
import {
  claimedBy,
  claimKey,
  describeClaim,
  type ExportClaim,
  resultKey,
  verifiedBatchKey,
} from '../core/layout.js';
import { type FileSummary, type ReceiptFile, summarizeFiles } from '../core/receipt.js';
import { reasonsFor } from '../core/server-file-errors.js';
import { VerificationError } from '../errors.js';
import type { Runtime } from '../runtime.js';
import type { ExportContext, FileItem, FileResult, ManifestSummary } from '../state.js';
import { landingKey, publishObjects, verifyPublished } from './publish-export.js';
import { applyFailPolicy, loadServerFileErrorTriage, type StoredTriage } from './server-file-errors.js';

/**
 * Finalization of a large export, batch by batch: Verify Files and Publish
 * Files are Distributed Maps whose `ItemBatcher` hands each child a run of
 * consecutive files from the file list, so that 200,000 files are verified
 * and published by a few hundred invocations in parallel rather than by one
 * Lambda past its 15 minutes. Finalize Export then only adds up what the
 * batches wrote (finalize-export.ts).
 */

/** What `ItemBatcher` gives each child: the batch's files and the Map's `BatchInput`. */
export interface FileBatchEvent {
  readonly Items: readonly FileItem[];
  readonly BatchInput: { readonly export: ExportContext; readonly manifest: ManifestSummary };
  /** `verify`: check every file, write the batch's record; `publish`: copy its staged data files to their keys. */
  readonly step: 'verify' | 'publish';
}

/** A chunked export's file whose landed ids Finalize counts for duplicates (duplicate-resources.ts). */
export interface ResourceIdsFile {
  readonly index: number;
  readonly type: string;
  readonly lines: number;
  readonly resourceIdsKey: string;
}

/** `_work/…/verified/<first index>.json`: written by the verify step, read by publish and Finalize. */
export interface VerifiedBatch {
  /** Index of the batch's first and last file in the file list. */
  readonly first: number;
  readonly last: number;
  /** The batch's files in file-list order, as the receipt lists them. */
  readonly files: readonly ReceiptFile[];
  readonly summary: FileSummary;
  /** Chunked exports only: the files whose ids were kept. */
  readonly resourceIds?: readonly ResourceIdsFile[];
}

/** Kept small: the Map's result is one of these per batch (a few hundred), and it must fit in 256 KiB. */
export interface FileBatchResult {
  readonly first: number;
  readonly files: number;
}

/**
 * Files checked at once per batch. Each check is a GET and a HEAD; a Map of
 * batches multiplies this by the Map's MaxConcurrency.
 */
export const VERIFY_CONCURRENCY = 16;

export async function runFileBatch(runtime: Runtime, event: FileBatchEvent): Promise<FileBatchResult> {
  const items = event.Items;
  if (!Array.isArray(items) || items.length === 0) {
    throw new VerificationError('a verification batch has no files');
  }
  return event.step === 'publish' ? publishFileBatch(runtime, event) : verifyFileBatch(runtime, event);
}

/** Verifies each file of the batch and records them (with subtotals) for Publish Files and Finalize Export. */
export async function verifyFileBatch(runtime: Runtime, event: FileBatchEvent): Promise<FileBatchResult> {
  const context = event.BatchInput.export;
  const items = event.Items;
  // Before anything is published: under "fail", an export the server says is incomplete stops here.
  const triage = await loadServerFileErrorTriage(runtime, context, event.BatchInput.manifest);
  applyFailPolicy(context, triage);
  const checked = await mapInOrder(items, VERIFY_CONCURRENCY, (item) =>
    verifyFile(runtime, context, item, triage),
  );
  const files = checked.map(({ file }) => file);
  const resourceIds = checked.flatMap(({ result }, at) =>
    result.kind === 'output' && result.resourceIdsKey !== undefined
      ? [
          {
            index: items[at]!.index,
            type: result.type,
            lines: result.lines,
            resourceIdsKey: result.resourceIdsKey,
          },
        ]
      : [],
  );
  const batch: VerifiedBatch = {
    first: items[0]!.index,
    last: items[items.length - 1]!.index,
    files,
    summary: summarizeFiles(files),
    ...(resourceIds.length > 0 ? { resourceIds } : {}),
  };
  await runtime.store.putJson(verifiedBatchKey(context.workPrefix, batch.first), batch);
  return { first: batch.first, files: files.length };
}

/**
 * Copies the batch's staged data files to their final keys and verifies the
 * copies. Publish Files starts only after Verify Files has verified every
 * batch: no staged file appears before the whole export verified.
 */
export async function publishFileBatch(runtime: Runtime, event: FileBatchEvent): Promise<FileBatchResult> {
  const context = event.BatchInput.export;
  const items = event.Items;
  const first = items[0]!.index;
  const key = verifiedBatchKey(context.workPrefix, first);
  const batch = await runtime.store.getJson<VerifiedBatch>(key);
  // Both Maps batch the same file list with the same ItemBatcher, so their batches match.
  if (!batch || batch.first !== first || batch.files.length !== items.length) {
    throw new VerificationError(
      `files ${first} to ${items[items.length - 1]!.index} have no verification record matching this batch (${key})`,
    );
  }
  await verifyFolderClaim(runtime, context, event.BatchInput.manifest.exportRoot);
  const toPublish = items.flatMap((item, at) => {
    const file = batch.files[at]!;
    if (item.kind !== 'output') return [];
    if (file.key !== item.key) {
      throw new VerificationError(`file ${item.index}: its verification record is of ${file.key}`);
    }
    return [{ from: landingKey(item), to: item.key, bytes: file.bytes, sha256: file.sha256 }];
  });
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
  return { first, files: items.length };
}

/**
 * One file: its result present, the object's size and sha256 metadata, the
 * manifest's count. A data file short of its count passes only when the
 * server's error[] gave a failing reason that covers it (the file, its type
 * or the whole export; `triage`, present under "accept" only once the
 * policy let it through): it is then on the receipt with what is missing and
 * why. A shortfall the server did not report, or more lines than the count,
 * fails as ever.
 */
export async function verifyFile(
  runtime: Runtime,
  context: ExportContext,
  item: FileItem,
  triage?: StoredTriage,
): Promise<{ file: ReceiptFile; result: FileResult }> {
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
  const delivered = result.lines + result.invalidLines;
  const reasons = triage && item.kind === 'output' ? reasonsFor(triage, item) : [];
  const short = item.count !== undefined && delivered !== item.count;
  if (short && !(reasons.length > 0 && delivered < item.count!)) {
    throw new VerificationError(
      `${item.kind} file ${item.index} (${item.type}): the manifest says ${item.count} resources, ${delivered} landed` +
        (triage && item.kind === 'output' && reasons.length === 0
          ? "; the server's error[] reports no failure that covers this file"
          : ''),
    );
  }
  const reported = short || (triage?.byFile[String(item.index)]?.length ?? 0) > 0;
  const file: ReceiptFile = {
    kind: item.kind,
    type: item.type,
    key: item.key,
    bytes: result.bytes,
    lines: result.lines,
    sha256: result.sha256,
    ...(item.count === undefined ? {} : { serverCount: item.count }),
    invalidLines: result.invalidLines,
    ...(result.quarantineKey ? { quarantineKey: result.quarantineKey } : {}),
    ...(item.organizedBy
      ? { organizedBy: item.organizedBy, resourceTypeCounts: result.resourceTypeCounts ?? {} }
      : {}),
    ...(reported
      ? {
          ...(item.count === undefined ? {} : { missing: item.count - delivered }),
          serverErrors: reasons,
        }
      : {}),
  };
  return { file, result };
}

/**
 * The folder must still be this execution's before its data files, receipt
 * and marker go there (Poll Export Status claimed it). No claim means an
 * execution that started before folders were claimed.
 */
export async function verifyFolderClaim(runtime: Runtime, context: ExportContext, exportRoot: string) {
  const claim = await runtime.store.getJson<ExportClaim>(claimKey(exportRoot));
  if (claim && !claimedBy(claim, context)) {
    throw new VerificationError(
      `${exportRoot} belongs to ${describeClaim(claim)}, not to this one (${context.executionName} started ${context.startedAt}); its receipt and marker are not overwritten`,
    );
  }
}
