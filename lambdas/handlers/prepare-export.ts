import { parseDuration } from '../core/chunks.js';
import { type ContinuationInput, parseContinuationInput } from '../core/continuation.js';
import { settingsForLog } from '../core/effective-settings.js';
import {
  checkInputAgainstSource,
  type ExecutionInput,
  parseExecutionInput,
} from '../core/execution-input.js';
import { jobRecordKey, workPrefix } from '../core/layout.js';
import { InvalidExecutionInputError } from '../errors.js';
import type { Runtime } from '../runtime.js';
import { type SourceSettings, unsupportedByServer } from '../schema/source.js';
import { type JobRecord, takeSourceLock } from '../services/export-lifecycle.js';
import { handOverSourceLock } from '../services/source-lock.js';
import { sinceFromWatermark } from '../services/watermark.js';
import type { ChunkingContext, ExportContext } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';

export interface PrepareExportEvent {
  readonly input: unknown;
  readonly executionName: string;
  /** `$$.Execution.Id`: the lock names its holder so a later run can ask whether it still runs. */
  readonly executionArn?: string;
  readonly startedAt: string;
}

/**
 * Turns an execution input into a concrete export request: resolves
 * `since: "auto"` from the watermark, merges the source's defaults, and takes
 * the per-source lock so that two exports of one source never overlap (Epic
 * and Oracle Health allow one export per client anyway).
 */
export function createPrepareExportHandler(runtime: Runtime) {
  return async (event: PrepareExportEvent): Promise<ExportContext> => {
    const continued = parseContinuationInput(event.input);
    if (continued) return takeOverExport(runtime, event, continued);
    const input = parseExecutionInput(event.input);
    const settings = await runtime.sources.get(input.sourceId);
    checkInputAgainstSource(input, settings.export);
    checkInputAgainstServer(input, settings);
    runtime.logger.info('effective settings', {
      sourceId: settings.id,
      profile: settings.profile,
      settings: settingsForLog(settings),
    });
    const now = runtime.now();

    let since: string | undefined;
    let sinceFrom: ExportContext['sinceFrom'] = 'none';
    if (input.since === 'auto') {
      since = await sinceFromWatermark(runtime, settings, now);
      if (since) sinceFrom = 'watermark';
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
      input.level !== undefined ||
      input.patient !== undefined;
    const deadline = new Date(now.getTime() + settings.deadlineHours * 3_600_000);

    const work = workPrefix(runtime.prefix, settings.id, event.executionName);
    const supersedes = await takeSourceLock(runtime, {
      sourceId: settings.id,
      executionName: event.executionName,
      ...(event.executionArn ? { executionArn: event.executionArn } : {}),
      now,
      expiresAt: deadline,
    });

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
        // Absent: the source's own lists go with the kick-off (core/kickoff.ts).
        ...(input.patient === undefined ? {} : { patients: input.patient }),
        ...(input.includeAssociatedData === undefined
          ? {}
          : { includeAssociatedData: input.includeAssociatedData }),
        ...(settings.export.organizeOutputBy ? { organizeOutputBy: settings.export.organizeOutputBy } : {}),
        ...(settings.export.allowPartialManifests ? { allowPartialManifests: true } : {}),
      },
      sinceFrom,
      // A window that stops early, or a narrower scope, must not move the daily delta's starting point.
      advancesWatermark: input.until === undefined && !overridesScope,
      startedAt: event.startedAt,
      deadline: deadline.toISOString(),
      maxConcurrency: settings.maxConcurrency,
      retryPassDelaySeconds: settings.retryPassDelaySeconds,
      serverFileErrors: settings.serverFileErrors,
      ...(supersedes ? { supersedes } : {}),
      ...chunkingOf(input.chunk, settings),
    };
    const job: JobRecord = { sourceId: settings.id, executionName: event.executionName, export: context };
    await runtime.store.putJson(jobRecordKey(work), job);
    return context;
  };
}

/**
 * What this execution's input asks of the server, against what the source's
 * profile says it accepts: a backfill's `_typeFilter` to a server that would
 * ignore it fails here, before kick-off, naming the EHR. The source's own
 * settings passed the same check when it was configured.
 */
function checkInputAgainstServer(input: ExecutionInput, settings: SourceSettings): void {
  const level = input.level ?? (input.groupId ? 'group' : settings.export.level);
  const chunk = input.chunk === undefined ? settings.export.chunk : input.chunk || undefined;
  const problem = unsupportedByServer(settings, {
    level,
    typeFilters: input.typeFilters ?? settings.export.typeFilters,
    elements: settings.export.elements,
    includeAssociatedData: input.includeAssociatedData ?? settings.export.includeAssociatedData,
    patient: input.patient ?? settings.export.patient,
    until: input.until !== undefined,
    chunk,
    allowPartialManifests: settings.export.allowPartialManifests,
    organizeOutputBy: settings.export.organizeOutputBy,
  });
  if (problem === undefined) return;
  const fromInput = problem.field === 'until' || input[problem.field as keyof ExecutionInput] !== undefined;
  throw new InvalidExecutionInputError(
    `${fromInput ? 'input' : 'export'}.${problem.field} ${problem.message}`,
  );
}

/**
 * An export continuing in this execution (the previous one spent its history
 * budget): the lock passes to this execution, the job record lists it, and
 * the export goes on as it was prepared; its request, deadline and work area
 * are the first execution's.
 */
async function takeOverExport(
  runtime: Runtime,
  event: PrepareExportEvent,
  input: ContinuationInput,
): Promise<ExportContext> {
  const { continuation } = input;
  const context = continuation.export;
  if (!event.executionArn) {
    throw new InvalidExecutionInputError(
      'a continuation needs executionArn ($$.Execution.Id) to take the lock',
    );
  }
  // The source must still be registered: a removed source's export does not go on.
  await runtime.sources.get(context.sourceId);
  await handOverSourceLock(runtime, {
    sourceId: context.sourceId,
    executionName: context.executionName,
    fromExecutionArn: continuation.previousExecutionArn,
    toExecutionArn: event.executionArn,
  });
  const key = jobRecordKey(context.workPrefix);
  const job = await runtime.store.getJson<JobRecord>(key);
  const executions = (job?.executions ?? []).filter((entry) => entry.executionName !== event.executionName);
  await runtime.store.putJson(key, {
    ...(job ?? { sourceId: context.sourceId, executionName: context.executionName, export: context }),
    executions: [
      ...executions,
      { executionName: event.executionName, executionArn: event.executionArn, startedAt: event.startedAt },
    ],
  } satisfies JobRecord);
  runtime.logger.info('the export continues in this execution', {
    sourceId: context.sourceId,
    executionName: context.executionName,
    continuation: continuation.number,
    previousExecutionArn: continuation.previousExecutionArn,
  });
  runtime.progress?.({
    kind: 'phase',
    phase: 'continued',
    detail: `execution ${event.executionName} took the export over (continuation ${continuation.number})`,
  });
  return { ...context, continuation: { number: continuation.number } };
}

/**
 * The execution's chunking: the input's `chunk` (a backfill's), else the
 * source's; `chunk: false` exports in one piece, without chunkOnTimeout too.
 * chunkOnTimeout applies only to an export that starts in one piece.
 */
function chunkingOf(
  inputChunk: SourceSettings['export']['chunk'] | false | undefined,
  settings: SourceSettings,
): Pick<ExportContext, 'chunking' | 'chunkOnTimeout'> {
  if (inputChunk === false) return {};
  const chunk = inputChunk ?? settings.export.chunk;
  if (!chunk) return {};
  const chunking: ChunkingContext = {
    by: chunk.by,
    ...(chunk.size === undefined ? {} : { size: chunk.size }),
    ...(chunk.window === undefined ? {} : { window: chunk.window }),
    ...(chunk.patientsFrom === undefined ? {} : { patientsFrom: chunk.patientsFrom }),
    maxConcurrentJobs: settings.export.maxConcurrentJobs,
    maxAttempts: settings.export.maxChunkAttempts,
  };
  if (inputChunk === undefined && settings.export.chunkOnTimeout !== undefined) {
    const afterSeconds = parseDuration(settings.export.chunkOnTimeout, 'export.chunkOnTimeout') / 1000;
    return { chunkOnTimeout: { afterSeconds, chunking } };
  }
  return { chunking };
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('PrepareExport', createPrepareExportHandler);
