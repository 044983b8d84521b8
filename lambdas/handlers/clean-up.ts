import { failureReceiptKey } from '../core/layout.js';
import { oneLine } from '../core/operation-outcome.js';
import { type Runtime, sealContext } from '../runtime.js';
import type { ExportContext, PollState, SealedToken } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';
import type { KickOffState } from './kick-off.js';
import { releaseLock } from './prepare-export.js';

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
 * Runs on every failure: aborts open multipart uploads, DELETEs the server
 * job, records a failure receipt, releases the lock and announces the
 * failure. Each step is attempted even when an earlier one fails, and no
 * completion marker is ever written here.
 */
export function createCleanUpHandler(runtime: Runtime) {
  return async (event: CleanUpEvent): Promise<CleanUpResult> => {
    const { state } = event;
    const failure = describeFailure(state.failure);
    const context = state.export;
    const sourceId =
      context?.sourceId ??
      (typeof event.input.sourceId === 'string' ? event.input.sourceId.slice(0, 64) : undefined);
    const actions: string[] = [];
    const problems: string[] = [];

    // A failure before Prepare finished (invalid input, lock held by another run) owns nothing to clean.
    if (context) {
      const exportRoot = state.poll?.manifest?.exportRoot;
      if (exportRoot) {
        await attempt(problems, 'abort uploads', async () => {
          const aborted = await runtime.store.abortUploads(exportRoot);
          actions.push(`aborted ${aborted} open upload(s)`);
        });
      }
      const statusUrl = state.kickoff?.statusUrl;
      if (statusUrl && state.auth?.sealedToken) {
        await attempt(problems, 'DELETE the server job', async () => {
          const token = await runtime.sealer.open(
            state.auth!.sealedToken,
            sealContext(context.sourceId, context.executionName),
          );
          const response = await runtime.fhir.send(
            { method: 'DELETE', url: statusUrl, headers: { Accept: 'application/json' } },
            token,
          );
          actions.push(`DELETE of the server job answered ${response.status}`);
        });
      } else if (statusUrl) {
        problems.push('could not DELETE the server job: no access token');
      }
      await attempt(problems, 'release the lock', async () => {
        if (await releaseLock(runtime, context.sourceId, context.executionName))
          actions.push('released the source lock');
      });
    }

    let receiptKey: string | undefined;
    if (sourceId && /^[a-z0-9][a-z0-9-]{0,62}$/.test(sourceId)) {
      const key = failureReceiptKey(runtime.prefix, sourceId, event.executionName);
      await attempt(problems, 'write the failure receipt', async () => {
        await runtime.store.putJson(key, {
          receiptVersion: 1,
          status: 'failed',
          sourceId,
          executionName: event.executionName,
          error: failure.error,
          cause: failure.message,
          failedAt: runtime.now().toISOString(),
          request: context?.request,
          statusUrlKnown: Boolean(state.kickoff?.statusUrl),
          exportRoot: state.poll?.manifest?.exportRoot,
          cleanup: { actions, problems },
        });
        receiptKey = key;
      });
    }
    await attempt(problems, 'emit the failure event', () =>
      runtime.events.emit('Bulk Export Failed', {
        sourceId,
        executionName: event.executionName,
        error: failure.error,
        cause: failure.message,
        ...(receiptKey ? { failureReceiptKey: receiptKey } : {}),
      }),
    );
    runtime.progress?.({ kind: 'phase', phase: 'failed', detail: failure.message });

    const cleanup = [...actions, ...problems.map((problem) => `FAILED to ${problem}`)].join('; ');
    return {
      error: failure.error,
      cause: oneLine(
        `${failure.message}${sourceId ? ` (source ${sourceId})` : ''}.${cleanup ? ` Cleanup: ${cleanup}.` : ''}`,
        1000,
      ),
      ...(receiptKey ? { failureReceiptKey: receiptKey } : {}),
    };
  };

  async function attempt(problems: string[], what: string, action: () => Promise<unknown>) {
    try {
      await action();
    } catch (error) {
      runtime.logger.error(`cleanup could not ${what}`, {
        error: (error as Error).name,
        message: (error as Error).message,
      });
      // The name alone ("StorageError") does not say what to fix; the message names the object and S3's code.
      problems.push(`${what} (${(error as Error).name}: ${oneLine((error as Error).message, 300)})`);
    }
  }
}

/**
 * The Catch's `Cause` is the Lambda error as JSON (`errorType`, `errorMessage`)
 * on AWS, and may be a plain message elsewhere.
 */
export function describeFailure(failure: { Error?: string; Cause?: string } | undefined): {
  error: string;
  message: string;
} {
  const error = failure?.Error ?? 'UnknownError';
  const cause = failure?.Cause ?? '';
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: unknown; errorType?: unknown };
    if (typeof parsed.errorMessage === 'string')
      return { error, message: oneLine(`${error}: ${parsed.errorMessage}`, 800) };
  } catch {
    // not JSON: a plain message
  }
  return { error, message: oneLine(cause ? `${error}: ${cause}` : error, 800) };
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('CleanUp', createCleanUpHandler);
