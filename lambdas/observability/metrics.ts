/**
 * The pipeline's outcome metrics (CloudWatch EMF, namespace FhirBulkExport):
 * which metric, unit and dimension sets each event carries is decided here
 * once, for the Powertools publisher on AWS and the local recorder alike.
 * The dashboard, alarms and the construct's `metric…()` methods read the
 * same names (infra/).
 */

import { isSourceId } from '../schema/source.js';

export const METRICS_NAMESPACE = 'FhirBulkExport';
/** `POWERTOOLS_SERVICE_NAME` when a function's environment does not set it: every record's `service` dimension. */
export const SERVICE_NAME = 'fhir-bulk-export';

export const ERROR_CATEGORIES = [
  'auth',
  'kick-off-refused',
  'server-job-failed',
  'timeout',
  'file-download',
  'validation',
  'storage',
  'cancelled',
  'configuration',
  'other',
] as const;
export type ErrorCategory = (typeof ERROR_CATEGORIES)[number];

export interface ExportSucceeded {
  readonly sourceId: string;
  /** From the execution's start to its completion. */
  readonly durationSeconds: number;
  readonly resources: number;
  readonly bytes: number;
}

export interface ExportFailed {
  readonly sourceId: string;
  readonly category: ErrorCategory;
}

export interface FileLanded {
  readonly sourceId: string;
  readonly bytes: number;
  /** Attempts beyond the first. */
  readonly retries: number;
  /** Checkpoints the file went through (invocations before the one that landed it). */
  readonly checkpoints: number;
}

/**
 * A running export's gauge, once per status poll: how old it is, so a job the
 * server accepted and never completes shows as a line that keeps rising.
 */
export interface ExportInProgress {
  readonly sourceId: string;
  /** Since the execution started. */
  readonly ageSeconds: number;
  /** Only when the export runs in chunks. */
  readonly chunks?: { readonly total: number; readonly done: number };
}

/** What the handlers report; `Runtime.metrics`. Never throws: a metric is not worth a failed task. */
export interface ExportMetrics {
  exportSucceeded(event: ExportSucceeded): void;
  exportFailed(event: ExportFailed): void;
  fileLanded(event: FileLanded): void;
  exportInProgress(event: ExportInProgress): void;
}

export type MetricUnit = 'Count' | 'Seconds' | 'Bytes';

/** One event's EMF record, before the `service` dimension every record carries. */
export interface MetricRecord {
  readonly dimensions: Readonly<Record<string, string>>;
  /** Each set names dimensions of `dimensions`; `[]` is the set of `service` alone. */
  readonly dimensionSets: readonly (readonly string[])[];
  readonly metrics: readonly { readonly name: string; readonly unit: MetricUnit; readonly value: number }[];
}

const PER_SOURCE = [[], ['SourceId']] as const;
/** A gauge means something per source only: the age of all exports together is no one's. */
const ONLY_PER_SOURCE = [['SourceId']] as const;
const PER_SOURCE_AND_CATEGORY = [[], ['SourceId'], ['ErrorCategory'], ['SourceId', 'ErrorCategory']] as const;

/**
 * A source id as a dimension value. An execution input that never validated
 * may name anything: it is counted under `unknown`, so that a typo does not
 * start a metric of its own, nor write its text into the metrics.
 */
export const sourceDimension = (sourceId: string | undefined) =>
  isSourceId(sourceId) ? sourceId : 'unknown';

const count = (value: number) => (Number.isFinite(value) && value > 0 ? value : 0);

export function metricRecord(
  event:
    | ({ readonly kind: 'export-succeeded' } & ExportSucceeded)
    | ({ readonly kind: 'export-failed' } & ExportFailed)
    | ({ readonly kind: 'file-landed' } & FileLanded)
    | ({ readonly kind: 'export-in-progress' } & ExportInProgress),
): MetricRecord {
  const SourceId = sourceDimension(event.sourceId);
  switch (event.kind) {
    case 'export-succeeded':
      return {
        dimensions: { SourceId },
        dimensionSets: PER_SOURCE,
        metrics: [
          { name: 'ExportsSucceeded', unit: 'Count', value: 1 },
          { name: 'ExportDuration', unit: 'Seconds', value: count(event.durationSeconds) },
          { name: 'ResourcesExported', unit: 'Count', value: count(event.resources) },
          { name: 'BytesExported', unit: 'Bytes', value: count(event.bytes) },
        ],
      };
    case 'export-failed':
      return {
        dimensions: { SourceId, ErrorCategory: event.category },
        dimensionSets: PER_SOURCE_AND_CATEGORY,
        metrics: [{ name: 'ExportsFailed', unit: 'Count', value: 1 }],
      };
    case 'file-landed':
      return {
        dimensions: { SourceId },
        dimensionSets: PER_SOURCE,
        metrics: [
          { name: 'FileSize', unit: 'Bytes', value: count(event.bytes) },
          { name: 'FileRetries', unit: 'Count', value: count(event.retries) },
          { name: 'Checkpoints', unit: 'Count', value: count(event.checkpoints) },
        ],
      };
    case 'export-in-progress':
      return {
        dimensions: { SourceId },
        dimensionSets: ONLY_PER_SOURCE,
        metrics: [
          { name: 'ExportAge', unit: 'Seconds', value: count(event.ageSeconds) },
          ...(event.chunks
            ? ([
                { name: 'ChunksDone', unit: 'Count', value: count(event.chunks.done) },
                { name: 'ChunksTotal', unit: 'Count', value: count(event.chunks.total) },
              ] as const)
            : []),
        ],
      };
  }
}

/** ExportMetrics that hand each event's record to `publish`. */
export function metricsPublishingTo(publish: (record: MetricRecord) => void): ExportMetrics {
  return {
    exportSucceeded: (event) => publish(metricRecord({ kind: 'export-succeeded', ...event })),
    exportFailed: (event) => publish(metricRecord({ kind: 'export-failed', ...event })),
    fileLanded: (event) => publish(metricRecord({ kind: 'file-landed', ...event })),
    exportInProgress: (event) => publish(metricRecord({ kind: 'export-in-progress', ...event })),
  };
}

/** The EMF document of one record, as CloudWatch Logs reads it from a log line. */
export function emfDocument(
  record: MetricRecord,
  service: string,
  timestamp: number,
): Record<string, unknown> {
  return {
    _aws: {
      Timestamp: timestamp,
      CloudWatchMetrics: [
        {
          Namespace: METRICS_NAMESPACE,
          Dimensions: record.dimensionSets.map((set) => ['service', ...set]),
          Metrics: record.metrics.map(({ name, unit }) => ({ Name: name, Unit: unit })),
        },
      ],
    },
    service,
    ...record.dimensions,
    ...Object.fromEntries(record.metrics.map(({ name, value }) => [name, value])),
  };
}

export interface RecordingMetrics extends ExportMetrics {
  /** Every record, in order. */
  readonly records: MetricRecord[];
  /** Sum of one metric over the records, optionally of one source. */
  total(name: string, sourceId?: string): number;
  /** How many records carry this metric. */
  countOf(name: string, sourceId?: string): number;
}

/**
 * The local runs' metrics: records every event, and writes each as an EMF
 * line when given `write` (the run's log file), so a local log reads like a
 * function's on AWS.
 */
export function createRecordingMetrics(
  options: {
    readonly write?: (line: string) => void;
    readonly now?: () => Date;
    readonly service?: string;
  } = {},
): RecordingMetrics {
  const records: MetricRecord[] = [];
  const matching = (name: string, sourceId: string | undefined) =>
    records
      .filter((record) => sourceId === undefined || record.dimensions.SourceId === sourceId)
      .flatMap((record) => record.metrics.filter((metric) => metric.name === name));
  return {
    ...metricsPublishingTo((record) => {
      records.push(record);
      options.write?.(
        JSON.stringify(
          emfDocument(
            record,
            options.service ?? 'fhir-bulk-export',
            (options.now?.() ?? new Date()).getTime(),
          ),
        ),
      );
    }),
    records,
    total: (name, sourceId) => matching(name, sourceId).reduce((sum, metric) => sum + metric.value, 0),
    countOf: (name, sourceId) => matching(name, sourceId).length,
  };
}
