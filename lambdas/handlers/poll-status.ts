import { exportRoot, fileKey } from '../core/layout.js';
import {
  type CompletionManifest,
  type FileKind,
  mergeManifestPages,
  parseCompletionManifest,
} from '../core/manifest.js';
import { DEFAULT_WAIT_POLICY, nextWaitSeconds } from '../core/retry-after.js';
import { interpretStatusResponse } from '../core/status.js';
import {
  AccessTokenRejectedError,
  ExportDeadlineExceededError,
  InvalidManifestError,
  TransientServerError,
} from '../errors.js';
import { type Runtime, sealContext, sourceSettings } from '../runtime.js';
import type { ExportContext, FileItem, PollState } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';

export interface PollStatusEvent {
  readonly export: ExportContext;
  readonly statusUrl: string;
  readonly sealedToken: string;
  readonly poll: Pick<
    PollState,
    'attempt' | 'consecutiveTransientErrors' | 'waitSeconds' | 'forceTokenRefresh'
  >;
}

/** Manifest pages we follow before calling the manifest hostile. */
const MAX_MANIFEST_PAGES = 1000;

/**
 * One status request; never a loop (waiting is the Wait state's job). On
 * completion the manifest and the Map's file list go to S3 and only their
 * keys travel on.
 */
export function createPollStatusHandler(runtime: Runtime) {
  return async (event: PollStatusEvent): Promise<PollState> => {
    const context = event.export;
    const settings = sourceSettings(runtime, context.sourceId);
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
    const attempt = event.poll.attempt + 1;
    const base = { attempt, forceTokenRefresh: false } as const;

    let outcome: ReturnType<typeof interpretStatusResponse>;
    try {
      const response = await runtime.fhir.send(
        { method: 'GET', url: event.statusUrl, headers: { Accept: 'application/json' } },
        accessToken,
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

    switch (outcome.outcome) {
      case 'in-progress':
        runtime.progress?.({
          kind: 'phase',
          phase: 'in progress',
          ...(outcome.progress ? { detail: outcome.progress } : {}),
        });
        return {
          ...base,
          outcome: 'in-progress',
          consecutiveTransientErrors: 0,
          waitSeconds: nextWaitSeconds(outcome.retryAfterSeconds, attempt - 1, policy),
          ...(outcome.progress ? { progress: outcome.progress } : {}),
        };
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
          ...(outcome.retryAfterSeconds === undefined
            ? {}
            : { retryAfterSeconds: outcome.retryAfterSeconds }),
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
      case 'transient': {
        const consecutive = event.poll.consecutiveTransientErrors + 1;
        if (consecutive > settings.maxConsecutiveTransientErrors) {
          throw new TransientServerError(
            `status failed ${consecutive} times in a row (limit maxConsecutiveTransientErrors ${settings.maxConsecutiveTransientErrors}); last: ${outcome.reason}`,
          );
        }
        const waitSeconds = nextWaitSeconds(outcome.retryAfterSeconds, consecutive - 1, policy);
        runtime.logger.warn('transient status error', {
          sourceId: context.sourceId,
          consecutive,
          reason: outcome.reason,
          ...(outcome.retryAfterSeconds === undefined
            ? {}
            : { retryAfterSeconds: outcome.retryAfterSeconds }),
          waitSeconds,
        });
        runtime.progress?.({
          kind: 'phase',
          phase: 'status failed, waiting',
          detail: `${outcome.reason}; next poll in ${waitSeconds}s (${consecutive} in a row)`,
        });
        return {
          ...base,
          outcome: 'in-progress',
          consecutiveTransientErrors: consecutive,
          waitSeconds,
        };
      }
      case 'complete': {
        const manifest = await readManifestPages(
          runtime,
          outcome.manifestBody,
          accessToken,
          settings.allowInsecureHttp,
          now,
        );
        const location = {
          prefix: runtime.prefix,
          sourceId: context.sourceId,
          transactionTime: manifest.transactionTime,
        };
        const ordinals = new Map<string, number>();
        const items: FileItem[] = manifest.files.map((file, index) => {
          const group = `${file.kind}/${file.type}`;
          const ordinal = (ordinals.get(group) ?? 0) + 1;
          ordinals.set(group, ordinal);
          return {
            index,
            kind: file.kind,
            type: file.type,
            resourceType: file.resourceType,
            key: fileKey(location, file.kind, file.type, ordinal),
            ...(file.count === undefined ? {} : { count: file.count }),
          };
        });
        const manifestKey = `${context.workPrefix}manifest.json`;
        const filesKey = `${context.workPrefix}files.json`;
        const urlsKey = `${context.workPrefix}file-urls.json`;
        await runtime.store.putJson(manifestKey, { ...manifest, expires: outcome.expires });
        await runtime.store.putJson(
          urlsKey,
          manifest.files.map((file) => file.url),
        );
        await runtime.store.putJson(filesKey, items);
        const counts = countByKind(items);
        runtime.progress?.({
          kind: 'phase',
          phase: 'manifest received',
          detail: `${items.length} files (${counts.output} data, ${counts.error} error, ${counts.deleted} deleted)`,
        });
        return {
          ...base,
          outcome: 'complete',
          consecutiveTransientErrors: 0,
          waitSeconds: 0,
          manifest: {
            transactionTime: manifest.transactionTime,
            requiresAccessToken: manifest.requiresAccessToken,
            filesKey,
            urlsKey,
            manifestKey,
            fileCount: items.length,
            exportRoot: exportRoot(location),
          },
        };
      }
    }
  };
}

/** The completion manifest of a 200 status: its first page, then every `next` page, merged. */
export async function readManifestPages(
  runtime: Pick<Runtime, 'fhir'>,
  firstPage: unknown,
  accessToken: string,
  allowInsecureHttp: boolean,
  now: Date,
): Promise<CompletionManifest> {
  const pages: CompletionManifest[] = [parseCompletionManifest(firstPage, allowInsecureHttp)];
  for (let next = pages[0]?.nextPageUrl; next; next = pages.at(-1)?.nextPageUrl) {
    if (pages.length >= MAX_MANIFEST_PAGES)
      throw new InvalidManifestError(`completion manifest has more than ${MAX_MANIFEST_PAGES} pages`);
    const page = await runtime.fhir.send(
      { method: 'GET', url: next, headers: { Accept: 'application/json' } },
      accessToken,
    );
    const pageOutcome = interpretStatusResponse(page, now);
    if (pageOutcome.outcome !== 'complete')
      throw new TransientServerError(`manifest page answered HTTP ${page.status}`);
    pages.push(parseCompletionManifest(pageOutcome.manifestBody, allowInsecureHttp));
  }
  return mergeManifestPages(pages);
}

function countByKind(items: readonly FileItem[]): Record<FileKind, number> {
  const counts: Record<FileKind, number> = { output: 0, error: 0, deleted: 0 };
  for (const item of items) counts[item.kind] += 1;
  return counts;
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('PollStatus', createPollStatusHandler);
