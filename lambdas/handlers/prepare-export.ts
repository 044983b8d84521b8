import { parseExecutionInput } from '../core/execution-input.js';
import { lockKey, watermarkKey, workPrefix } from '../core/layout.js';
import { checkStoredWatermark } from '../core/watermark.js';
import { ExportAlreadyRunningError } from '../errors.js';
import { type Runtime, sourceSettings } from '../runtime.js';
import type { ExportContext } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';

export interface PrepareExportEvent {
  readonly input: unknown;
  readonly executionName: string;
  readonly startedAt: string;
}

export interface Watermark {
  readonly sourceId: string;
  readonly transactionTime: string;
  readonly executionName: string;
  readonly updatedAt: string;
}

export interface SourceLock {
  readonly executionName: string;
  readonly acquiredAt: string;
  readonly expiresAt: string;
}

/**
 * Turns an execution input into a concrete export request: resolves
 * `since: "auto"` from the watermark, merges the source's defaults, and takes
 * the per-source lock so that two exports of one source never overlap (Epic
 * and Oracle Health allow one export per client anyway).
 */
export function createPrepareExportHandler(runtime: Runtime) {
  return async (event: PrepareExportEvent): Promise<ExportContext> => {
    const input = parseExecutionInput(event.input);
    const settings = sourceSettings(runtime, input.sourceId);
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

    await acquireLock(runtime, settings.id, event.executionName, now, deadline);

    runtime.progress?.({
      kind: 'phase',
      phase: 'prepared',
      detail: since ? `since ${since}` : 'full export',
    });
    return {
      sourceId: settings.id,
      executionName: event.executionName,
      bucket: runtime.store.bucket,
      workPrefix: workPrefix(runtime.prefix, settings.id, event.executionName),
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
    };
  };
}

async function acquireLock(
  runtime: Runtime,
  sourceId: string,
  executionName: string,
  now: Date,
  deadline: Date,
) {
  const key = lockKey(runtime.prefix, sourceId);
  const held = await runtime.store.getJson<SourceLock>(key);
  if (held && held.executionName !== executionName) {
    if (Date.parse(held.expiresAt) > now.getTime()) {
      throw new ExportAlreadyRunningError(
        `another export of source ${sourceId} is running (execution ${held.executionName}, since ${held.acquiredAt}); this one was not started`,
      );
    }
    // A lock past its deadline belongs to an execution that died without cleaning up.
    runtime.logger.warn('taking over an expired source lock', {
      sourceId,
      previousExecution: held.executionName,
    });
    await runtime.store.delete(key);
  }
  const lock: SourceLock = {
    executionName,
    acquiredAt: now.toISOString(),
    expiresAt: deadline.toISOString(),
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
}

export async function releaseLock(
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

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('PrepareExport', createPrepareExportHandler);
