import type { Bearer } from '../adapters/fhir-http.js';
import { continuationRequest } from '../core/continuation.js';
import {
  DEFAULT_HISTORY_EVENT_BUDGET,
  EVENTS_PER_PARTIAL_DOWNLOAD,
  historyAfterPoll,
  politeWaitSeconds,
  shouldContinueAsNew,
} from '../core/history-budget.js';
import {
  chunkContinuingKey,
  chunkManifestKey,
  chunksPrefix,
  claimedBy,
  claimKey,
  describeClaim,
  type ExportClaim,
  type ExportLocation,
  exportRoot,
  fileBatchesKey,
  fileKey,
  jobRecordKey,
  partialBatchesKey,
  partialListingKey,
  partialUrlsKey,
  receiptKey,
} from '../core/layout.js';
import { type CompletionManifest, checkTransactionTime, type FileKind } from '../core/manifest.js';
import { assertManifestFilesMayHaveToken } from '../core/origins.js';
import { filesBeyondListing, listedFile, type PartialListing } from '../core/partial-manifest.js';
import type { DuplicateListing, ReceiptChunking } from '../core/receipt.js';
import { DEFAULT_WAIT_POLICY, nextWaitSeconds } from '../core/retry-after.js';
import { interpretStatusResponse } from '../core/status.js';
import {
  AccessTokenRejectedError,
  ExportDeadlineExceededError,
  ExportFolderTakenError,
  TransientServerError,
} from '../errors.js';
import { type Runtime, sealContext } from '../runtime.js';
import type { ExportContext, FileItem, ManifestSummary, PartialDownload, PollState } from '../state.js';
import { type ChunkItem, readChunkRecord, writeChunkRecord } from './chunk-records.js';
import type { JobRecord } from './export-lifecycle.js';
import { writeFileBatches } from './file-batches.js';
import { readManifestPages } from './manifest-pages.js';
import { recordServerErrorFiles } from './server-file-errors.js';

export interface PollStatusEvent {
  readonly export: ExportContext;
  readonly statusUrl: string;
  readonly sealedToken: string;
  readonly poll: Pick<
    PollState,
    | 'attempt'
    | 'consecutiveTransientErrors'
    | 'waitSeconds'
    | 'forceTokenRefresh'
    | 'historyEvents'
    | 'kickOffAttempts'
  >;
  /** `$$.Execution.Id`: the execution that hands over when its history budget is spent. */
  readonly executionArn?: string;
  /** A chunk of a chunked export: its manifest is kept for Merge Chunks, not landed yet. */
  readonly chunk?: ChunkItem;
}

/**
 * One status request; never a loop (waiting is the Wait state's job). On
 * completion the manifest and the Map's file list go to S3 and only their
 * keys travel on.
 */
export async function pollExportStatus(runtime: Runtime, event: PollStatusEvent): Promise<PollState> {
  const state = await pollOnce(runtime, event);
  if (state.outcome !== 'in-progress' && state.outcome !== 'partial') return state;
  const kickOffAttempts = event.poll.kickOffAttempts ?? 1;
  // A partial round's Map is in this execution's history too.
  const historyEvents =
    historyAfterPoll(event.poll.historyEvents, kickOffAttempts) +
    (state.outcome === 'partial' ? EVENTS_PER_PARTIAL_DOWNLOAD : 0);
  const budget = runtime.historyEventBudget ?? DEFAULT_HISTORY_EVENT_BUDGET;
  if (!shouldContinueAsNew(historyEvents, budget)) return { ...state, historyEvents, kickOffAttempts };
  return continueAsNew(runtime, event, state, { historyEvents, budget });
}

/**
 * The execution's history budget is nearly spent while the job still runs:
 * the job is left running and handed on. An export in one piece names the
 * execution that takes over (the state machine starts it); a chunk marks
 * itself continuing and its child ends, and the export's next execution
 * polls it again (Merge Chunks hands over once the chunk Map has ended).
 */
async function continueAsNew(
  runtime: Runtime,
  event: PollStatusEvent,
  state: PollState,
  usage: { readonly historyEvents: number; readonly budget: number },
): Promise<PollState> {
  const context = event.export;
  // Files a handed-over partial round listed land in the final pass: each has its place already.
  const {
    outcome: _inProgress,
    historyEvents: _used,
    kickOffAttempts: _attempts,
    partial: _partial,
    ...poll
  } = state;
  if (event.chunk) {
    await runtime.store.putJson(chunkContinuingKey(context.workPrefix, event.chunk.index), {
      chunk: event.chunk.index,
      statusUrl: event.statusUrl,
      at: runtime.now().toISOString(),
    });
    runtime.logger.info('history budget reached; the chunk is polled again by the next execution', {
      sourceId: context.sourceId,
      chunk: event.chunk.index,
      historyEvents: usage.historyEvents,
      budget: usage.budget,
    });
    return { ...poll, outcome: 'continue', historyEvents: usage.historyEvents };
  }
  if (!event.executionArn) {
    throw new Error('Poll Export Status needs executionArn ($$.Execution.Id) to hand an export over');
  }
  const continuation = continuationRequest(context, event.executionArn, {
    statusUrl: event.statusUrl,
    poll: { ...poll, forceTokenRefresh: false },
  });
  runtime.logger.info('history budget reached; the export continues in a new execution', {
    sourceId: context.sourceId,
    executionName: context.executionName,
    continuedAs: continuation.name,
    historyEvents: usage.historyEvents,
    budget: usage.budget,
  });
  runtime.progress?.({
    kind: 'phase',
    phase: 'continuing in a new execution',
    detail: `${usage.historyEvents} of ${usage.budget} history events used; ${continuation.name} polls on`,
  });
  return { ...poll, outcome: 'continue', historyEvents: usage.historyEvents, continuation };
}

/**
 * A partial manifest (allowPartialManifests): the files not listed before get their keys (in the
 * folder claimed now, with the transactionTime the partial manifest already carries) and become
 * this round's batches, which Download Partial Files lands while the job runs. Nothing new: no round.
 */
async function takePartialManifest(
  runtime: Runtime,
  context: ExportContext,
  manifest: CompletionManifest,
): Promise<PartialDownload | undefined> {
  const listingKey = partialListingKey(context.workPrefix);
  const listing = await runtime.store.getJson<PartialListing>(listingKey);
  const added = filesBeyondListing(listing, manifest);
  if (added === 0) return undefined;
  const location = await claimExportFolder(runtime, context, manifest.transactionTime);
  if (!listing) {
    // Before any file lands: an export that fails while its job runs removes what it staged here.
    const job = await runtime.store.getJson<JobRecord>(jobRecordKey(context.workPrefix));
    await runtime.store.putJson(jobRecordKey(context.workPrefix), {
      ...(job ?? { sourceId: context.sourceId, executionName: context.executionName, export: context }),
      partialExportRoot: exportRoot(location),
    } satisfies JobRecord);
  }
  const items = fileItemsOf(manifest.files, location);
  const round = (listing?.rounds ?? 0) + 1;
  const fresh = items.slice(items.length - added);
  const urlsKey = partialUrlsKey(context.workPrefix, round);
  await runtime.store.putJson(
    urlsKey,
    manifest.files.map((file) => file.url),
  );
  const batches = await writeFileBatches(
    runtime,
    context,
    fresh,
    partialBatchesKey(context.workPrefix, round),
  );
  // Written last: a poll retried after a failure above takes the same files again, as the same round.
  await runtime.store.putJson(listingKey, {
    transactionTime: manifest.transactionTime,
    files: manifest.files.map(listedFile),
    rounds: round,
  } satisfies PartialListing);
  runtime.logger.info('the job listed files while it runs; landing them now', {
    sourceId: context.sourceId,
    round,
    newFiles: added,
    listed: items.length,
  });
  runtime.progress?.({
    kind: 'phase',
    phase: 'partial manifest',
    detail: `${added} new file(s), ${items.length} listed so far; landing them while the export runs`,
  });
  return {
    round,
    ...batches,
    urlsKey,
    requiresAccessToken: manifest.requiresAccessToken,
    listed: items.length,
    newFiles: added,
  };
}

/** One status request and what it means; the history budget is pollExportStatus's. */
async function pollOnce(runtime: Runtime, event: PollStatusEvent): Promise<PollState> {
  const context = event.export;
  const settings = await runtime.sources.get(context.sourceId);
  const policy = { ...DEFAULT_WAIT_POLICY, ceilingSeconds: settings.retryAfterCeilingSeconds };
  const now = runtime.now();
  if (now.getTime() > Date.parse(context.deadline)) {
    throw new ExportDeadlineExceededError(
      `the export of source ${context.sourceId} has not completed by its deadline ${context.deadline} (deadlineHours ${settings.deadlineHours})`,
    );
  }
  const accessToken = await runtime.sealer.open(
    event.sealedToken,
    sealContext(context.sourceId, context.executionName),
  );
  const bearer: Bearer = { accessToken, audience: settings };
  const attempt = event.poll.attempt + 1;
  const base = { attempt, forceTokenRefresh: false } as const;

  /** The job record as Kick Off (or the last poll) left it; a store error is only logged: no poll fails for it. */
  async function readJob(): Promise<JobRecord | undefined> {
    try {
      return await runtime.store.getJson<JobRecord>(jobRecordKey(context.workPrefix));
    } catch (error) {
      warnJobRecord(error);
      return undefined;
    }
  }

  function warnJobRecord(error: unknown): void {
    runtime.logger.warn('could not record the poll in the job record', {
      sourceId: context.sourceId,
      error: (error as Error).name,
      reason: (error as Error).message,
    });
  }

  /** The export's age gauge, once per answered poll (with its chunks, when it has some). */
  function gaugeAge(job: JobRecord | undefined): void {
    runtime.metrics.exportInProgress({
      sourceId: context.sourceId,
      ageSeconds: Math.max(0, (now.getTime() - Date.parse(context.startedAt)) / 1000),
      ...(job?.chunks ? { chunks: job.chunks } : {}),
    });
  }

  /**
   * An in-progress poll: when it was polled and what the server said of its
   * progress go into the job record, which `npm run status` reads (it never
   * sees the execution's state). Not worth a failed poll: a store error here
   * is logged and the poll goes on.
   */
  async function recordPoll(progress: string | undefined): Promise<{ jobStartedAt: string }> {
    const job = await readJob();
    const lastPoll = { at: now.toISOString(), ...(progress ? { progress } : {}) };
    // The export's job started with the export; a chunk's, when the chunk was kicked off.
    let jobStartedAt = context.startedAt;
    try {
      if (event.chunk) {
        const record = await readChunkRecord(runtime, context.workPrefix, event.chunk.index);
        if (record?.kickedOffAt) jobStartedAt = record.kickedOffAt;
        if (record) await writeChunkRecord(runtime, context.workPrefix, { ...record, lastPoll });
      }
      await runtime.store.putJson(jobRecordKey(context.workPrefix), {
        ...job,
        sourceId: context.sourceId,
        executionName: context.executionName,
        export: context,
        // A chunked export has a job per chunk, in the chunk records; none of them is the export's.
        ...(event.chunk ? {} : { statusUrl: event.statusUrl }),
        lastPoll: { ...lastPoll, ...(event.chunk ? { chunk: event.chunk.index } : {}) },
      } satisfies JobRecord);
    } catch (error) {
      warnJobRecord(error);
    }
    gaugeAge(job);
    return { jobStartedAt };
  }

  let outcome: ReturnType<typeof interpretStatusResponse>;
  try {
    const response = await runtime.fhir.send(
      { method: 'GET', url: event.statusUrl, headers: { Accept: 'application/json' } },
      bearer,
    );
    outcome = interpretStatusResponse(response, now);
  } catch (error) {
    if (error instanceof AccessTokenRejectedError && !event.poll.forceTokenRefresh) {
      runtime.logger.warn('status refused the access token; minting a fresh one', {
        sourceId: context.sourceId,
        attempt,
        reason: error.message,
        waitSeconds: policy.floorSeconds,
      });
      return {
        ...base,
        outcome: 'in-progress',
        consecutiveTransientErrors: event.poll.consecutiveTransientErrors,
        waitSeconds: policy.floorSeconds,
        forceTokenRefresh: true,
      };
    }
    if (!(error instanceof TransientServerError)) throw error;
    outcome = { outcome: 'transient', reason: error.message };
  }

  /** 5xx, an OperationOutcome coded transient, a network error: counted, then waited out. */
  function waitAfterTransientError(transient: { reason: string; retryAfterSeconds?: number }): PollState {
    const consecutive = event.poll.consecutiveTransientErrors + 1;
    if (consecutive > settings.maxConsecutiveTransientErrors) {
      throw new TransientServerError(
        `status failed ${consecutive} times in a row (limit maxConsecutiveTransientErrors ${settings.maxConsecutiveTransientErrors}); last: ${transient.reason}`,
      );
    }
    const waitSeconds = nextWaitSeconds(transient.retryAfterSeconds, consecutive - 1, policy);
    runtime.logger.warn('transient status error', {
      sourceId: context.sourceId,
      consecutive,
      reason: transient.reason,
      ...(transient.retryAfterSeconds === undefined
        ? {}
        : { retryAfterSeconds: transient.retryAfterSeconds }),
      waitSeconds,
    });
    runtime.progress?.({
      kind: 'phase',
      phase: 'status failed, waiting',
      detail: `${transient.reason}; next poll in ${waitSeconds}s (${consecutive} in a row)`,
    });
    return { ...base, outcome: 'in-progress', consecutiveTransientErrors: consecutive, waitSeconds };
  }

  switch (outcome.outcome) {
    case 'in-progress': {
      if (shouldChunkOnTimeout(context, event, now)) return abandonForChunks(runtime, event, bearer);
      let partial: PartialDownload | undefined;
      if (
        outcome.partialManifestBody !== undefined &&
        context.request.allowPartialManifests &&
        !event.chunk
      ) {
        try {
          const listed = await readManifestPages(
            runtime,
            outcome.partialManifestBody,
            bearer,
            settings.allowInsecureHttp,
            now,
            context.request,
          );
          checkTransactionTime(listed.transactionTime, now, settings.maxClockSkewSeconds);
          assertManifestFilesMayHaveToken(listed, settings);
          partial = await takePartialManifest(runtime, context, listed);
        } catch (error) {
          // A page refused for now: this poll lands nothing early; the next one reads the pages again.
          if (!(error instanceof TransientServerError)) throw error;
          runtime.logger.warn('a partial manifest page could not be read; polling on', {
            sourceId: context.sourceId,
            reason: error.message,
          });
        }
      }
      const { jobStartedAt } = await recordPoll(outcome.progress);
      runtime.progress?.({
        kind: 'phase',
        phase: 'in progress',
        ...(outcome.progress ? { detail: outcome.progress } : {}),
      });
      const jobAgeSeconds = (now.getTime() - Date.parse(jobStartedAt)) / 1000;
      return {
        ...base,
        outcome: 'in-progress',
        consecutiveTransientErrors: 0,
        waitSeconds: politeWaitSeconds(
          nextWaitSeconds(outcome.retryAfterSeconds, attempt - 1, policy),
          Number.isFinite(jobAgeSeconds) ? jobAgeSeconds : 0,
          policy.ceilingSeconds,
        ),
        ...(outcome.progress ? { progress: outcome.progress } : {}),
        ...(partial ? { outcome: 'partial', partial } : {}),
      };
    }
    case 'too-fast': {
      // Some servers block a client for minutes after 429: back off harder than they ask.
      const waitSeconds = nextWaitSeconds(
        Math.max(outcome.retryAfterSeconds ?? 0, event.poll.waitSeconds * 2),
        attempt - 1,
        policy,
      );
      runtime.logger.warn('status polled too fast; backing off', {
        sourceId: context.sourceId,
        attempt,
        reason: outcome.reason,
        ...(outcome.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: outcome.retryAfterSeconds }),
        waitSeconds,
      });
      runtime.progress?.({
        kind: 'phase',
        phase: 'status refused, waiting',
        detail: `${outcome.reason}; next poll in ${waitSeconds}s`,
      });
      return {
        ...base,
        outcome: 'in-progress',
        consecutiveTransientErrors: event.poll.consecutiveTransientErrors,
        waitSeconds,
      };
    }
    case 'transient':
      return waitAfterTransientError(outcome);
    case 'complete': {
      let manifest: CompletionManifest;
      try {
        manifest = await readManifestPages(
          runtime,
          outcome.manifestBody,
          bearer,
          settings.allowInsecureHttp,
          now,
          context.request,
        );
      } catch (error) {
        // A next page refused for now (429, 5xx): the job stays complete; read it all again next poll.
        if (!(error instanceof TransientServerError)) throw error;
        return waitAfterTransientError({
          reason: error.message,
          ...(error.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: error.retryAfterSeconds }),
        });
      }
      // The completed record below is this poll's one write of the job record.
      const job = await readJob();
      gaugeAge(job);
      checkTransactionTime(manifest.transactionTime, now, settings.maxClockSkewSeconds);
      assertManifestFilesMayHaveToken(manifest, settings);
      if (event.chunk) {
        await keepChunkManifest(runtime, event, event.chunk, manifest, {
          ...(outcome.expires ? { expires: outcome.expires } : {}),
          linksExpireAt: linksExpireAt(outcome.expires, runtime.now(), settings.fileLinksValidHours),
          job,
        });
        return { ...base, outcome: 'complete', consecutiveTransientErrors: 0, waitSeconds: 0 };
      }
      if (context.request.allowPartialManifests) {
        // The final manifest completes what the partial ones listed: same files at the same places.
        filesBeyondListing(
          await runtime.store.getJson<PartialListing>(partialListingKey(context.workPrefix)),
          manifest,
        );
      }
      const summary = await landManifest(runtime, context, manifest, {
        ...(outcome.expires ? { expires: outcome.expires } : {}),
        linksExpireAt: linksExpireAt(outcome.expires, runtime.now(), settings.fileLinksValidHours),
        statusUrl: event.statusUrl,
        job,
      });
      return {
        ...base,
        outcome: 'complete',
        consecutiveTransientErrors: 0,
        waitSeconds: 0,
        manifest: summary,
      };
    }
  }
}

/** A manifest file, and for a chunked export where it came from. */
export type LandingFile = CompletionManifest['files'][number] &
  Pick<FileItem, 'chunk' | 'chunkFileIndex' | 'requiresAccessToken'>;

/**
 * The Map's items for a manifest's files: each file's index in the manifest
 * and its key in the export folder (`part-NNNN` numbered per kind and type,
 * in manifest order). No URL: presigned URLs are credentials.
 */
export function fileItemsOf(files: readonly LandingFile[], location: ExportLocation): FileItem[] {
  const ordinals = new Map<string, number>();
  return files.map((file, index) => {
    const group = file.organizedBy ? `organizedBy=${file.organizedBy}` : `${file.kind}/${file.type}`;
    const ordinal = (ordinals.get(group) ?? 0) + 1;
    ordinals.set(group, ordinal);
    return {
      index,
      kind: file.kind,
      type: file.type,
      resourceType: file.resourceType,
      key: fileKey(location, file.kind, file.type, ordinal, file.organizedBy),
      ...(file.count === undefined ? {} : { count: file.count }),
      ...(file.organizedBy ? { organizedBy: file.organizedBy } : {}),
      ...(file.chunk === undefined
        ? {}
        : {
            chunk: file.chunk,
            chunkFileIndex: file.chunkFileIndex!,
            requiresAccessToken: file.requiresAccessToken!,
          }),
    };
  });
}

/**
 * A complete manifest (one job's, or the chunks' merged) made ready to land:
 * the export folder claimed, each file given its key, the manifest, the file
 * list (the Map's items) and the URL list (the downloader's only) written to
 * the work area, and the job record completed. Only the summary travels on.
 */
export async function landManifest(
  runtime: Runtime,
  context: ExportContext,
  manifest: Omit<CompletionManifest, 'files'> & { readonly files: readonly LandingFile[] },
  options: {
    readonly expires?: string | undefined;
    readonly linksExpireAt: string;
    readonly statusUrl?: string;
    readonly job: JobRecord | undefined;
    /** Written into the stored manifest beside the server's: a chunked export's chunks, for the receipt. */
    readonly annotations?: { readonly chunking: ReceiptChunking };
  },
): Promise<ManifestSummary> {
  const location = await claimExportFolder(runtime, context, manifest.transactionTime);
  const items = fileItemsOf(manifest.files, location);
  const manifestKey = `${context.workPrefix}manifest.json`;
  const filesKey = `${context.workPrefix}files.json`;
  const urlsKey = `${context.workPrefix}file-urls.json`;
  await runtime.store.putJson(manifestKey, {
    ...manifest,
    expires: options.expires,
    ...options.annotations,
  });
  await runtime.store.putJson(
    urlsKey,
    manifest.files.map((file) => file.url),
  );
  await runtime.store.putJson(filesKey, items);
  const batches = await writeFileBatches(runtime, context, items, fileBatchesKey(context.workPrefix));
  const duplicateFilesKey = await recordDuplicates(runtime, context, manifest, items);
  const errorFilesKey = await recordServerErrorFiles(
    runtime,
    context,
    items,
    manifest.files.map((file) => file.url),
  );
  const summary: ManifestSummary = {
    transactionTime: manifest.transactionTime,
    requiresAccessToken: manifest.requiresAccessToken,
    filesKey,
    urlsKey,
    manifestKey,
    fileCount: items.length,
    ...batches,
    exportRoot: exportRoot(location),
    ...(duplicateFilesKey ? { duplicateFilesKey } : {}),
    ...(errorFilesKey ? { errorFilesKey } : {}),
  };
  const completed: JobRecord = {
    sourceId: context.sourceId,
    executionName: context.executionName,
    export: context,
    ...(options.statusUrl ? { statusUrl: options.statusUrl } : {}),
    ...(options.job?.chunks ? { chunks: options.job.chunks } : {}),
    ...(options.job?.executions ? { executions: options.job.executions } : {}),
    lastPoll: { at: runtime.now().toISOString() },
    manifest: summary,
    linksExpireAt: options.linksExpireAt,
  };
  await runtime.store.putJson(jobRecordKey(context.workPrefix), completed);
  const counts = countByKind(items);
  runtime.progress?.({
    kind: 'phase',
    phase: 'manifest received',
    detail: `${items.length} files (${counts.output} data, ${counts.error} error, ${counts.deleted} deleted)`,
  });
  return summary;
}

/** An export in one piece past its chunkOnTimeout: still in progress, so given up and chunked. */
function shouldChunkOnTimeout(context: ExportContext, event: PollStatusEvent, now: Date): boolean {
  if (event.chunk || !context.chunkOnTimeout) return false;
  return now.getTime() - Date.parse(context.startedAt) > context.chunkOnTimeout.afterSeconds * 1000;
}

/**
 * chunkOnTimeout: the job is DELETEd (Epic allows one per client, and it would
 * never finish) and the state machine plans chunks instead. A DELETE that
 * fails is logged: the server drops the job when it expires.
 */
async function abandonForChunks(
  runtime: Runtime,
  event: PollStatusEvent,
  bearer: Bearer,
): Promise<PollState> {
  const context = event.export;
  let deleted: number | string;
  try {
    const response = await runtime.fhir.send(
      { method: 'DELETE', url: event.statusUrl, headers: { Accept: 'application/json' } },
      bearer,
    );
    deleted = response.status;
  } catch (error) {
    deleted = (error as Error).name;
  }
  const afterSeconds = context.chunkOnTimeout!.afterSeconds;
  runtime.logger.warn(
    'the export has not completed within chunkOnTimeout; cancelled it to run it as chunks',
    {
      sourceId: context.sourceId,
      chunkOnTimeoutSeconds: afterSeconds,
      by: context.chunkOnTimeout!.chunking.by,
      deleteAnswered: deleted,
    },
  );
  runtime.progress?.({
    kind: 'phase',
    phase: 'chunking after timeout',
    detail: `not complete after ${afterSeconds}s: DELETEd the job (${deleted}), exporting in chunks by ${context.chunkOnTimeout!.chunking.by}`,
  });
  const job = await runtime.store.getJson<JobRecord>(jobRecordKey(context.workPrefix));
  if (job) {
    const { statusUrl: _abandoned, ...rest } = job;
    await runtime.store.putJson(jobRecordKey(context.workPrefix), {
      ...rest,
      abandonedForChunks: { at: runtime.now().toISOString(), deleteAnswered: String(deleted) },
    } satisfies JobRecord);
  }
  return {
    outcome: 'rechunk',
    attempt: event.poll.attempt + 1,
    consecutiveTransientErrors: 0,
    waitSeconds: 0,
    forceTokenRefresh: false,
  };
}

/**
 * A chunk's completed manifest, kept whole (file URLs included: they are read
 * by the downloader only) until every chunk has one and Merge Chunks lands them
 * as one export. The job record's chunk count is recounted from the stored
 * manifests, so chunks completing at once cannot undercount each other.
 */
async function keepChunkManifest(
  runtime: Runtime,
  event: PollStatusEvent,
  chunk: ChunkItem,
  manifest: CompletionManifest,
  extra: { readonly expires?: string; readonly linksExpireAt: string; readonly job: JobRecord | undefined },
): Promise<void> {
  const context = event.export;
  const work = context.workPrefix;
  const now = runtime.now().toISOString();
  await runtime.store.putJson(chunkManifestKey(work, chunk.index), {
    ...manifest,
    ...(extra.expires ? { expires: extra.expires } : {}),
  });
  const record = (await readChunkRecord(runtime, work, chunk.index)) ?? { ...chunk, attempt: 1 };
  await writeChunkRecord(runtime, work, {
    ...record,
    state: 'complete',
    statusUrl: event.statusUrl,
    completedAt: now,
    transactionTime: manifest.transactionTime,
    requiresAccessToken: manifest.requiresAccessToken,
    fileCount: manifest.files.length,
    linksExpireAt: extra.linksExpireAt,
  });
  const done = (await runtime.store.listKeys(chunksPrefix(work))).filter((key) =>
    key.endsWith('.manifest.json'),
  ).length;
  const total = extra.job?.chunks?.total ?? done;
  await runtime.store.putJson(jobRecordKey(work), {
    ...(extra.job ?? { sourceId: context.sourceId, executionName: context.executionName, export: context }),
    lastPoll: { at: now, chunk: chunk.index },
    chunks: { total, done },
  } satisfies JobRecord);
  runtime.progress?.({
    kind: 'phase',
    phase: `chunk ${chunk.index} complete`,
    detail: `${manifest.files.length} file(s); ${done} of ${total} chunk(s) done`,
  });
}

/**
 * Until when a failed export can be resumed: the status response's `Expires`
 * (the IG's "when the files will be deleted"), when it is a valid date in the
 * future, else the source's fileLinksValidHours from now.
 */
export function linksExpireAt(expires: string | undefined, now: Date, validHours: number): string {
  const stated = expires === undefined ? Number.NaN : Date.parse(expires);
  if (Number.isFinite(stated) && stated > now.getTime()) return new Date(stated).toISOString();
  return new Date(now.getTime() + validHours * 3_600_000).toISOString();
}

/**
 * The folder this execution's files, receipt and marker go to. A server may
 * give two exports the same transactionTime (its clock or job cache repeats
 * one); the second must not overwrite the first's files, receipt and marker.
 * So the first execution to create `_claim.json` in `export=<transactionTime>/`
 * (a conditional PUT) writes there, and any other lands beside it in the
 * folder that also names the execution. Both candidates follow from the
 * execution alone, so a retried or redriven poll lands where it started.
 */
async function claimExportFolder(
  runtime: Runtime,
  context: ExportContext,
  transactionTime: string,
): Promise<ExportLocation> {
  const plain: ExportLocation = { prefix: runtime.prefix, sourceId: context.sourceId, transactionTime };
  const candidates = [plain, { ...plain, executionName: context.executionName }];
  const claim: ExportClaim = {
    sourceId: context.sourceId,
    executionName: context.executionName,
    executionStartedAt: context.startedAt,
    transactionTime,
    claimedAt: runtime.now().toISOString(),
  };
  const holders: string[] = [];
  for (const location of candidates) {
    const root = exportRoot(location);
    const holder = await claimFolder(runtime, root, claim);
    if (holder === 'ours') return location;
    holders.push(`${root} (${holder})`);
    runtime.logger.warn('another export holds the folder of this transactionTime; landing beside it', {
      sourceId: context.sourceId,
      transactionTime,
      folder: root,
      heldBy: holder,
    });
  }
  throw new ExportFolderTakenError(
    `both folders for transactionTime ${transactionTime} belong to other runs: ${holders.join('; ')}. An export folder is never written twice; give this run an execution name of its own`,
  );
}

/** Claims a folder unless it is taken: `ours`, or who holds it. */
async function claimFolder(runtime: Runtime, root: string, claim: ExportClaim): Promise<'ours' | string> {
  const key = claimKey(root);
  const execution = { executionName: claim.executionName, startedAt: claim.executionStartedAt };
  const held = await runtime.store.getJson<ExportClaim>(key);
  if (held) return claimedBy(held, execution) ? 'ours' : describeClaim(held);
  // Folders written before claims existed have no claim, but a receipt says they are taken.
  if (await runtime.store.head(receiptKey(root))) return 'an export from before folder claims';
  let failure: unknown;
  try {
    await runtime.store.putJson(key, claim, { ifNoneMatch: true });
    return 'ours';
  } catch (error) {
    failure = error;
  }
  // Refused: a lost race (412) names the winner, which may be this execution's earlier attempt;
  // any other failure left no claim behind.
  const winner = await runtime.store.getJson<ExportClaim>(key);
  if (winner) return claimedBy(winner, execution) ? 'ours' : describeClaim(winner);
  throw failure;
}

/**
 * A file URL the manifest lists more than once lands once (see
 * mergeManifestPages). Said in the log now, and in the receipt by Finalize,
 * which reads this list from the work area.
 */
async function recordDuplicates(
  runtime: Runtime,
  context: ExportContext,
  manifest: Pick<CompletionManifest, 'duplicateFiles'>,
  items: readonly FileItem[],
): Promise<string | undefined> {
  if (!manifest.duplicateFiles) return undefined;
  const duplicates: DuplicateListing[] = manifest.duplicateFiles.map((duplicate) => ({
    kind: duplicate.kind,
    type: duplicate.type,
    key: items[duplicate.index]!.key,
    timesListed: duplicate.timesListed,
  }));
  runtime.logger.warn('the manifest lists the same file more than once; each lands once', {
    sourceId: context.sourceId,
    files: duplicates.length,
    extraListings: duplicates.reduce((sum, duplicate) => sum + duplicate.timesListed - 1, 0),
    landingAt: duplicates.slice(0, 10).map((duplicate) => duplicate.key),
  });
  const key = `${context.workPrefix}duplicate-files.json`;
  await runtime.store.putJson(key, duplicates);
  return key;
}

function countByKind(items: readonly FileItem[]): Record<FileKind, number> {
  const counts: Record<FileKind, number> = { output: 0, error: 0, deleted: 0 };
  for (const item of items) counts[item.kind] += 1;
  return counts;
}
