import { describeFailure } from '../core/failure.js';
import { oneLine } from '../core/operation-outcome.js';
import type { InvocationContext } from '../middleware.js';
import { countExportFailure } from '../observability/export-outcomes.js';
import type { Runtime } from '../runtime.js';
import { isSourceId } from '../schema/source.js';
import { type EndExportResult, endExport } from '../services/export-lifecycle.js';
import type { ExportContext, KickOffState, PollState, SealedToken } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';

/** Whatever part of the state existed when the failure was caught. */
export interface CleanUpEvent {
  readonly executionName: string;
  readonly input: { readonly sourceId?: unknown };
  readonly state: {
    readonly export?: ExportContext;
    readonly auth?: SealedToken;
    readonly kickoff?: KickOffState;
    readonly poll?: PollState;
    readonly failure?: { readonly Error?: string; readonly Cause?: string };
  };
}

export interface CleanUpResult {
  /** The failing error's name: the Fail state's Error. */
  readonly error: string;
  /** What went wrong and what cleanup did, for a person: the Fail state's Cause. */
  readonly cause: string;
  readonly failureReceiptKey?: string;
}

/**
 * Runs on every failure the workflow catches (kick-off refused, polling gave
 * up, verification failed): ends the export for good with endExport (fence
 * the downloads, wait for running ones, abort uploads, DELETE the server job,
 * failure receipt, release the lock, failure event). Never writes a marker. A
 * failure while downloading is not caught here: it leaves the export
 * resumable (see clean-up-ended-export.ts).
 */
export function createCleanUpHandler(runtime: Runtime) {
  return async (event: CleanUpEvent, invocation?: InvocationContext): Promise<CleanUpResult> => {
    const { state } = event;
    const failure = describeFailure(state.failure);
    const context = state.export;
    const sourceId =
      context?.sourceId ??
      (typeof event.input.sourceId === 'string' ? event.input.sourceId.slice(0, 64) : undefined);

    let ended: EndExportResult | undefined;
    // Before Prepare finished (invalid input, lock held by another run) the export owns nothing
    // (endExport touches only what this execution holds), but the failure is still recorded.
    if (isSourceId(sourceId)) {
      ended = await endExport(runtime, {
        sourceId,
        executionName: event.executionName,
        outcome: 'failed',
        failure,
        allowResume: false,
        sealedToken: state.auth?.sealedToken ?? null,
        waitForDownloads: true,
        waitBudgetMs: Math.max(0, (invocation?.getRemainingTimeInMillis() ?? 60_000) - 30_000),
        ...(context ? { context } : {}),
        ...(state.kickoff?.statusUrl ? { statusUrl: state.kickoff.statusUrl } : {}),
        ...(state.poll?.manifest?.exportRoot ? { exportRoot: state.poll.manifest.exportRoot } : {}),
      });
    } else {
      await runtime.events
        .emit('Bulk Export Failed', {
          sourceId,
          executionName: event.executionName,
          outcome: 'failed',
          error: failure.error,
          cause: failure.message,
          resumable: false,
        })
        .catch((error: unknown) =>
          runtime.logger.error('could not emit the failure event', { error: (error as Error).name }),
        );
      await countExportFailure(runtime, {
        sourceId,
        executionName: event.executionName,
        error: failure.error,
      });
    }
    runtime.progress?.({ kind: 'phase', phase: 'failed', detail: failure.message });

    const cleanup = ended
      ? [...ended.actions, ...ended.problems.map((problem) => `FAILED to ${problem}`)].join('; ')
      : '';
    return {
      error: failure.error,
      cause: oneLine(
        `${failure.message}${sourceId ? ` (source ${sourceId})` : ''}.${cleanup ? ` Cleanup: ${cleanup}.` : ''}`,
        1000,
      ),
      ...(ended?.failureReceiptKey ? { failureReceiptKey: ended.failureReceiptKey } : {}),
    };
  };
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('CleanUp', createCleanUpHandler);
