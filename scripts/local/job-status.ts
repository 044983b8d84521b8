/**
 * What `npm run status` reads and prints (scripts/status.ts is the command):
 * the state the pipeline keeps in the bucket, per source, read only.
 */
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import {
  DescribeExecutionCommand,
  ExecutionDoesNotExist,
  ListExecutionsCommand,
  type SFNClient,
} from '@aws-sdk/client-sfn';
import type { JsonStore } from '../../lambdas/adapters/s3-store.js';
import {
  completionMarkerKey,
  jobRecordKey,
  lockKey,
  receiptKey,
  registryPrefix,
  resultsPrefix,
  watermarkKey,
  workPrefix,
} from '../../lambdas/core/layout.js';
import type { Receipt } from '../../lambdas/core/receipt.js';
import type { Runtime } from '../../lambdas/runtime.js';
import { isSourceId } from '../../lambdas/schema/source.js';
import type { FailureReceipt, JobRecord } from '../../lambdas/services/export-lifecycle.js';
import { type HolderLiveness, holderLiveness, type SourceLock } from '../../lambdas/services/source-lock.js';
import type { Watermark } from '../../lambdas/services/watermark.js';
import { formatBytes, formatCount, formatSeconds } from './progress.js';

/** How many export folders, newest first, are searched for the last completion marker. */
const SUCCESS_SEARCH_DEPTH = 20;

export type Phase =
  | 'kicking off'
  | 'waiting for the server'
  | 'exporting chunks'
  | 'downloading'
  | 'finalizing'
  | 'stopping'
  | 'failed, resumable';

export interface RunningExport {
  readonly executionName: string;
  readonly phase: Phase;
  readonly startedAt: string;
  readonly ageSeconds: number;
  readonly serverProgress?: string;
  readonly lastPollAt?: string;
  readonly files?: { readonly landed: number; readonly total: number };
  readonly chunks?: { readonly done: number; readonly total: number };
  /** The chunk whose job was polled last (a chunked export): the server progress is that job's. */
  readonly lastPolledChunk?: number;
  /** The executions the export continued in (history budget), after its first; the last runs it now. */
  readonly continuedIn?: readonly string[];
  readonly lock: {
    readonly holder: string;
    readonly state: NonNullable<SourceLock['state']>;
    readonly liveness: HolderLiveness;
    readonly acquiredAt: string;
    readonly resumableUntil?: string;
    readonly reason?: string;
  };
}

export interface SourceStatus {
  readonly sourceId: string;
  readonly registered: boolean;
  readonly running?: RunningExport;
  /** RUNNING executions of the state machine for this source (with --state-machine-arn). */
  readonly executions?: readonly string[];
  readonly lastSuccess?: {
    readonly executionName: string;
    readonly at: string;
    readonly transactionTime: string;
    readonly resources: number;
    readonly files: number;
    readonly bytes: number;
    readonly receiptKey: string;
  };
  readonly watermark?: {
    readonly transactionTime: string;
    readonly executionName: string;
    readonly updatedAt: string;
  };
  readonly lastFailure?: {
    readonly executionName: string;
    readonly at: string;
    readonly outcome: FailureReceipt['status'];
    readonly error: string;
    readonly cause: string;
    readonly resumable: boolean;
    readonly resumableUntil?: string;
    readonly receiptKey: string;
  };
}

export interface StateReader {
  readonly s3: S3Client;
  readonly store: JsonStore;
  readonly bucket: string;
  /** Empty, or ending in `/`. */
  readonly prefix: string;
  readonly now: Date;
  readonly sfn?: SFNClient;
}

export const normalizePrefix = (prefix: string) =>
  prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;

/** One level of "folders" under a prefix, and the objects at that level with their times. */
async function listLevel(state: StateReader, prefix: string) {
  const folders: string[] = [];
  const objects: { key: string; lastModified: number }[] = [];
  let token: string | undefined;
  do {
    const page = await state.s3.send(
      new ListObjectsV2Command({
        Bucket: state.bucket,
        Prefix: prefix,
        Delimiter: '/',
        ...(token ? { ContinuationToken: token } : {}),
      }),
    );
    for (const folder of page.CommonPrefixes ?? []) if (folder.Prefix) folders.push(folder.Prefix);
    for (const object of page.Contents ?? []) {
      if (object.Key) objects.push({ key: object.Key, lastModified: object.LastModified?.getTime() ?? 0 });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return { folders, objects };
}

/** `…/source=<id>/` → id, when it is one. */
const sourceOfFolder = (folder: string) => {
  const id = /source=([^/]+)\/$/.exec(folder)?.[1];
  return isSourceId(id) ? id : undefined;
};

async function registeredSources(state: StateReader): Promise<Set<string>> {
  const { objects } = await listLevel(state, registryPrefix(state.prefix));
  return new Set(
    objects.map(({ key }) => /([^/]+)\.json$/.exec(key)?.[1]).filter((id): id is string => isSourceId(id)),
  );
}

/** Sources with a lock or watermark, an export folder, or a failure receipt, registered or not. */
async function sourcesWithState(state: StateReader): Promise<Set<string>> {
  const found = new Set<string>();
  for (const prefix of [state.prefix, `${state.prefix}_state/`, `${state.prefix}_failures/`]) {
    for (const folder of (await listLevel(state, prefix)).folders) {
      const id = sourceOfFolder(folder);
      if (id) found.add(id);
    }
  }
  return found;
}

async function sourceStatus(
  state: StateReader,
  sourceId: string,
  registered: boolean,
  executions: readonly string[] | undefined,
): Promise<SourceStatus> {
  const [running, lastSuccess, watermark, lastFailure] = await Promise.all([
    runningExport(state, sourceId),
    lastSuccessOf(state, sourceId),
    state.store.getJson<Watermark>(watermarkKey(state.prefix, sourceId)),
    lastFailureOf(state, sourceId),
  ]);
  return {
    sourceId,
    registered,
    ...(running ? { running } : {}),
    ...(executions ? { executions } : {}),
    ...(lastSuccess ? { lastSuccess } : {}),
    ...(watermark
      ? {
          watermark: {
            transactionTime: watermark.transactionTime,
            executionName: watermark.executionName,
            updatedAt: watermark.updatedAt,
          },
        }
      : {}),
    ...(lastFailure ? { lastFailure } : {}),
  };
}

async function runningExport(state: StateReader, sourceId: string): Promise<RunningExport | undefined> {
  const lock = await state.store.getJson<SourceLock>(lockKey(state.prefix, sourceId));
  if (!lock) return undefined;
  const work = workPrefix(state.prefix, sourceId, lock.executionName);
  const job = await state.store.getJson<JobRecord>(jobRecordKey(work));
  const landed = job?.manifest ? (await state.store.listKeys(resultsPrefix(work))).length : 0;
  const startedAt = job?.export?.startedAt ?? lock.acquiredAt;
  const lockState = lock.state ?? 'running';
  // holderLiveness asks only `executions`: DescribeExecution here, with --state-machine-arn.
  const liveness = await holderLiveness(
    (state.sfn ? { executions: executionLiveness(state.sfn) } : {}) as Runtime,
    lock,
  );
  return {
    executionName: lock.executionName,
    phase: phaseOf(lockState, job, landed),
    startedAt,
    ageSeconds: Math.max(0, Math.round((state.now.getTime() - Date.parse(startedAt)) / 1000)),
    ...(job?.lastPoll?.progress ? { serverProgress: job.lastPoll.progress } : {}),
    ...(job?.lastPoll ? { lastPollAt: job.lastPoll.at } : {}),
    ...(job?.lastPoll?.chunk === undefined ? {} : { lastPolledChunk: job.lastPoll.chunk }),
    ...(job?.manifest ? { files: { landed, total: job.manifest.fileCount } } : {}),
    ...(job?.chunks ? { chunks: { done: job.chunks.done, total: job.chunks.total } } : {}),
    ...(job?.executions?.length
      ? { continuedIn: job.executions.map((execution) => execution.executionName) }
      : {}),
    lock: {
      holder: lock.process
        ? `pid ${lock.process.pid}@${lock.process.host}`
        : (lock.executionArn ?? `execution ${lock.executionName}`),
      state: lockState,
      liveness,
      acquiredAt: lock.acquiredAt,
      ...(lock.resumableUntil ? { resumableUntil: lock.resumableUntil } : {}),
      ...(lock.reason ? { reason: lock.reason } : {}),
    },
  };
}

/** How far the export got, from what it has written: lock state, then status URL, manifest, landed files. */
export function phaseOf(
  lockState: NonNullable<SourceLock['state']>,
  job: JobRecord | undefined,
  landed: number,
): Phase {
  if (lockState === 'stopping') return 'stopping';
  if (lockState === 'resumable') return 'failed, resumable';
  // A chunked export has a job per chunk (on the chunk records), none of its own.
  if (job?.chunks && !job.manifest) return 'exporting chunks';
  if (!job?.statusUrl && !job?.manifest) return 'kicking off';
  if (!job.manifest) return 'waiting for the server';
  return landed < job.manifest.fileCount ? 'downloading' : 'finalizing';
}

/**
 * The newest export folder with a completion marker. Folders are named by
 * transactionTime (UTC, sortable), so newest first is reverse key order; a
 * folder without a marker is an export still landing, or one that failed.
 */
async function lastSuccessOf(state: StateReader, sourceId: string): Promise<SourceStatus['lastSuccess']> {
  const { folders } = await listLevel(state, `${state.prefix}source=${sourceId}/`);
  const exports = folders
    .filter((folder) => /\/export=[^/]+\/$/.test(folder))
    .sort()
    .reverse();
  for (const root of exports.slice(0, SUCCESS_SEARCH_DEPTH)) {
    if (!(await state.store.head(completionMarkerKey(root)))) continue;
    const receipt = await state.store.getJson<Receipt>(receiptKey(root));
    if (!receipt) continue;
    return {
      executionName: receipt.executionName,
      at: receipt.completedAt ?? receipt.finishedAt,
      transactionTime: receipt.transactionTime,
      resources: receipt.totals.resources,
      files: receipt.totals.files,
      bytes: receipt.totals.bytes,
      receiptKey: receiptKey(root),
    };
  }
  return undefined;
}

/** The newest failure receipt, by when it was written. */
async function lastFailureOf(state: StateReader, sourceId: string): Promise<SourceStatus['lastFailure']> {
  const { objects } = await listLevel(state, `${state.prefix}_failures/source=${sourceId}/`);
  const newest = objects
    .filter(({ key }) => key.endsWith('.json'))
    .sort((a, b) => b.lastModified - a.lastModified)[0];
  if (!newest) return undefined;
  const receipt = await state.store.getJson<FailureReceipt>(newest.key);
  if (!receipt) return undefined;
  return {
    executionName: receipt.executionName,
    at: receipt.failedAt,
    outcome: receipt.status,
    error: receipt.error,
    cause: receipt.cause,
    resumable: receipt.resumable,
    ...(receipt.resumableUntil ? { resumableUntil: receipt.resumableUntil } : {}),
    receiptKey: newest.key,
  };
}

function executionLiveness(sfn: SFNClient): NonNullable<Runtime['executions']> {
  return {
    async isRunning(executionArn) {
      try {
        const described = await sfn.send(new DescribeExecutionCommand({ executionArn }));
        return described.status === 'RUNNING';
      } catch (error) {
        if (error instanceof ExecutionDoesNotExist) return false;
        return undefined;
      }
    },
  };
}

/** The state machine's RUNNING executions, by the source their input names. */
export async function runningExecutions(
  sfn: SFNClient,
  stateMachineArn: string,
): Promise<Map<string, string[]>> {
  const bySource = new Map<string, string[]>();
  let nextToken: string | undefined;
  do {
    const page = await sfn.send(
      new ListExecutionsCommand({
        stateMachineArn,
        statusFilter: 'RUNNING',
        ...(nextToken ? { nextToken } : {}),
      }),
    );
    for (const execution of page.executions ?? []) {
      if (!execution.executionArn) continue;
      const described = await sfn.send(
        new DescribeExecutionCommand({ executionArn: execution.executionArn }),
      );
      let sourceId: unknown;
      try {
        sourceId = (JSON.parse(described.input ?? '{}') as { sourceId?: unknown }).sourceId;
      } catch {
        sourceId = undefined;
      }
      const key = isSourceId(sourceId) ? sourceId : 'unknown';
      bySource.set(key, [...(bySource.get(key) ?? []), execution.executionArn]);
    }
    nextToken = page.nextToken;
  } while (nextToken);
  return bySource;
}

const since = (at: string, now: number) =>
  `${formatSeconds(Math.max(0, Math.round((now - Date.parse(at)) / 1000)))} ago`;

export function render(
  where: string,
  statuses: readonly SourceStatus[],
  only: string | undefined,
  now: number = Date.now(),
): string {
  const lines = [`State in ${where}`];
  if (statuses.length === 0)
    lines.push('', 'No sources: nothing is registered, locked, exported or failed here.');
  for (const status of statuses) {
    lines.push('', `Source ${status.sourceId}${status.registered ? '' : ' (not registered)'}`);
    const { running } = status;
    if (running) {
      const files = running.files
        ? `${running.files.landed} of ${running.files.total} files landed`
        : 'files: —';
      const chunks = running.chunks
        ? `chunks: ${running.chunks.done} of ${running.chunks.total}`
        : 'chunks: —';
      lines.push(
        `  Running:       ${running.executionName}: ${running.phase}, age ${formatSeconds(running.ageSeconds)} (started ${running.startedAt})`,
        `                 ${files}; ${chunks}`,
        `                 server progress: ${running.serverProgress ? JSON.stringify(running.serverProgress) : '—'}${running.lastPollAt ? ` (${running.lastPolledChunk === undefined ? '' : `chunk ${running.lastPolledChunk}, `}polled ${since(running.lastPollAt, now)})` : ''}`,
        ...(running.continuedIn
          ? [
              `                 continued in: ${running.continuedIn.join(', ')} (each took over when the one before spent its history budget)`,
            ]
          : []),
        `                 lock: ${running.lock.holder}, ${running.lock.liveness}, ${running.lock.state} since ${running.lock.acquiredAt}${running.lock.resumableUntil ? `, resumable until ${running.lock.resumableUntil}` : ''}${running.lock.reason ? ` (${running.lock.reason})` : ''}`,
      );
    } else {
      lines.push('  Running:       none');
    }
    if (status.executions) {
      lines.push(
        `  Executions:    ${status.executions.length > 0 ? status.executions.join(', ') : 'none RUNNING'}`,
      );
    }
    const success = status.lastSuccess;
    lines.push(
      success
        ? `  Last success:  ${success.at} (${since(success.at, now)}), ${success.executionName}: ${formatCount(success.resources)} resources in ${success.files} files, ${formatBytes(success.bytes)}; transactionTime ${success.transactionTime}`
        : '  Last success:  none',
      status.watermark
        ? `  Watermark:     ${status.watermark.transactionTime} (next since=auto; set by ${status.watermark.executionName} at ${status.watermark.updatedAt})`
        : '  Watermark:     none (the next since=auto export is a full one)',
    );
    const failure = status.lastFailure;
    if (failure) {
      const resumable = failure.resumable
        ? `resumable until ${failure.resumableUntil ?? 'unknown'}${failure.resumableUntil && Date.parse(failure.resumableUntil) <= now ? ' (expired)' : ''}`
        : 'not resumable';
      lines.push(
        `  Last failure:  ${failure.at} (${since(failure.at, now)}), ${failure.executionName} ${failure.outcome}: ${failure.cause.startsWith(`${failure.error}:`) ? failure.cause : `${failure.error}: ${failure.cause}`}`,
        `                 ${resumable}`,
      );
    } else {
      lines.push('  Last failure:  none');
    }
  }
  if (
    only &&
    statuses.every(
      (status) =>
        !status.registered &&
        !status.running &&
        !status.lastSuccess &&
        !status.lastFailure &&
        !status.watermark,
    )
  ) {
    lines.push(
      '',
      `Nothing is known of source ${only} here: not registered, no lock, no export, no failure receipt.`,
    );
  }
  return lines.join('\n');
}

/**
 * Every source's status (registered, or with a lock, an export or a failure
 * receipt; or only `only`), and with `sfn` the RUNNING executions of the
 * state machine per source.
 */
export async function readStatuses(
  state: StateReader,
  options: { readonly only?: string; readonly stateMachineArn?: string },
): Promise<SourceStatus[]> {
  const { only, stateMachineArn } = options;
  const executions =
    state.sfn && stateMachineArn ? await runningExecutions(state.sfn, stateMachineArn) : undefined;
  const registered = await registeredSources(state);
  const sourceIds = only
    ? [only]
    : [...new Set([...registered, ...(await sourcesWithState(state)), ...(executions?.keys() ?? [])])].sort();
  const statuses: SourceStatus[] = [];
  for (const sourceId of sourceIds) {
    statuses.push(await sourceStatus(state, sourceId, registered.has(sourceId), executions?.get(sourceId)));
  }
  return statuses;
}
