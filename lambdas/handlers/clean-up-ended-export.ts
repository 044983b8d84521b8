import { describeFailure } from '../core/failure.js';
import { oneLine } from '../core/operation-outcome.js';
import type { InvocationContext } from '../middleware.js';
import type { Runtime } from '../runtime.js';
import { isSourceId } from '../schema/source.js';
import { type EndExportResult, type EndOutcome, endExport } from '../services/export-lifecycle.js';
import { readLock } from '../services/source-lock.js';
import { awsTaskEntry } from './aws-entry.js';

/** From the export machine's "Step Functions Execution Status Change" event (clean-up-ended-export.asl.json). */
export interface EndedExecution {
  readonly executionName: string;
  /** The ended execution's ARN: the lock names the execution of the export that runs now. */
  readonly executionArn?: string | null;
  readonly status: 'ABORTED' | 'TIMED_OUT' | 'FAILED' | string;
  readonly error?: string | null;
  readonly cause?: string | null;
  readonly input?: {
    readonly sourceId?: unknown;
    /** An export's continuation: its lock and work area keep the export's first execution's name. */
    readonly continuation?: { readonly export?: { readonly executionName?: unknown } };
  } | null;
}

export interface CleanUpEndedExportEvent {
  readonly ended: EndedExecution;
  readonly sealedToken: string | null;
}

export interface CleanUpEndedExportResult {
  readonly action: 'ended' | 'nothing-to-do';
  readonly reason: string;
  readonly resumable?: boolean;
  readonly failureReceiptKey?: string;
}

const OUTCOMES: Record<string, EndOutcome> = {
  ABORTED: 'cancelled',
  TIMED_OUT: 'timed-out',
  FAILED: 'failed',
};

/**
 * The clean-up no Catch can run: after StopExecution (a cancel), the
 * execution's own timeout, or a failure the workflow leaves uncaught (the
 * retry pass: so that a redrive can run it again). Started by the execution
 * status change. An execution that still holds its source lock has not been
 * cleaned up: a cancel or a time-out ends it for good (DELETE the job,
 * release the lock); a failure keeps it resumable while the server's links
 * are valid.
 */
export function createCleanUpEndedExportHandler(runtime: Runtime) {
  return async (
    event: CleanUpEndedExportEvent,
    invocation?: InvocationContext,
  ): Promise<CleanUpEndedExportResult> => {
    const { ended } = event;
    const outcome = OUTCOMES[ended.status];
    const sourceId = typeof ended.input?.sourceId === 'string' ? ended.input.sourceId : undefined;
    // The lock answers whether there is anything to end: a source removed from the registry while it ran
    // still has its export ended. Only a valid id goes into a key.
    if (!outcome || !isSourceId(sourceId)) {
      return {
        action: 'nothing-to-do',
        reason: `status ${ended.status} of a run of source ${String(sourceId)}`,
      };
    }
    const continued = ended.input?.continuation?.export?.executionName;
    const exportName = typeof continued === 'string' ? continued : ended.executionName;
    const lock = await readLock(runtime, sourceId);
    const handedOn =
      ended.executionArn && lock?.executionArn !== undefined && lock.executionArn !== ended.executionArn;
    if (lock?.executionName !== exportName || handedOn) {
      // Its Catch cleaned up already, it never took the lock (invalid input, another run held it), or
      // it handed the export on to its continuation, which runs it now.
      return {
        action: 'nothing-to-do',
        reason: `execution ${ended.executionName} does not hold the lock of source ${sourceId}: it was cleaned up already, never took it, or handed it on`,
      };
    }
    const failure =
      outcome === 'failed'
        ? describeFailure({ Error: ended.error ?? 'States.Runtime', Cause: ended.cause ?? '' })
        : {
            error: outcome === 'cancelled' ? 'ExportCancelled' : 'States.Timeout',
            message:
              outcome === 'cancelled'
                ? `execution ${ended.executionName} was stopped${ended.cause ? `: ${oneLine(ended.cause, 300)}` : ''}`
                : `timed out: execution ${ended.executionName} ran past the state machine's timeout`,
          };
    const result: EndExportResult = await endExport(runtime, {
      sourceId,
      executionName: exportName,
      outcome,
      failure,
      allowResume: outcome === 'failed',
      sealedToken: event.sealedToken,
      // Mint Token For Clean-Up seals to the ended execution's own name.
      ...(exportName === ended.executionName ? {} : { tokenSealedFor: ended.executionName }),
      waitForDownloads: true,
      waitBudgetMs: Math.max(0, (invocation?.getRemainingTimeInMillis() ?? 60_000) - 60_000),
    });
    runtime.progress?.({
      kind: 'phase',
      phase: outcome === 'failed' ? (result.resumable ? 'failed, resumable' : 'failed') : outcome,
      detail: result.cause,
    });
    return {
      action: 'ended',
      reason: result.cause,
      resumable: result.resumable,
      ...(result.failureReceiptKey ? { failureReceiptKey: result.failureReceiptKey } : {}),
    };
  };
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('CleanUpEndedExport', createCleanUpEndedExportHandler);
