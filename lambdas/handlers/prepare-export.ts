import { parseExecutionInput } from '../core/execution-input.js';
import { jobRecordKey, watermarkKey, workPrefix } from '../core/layout.js';
import { checkStoredWatermark } from '../core/watermark.js';
import type { Runtime } from '../runtime.js';
import { endDeadHolder, type JobRecord } from '../services/export-lifecycle.js';
import { acquireSourceLock, releaseSourceLock, type SourceLock } from '../services/source-lock.js';
import type { ExportContext } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';

export interface PrepareExportEvent {
  readonly input: unknown;
  readonly executionName: string;
  /** `$$.Execution.Id`: the lock names its holder so a later run can ask whether it still runs. */
  readonly executionArn?: string;
  readonly startedAt: string;
}

export interface Watermark {
  readonly sourceId: string;
  readonly transactionTime: string;
  readonly executionName: string;
  readonly updatedAt: string;
}

export type { SourceLock };

/**
 * Turns an execution input into a concrete export request: resolves
 * `since: "auto"` from the watermark, merges the source's defaults, and takes
 * the per-source lock so that two exports of one source never overlap (Epic
 * and Oracle Health allow one export per client anyway).
 */
export function createPrepareExportHandler(runtime: Runtime) {
  return async (event: PrepareExportEvent): Promise<ExportContext> => {
    const input = parseExecutionInput(event.input);
    const settings = await runtime.sources.get(input.sourceId);
    const now = runtime.now();

    let since: string | undefined;
    let sinceFrom: ExportContext['sinceFrom'] = 'none';
    if (input.since === 'auto') {
      const key = watermarkKey(runtime.prefix, settings.id);
      const watermark = await runtime.store.getJson<Watermark>(key);
      if (watermark) {
        checkStoredWatermark({
          transactionTime: watermark.transactionTime,
          where: `s3://${runtime.store.bucket}/${key}`,
          now,
          maxClockSkewSeconds: settings.maxClockSkewSeconds,
        });
        since = watermark.transactionTime;
        sinceFrom = 'watermark';
      }
    } else if (input.since) {
      since = input.since;
      sinceFrom = 'input';
    }

    const level = input.level ?? (input.groupId ? 'group' : settings.export.level);
    const groupId = input.groupId ?? (level === 'group' ? settings.export.groupId : undefined);
    const overridesScope =
      input.types !== undefined ||
      input.typeFilters !== undefined ||
      input.groupId !== undefined ||
      input.level !== undefined;
    const deadline = new Date(now.getTime() + settings.deadlineHours * 3_600_000);

    const work = workPrefix(runtime.prefix, settings.id, event.executionName);
    let supersedes: ExportContext['supersedes'];
    await acquireSourceLock(
      runtime,
      {
        sourceId: settings.id,
        executionName: event.executionName,
        ...(event.executionArn ? { executionArn: event.executionArn } : {}),
        now,
        expiresAt: deadline,
      },
      async (held) => {
        const ended = await endDeadHolder(runtime, settings.id, held, event.executionName);
        supersedes = {
          executionName: held.executionName,
          ...(ended.statusUrl ? { statusUrl: ended.statusUrl } : {}),
        };
      },
    );

    runtime.progress?.({
      kind: 'phase',
      phase: 'prepared',
      detail: since ? `since ${since}` : 'full export',
    });
    const context: ExportContext = {
      sourceId: settings.id,
      executionName: event.executionName,
      bucket: runtime.store.bucket,
      workPrefix: work,
      request: {
        ...(since ? { since } : {}),
        ...(input.until ? { until: input.until } : {}),
        types: input.types ?? settings.export.types,
        typeFilters: input.typeFilters ?? settings.export.typeFilters,
        elements: settings.export.elements,
        level,
        ...(groupId ? { groupId } : {}),
      },
      sinceFrom,
      // A window that stops early, or a narrower scope, must not move the daily delta's starting point.
      advancesWatermark: input.until === undefined && !overridesScope,
      startedAt: event.startedAt,
      deadline: deadline.toISOString(),
      maxConcurrency: settings.maxConcurrency,
      retryPassDelaySeconds: settings.retryPassDelaySeconds,
      ...(supersedes ? { supersedes } : {}),
    };
    const job: JobRecord = { sourceId: settings.id, executionName: event.executionName, export: context };
    await runtime.store.putJson(jobRecordKey(work), job);
    return context;
  };
}

/** @deprecated kept for callers that release without the lock service; use releaseSourceLock. */
export const releaseLock = releaseSourceLock;

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('PrepareExport', createPrepareExportHandler);
