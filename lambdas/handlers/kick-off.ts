import type { Bearer } from '../adapters/fhir-http.js';
import { buildKickOffRequest, type ExportRequest, interpretKickOffResponse } from '../core/kickoff.js';
import {
  chunkContinuingKey,
  chunkPatientsKey,
  chunksContinuingPrefix,
  jobRecordKey,
} from '../core/layout.js';
import { oneLine } from '../core/operation-outcome.js';
import { assertTokenMayGoTo } from '../core/origins.js';
import { DEFAULT_WAIT_POLICY, nextWaitSeconds } from '../core/retry-after.js';
import {
  AccessTokenRejectedError,
  ExportRequestRejectedError,
  ExportStoppedError,
  StorageError,
} from '../errors.js';
import { type Runtime, sealContext } from '../runtime.js';
import {
  type ChunkItem,
  type ChunkRecord,
  readChunkRecord,
  writeChunkRecord,
} from '../services/chunk-records.js';
import type { JobRecord } from '../services/export-lifecycle.js';
import { deleteSupersededJobs } from '../services/server-jobs.js';
import { assertExportMayLand } from '../services/source-lock.js';
import type { ExportContext, KickOffState } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';

export interface KickOffEvent {
  readonly export: ExportContext;
  readonly sealedToken: string;
  readonly attempt: number;
  readonly forceTokenRefresh?: boolean;
  /** A chunk of a chunked export: its own kick-off, job and record. */
  readonly chunk?: ChunkItem;
  /** Which kick-off of the chunk this is (1 for the first); a higher one replaces a failed job. */
  readonly chunkAttempt?: number;
  /** Why the chunk's previous attempt failed (the chunk Map's Catch), for its record. */
  readonly chunkFailure?: { readonly Error?: string; readonly Cause?: string } | null;
}

export type { KickOffState };

/** Kick-off refusals (429/503) we wait out before giving up: with a 300 s ceiling, over an hour. */
export const MAX_KICK_OFF_ATTEMPTS = 15;

export function createKickOffHandler(runtime: Runtime) {
  return async (event: KickOffEvent): Promise<KickOffState> => {
    const context = event.export;
    const settings = await runtime.sources.get(context.sourceId);
    const policy = { ...DEFAULT_WAIT_POLICY, ceilingSeconds: settings.retryAfterCeilingSeconds };
    const bearer: Bearer = {
      accessToken: await runtime.sealer.open(
        event.sealedToken,
        sealContext(context.sourceId, context.executionName),
      ),
      audience: settings,
    };
    const attempt = event.attempt + 1;
    const chunk = event.chunk ? await chunkBeforeKickOff(runtime, event, bearer) : undefined;
    if (chunk?.state === 'complete') {
      return { outcome: 'complete', attempt, waitSeconds: 0, forceTokenRefresh: false };
    }
    if (chunk?.state === 'running' && chunk.statusUrl) {
      // A resumed (redriven) export, or one continued in a new execution (history budget): this
      // attempt's job is on record; poll it rather than ask again. It is polled again: no longer continuing.
      await runtime.store.delete(chunkContinuingKey(context.workPrefix, chunk.index));
      return {
        outcome: 'accepted',
        attempt,
        statusUrl: chunk.statusUrl,
        waitSeconds: policy.floorSeconds,
        forceTokenRefresh: false,
      };
    }
    if (chunk && (await runtime.store.listKeys(chunksContinuingPrefix(context.workPrefix))).length > 0) {
      // Another chunk's job runs on while no execution polls it (its child spent its history budget):
      // a new job now could pass maxConcurrentJobs. This chunk waits for the export's next execution.
      runtime.logger.info('a chunk waits for the next execution: another chunk’s job runs on unpolled', {
        sourceId: context.sourceId,
        chunk: chunk.index,
      });
      return { outcome: 'continue', attempt, waitSeconds: 0, forceTokenRefresh: false };
    }
    const request = chunk ? await chunkRequest(runtime, context, chunk) : context.request;
    const built = buildKickOffRequest(settings.fhirBaseUrl, settings.export, request);
    // A server that does not know _until must refuse it, not ignore it: every window would be the whole span.
    const spec =
      chunk?.kind === 'time'
        ? { ...built, headers: { ...built.headers, Prefer: 'respond-async, handling=strict' } }
        : built;
    // A chunked export's Plan Chunks did this before its first chunk.
    if (event.attempt === 0 && !event.chunk) await deleteSupersededJobs(runtime, context, bearer);

    let outcome: ReturnType<typeof interpretKickOffResponse>;
    try {
      const response = await runtime.fhir.send(spec, bearer);
      outcome = interpretKickOffResponse(response, spec.url, settings.allowInsecureHttp, runtime.now());
    } catch (error) {
      if (chunk?.kind === 'time' && error instanceof ExportRequestRejectedError) {
        throw new ExportRequestRejectedError(
          oneLine(
            `time chunk ${chunk.index} (${chunk.since} to ${chunk.until}) was refused: ${error.message}${/_until/.test(error.message) ? '. Time chunks need a server that supports _until; chunk by patients instead' : ''}`,
            1000,
          ),
        );
      }
      // One re-mint and retry on 401; a second 401 in a row is a real refusal.
      if (error instanceof AccessTokenRejectedError && !event.forceTokenRefresh) {
        runtime.logger.warn('kick-off refused the access token; minting a fresh one', {
          sourceId: context.sourceId,
          attempt,
          reason: error.message,
          waitSeconds: policy.floorSeconds,
        });
        return {
          outcome: 'retry',
          attempt,
          waitSeconds: policy.floorSeconds,
          forceTokenRefresh: true,
          reason: error.message,
        };
      }
      throw error;
    }
    if (outcome.outcome === 'accepted') {
      // Every poll carries the token: a status URL elsewhere is refused before the first. The job
      // is left to expire: its DELETE would need the token too.
      assertTokenMayGoTo(outcome.statusUrl, settings, "the status URL (the kick-off's Content-Location)");
      if (chunk) {
        // The chunk's record is its job record: clean-up, cancel and completion DELETE every chunk's job.
        await writeChunkRecord(runtime, context.workPrefix, {
          ...chunk,
          state: 'running',
          attempt: event.chunkAttempt ?? 1,
          statusUrl: outcome.statusUrl,
          kickedOffAt: runtime.now().toISOString(),
        });
        await dropJobIfExportIsEnding(runtime, context, outcome.statusUrl, bearer);
      } else {
        // Whoever ends this export without its state (a StopExecution clean-up) finds the job here.
        const job: JobRecord = {
          sourceId: context.sourceId,
          executionName: context.executionName,
          export: context,
          statusUrl: outcome.statusUrl,
        };
        await runtime.store.putJson(jobRecordKey(context.workPrefix), job);
      }
      runtime.progress?.({ kind: 'phase', phase: chunk ? `chunk ${chunk.index} kicked-off` : 'kicked-off' });
      return {
        outcome: 'accepted',
        attempt,
        statusUrl: outcome.statusUrl,
        waitSeconds: policy.floorSeconds,
        forceTokenRefresh: false,
      };
    }
    if (attempt >= MAX_KICK_OFF_ATTEMPTS) {
      throw new ExportRequestRejectedError(
        `kick-off still refused after ${attempt} attempts; last answer: ${outcome.reason}`,
      );
    }
    const waitSeconds = nextWaitSeconds(outcome.retryAfterSeconds, attempt - 1, policy);
    // A long 429 or 503 wait is otherwise invisible: the Wait state says how long, not why.
    runtime.logger.warn('kick-off refused; waiting before the next attempt', {
      sourceId: context.sourceId,
      attempt,
      reason: outcome.reason,
      ...(outcome.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: outcome.retryAfterSeconds }),
      waitSeconds,
    });
    runtime.progress?.({
      kind: 'phase',
      phase: 'kick-off refused, waiting',
      detail: `${outcome.reason}; retry in ${waitSeconds}s`,
    });
    return { outcome: 'retry', attempt, waitSeconds, forceTokenRefresh: false, reason: outcome.reason };
  };
}

/**
 * A chunk kicked off while its export was being ended (another chunk failed
 * for good, a cancel): the ending DELETEs the jobs on the chunk records, but
 * it may have read them just before this one was written. The ending fences
 * the lock before it reads them, and this checks the fence after the record
 * is written, so one of the two DELETEs the job: never neither (Epic would
 * refuse the next export while it lives).
 */
async function dropJobIfExportIsEnding(
  runtime: Runtime,
  context: ExportContext,
  statusUrl: string,
  bearer: Bearer,
): Promise<void> {
  try {
    await assertExportMayLand(runtime, context.sourceId, context.executionName);
  } catch (error) {
    if (!(error instanceof ExportStoppedError)) throw error;
    try {
      await runtime.fhir.send(
        { method: 'DELETE', url: statusUrl, headers: { Accept: 'application/json' } },
        bearer,
      );
    } catch (deleteError) {
      runtime.logger.warn('could not DELETE the job of a chunk kicked off while its export ended', {
        sourceId: context.sourceId,
        error: (deleteError as Error).name,
      });
    }
    throw error;
  }
}

/**
 * A chunk's record before its kick-off. A chunk already exported, or kicked
 * off by this very attempt, is not asked for again (a resumed export). A
 * higher attempt replaces a failed job: that job is DELETEd first (Epic
 * allows one export per client) and the failure goes on the record.
 */
async function chunkBeforeKickOff(
  runtime: Runtime,
  event: KickOffEvent,
  bearer: Bearer,
): Promise<ChunkRecord> {
  const context = event.export;
  const item = event.chunk!;
  const chunkAttempt = event.chunkAttempt ?? 1;
  const record = (await readChunkRecord(runtime, context.workPrefix, item.index)) ?? {
    ...item,
    state: 'planned' as const,
    attempt: 0,
  };
  if (record.state === 'complete') return record;
  if (record.state === 'running' && record.attempt >= chunkAttempt) return record;
  if (record.state === 'running' && record.statusUrl) {
    try {
      const response = await runtime.fhir.send(
        { method: 'DELETE', url: record.statusUrl, headers: { Accept: 'application/json' } },
        bearer,
      );
      runtime.logger.info('DELETEd the failed job of a chunk before kicking it off again', {
        sourceId: context.sourceId,
        chunk: item.index,
        attempt: chunkAttempt,
        status: response.status,
      });
    } catch (error) {
      runtime.logger.warn('could not DELETE the failed job of a chunk', {
        sourceId: context.sourceId,
        chunk: item.index,
        error: (error as Error).name,
      });
    }
  }
  const failure = event.chunkFailure;
  const retried: ChunkRecord = {
    ...item,
    state: 'planned',
    attempt: record.attempt,
    ...(record.failures ? { failures: record.failures } : {}),
  };
  if (!failure?.Error || record.attempt === 0) return retried;
  runtime.logger.warn('a chunk failed; kicking it off again, alone', {
    sourceId: context.sourceId,
    chunk: item.index,
    attempt: chunkAttempt,
    error: failure.Error,
  });
  const failed: ChunkRecord = {
    ...retried,
    failures: [
      ...(record.failures ?? []),
      { attempt: record.attempt, error: failure.Error, at: runtime.now().toISOString() },
    ],
  };
  await writeChunkRecord(runtime, context.workPrefix, failed);
  return failed;
}

/** The export's request narrowed to the chunk: its patients (from S3) or its window. */
async function chunkRequest(
  runtime: Runtime,
  context: ExportContext,
  chunk: ChunkItem,
): Promise<ExportRequest> {
  if (chunk.kind === 'time') return { ...context.request, since: chunk.since!, until: chunk.until! };
  const key = chunkPatientsKey(context.workPrefix, chunk.index);
  const patients = await runtime.store.getJson<string[]>(key);
  if (!Array.isArray(patients) || patients.length === 0) {
    throw new StorageError(
      `the patient list of chunk ${chunk.index} (s3://${runtime.store.bucket}/${key}) is gone`,
    );
  }
  return { ...context.request, patients };
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('KickOff', createKickOffHandler);
