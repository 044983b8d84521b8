import { AccessTokenRejectedError, ExportJobGoneError, ExportRequestRejectedError } from '../errors.js';
import type { HttpResponseView } from './kickoff.js';
import { oneLine, summarizeOperationOutcome } from './operation-outcome.js';
import { parseRetryAfter } from './retry-after.js';

export type StatusOutcome =
  | {
      readonly outcome: 'in-progress';
      readonly progress?: string;
      readonly retryAfterSeconds?: number;
      /** A JSON object body: with allowPartialManifests, the files ready so far (IG 2.0). */
      readonly partialManifestBody?: unknown;
    }
  | { readonly outcome: 'complete'; readonly manifestBody: unknown; readonly expires?: string }
  | { readonly outcome: 'too-fast'; readonly retryAfterSeconds?: number; readonly reason: string }
  | { readonly outcome: 'transient'; readonly retryAfterSeconds?: number; readonly reason: string };

/**
 * Interprets a status response (IG "Bulk Data Status Request"): 202 running,
 * 200 complete, 429 polling too fast, 5xx or an OperationOutcome coded
 * `transient` worth retrying, 404/410 the job is gone, anything else a failed
 * job. A malformed error body never crashes it; a 200 whose manifest is not
 * JSON is a failed export (ExportRequestRejectedError), said plainly.
 */
export function interpretStatusResponse(response: HttpResponseView, now: Date): StatusOutcome {
  const { status } = response;
  const retryAfterSeconds = parseRetryAfter(response.headers['retry-after'], now);
  const retry = retryAfterSeconds === undefined ? {} : { retryAfterSeconds };
  if (status === 202) {
    const progress = oneLine(response.headers['x-progress'] ?? '', 100);
    const partial = jsonObjectOf(response.body);
    return {
      outcome: 'in-progress',
      ...(progress ? { progress } : {}),
      ...retry,
      ...(partial === undefined ? {} : { partialManifestBody: partial }),
    };
  }
  if (status === 200) {
    let manifestBody: unknown;
    try {
      manifestBody = JSON.parse(response.body ?? '');
    } catch {
      throw new ExportRequestRejectedError('status answered 200 but the completion manifest is not JSON');
    }
    const expires = response.headers.expires;
    return { outcome: 'complete', manifestBody, ...(expires ? { expires } : {}) };
  }
  const outcome = summarizeOperationOutcome(response.body);
  const detail = outcome ? `: ${outcome.text}` : '';
  if (status === 429)
    return { outcome: 'too-fast', ...retry, reason: oneLine(`status answered 429${detail}`) };
  if (status === 401) throw new AccessTokenRejectedError(`status answered 401${detail}`);
  if (status === 404 || status === 410) {
    throw new ExportJobGoneError(
      oneLine(`status answered ${status}: the export job expired or was cancelled${detail}`),
    );
  }
  const transientOutcome = outcome?.codes.includes('transient') ?? false;
  const isFailedJob = outcome !== undefined && !transientOutcome;
  if ((status >= 500 && !isFailedJob) || transientOutcome) {
    return { outcome: 'transient', ...retry, reason: oneLine(`status answered ${status}${detail}`) };
  }
  throw new ExportRequestRejectedError(
    oneLine(`the export job failed: status answered ${status}${detail || ' with no OperationOutcome'}`),
  );
}

/** A 202's body when it is a JSON object (a partial manifest), else undefined: a 202 body is optional. */
function jsonObjectOf(body: string | undefined): unknown {
  if (!body?.trimStart().startsWith('{')) return undefined;
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}
