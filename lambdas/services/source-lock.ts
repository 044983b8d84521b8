import { hostname } from 'node:os';
import { lockKey } from '../core/layout.js';
import { ExportAlreadyRunningError, ExportStoppedError } from '../errors.js';
import type { Runtime } from '../runtime.js';

/**
 * The per-source lock: one export of a source at a time (Epic and Oracle
 * Health allow one per client anyway). It covers the whole execution, its
 * downloads included, and names its holder so that a later run can tell a
 * live holder (respected) from a dead one (cleaned up and taken over): a lock
 * can never strand a source until some deadline.
 */
export interface SourceLock {
  readonly lockVersion?: 2;
  readonly executionName: string;
  /** The Step Functions execution ARN (a `states:local` ARN for a local run). */
  readonly executionArn?: string;
  /** A local run: the process that runs the execution, and its host. */
  readonly process?: { readonly pid: number; readonly host: string };
  readonly acquiredAt: string;
  /**
   * Only for a holder whose liveness cannot be checked (a local run on another
   * host): after this it is presumed dead.
   */
  readonly expiresAt: string;
  /**
   * `running`: downloads may land. `stopping`: the export is being ended;
   * nothing more may land (the fence downloads check). `resumable`: it failed
   * and keeps its server job and landed files until `resumableUntil`.
   * Absent in locks written before there were states: `running`.
   */
  readonly state?: 'running' | 'stopping' | 'resumable';
  readonly resumableUntil?: string;
  /** Why it stopped, once it is stopping or resumable. */
  readonly reason?: string;
}

export type HolderLiveness = 'alive' | 'dead' | 'unknown';

/**
 * Whether a lock's holder still runs: an AWS execution is asked with
 * DescribeExecution; a local run by its process (on this host). Unknown means
 * it cannot be told here; the lock's `expiresAt` then decides.
 */
export interface ExecutionLiveness {
  isRunning(executionArn: string): Promise<boolean | undefined>;
}

export const isLocalExecutionArn = (arn: string | undefined) => arn?.startsWith('arn:aws:states:local:');

export async function holderLiveness(runtime: Runtime, lock: SourceLock): Promise<HolderLiveness> {
  if (lock.process) {
    // A local run marks its lock running again when it resumes: resumable means nobody runs it.
    if (lock.state === 'resumable') return 'dead';
    if (lock.process.host !== hostname()) return 'unknown';
    return processIsAlive(lock.process.pid) ? 'alive' : 'dead';
  }
  if (lock.executionArn && !isLocalExecutionArn(lock.executionArn) && runtime.executions) {
    const running = await runtime.executions.isRunning(lock.executionArn);
    if (running === undefined) return 'unknown';
    return running ? 'alive' : 'dead';
  }
  return 'unknown';
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but is someone else's.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export const readLock = (runtime: Runtime, sourceId: string) =>
  runtime.store.getJson<SourceLock>(lockKey(runtime.prefix, sourceId));

export interface LockClaim {
  readonly sourceId: string;
  readonly executionName: string;
  readonly executionArn?: string;
  readonly now: Date;
  /** When a holder whose liveness cannot be checked is presumed dead. */
  readonly expiresAt: Date;
}

/**
 * Takes the lock for an execution. A lock held by another execution that is
 * alive (or that cannot be checked and has not expired) refuses; one held by
 * a dead holder is handed to `takeOver` (which ends that export: DELETE its
 * job, record its failure) and then taken. Returns the previous holder when
 * one was taken over.
 */
export async function acquireSourceLock(
  runtime: Runtime,
  claim: LockClaim,
  takeOver: (held: SourceLock) => Promise<void>,
): Promise<SourceLock | undefined> {
  const { sourceId, executionName } = claim;
  const key = lockKey(runtime.prefix, sourceId);
  const held = await runtime.store.getJson<SourceLock>(key);
  let previous: SourceLock | undefined;
  if (held && held.executionName !== executionName) {
    const liveness = await holderLiveness(runtime, held);
    const expired = Date.parse(held.expiresAt) <= claim.now.getTime();
    if (liveness === 'alive' || (liveness === 'unknown' && !expired)) {
      const hint =
        liveness === 'alive'
          ? 'it is still running; wait for it, or cancel it with `npm run cancel -- --source-id ' +
            `${sourceId}\` (AWS: StopExecution)`
          : `its holder cannot be checked from here; it is presumed dead after ${held.expiresAt}, or cancel it with \`npm run cancel -- --source-id ${sourceId}\``;
      throw new ExportAlreadyRunningError(
        `another export of source ${sourceId} is ${held.state === 'resumable' ? 'being resumed' : 'running'} (execution ${held.executionName}, since ${held.acquiredAt}); this one was not started: ${hint}`,
      );
    }
    runtime.logger.warn('taking over the source lock of an export that is no longer running', {
      sourceId,
      previousExecution: held.executionName,
      previousState: held.state ?? 'running',
      liveness,
    });
    await takeOver(held);
    await runtime.store.delete(key);
    previous = held;
  }
  const lock: SourceLock = {
    lockVersion: 2,
    executionName,
    ...(claim.executionArn ? { executionArn: claim.executionArn } : {}),
    ...(runtime.localProcess ? { process: runtime.localProcess } : {}),
    acquiredAt: claim.now.toISOString(),
    expiresAt: claim.expiresAt.toISOString(),
    state: 'running',
  };
  try {
    await runtime.store.putJson(key, lock, { ifNoneMatch: held?.executionName !== executionName });
  } catch (error) {
    throw new ExportAlreadyRunningError(`another export of source ${sourceId} took the lock first`, {
      cause: error,
    });
  }
  // Read back: a store without conditional writes (the embedded S3) still tells us who won.
  const winner = await runtime.store.getJson<SourceLock>(key);
  if (winner?.executionName !== executionName) {
    throw new ExportAlreadyRunningError(
      `another export of source ${sourceId} took the lock first (execution ${winner?.executionName ?? 'unknown'})`,
    );
  }
  return previous;
}

/** Rewrites this execution's lock (state, holder process); false when it is not this execution's. */
export async function updateSourceLock(
  runtime: Runtime,
  sourceId: string,
  executionName: string,
  change: Partial<Pick<SourceLock, 'state' | 'resumableUntil' | 'reason' | 'process'>>,
): Promise<boolean> {
  const key = lockKey(runtime.prefix, sourceId);
  const held = await runtime.store.getJson<SourceLock>(key);
  if (held?.executionName !== executionName) return false;
  const next: Record<string, unknown> = { ...held, ...change };
  if (change.state === 'running') {
    delete next.resumableUntil;
    delete next.reason;
  }
  await runtime.store.putJson(key, next);
  return true;
}

export async function releaseSourceLock(
  runtime: Runtime,
  sourceId: string,
  executionName: string,
): Promise<boolean> {
  const key = lockKey(runtime.prefix, sourceId);
  const held = await runtime.store.getJson<SourceLock>(key);
  if (held?.executionName !== executionName) return false;
  await runtime.store.delete(key);
  return true;
}

/**
 * The fence every download checks before it starts and before its object
 * lands: the export must still hold its lock and not be stopping. A download
 * that finds otherwise stops without landing anything.
 */
export async function assertExportMayLand(runtime: Runtime, sourceId: string, executionName: string) {
  const held = await readLock(runtime, sourceId);
  if (held?.executionName !== executionName) {
    throw new ExportStoppedError(
      `export ${executionName} of source ${sourceId} no longer holds the source lock${held ? ` (execution ${held.executionName} does)` : ''}; nothing more of it may land`,
    );
  }
  if (held.state === 'stopping') {
    throw new ExportStoppedError(
      `export ${executionName} of source ${sourceId} is being stopped (${held.reason ?? 'no reason given'}); nothing more of it may land`,
    );
  }
}

/**
 * An export continuing in a new execution (history budget): the lock passes
 * from the execution that handed over to the one that takes over, unless the
 * export was stopped or taken over meanwhile. Idempotent: a retried take-over
 * finds the lock already its own.
 */
export async function handOverSourceLock(
  runtime: Runtime,
  handover: {
    readonly sourceId: string;
    readonly executionName: string;
    readonly fromExecutionArn: string;
    readonly toExecutionArn: string;
  },
): Promise<SourceLock> {
  const { sourceId, executionName, fromExecutionArn, toExecutionArn } = handover;
  const key = lockKey(runtime.prefix, sourceId);
  const held = await runtime.store.getJson<SourceLock>(key);
  const refuse = (why: string) =>
    new ExportStoppedError(
      `export ${executionName} of source ${sourceId} cannot continue in this execution: ${why}; nothing was polled or landed`,
    );
  if (held?.executionName !== executionName) {
    throw refuse(
      held
        ? `execution ${held.executionName} holds the source lock now`
        : 'it no longer holds the source lock (cancelled, given up or taken over)',
    );
  }
  if (held.state === 'stopping') throw refuse(`it is being stopped (${held.reason ?? 'no reason given'})`);
  if (held.executionArn === toExecutionArn) return held;
  if (held.executionArn !== undefined && held.executionArn !== fromExecutionArn) {
    throw refuse(`the lock names execution ${held.executionArn}, not the one that handed over`);
  }
  const next: SourceLock = {
    ...held,
    executionArn: toExecutionArn,
    ...(runtime.localProcess ? { process: runtime.localProcess } : {}),
  };
  await runtime.store.putJson(key, next);
  // Read back, as acquireSourceLock does: the store has no compare-and-swap, so a cancel that fences
  // the lock in the milliseconds between our read and write is lost (as in updateSourceLock).
  const now = await runtime.store.getJson<SourceLock>(key);
  if (now?.executionArn !== toExecutionArn || now.state === 'stopping') {
    throw refuse('the lock changed while it was handed over');
  }
  return now;
}
