import { fileURLToPath } from 'node:url';
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import type { ProgressEvent, Runtime } from '../../lambdas/runtime.js';
import { renderValidationTable, type ValidationSummary } from '../../lambdas/validation/report.js';
import type { ValidatedMarker, WriteValidationReportResult } from '../../lambdas/validation/stage.js';
import { UsageError } from './command.js';
import { type EventLog, type LocalRunResult, runExportLocally } from './runner.js';
import { createLocalRuntime, type LocalRuntime, type LocalRuntimeOptions } from './runtime.js';

/** The validation stage's state machine: what the EventBridge rule on `_SUCCESS.json` starts on AWS. */
export const VALIDATE_DEFINITION_PATH = fileURLToPath(
  new URL('../../state-machines/validate-export.asl.json', import.meta.url),
);

/**
 * The S3 "Object Created" event EventBridge delivers for a marker (the fields the
 * state machine reads, in their AWS places), so the same ASL runs locally and on AWS.
 */
export function objectCreatedEvent(bucket: string, key: string) {
  return {
    version: '0',
    source: 'aws.s3',
    'detail-type': 'Object Created',
    detail: { bucket: { name: bucket }, object: { key } },
  };
}

/** How a downstream stage's state machine is run locally, started by its marker's event. */
export interface LocalStageOptions {
  /** The marker whose "Object Created" event starts the stage. */
  readonly markerKey: string;
  readonly executionName?: string;
  readonly retryOverrideMs?: number;
  readonly invocationTimeoutMs?: number | ((functionName: string) => number);
  readonly onEvent?: (event: EventLog) => void;
}

/** Runs a downstream stage's ASL with the real handlers on `runtime`, as its EventBridge rule would start it. */
export function runStageLocally(
  runtime: Runtime,
  definitionPath: string,
  options: LocalStageOptions,
): Promise<LocalRunResult> {
  return runExportLocally({
    runtime,
    definitionPath,
    input: objectCreatedEvent(runtime.store.bucket, options.markerKey),
    ...(options.executionName ? { executionName: options.executionName } : {}),
    ...(options.retryOverrideMs === undefined ? {} : { retryOverrideMs: options.retryOverrideMs }),
    ...(options.invocationTimeoutMs === undefined
      ? {}
      : { invocationTimeoutMs: options.invocationTimeoutMs }),
    ...(options.onEvent ? { onEvent: options.onEvent } : {}),
  });
}

/** `markerKey` is the export's `_SUCCESS.json`. */
export type LocalValidationOptions = LocalStageOptions;

export interface LocalValidationResult {
  readonly run: LocalRunResult;
  /** What Write Validation Report returned; absent when validation was off or failed. */
  readonly report?: WriteValidationReportResult;
  readonly summary?: ValidationSummary;
  readonly marker?: ValidatedMarker;
}

/** Runs validate-export.asl.json with the real handlers on `runtime` (the export's own, after `npm run export`). */
export async function runValidationLocally(
  runtime: Runtime,
  options: LocalValidationOptions,
): Promise<LocalValidationResult> {
  const run = await runStageLocally(runtime, VALIDATE_DEFINITION_PATH, options);
  const output = run.output as Partial<WriteValidationReportResult> | undefined;
  if (run.status !== 'SUCCEEDED' || typeof output?.summaryKey !== 'string') return { run };
  const report = output as WriteValidationReportResult;
  const summary = await runtime.store.getJson<ValidationSummary>(report.summaryKey);
  const marker = await runtime.store.getJson<ValidatedMarker>(report.validatedMarkerKey);
  return { run, report, ...(summary ? { summary } : {}), ...(marker ? { marker } : {}) };
}

export interface StandaloneValidationOptions extends LocalValidationOptions {
  readonly s3ClientConfig: S3ClientConfig;
  readonly bucket: string;
  readonly prefix?: string;
  readonly progress?: (event: ProgressEvent) => void;
  readonly logFile?: string;
  readonly validation?: LocalRuntimeOptions['validation'];
}

/**
 * `npm run validate`: one validation of an export already in the embedded S3. The source's
 * policy comes from its registration in the bucket (written by the export that made it).
 */
export async function runLocalValidation(
  options: StandaloneValidationOptions,
): Promise<LocalValidationResult & { readonly emittedEvents: LocalRuntime['emittedEvents'] }> {
  const local = createLocalRuntime({
    sources: [],
    s3ClientConfig: options.s3ClientConfig,
    bucket: options.bucket,
    ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
    ...(options.progress ? { progress: options.progress } : {}),
    ...(options.logFile ? { logFile: options.logFile } : {}),
    ...(options.validation ? { validation: options.validation } : {}),
  });
  try {
    const result = await runValidationLocally(local.runtime, options);
    return { ...result, emittedEvents: local.emittedEvents };
  } finally {
    await local.close();
  }
}

/** What `npm run export` and `npm run demo` print after the export: the table and the verdict, or why there is none. */
export function describeValidation(validation: LocalValidationResult, bucket: string): string {
  const { run, summary, marker } = validation;
  if (run.status !== 'SUCCEEDED') {
    return `Validation FAILED (no _VALIDATED.json): ${run.error ?? ''} ${run.cause ?? ''}`.trim();
  }
  if (!summary || !marker) return 'Validation: turned off for this source (validation.enabled: false)';
  return `US Core validation (${summary.ruleSet}):\n${renderValidationTable(summary)}\n${
    marker.passed ? 'passed' : `NOT PASSED: ${marker.reason}`
  } (${marker.mode})\nReport:  s3://${bucket}/${marker.summaryKey}`;
}

/** `s3://bucket/prefix/source=id/export=…/` → its parts; a UsageError says what is wrong. */
export function parseExportUrl(url: string): { bucket: string; prefix: string; folder: string } {
  const match = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.*)$/.exec(url);
  if (!match) {
    throw new UsageError(
      `--export must be an s3:// URL of an export folder, s3://BUCKET/[PREFIX/]source=ID/export=TIME/ (got ${JSON.stringify(url.slice(0, 200))})`,
    );
  }
  const bucket = match[1]!;
  const folder = match[2]!.endsWith('/') ? match[2]! : `${match[2]!}/`;
  const partitions = /(^|\/)source=[a-z0-9][a-z0-9-]{0,62}\/export=[^/]+\/$/.exec(folder);
  if (!partitions) {
    throw new UsageError(
      `--export ${url} is not an export folder: expected it to end in source=ID/export=TIME/ (npm run export prints it)`,
    );
  }
  return { bucket, prefix: folder.slice(0, partitions.index + partitions[1]!.length), folder };
}
