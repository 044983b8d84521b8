import type { S3ClientConfig } from '@aws-sdk/client-s3';
import { inFlightPrefix, workPrefix } from '../../lambdas/core/layout.js';
import type { Receipt } from '../../lambdas/core/receipt.js';
import { ExportNotResumableError } from '../../lambdas/errors.js';
import type { CleanUpEndedExportResult } from '../../lambdas/handlers/clean-up-ended-export.js';
import type { ProgressEvent, Runtime } from '../../lambdas/runtime.js';
import { isSourceId } from '../../lambdas/schema/source.js';
import { readLock, updateSourceLock } from '../../lambdas/services/source-lock.js';
import { type LocalValidationResult, runValidationLocally } from './local-validation.js';
import { type LocalLoadResult, runLoadLocally } from './local-warehouse.js';
import {
  CLEAN_UP_DEFINITION_PATH,
  type EventLog,
  type LocalRunOptions,
  type LocalRunResult,
  type RedrivePoint,
  runExportLocally,
} from './runner.js';
import {
  createLocalRuntime,
  type LocalRuntime,
  type LocalRuntimeOptions,
  type LocalSource,
} from './runtime.js';

export interface LocalExportOptions {
  readonly sources: readonly LocalSource[];
  readonly input: Record<string, unknown>;
  readonly s3ClientConfig: S3ClientConfig;
  readonly bucket: string;
  readonly prefix?: string;
  readonly executionName?: string;
  readonly logFile?: string;
  readonly onLogLine?: (line: string) => void;
  readonly progress?: (event: ProgressEvent) => void;
  readonly onEvent?: (event: EventLog) => void;
  readonly waitOverrideMs?: number;
  readonly retryOverrideMs?: number;
  readonly invocationTimeoutMs?: number | ((functionName: string) => number);
  readonly killInvocation?: LocalRunOptions['killInvocation'];
  readonly beforeInvocation?: LocalRunOptions['beforeInvocation'];
  readonly fileIdleTimeoutMs?: number;
  readonly transfer?: LocalRuntimeOptions['transfer'];
  readonly eventSink?: LocalRuntimeOptions['eventSink'];
  /** Stops the export (Ctrl-C): the run ends ABORTED and is cleaned up as a cancel. */
  readonly signal?: AbortSignal;
  /** Resumes a failed run of `executionName` from where it failed (see RedrivePoint). */
  readonly redrive?: RedrivePoint;
  /** History events before an execution continues in a new one (tests cross a small budget). */
  readonly historyEventBudget?: number;
  /** The clock of the handlers (a simulated one makes a week-long export take seconds). */
  readonly now?: () => Date;
  /**
   * After a successful export, run the validation stage on its `_SUCCESS.json` (what the EventBridge
   * rule does on AWS). `npm run export` and `npm run demo` turn it on unless `--no-validate`. @default false
   */
  readonly validate?: boolean;
  readonly validation?: LocalRuntimeOptions['validation'];
  /**
   * After the validation (or the export, when validation is off), run the warehouse load on the marker
   * the EventBridge rule starts it by on AWS: `_VALIDATED.json`, or `_SUCCESS.json`. `npm run export` and
   * `npm run demo` turn it on unless `--no-load`. @default false
   */
  readonly load?: boolean;
}

export interface LocalExportResult {
  readonly run: LocalRunResult;
  /**
   * What the clean-up started by the execution status change did, when the
   * run did not succeed (on AWS: the EventBridge rule and its state machine).
   */
  readonly endedCleanUp?: CleanUpEndedExportResult;
  /** The run receipt, read back from S3, when the export succeeded. */
  readonly receipt?: Receipt;
  readonly emittedEvents: LocalRuntime['emittedEvents'];
  /** The run's metric records (EMF on AWS). */
  readonly metrics: LocalRuntime['metrics'];
  /** The validation of the export's `_SUCCESS.json`, when asked for (`validate`) and the export is complete. */
  readonly validation?: LocalValidationResult;
  /** The warehouse load, when asked for (`load`) and a marker it starts from was written. */
  readonly load?: LocalLoadResult;
}

/** One export, start to finish, with the real ASL and handlers: what `npm run export` and `npm run demo` do. */
export async function runLocalExport(options: LocalExportOptions): Promise<LocalExportResult> {
  const local = createLocalRuntime({
    sources: options.sources,
    s3ClientConfig: options.s3ClientConfig,
    bucket: options.bucket,
    ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
    ...(options.logFile ? { logFile: options.logFile } : {}),
    ...(options.onLogLine ? { onLogLine: options.onLogLine } : {}),
    ...(options.progress ? { progress: options.progress } : {}),
    ...(options.fileIdleTimeoutMs === undefined ? {} : { fileIdleTimeoutMs: options.fileIdleTimeoutMs }),
    ...(options.transfer ? { transfer: options.transfer } : {}),
    ...(options.eventSink ? { eventSink: options.eventSink } : {}),
    ...(options.historyEventBudget ? { historyEventBudget: options.historyEventBudget } : {}),
    ...(options.now ? { now: options.now } : {}),
    ...(options.validation ? { validation: options.validation } : {}),
  });
  try {
    await local.publishSources();
    if (options.redrive) await prepareResume(local.runtime, options);
    const run = await runExportLocally({
      runtime: local.runtime,
      input: options.input,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.redrive ? { redrive: options.redrive } : {}),
      ...(options.executionName ? { executionName: options.executionName } : {}),
      ...(options.onEvent ? { onEvent: options.onEvent } : {}),
      ...(options.waitOverrideMs === undefined ? {} : { waitOverrideMs: options.waitOverrideMs }),
      ...(options.retryOverrideMs === undefined ? {} : { retryOverrideMs: options.retryOverrideMs }),
      ...(options.invocationTimeoutMs === undefined
        ? {}
        : { invocationTimeoutMs: options.invocationTimeoutMs }),
      ...(options.killInvocation ? { killInvocation: options.killInvocation } : {}),
      ...(options.beforeInvocation ? { beforeInvocation: options.beforeInvocation } : {}),
    });
    let receipt: Receipt | undefined;
    const output = run.output as { receiptKey?: string } | undefined;
    if (run.status === 'SUCCEEDED' && output?.receiptKey) {
      receipt = await local.runtime.store.getJson<Receipt>(output.receiptKey);
    }
    const endedCleanUp =
      run.status === 'SUCCEEDED' ? undefined : await cleanUpEndedRun(local.runtime, options, run);
    // A partial export has no _SUCCESS.json: nothing triggers its validation, here as on AWS.
    const validation =
      options.validate && receipt?.complete
        ? await runValidationLocally(local.runtime, {
            markerKey: (run.output as { completionMarkerKey: string }).completionMarkerKey,
            executionName: `${run.exportName}-validate`,
            ...(options.retryOverrideMs === undefined ? {} : { retryOverrideMs: options.retryOverrideMs }),
          })
        : undefined;
    const loadMarkerKey = options.load && receipt?.complete ? loadTrigger(run, validation) : undefined;
    const load = loadMarkerKey
      ? await runLoadLocally(local.runtime, {
          markerKey: loadMarkerKey,
          executionName: `${run.exportName}-load`,
          ...(options.retryOverrideMs === undefined ? {} : { retryOverrideMs: options.retryOverrideMs }),
        })
      : undefined;
    return {
      run,
      ...(receipt ? { receipt } : {}),
      ...(validation ? { validation } : {}),
      ...(load ? { load } : {}),
      ...(endedCleanUp ? { endedCleanUp } : {}),
      emittedEvents: local.emittedEvents,
      metrics: local.metrics,
    };
  } finally {
    await local.close();
  }
}

/**
 * The marker whose Object Created event starts the load on AWS: the validation's `_VALIDATED.json` when it
 * wrote one, the export's `_SUCCESS.json` when validation did not run or is off for the source. A failed
 * validation writes no marker, so nothing starts the load.
 */
function loadTrigger(run: LocalRunResult, validation: LocalValidationResult | undefined): string | undefined {
  if (validation?.report) return validation.report.validatedMarkerKey;
  if (validation && validation.run.status !== 'SUCCEEDED') return undefined;
  return (run.output as { completionMarkerKey: string }).completionMarkerKey;
}

/**
 * What the EventBridge rule on the execution status change does on AWS: runs
 * clean-up-ended-export.asl.json with the event. A run whose own Catch
 * cleaned up released its lock, and the clean-up finds nothing to do.
 */
async function cleanUpEndedRun(
  runtime: Runtime,
  options: LocalExportOptions,
  run: LocalRunResult,
): Promise<CleanUpEndedExportResult | undefined> {
  const sourceId = String(options.input.sourceId ?? '');
  if (run.status === 'ABORTED' && isSourceId(sourceId)) {
    // The runner killed and settled every invocation: their leases are void, as a stopped Lambda's are.
    // The export's work area is named by its first execution, whichever execution ran it last.
    const work = workPrefix(runtime.prefix, sourceId, run.exportName);
    for (const key of await runtime.store.listKeys(inFlightPrefix(work))) await runtime.store.delete(key);
  }
  const cleanUp = await runExportLocally({
    runtime,
    definitionPath: CLEAN_UP_DEFINITION_PATH,
    executionName: `${run.executionName}-ended`,
    input: {
      source: 'aws.states',
      'detail-type': 'Step Functions Execution Status Change',
      detail: {
        name: run.executionName,
        executionArn: `arn:aws:states:local:000000000000:execution:bulk-export:${run.executionName}`,
        status: run.status === 'ABORTED' ? 'ABORTED' : 'FAILED',
        error: run.error ?? null,
        cause: run.cause ?? null,
        // The ended execution's own input: a continuation's names the export it continued.
        input: JSON.stringify(run.lastInput ?? options.input),
      },
    },
    ...(options.retryOverrideMs === undefined ? {} : { retryOverrideMs: options.retryOverrideMs }),
  });
  if (cleanUp.status !== 'SUCCEEDED') {
    runtime.logger.error('the clean-up of the ended execution failed', {
      executionName: run.executionName,
      error: cleanUp.error,
      cause: cleanUp.cause,
    });
    return undefined;
  }
  return cleanUp.output as CleanUpEndedExportResult;
}

/**
 * A resume takes the export back: its lock must still be its own and
 * resumable (not cancelled, not taken over by a later run), and the
 * server's links still valid.
 */
async function prepareResume(runtime: Runtime, options: LocalExportOptions) {
  const sourceId = String(options.input.sourceId);
  // A continuation's failed execution resumes the export it continued: the lock names that one.
  const redriven = (options.redrive?.input as { export?: { executionName?: unknown } } | undefined)?.export
    ?.executionName;
  const executionName = typeof redriven === 'string' ? redriven : options.executionName!;
  const lock = await readLock(runtime, sourceId);
  const fresh = `start a fresh export instead: npm run export -- --source <file.json>`;
  if (lock?.executionName !== executionName) {
    throw new ExportNotResumableError(
      `export ${executionName} cannot be resumed: ${lock ? `execution ${lock.executionName} holds the lock of source ${sourceId} now` : `it no longer holds the lock of source ${sourceId} (it was cancelled, given up, or taken over; its failure receipt says which)`}; ${fresh}`,
    );
  }
  if (lock.state !== 'resumable') {
    throw new ExportNotResumableError(
      `export ${executionName} cannot be resumed: its lock is ${lock.state ?? 'running'}, not resumable${lock.state === 'running' || lock.state === undefined ? ` (is it still running? then cancel it first: npm run cancel -- --source-id ${sourceId})` : ''}`,
    );
  }
  if (lock.resumableUntil && Date.parse(lock.resumableUntil) <= runtime.now().getTime()) {
    throw new ExportNotResumableError(
      `export ${executionName} cannot be resumed: the server's file links expired at ${lock.resumableUntil}; ${fresh} (it takes the lock over and DELETEs the old job)`,
    );
  }
  await updateSourceLock(runtime, sourceId, executionName, {
    state: 'running',
    ...(runtime.localProcess ? { process: runtime.localProcess } : {}),
  });
}
