import { buildKickOffRequest, interpretKickOffResponse } from '../core/kickoff.js';
import { jobRecordKey } from '../core/layout.js';
import { DEFAULT_WAIT_POLICY, nextWaitSeconds } from '../core/retry-after.js';
import { AccessTokenRejectedError, ExportRequestRejectedError } from '../errors.js';
import { type Runtime, sealContext } from '../runtime.js';
import type { JobRecord } from '../services/export-lifecycle.js';
import type { ExportContext, KickOffState } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';

export interface KickOffEvent {
  readonly export: ExportContext;
  readonly sealedToken: string;
  readonly attempt: number;
  readonly forceTokenRefresh?: boolean;
}

export type { KickOffState };

/** Kick-off refusals (429/503) we wait out before giving up: with a 300 s ceiling, over an hour. */
export const MAX_KICK_OFF_ATTEMPTS = 15;

export function createKickOffHandler(runtime: Runtime) {
  return async (event: KickOffEvent): Promise<KickOffState> => {
    const context = event.export;
    const settings = await runtime.sources.get(context.sourceId);
    const policy = { ...DEFAULT_WAIT_POLICY, ceilingSeconds: settings.retryAfterCeilingSeconds };
    const spec = buildKickOffRequest(settings.fhirBaseUrl, settings.export, context.request);
    const accessToken = await runtime.sealer.open(
      event.sealedToken,
      sealContext(context.sourceId, context.executionName),
    );
    const attempt = event.attempt + 1;
    if (event.attempt === 0 && context.supersedes?.statusUrl) {
      await deleteSupersededJob(runtime, context, context.supersedes.statusUrl, accessToken);
    }

    let outcome: ReturnType<typeof interpretKickOffResponse>;
    try {
      const response = await runtime.fhir.send(spec, accessToken);
      outcome = interpretKickOffResponse(response, spec.url, settings.allowInsecureHttp, runtime.now());
    } catch (error) {
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
      // Whoever ends this export without its state (a StopExecution clean-up) finds the job here.
      const job: JobRecord = {
        sourceId: context.sourceId,
        executionName: context.executionName,
        export: context,
        statusUrl: outcome.statusUrl,
      };
      await runtime.store.putJson(jobRecordKey(context.workPrefix), job);
      runtime.progress?.({ kind: 'phase', phase: 'kicked-off' });
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
 * The server job of the dead export this one took the lock from: DELETEd
 * before this kick-off, since Epic refuses a second export per client while
 * one exists. Best effort: a job already gone or expired answers 404 or 410.
 */
async function deleteSupersededJob(
  runtime: Runtime,
  context: ExportContext,
  statusUrl: string,
  accessToken: string,
) {
  try {
    const response = await runtime.fhir.send(
      { method: 'DELETE', url: statusUrl, headers: { Accept: 'application/json' } },
      accessToken,
    );
    runtime.logger.info('DELETEd the server job of the export this one superseded', {
      sourceId: context.sourceId,
      supersededExecution: context.supersedes?.executionName,
      status: response.status,
    });
  } catch (error) {
    runtime.logger.warn('could not DELETE the server job of the export this one superseded', {
      sourceId: context.sourceId,
      supersededExecution: context.supersedes?.executionName,
      error: (error as Error).name,
    });
  }
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('KickOff', createKickOffHandler);
