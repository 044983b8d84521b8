import { continuationRequest } from '../core/continuation.js';
import { chunkManifestKey, chunksContinuingPrefix, jobRecordKey } from '../core/layout.js';
import type { CompletionManifest, DuplicateFile } from '../core/manifest.js';
import type { ReceiptChunk, ReceiptChunking } from '../core/receipt.js';
import { InvalidManifestError } from '../errors.js';
import type { Runtime } from '../runtime.js';
import { type ChunkPlan, type ChunkRecord, readChunkRecords } from '../services/chunk-records.js';
import type { JobRecord } from '../services/export-lifecycle.js';
import { type LandingFile, landManifest } from '../services/export-status.js';
import type { ExportContext, PollState } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';

export interface MergeChunksEvent {
  readonly export: ExportContext;
  readonly chunks: ChunkPlan;
  /** `$$.Execution.Id`: the execution that hands over when a chunk spent its history budget. */
  readonly executionArn?: string;
}

/** What the stored manifest of a chunked export says about its chunks, beside the server's fields. */
export interface ChunkedManifestAnnotations {
  readonly chunking: ReceiptChunking;
}

/**
 * Every chunk's manifest as one export: one file list for the one Download
 * Files Map, one folder, one receipt and one marker later. Files keep their
 * chunk (for fresh links and duplicate counting). The export's
 * transactionTime is the earliest of the chunks': the next delta starts
 * there, so nothing changed while a later chunk ran can fall between two
 * deltas (docs/chunking.md).
 */
export function createMergeChunksHandler(runtime: Runtime) {
  return async (event: MergeChunksEvent): Promise<PollState> => {
    const context = event.export;
    const work = context.workPrefix;
    const records = await readChunkRecords(runtime, work);
    if (records.length !== event.chunks.total) {
      throw new InvalidManifestError(
        `the chunk plan lists ${records.length} chunk(s), the state machine ran ${event.chunks.total}`,
      );
    }
    const continuing = await runtime.store.listKeys(chunksContinuingPrefix(work));
    if (continuing.length > 0) return continueChunks(runtime, event, records, continuing.length);
    const files: LandingFile[] = [];
    const duplicateFiles: DuplicateFile[] = [];
    const chunks: ReceiptChunk[] = [];
    let requiresAccessToken = false;
    let transactionTime: string | undefined;
    let expires: string | undefined;
    let linksExpireAt: string | undefined;
    for (const record of records) {
      const manifest = await runtime.store.getJson<CompletionManifest & { expires?: string }>(
        chunkManifestKey(work, record.index),
      );
      if (record.state !== 'complete' || !manifest || !record.transactionTime) {
        throw new InvalidManifestError(
          `chunk ${record.index} has no completed manifest (its state is ${record.state}); every chunk must complete before the export lands`,
        );
      }
      const offset = files.length;
      manifest.files.forEach((file, chunkFileIndex) => {
        files.push({
          ...file,
          chunk: record.index,
          chunkFileIndex,
          requiresAccessToken: manifest.requiresAccessToken,
        });
      });
      for (const duplicate of manifest.duplicateFiles ?? []) {
        duplicateFiles.push({ ...duplicate, index: offset + duplicate.index });
      }
      requiresAccessToken ||= manifest.requiresAccessToken;
      if (
        transactionTime === undefined ||
        Date.parse(manifest.transactionTime) < Date.parse(transactionTime)
      ) {
        transactionTime = manifest.transactionTime;
      }
      expires = earliest(expires, manifest.expires);
      linksExpireAt = earliest(linksExpireAt, record.linksExpireAt);
      chunks.push({
        index: record.index,
        kind: record.kind,
        ...(record.patients === undefined ? {} : { patients: record.patients }),
        ...(record.since === undefined ? {} : { since: record.since, until: record.until! }),
        transactionTime: manifest.transactionTime,
        files: manifest.files.length,
        attempts: record.attempt,
        ...(record.failures?.length ? { failures: record.failures } : {}),
      });
    }
    const job = await runtime.store.getJson<JobRecord>(jobRecordKey(work));
    const annotations: ChunkedManifestAnnotations = {
      chunking: { by: event.chunks.by, reason: event.chunks.reason, chunks },
    };
    const summary = await landManifest(
      runtime,
      context,
      {
        transactionTime: transactionTime!,
        request: `${records.length} chunk(s) by ${event.chunks.by}`,
        requiresAccessToken,
        files,
        ...(duplicateFiles.length > 0 ? { duplicateFiles } : {}),
      },
      {
        expires,
        linksExpireAt: linksExpireAt ?? new Date(runtime.now().getTime() + 3_600_000).toISOString(),
        job: job && { ...job, chunks: { total: records.length, done: records.length } },
        annotations,
      },
    );
    runtime.logger.info('merged the chunks into one export', {
      sourceId: context.sourceId,
      chunks: records.length,
      files: files.length,
      transactionTime,
    });
    return {
      outcome: 'complete',
      attempt: 0,
      consecutiveTransientErrors: 0,
      waitSeconds: 0,
      forceTokenRefresh: false,
      manifest: summary,
    };
  };
}

/** The earlier of two instants, either of which may be unknown. */
function earliest(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Date.parse(a) <= Date.parse(b) ? a : b;
}

/**
 * A chunk spent its child execution's history budget with its job still
 * running (and the chunks after it waited): the export continues in a new
 * execution, whose chunk Map polls the running chunks and runs the rest.
 */
function continueChunks(
  runtime: Runtime,
  event: MergeChunksEvent,
  records: readonly ChunkRecord[],
  continuing: number,
): PollState {
  const context = event.export;
  if (!event.executionArn) {
    throw new Error('Merge Chunks needs executionArn ($$.Execution.Id) to hand an export over');
  }
  const continuation = continuationRequest(context, event.executionArn, { chunks: event.chunks });
  const done = records.filter((record) => record.state === 'complete').length;
  runtime.logger.info(
    'chunks run on past a child’s history budget; the export continues in a new execution',
    {
      sourceId: context.sourceId,
      executionName: context.executionName,
      continuedAs: continuation.name,
      chunksDone: done,
      chunksContinuing: continuing,
      chunks: records.length,
    },
  );
  runtime.progress?.({
    kind: 'phase',
    phase: 'continuing in a new execution',
    detail: `${done} of ${records.length} chunk(s) done, ${continuing} running on; ${continuation.name} goes on`,
  });
  return {
    outcome: 'continue',
    attempt: 0,
    consecutiveTransientErrors: 0,
    waitSeconds: 0,
    forceTokenRefresh: false,
    continuation,
  };
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('MergeChunks', createMergeChunksHandler);
