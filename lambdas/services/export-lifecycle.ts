import type { Bearer } from '../adapters/fhir-http.js';
import {
  checkpointsPrefix,
  failureReceiptKey,
  fileFailuresPrefix,
  inFlightPrefix,
  jobRecordKey,
  resultsPrefix,
  serverErrorTriageKey,
  workPrefix as workPrefixOf,
} from '../core/layout.js';
import { oneLine } from '../core/operation-outcome.js';
import { countExportFailure } from '../observability/export-outcomes.js';
import { type Runtime, sealContext } from '../runtime.js';
import { isSourceId } from '../schema/source.js';
import type { ExportContext, ManifestSummary } from '../state.js';
import { chunkStatusUrls, readChunkRecords } from './chunk-records.js';
import { removePrefixForGood, stagingPrefix } from './publish-export.js';
import { type StoredTriage, serverFileErrorMessage } from './server-file-errors.js';
import {
  acquireSourceLock,
  readLock,
  releaseSourceLock,
  type SourceLock,
  updateSourceLock,
} from './source-lock.js';

/**
 * What an execution knows of its server job (`_work/…/job.json`), for
 * whoever ends the export without seeing the execution's state.
 */
export interface JobRecord {
  readonly sourceId: string;
  readonly executionName: string;
  readonly export?: ExportContext;
  readonly statusUrl?: string;
  readonly manifest?: ManifestSummary;
  /** Until when the server keeps the files: its `Expires` header, or the source's fileLinksValidHours. */
  readonly linksExpireAt?: string;
  /** The last status poll, for `npm run status`: when, and the server's `X-Progress` then, if it sent one. */
  readonly lastPoll?: { readonly at: string; readonly progress?: string; readonly chunk?: number };
  /** A chunked export's progress: chunks whose manifest is in, of all planned. Absent for an export in one piece. */
  readonly chunks?: { readonly total: number; readonly done: number };
  /** chunkOnTimeout gave up the export in one piece (its job DELETEd) to run it as chunks. */
  readonly abandonedForChunks?: { readonly at: string; readonly deleteAnswered: string };
  /**
   * allowPartialManifests: the folder claimed when the running job first listed files, whose staged
   * files an export that ends before its manifest summary must still remove.
   */
  readonly partialExportRoot?: string;
  /** The executions the export continued in (history budget), in order; absent while it runs in its first. */
  readonly executions?: readonly {
    readonly executionName: string;
    readonly executionArn?: string;
    readonly startedAt: string;
  }[];
}

/** Why a file's last download attempt failed (`_work/…/file-failures/<file>.json`). */
export interface FileFailure {
  readonly index: number;
  readonly kind: string;
  readonly type: string;
  readonly error: string;
  readonly message: string;
  readonly at: string;
}

/** A running download's lease (`_work/…/in-flight/<file>.<request>.json`). */
export interface DownloadLease {
  readonly index: number;
  readonly startedAt: string;
  /** When its invocation is killed at the latest (its Lambda timeout). */
  readonly deadline: string;
}

/**
 * How an export ended without succeeding: `failed` (its retries ran out),
 * `cancelled` (an operator: StopExecution, `npm run cancel`, Ctrl-C),
 * `timed-out` (the execution's own timeout), `superseded` (a later run found
 * it dead and took its lock).
 */
export type EndOutcome = 'failed' | 'cancelled' | 'timed-out' | 'superseded';

export interface EndExportRequest {
  readonly sourceId: string;
  readonly executionName: string;
  readonly outcome: EndOutcome;
  readonly failure: { readonly error: string; readonly message: string };
  /**
   * May the export stay resumable (keep its server job and landed files)?
   * Only a failure while downloading can be resumed; a cancel never is.
   */
  readonly allowResume: boolean;
  /** An access token for the job's DELETE, sealed to the ended execution. */
  readonly sealedToken?: string | null;
  /**
   * The execution the token is sealed to, when not the export's own name: a
   * continuation (history budget) mints for itself, as any execution does.
   */
  readonly tokenSealedFor?: string;
  /**
   * Wait for every in-flight download before recording anything (on AWS a
   * Lambda outlives the Map that started it). False when the caller knows
   * none runs (the local runner settles its invocations first).
   */
  readonly waitForDownloads: boolean;
  /** The longest the wait for downloads may take. */
  readonly waitBudgetMs?: number;
  /** What the execution's state held, when the caller has it (an in-workflow clean-up). */
  readonly context?: ExportContext;
  readonly statusUrl?: string;
  readonly exportRoot?: string;
  /** The server job is DELETEd by this other execution (a run taking over), not here. */
  readonly jobDeletedBy?: string;
}

export interface EndExportResult {
  readonly outcome: EndOutcome;
  /** The failure, with the files that did not land and why. */
  readonly cause: string;
  readonly resumable: boolean;
  readonly resumableUntil?: string;
  readonly failureReceiptKey?: string;
  readonly actions: readonly string[];
  readonly problems: readonly string[];
  /** How many files had landed and been verified when it ended. */
  readonly landedFiles: number;
  /** The files that failed, and why (their last attempt). */
  readonly failedFiles: readonly FileFailure[];
  readonly fileCount?: number;
}

/** The failure receipt, `_failures/source=<id>/<execution>.json`. */
export interface FailureReceipt {
  readonly receiptVersion: 1;
  readonly status: 'failed' | 'cancelled' | 'timed-out' | 'superseded';
  readonly sourceId: string;
  readonly executionName: string;
  readonly error: string;
  readonly cause: string;
  readonly failedAt: string;
  readonly request?: ExportContext['request'];
  readonly statusUrlKnown: boolean;
  readonly exportRoot?: string;
  readonly resumable: boolean;
  /** Until when a resume can still read the server's files. */
  readonly resumableUntil?: string;
  /** How to resume, for a person reading the receipt. */
  readonly resume?: string;
  readonly files?: {
    readonly total: number;
    readonly landed: number;
    readonly landedKeys: readonly string[];
    /** Files without a verified result, and why their last attempt failed. */
    readonly failed: readonly FileFailure[];
  };
  readonly cleanup: { readonly actions: readonly string[]; readonly problems: readonly string[] };
}

const LEASE_POLL_MS = 2_000;

/**
 * Ends an export that will not succeed, in the one order that loses nothing
 * and contradicts nothing:
 *
 * 1. fence: the lock goes to `stopping`, so no download lands any more;
 * 2. wait for the downloads already running (their leases), so what the
 *    receipt lists is all that will ever land;
 * 3. abort open uploads (a resume starts unfinished files over);
 * 4. either keep the server job and the landed files (resumable: the links
 *    are still valid and the caller allows it) or DELETE the job and remove
 *    unpublished data;
 * 5. write the failure receipt, then release the lock (or mark it
 *    resumable), then announce.
 *
 * Each step is attempted even when an earlier one failed; the receipt says
 * what was done and what could not be.
 */
export async function endExport(runtime: Runtime, request: EndExportRequest): Promise<EndExportResult> {
  const { sourceId, executionName } = request;
  const actions: string[] = [];
  const problems: string[] = [];
  const attempt = async (what: string, action: () => Promise<unknown>) => {
    try {
      await action();
    } catch (error) {
      runtime.logger.error(`ending the export could not ${what}`, {
        sourceId,
        executionName,
        error: (error as Error).name,
        message: (error as Error).message,
      });
      problems.push(`${what} (${(error as Error).name}: ${oneLine((error as Error).message, 300)})`);
    }
  };
  const work = request.context?.workPrefix ?? workPrefixOf(runtime.prefix, sourceId, executionName);

  let lock: SourceLock | undefined;
  await attempt('read the source lock', async () => {
    lock = await readLock(runtime, sourceId);
  });
  const holdsLock = lock?.executionName === executionName;
  if (holdsLock) {
    await attempt('fence the downloads', () =>
      updateSourceLock(runtime, sourceId, executionName, {
        state: 'stopping',
        reason: request.outcome,
      }),
    );
  }
  if (request.waitForDownloads) {
    await attempt('wait for the running downloads', async () => {
      const waited = await waitForDownloads(runtime, work, request.waitBudgetMs ?? 10 * 60_000);
      if (waited.stillRunning > 0) {
        throw new Error(
          `${waited.stillRunning} download(s) still ran after ${Math.round(waited.ms / 1000)} s; they cannot land (the lock is fenced), but may leave an open upload`,
        );
      }
      if (waited.ms > 0) actions.push(`waited ${Math.round(waited.ms / 1000)} s for running downloads`);
    });
  }

  let job: JobRecord | undefined;
  await attempt('read the job record', async () => {
    job = await runtime.store.getJson<JobRecord>(jobRecordKey(work));
  });
  const context = request.context ?? job?.export;
  const statusUrl = request.statusUrl ?? job?.statusUrl;
  const exportRoot = request.exportRoot ?? job?.manifest?.exportRoot ?? job?.partialExportRoot;
  // A chunked export has a server job per chunk, on the chunk records.
  let chunkUrls: string[] = [];
  const chunkOf = new Map<string, number>();
  await attempt('read the chunk records', async () => {
    const records = await readChunkRecords(runtime, work);
    for (const record of records) if (record.statusUrl) chunkOf.set(record.statusUrl, record.index);
    chunkUrls = chunkStatusUrls(records);
  });
  const jobUrls = [...(statusUrl && !chunkUrls.includes(statusUrl) ? [statusUrl] : []), ...chunkUrls];
  const now = runtime.now();
  const linksExpireAt = job?.linksExpireAt;
  const resumable =
    request.allowResume &&
    request.outcome === 'failed' &&
    (holdsLock || lock === undefined) &&
    job?.manifest !== undefined &&
    linksExpireAt !== undefined &&
    Date.parse(linksExpireAt) > now.getTime();

  let landedKeys: string[] = [];
  const failedFiles: FileFailure[] = [];
  await attempt('count the landed files', async () => {
    landedKeys = await runtime.store.listKeys(resultsPrefix(work));
    const landed = new Set(landedKeys.map((key) => key.slice(resultsPrefix(work).length)));
    for (const key of await runtime.store.listKeys(fileFailuresPrefix(work))) {
      if (landed.has(key.slice(fileFailuresPrefix(work).length))) continue;
      const failure = await runtime.store.getJson<FileFailure>(key);
      if (failure) failedFiles.push(failure);
    }
  });

  if (exportRoot) {
    await attempt('abort open uploads', async () => {
      const aborted = await runtime.store.abortUploads(exportRoot);
      if (aborted > 0) actions.push(`aborted ${aborted} open upload(s)`);
    });
  }
  await attempt('remove checkpoints and leases', async () => {
    const scratch = [
      ...(await runtime.store.listKeys(checkpointsPrefix(work))),
      ...(await runtime.store.listKeys(inFlightPrefix(work))),
    ];
    for (const key of scratch) await runtime.store.delete(key);
  });

  if (!resumable) {
    if (jobUrls.length > 0 && request.jobDeletedBy) {
      actions.push(
        `left the server job${jobUrls.length > 1 ? `s (${jobUrls.length})` : ''} for ${request.jobDeletedBy} to DELETE before its kick-off`,
      );
    } else if (jobUrls.length > 0 && request.sealedToken) {
      for (const url of jobUrls) {
        const which = chunkUrls.includes(url)
          ? `the server job of chunk ${chunkOf.get(url)}`
          : 'the server job';
        await attempt(`DELETE ${which}`, async () => {
          const bearer: Bearer = {
            accessToken: await runtime.sealer.open(
              request.sealedToken!,
              sealContext(sourceId, request.tokenSealedFor ?? executionName),
            ),
            audience: await runtime.sources.get(sourceId),
          };
          const response = await runtime.fhir.send(
            { method: 'DELETE', url, headers: { Accept: 'application/json' } },
            bearer,
          );
          actions.push(`DELETE of ${which} answered ${response.status}`);
        });
      }
    } else if (jobUrls.length > 0) {
      problems.push(`could not DELETE the server job${jobUrls.length > 1 ? 's' : ''}: no access token`);
    }
    if (exportRoot) {
      // Never published, and no resume will: readers never saw them, nobody ever will.
      await attempt('remove unpublished data', async () => {
        const removed = await removePrefixForGood(
          runtime.s3,
          runtime.store.bucket,
          stagingPrefix(exportRoot),
          (prefix) => runtime.store.listKeys(prefix),
        );
        if (removed.objects > 0) actions.push(`removed ${removed.objects} unpublished data file(s)`);
      });
    }
  } else {
    actions.push(`kept the server job and ${landedKeys.length} landed file(s) for a resume`);
  }

  // On AWS a Verify File Batch that failed under serverFileErrors "fail" surfaces as the Map's
  // States.ExceedToleratedFailureThreshold: the stored triage says what the server reported.
  let serverFileErrors: string | undefined;
  if (request.failure.error !== 'ServerFileError' && (context?.serverFileErrors ?? 'fail') === 'fail') {
    await attempt('read the triage of the error[] files', async () => {
      const triage = await runtime.store.getJson<StoredTriage>(serverErrorTriageKey(work));
      if (triage && triage.failures > 0)
        serverFileErrors = `ServerFileError: ${serverFileErrorMessage(triage)}`;
    });
  }
  // The Map says only that files failed; the files say what.
  const cause =
    serverFileErrors !== undefined
      ? oneLine(`${request.failure.message}; ${serverFileErrors}`, 1000)
      : failedFiles.length > 0
        ? oneLine(
            `${request.failure.message}; ${failedFiles.length} file(s) did not land: ${failedFiles
              .slice(0, 3)
              .map((file) => `file ${file.index} (${file.kind} ${file.type}): ${file.error}: ${file.message}`)
              .join('; ')}${failedFiles.length > 3 ? '; …' : ''}`,
            1000,
          )
        : request.failure.message;
  let receiptKey: string | undefined;
  if (isSourceId(sourceId)) {
    const key = failureReceiptKey(runtime.prefix, sourceId, executionName);
    await attempt('write the failure receipt', async () => {
      const receipt: FailureReceipt = {
        receiptVersion: 1,
        status: request.outcome,
        sourceId,
        executionName,
        error: request.failure.error,
        cause,
        failedAt: now.toISOString(),
        ...(context?.request ? { request: context.request } : {}),
        statusUrlKnown: jobUrls.length > 0,
        ...(exportRoot ? { exportRoot } : {}),
        resumable,
        ...(resumable
          ? {
              resumableUntil: linksExpireAt,
              resume: `npm run export -- --resume ${executionName} (local), or redrive execution ${executionName} (AWS: console "Redrive", or aws stepfunctions redrive-execution), before ${linksExpireAt}`,
            }
          : {}),
        ...(job?.manifest
          ? {
              files: {
                total: job.manifest.fileCount,
                landed: landedKeys.length,
                landedKeys: landedKeys.map((key) => key.slice(work.length)),
                failed: failedFiles,
              },
            }
          : {}),
        cleanup: { actions, problems },
      };
      await runtime.store.putJson(key, receipt);
      receiptKey = key;
    });
  }

  if (holdsLock) {
    if (resumable) {
      await attempt('mark the lock resumable', async () => {
        await updateSourceLock(runtime, sourceId, executionName, {
          state: 'resumable',
          resumableUntil: linksExpireAt!,
          reason: request.failure.error,
        });
        actions.push(
          `kept the source lock until a resume or a later run (links valid until ${linksExpireAt})`,
        );
      });
    } else {
      await attempt('release the lock', async () => {
        if (await releaseSourceLock(runtime, sourceId, executionName))
          actions.push('released the source lock');
      });
    }
  }

  await attempt('emit the failure event', () =>
    runtime.events.emit('Bulk Export Failed', {
      sourceId,
      executionName,
      outcome: request.outcome,
      error: request.failure.error,
      cause,
      resumable,
      ...(resumable ? { resumableUntil: linksExpireAt } : {}),
      ...(receiptKey ? { failureReceiptKey: receiptKey } : {}),
    }),
  );
  await countExportFailure(runtime, {
    sourceId,
    executionName,
    error: request.failure.error,
    outcome: request.outcome,
    kickedOff: jobUrls.length > 0,
  });
  return {
    outcome: request.outcome,
    cause,
    resumable,
    ...(resumable ? { resumableUntil: linksExpireAt! } : {}),
    ...(receiptKey ? { failureReceiptKey: receiptKey } : {}),
    actions,
    problems,
    landedFiles: landedKeys.length,
    failedFiles,
    ...(job?.manifest ? { fileCount: job.manifest.fileCount } : {}),
  };
}

/**
 * Waits until no download lease is left, or every one left is past its
 * deadline (its invocation was killed: it cannot land anything).
 */
async function waitForDownloads(
  runtime: Runtime,
  work: string,
  budgetMs: number,
): Promise<{ ms: number; stillRunning: number }> {
  const started = runtime.now().getTime();
  for (;;) {
    const keys = await runtime.store.listKeys(inFlightPrefix(work));
    const now = runtime.now().getTime();
    let running = 0;
    for (const key of keys) {
      const lease = await runtime.store.getJson<DownloadLease>(key);
      if (lease && Date.parse(lease.deadline) > now) running += 1;
    }
    const ms = now - started;
    if (running === 0 || ms >= budgetMs)
      return { ms: running === 0 && ms < LEASE_POLL_MS ? 0 : ms, stillRunning: running };
    await runtime.sleep(LEASE_POLL_MS);
  }
}

/**
 * The holder of a lock is gone (its execution or process no longer runs):
 * what a run that takes the lock over does first. The superseded job's
 * DELETE needs an access token, which only the new run's own Kick Off has:
 * it DELETEs the job there, before its own kick-off (Epic allows one export
 * per client).
 */
export async function endDeadHolder(
  runtime: Runtime,
  sourceId: string,
  held: SourceLock,
  takenBy: string,
): Promise<EndExportResult & { readonly statusUrl?: string; readonly chunkStatusUrls?: string[] }> {
  const work = workPrefixOf(runtime.prefix, sourceId, held.executionName);
  const job = await runtime.store.getJson<JobRecord>(jobRecordKey(work));
  const chunkUrls = chunkStatusUrls(await readChunkRecords(runtime, work));
  const ended = await endExport(runtime, {
    sourceId,
    executionName: held.executionName,
    outcome: 'superseded',
    failure: {
      error: 'ExportSuperseded',
      message: `export ${held.executionName} was ${held.state === 'resumable' ? 'failed and resumable' : 'no longer running'} when ${takenBy} took its source lock over`,
    },
    allowResume: false,
    // A dead local process's downloads died with it; an AWS execution's Lambdas may outlive it.
    waitForDownloads: held.process === undefined,
    waitBudgetMs: 20_000,
    jobDeletedBy: takenBy,
  });
  return {
    ...ended,
    ...(job?.statusUrl ? { statusUrl: job.statusUrl } : {}),
    ...(chunkUrls.length > 0 ? { chunkStatusUrls: chunkUrls } : {}),
  };
}

/**
 * Prepare's lock: taken, or taken over from a dead holder after ending its
 * export (endDeadHolder). Returns the export it superseded, whose server job
 * this run's Kick Off DELETEs.
 */
export async function takeSourceLock(
  runtime: Runtime,
  claim: Parameters<typeof acquireSourceLock>[1],
): Promise<ExportContext['supersedes']> {
  let supersedes: ExportContext['supersedes'];
  await acquireSourceLock(runtime, claim, async (held) => {
    const ended = await endDeadHolder(runtime, claim.sourceId, held, claim.executionName);
    supersedes = {
      executionName: held.executionName,
      ...(ended.statusUrl ? { statusUrl: ended.statusUrl } : {}),
      ...(ended.chunkStatusUrls ? { chunkStatusUrls: ended.chunkStatusUrls } : {}),
    };
  });
  return supersedes;
}
