import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import { ERROR_CATEGORIES, type ErrorCategory } from '../../lambdas/observability/metrics.js';
import { type PipelineContext, PipelinePart, POWERTOOLS_SERVICE_NAME } from './shared.js';

/** Why an export failed, as the functions' `ExportsFailed` metric names it (ErrorCategory dimension): one list, the functions'. */
export type ExportErrorCategory = ErrorCategory;
export const EXPORT_ERROR_CATEGORIES: readonly ExportErrorCategory[] = ERROR_CATEGORIES;

/** CloudWatch's dynamic label: each line a SEARCH finds is named by its source. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: CloudWatch fills it in, not JavaScript
const SOURCE_LABEL = "${PROP('Dim.SourceId')}";

/** Options of the pipeline's metric helpers: CloudWatch's, plus the dimensions the functions emit. */
export interface PipelineMetricOptions extends cloudwatch.MetricOptions {
  /** One source's figures (dimension set `[service, SourceId]`). @default all sources (`[service]`) */
  readonly sourceId?: string;
}

export interface ExportsFailedMetricOptions extends PipelineMetricOptions {
  /** One kind of failure (`[service, ErrorCategory]`, or `[service, SourceId, ErrorCategory]` with sourceId). @default all */
  readonly errorCategory?: ExportErrorCategory;
}

/**
 * The metrics the functions emit as CloudWatch embedded metric format
 * (Powertools Metrics): namespace `FhirBulkExport`, dimension
 * `service=fhir-bulk-export`, and per record the dimension sets `[service]`,
 * `[service, SourceId]` (failures also `[service, ErrorCategory]` and
 * `[service, SourceId, ErrorCategory]`). A metric here names exactly one of
 * those sets, or CloudWatch finds no data.
 */
export class PipelineMetrics {
  constructor(private readonly namespace: string) {}

  private metric(
    metricName: string,
    defaults: { statistic: string; unit: cloudwatch.Unit },
    { sourceId, errorCategory, ...options }: ExportsFailedMetricOptions,
  ): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: this.namespace,
      metricName,
      statistic: defaults.statistic,
      unit: defaults.unit,
      period: Duration.minutes(5),
      ...options,
      dimensionsMap: {
        service: POWERTOOLS_SERVICE_NAME,
        ...(sourceId === undefined ? {} : { SourceId: sourceId }),
        ...(errorCategory === undefined ? {} : { ErrorCategory: errorCategory }),
        ...options.dimensionsMap,
      },
    });
  }

  private static readonly COUNT = { statistic: cloudwatch.Stats.SUM, unit: cloudwatch.Unit.COUNT };

  /** Exports that completed (once per export). Sum over 5 minutes by default. */
  exportsSucceeded(options: PipelineMetricOptions = {}): cloudwatch.Metric {
    return this.metric('ExportsSucceeded', PipelineMetrics.COUNT, options);
  }

  /** Exports that failed or were ended (once per export), by source and error category. Sum over 5 minutes. */
  exportsFailed(options: ExportsFailedMetricOptions = {}): cloudwatch.Metric {
    return this.metric('ExportsFailed', PipelineMetrics.COUNT, options);
  }

  /** Seconds from an execution's start to its completion. Average over 5 minutes by default. */
  exportDuration(options: PipelineMetricOptions = {}): cloudwatch.Metric {
    return this.metric(
      'ExportDuration',
      { statistic: cloudwatch.Stats.AVERAGE, unit: cloudwatch.Unit.SECONDS },
      options,
    );
  }

  /** Resources in completed exports. Sum. */
  resourcesExported(options: PipelineMetricOptions = {}): cloudwatch.Metric {
    return this.metric('ResourcesExported', PipelineMetrics.COUNT, options);
  }

  /** Bytes in completed exports. Sum. */
  bytesExported(options: PipelineMetricOptions = {}): cloudwatch.Metric {
    return this.metric(
      'BytesExported',
      { statistic: cloudwatch.Stats.SUM, unit: cloudwatch.Unit.BYTES },
      options,
    );
  }

  /** Size of each landed file. p90 by default: use `statistic` for p50, max, …. */
  fileSize(options: PipelineMetricOptions = {}): cloudwatch.Metric {
    return this.metric(
      'FileSize',
      { statistic: cloudwatch.Stats.p(90), unit: cloudwatch.Unit.BYTES },
      options,
    );
  }

  /** Attempts beyond the first per landed file. Sum. */
  fileRetries(options: PipelineMetricOptions = {}): cloudwatch.Metric {
    return this.metric('FileRetries', PipelineMetrics.COUNT, options);
  }

  /** Checkpoints written per landed file. Sum. */
  checkpoints(options: PipelineMetricOptions = {}): cloudwatch.Metric {
    return this.metric('Checkpoints', PipelineMetrics.COUNT, options);
  }

  /**
   * Seconds since a running export of the source started, at each status
   * poll (`[service, SourceId]` only). Maximum by default: a job the server
   * accepted and never completes is a line that keeps rising.
   */
  exportAge(options: PipelineMetricOptions & { readonly sourceId: string }): cloudwatch.Metric {
    return this.metric(
      'ExportAge',
      { statistic: cloudwatch.Stats.MAXIMUM, unit: cloudwatch.Unit.SECONDS },
      options,
    );
  }

  /** Chunks verified of a chunked export, at each status poll. Maximum. */
  chunksDone(options: PipelineMetricOptions & { readonly sourceId: string }): cloudwatch.Metric {
    return this.metric(
      'ChunksDone',
      { statistic: cloudwatch.Stats.MAXIMUM, unit: cloudwatch.Unit.COUNT },
      options,
    );
  }

  /** Chunks planned for a chunked export, at each status poll. Maximum. */
  chunksTotal(options: PipelineMetricOptions & { readonly sourceId: string }): cloudwatch.Metric {
    return this.metric(
      'ChunksTotal',
      { statistic: cloudwatch.Stats.MAXIMUM, unit: cloudwatch.Unit.COUNT },
      options,
    );
  }

  /**
   * One line per source of a per-source metric, found by a SEARCH expression:
   * the dashboard's definition stays the same as sources come and go.
   */
  perSource(
    metricName: 'ExportAge' | 'ChunksDone' | 'ChunksTotal',
    {
      statistic = 'Maximum',
      period = Duration.minutes(5),
      label,
    }: { statistic?: string; period?: Duration; label?: string } = {},
  ): cloudwatch.MathExpression {
    const search = `{${JSON.stringify(this.namespace)},service,SourceId} service=${JSON.stringify(POWERTOOLS_SERVICE_NAME)} MetricName=${JSON.stringify(metricName)}`;
    return new cloudwatch.MathExpression({
      expression: `SEARCH('${search}', '${statistic}', ${period.toSeconds()})`,
      usingMetrics: {},
      period,
      ...(label ? { label } : {}),
    });
  }
}

export interface MonitoringProps {
  readonly context: PipelineContext;
  readonly metrics: PipelineMetrics;
  readonly stateMachine: sfn.StateMachine;
  readonly cleanUpStateMachine: sfn.StateMachine;
  readonly cleanUpDeadLetterQueue: sqs.IQueue;
  readonly scheduleDeadLetterQueue: sqs.IQueue;
  /** The US Core validation stage, when the pipeline has it. */
  readonly validation?: {
    readonly stateMachine: sfn.StateMachine;
    readonly triggerDeadLetterQueue: sqs.IQueue;
  };
  /** The warehouse load, when the pipeline has it. */
  readonly warehouse?: {
    readonly stateMachine: sfn.StateMachine;
    readonly triggerDeadLetterQueue: sqs.IQueue;
  };
  readonly functions: Readonly<Record<string, lambda.IFunction>>;
  /** @default a new topic encrypted with the operations key */
  readonly alarmTopic?: sns.ITopic;
  readonly longExportThreshold: Duration;
  readonly downloadErrorThreshold: number;
}

/** Alarms into one topic, and the pipeline's dashboard. */
export class Monitoring extends PipelinePart {
  public readonly alarmTopic: sns.ITopic;
  public readonly alarms: readonly cloudwatch.Alarm[];
  public readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    this.alarmTopic =
      props.alarmTopic ??
      new sns.Topic(this, 'AlarmTopic', {
        displayName: 'FHIR bulk export alarms',
        masterKey: props.context.operationsKey,
        enforceSSL: true,
      });
    this.alarms = this.createAlarms(props);
    this.dashboard = this.createDashboard(props);
  }

  /**
   * A validation that did not finish leaves an export without `_VALIDATED.json`, and a loader waiting
   * on that marker waits for ever: as worth a page as a failed export. A gate that did not pass is
   * not a failure here; it is the `Bulk Export Validated` event's `passed: false`.
   */
  private validationAlarms(
    validation: NonNullable<MonitoringProps['validation']>,
    alarm: (id: string, alarmProps: cloudwatch.AlarmProps) => cloudwatch.Alarm,
    atLeastOnce: Pick<cloudwatch.AlarmProps, 'threshold' | 'evaluationPeriods' | 'comparisonOperator'>,
    fiveMinutes: cloudwatch.MetricOptions,
  ): cloudwatch.Alarm[] {
    const { stateMachine } = validation;
    return [
      alarm('ValidationFailedAlarm', {
        alarmDescription:
          'The US Core validation of a completed FHIR bulk export failed, timed out or was aborted: the export has no _VALIDATED.json; start the validation state machine again with its _SUCCESS.json event',
        metric: new cloudwatch.MathExpression({
          label: 'Validations failed, timed out or aborted',
          expression: 'failed + timedOut + aborted',
          usingMetrics: {
            failed: stateMachine.metricFailed(fiveMinutes),
            timedOut: stateMachine.metricTimedOut(fiveMinutes),
            aborted: stateMachine.metricAborted(fiveMinutes),
          },
          period: Duration.minutes(5),
        }),
        ...atLeastOnce,
      }),
      alarm('ValidationDeadLetterAlarm', {
        alarmDescription:
          'The US Core validation of a completed FHIR bulk export could not be started (event in the validation DLQ): start the validation state machine with it',
        metric: validation.triggerDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
          period: Duration.minutes(5),
          statistic: cloudwatch.Stats.MAXIMUM,
        }),
        ...atLeastOnce,
      }),
    ];
  }

  /**
   * A load that did not finish leaves an export without `_LOADED.json` and its tables partly written
   * (queries see the parts that landed): start it again with its marker's event, and it rewrites the
   * same keys.
   */
  private warehouseAlarms(
    warehouse: NonNullable<MonitoringProps['warehouse']>,
    alarm: (id: string, alarmProps: cloudwatch.AlarmProps) => cloudwatch.Alarm,
    atLeastOnce: Pick<cloudwatch.AlarmProps, 'threshold' | 'evaluationPeriods' | 'comparisonOperator'>,
    fiveMinutes: cloudwatch.MetricOptions,
  ): cloudwatch.Alarm[] {
    const { stateMachine } = warehouse;
    return [
      alarm('WarehouseLoadFailedAlarm', {
        alarmDescription:
          'The warehouse load of a FHIR bulk export failed, timed out or was aborted: the export has no _LOADED.json; start the warehouse state machine again with its marker’s event',
        metric: new cloudwatch.MathExpression({
          label: 'Warehouse loads failed, timed out or aborted',
          expression: 'failed + timedOut + aborted',
          usingMetrics: {
            failed: stateMachine.metricFailed(fiveMinutes),
            timedOut: stateMachine.metricTimedOut(fiveMinutes),
            aborted: stateMachine.metricAborted(fiveMinutes),
          },
          period: Duration.minutes(5),
        }),
        ...atLeastOnce,
      }),
      alarm('WarehouseDeadLetterAlarm', {
        alarmDescription:
          'The warehouse load of a FHIR bulk export could not be started (event in the warehouse DLQ): start the warehouse state machine with it',
        metric: warehouse.triggerDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
          period: Duration.minutes(5),
          statistic: cloudwatch.Stats.MAXIMUM,
        }),
        ...atLeastOnce,
      }),
    ];
  }

  private createAlarms(props: MonitoringProps): cloudwatch.Alarm[] {
    const action = new cloudwatchActions.SnsAction(this.alarmTopic);
    const alarm = (id: string, alarmProps: cloudwatch.AlarmProps) => {
      const created = new cloudwatch.Alarm(this, id, {
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        ...alarmProps,
      });
      created.addAlarmAction(action);
      created.addOkAction(action);
      return created;
    };
    const atLeastOnce = {
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    };
    const threshold = props.longExportThreshold;
    const fiveMinutes = { period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM };
    const { stateMachine, cleanUpStateMachine } = props;
    return [
      alarm('ExecutionsFailedAlarm', {
        alarmDescription:
          'A FHIR bulk export failed (see the Bulk Export Failed event and the failure receipt)',
        metric: stateMachine.metricFailed(fiveMinutes),
        ...atLeastOnce,
      }),
      alarm('ExecutionsTimedOutAlarm', {
        alarmDescription: 'A FHIR bulk export execution timed out',
        metric: stateMachine.metricTimedOut(fiveMinutes),
        ...atLeastOnce,
      }),
      alarm('ExecutionsAbortedAlarm', {
        alarmDescription:
          'A FHIR bulk export execution was aborted (stopped by hand); the clean-up state machine closes its server job and lock',
        metric: stateMachine.metricAborted(fiveMinutes),
        ...atLeastOnce,
      }),
      // An EHR refusing our client (revoked registration, rotated key not yet in its JWKS cache, wrong
      // scope) fails every export of that source until someone acts: worth a page on its own.
      alarm('AuthFailuresAlarm', {
        alarmDescription:
          'A FHIR bulk export failed to authenticate (token request or assertion refused): check the source’s client registration, JWKS and secret',
        metric: props.metrics.exportsFailed({ errorCategory: 'auth', period: Duration.minutes(5) }),
        ...atLeastOnce,
      }),
      alarm('LongExportAlarm', {
        alarmDescription: `FHIR bulk exports take longer than ${threshold.toHumanString()} (ExecutionTime p99)`,
        metric: stateMachine.metricTime({ period: Duration.hours(1), statistic: cloudwatch.Stats.p(99) }),
        threshold: threshold.toMilliseconds(),
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      }),
      alarm('DownloadFileErrorsAlarm', {
        alarmDescription:
          'The download-file function keeps failing (transient errors are retried by the state machine)',
        metric: props.functions.DownloadFile!.metricErrors({
          period: Duration.minutes(15),
          statistic: cloudwatch.Stats.SUM,
        }),
        threshold: props.downloadErrorThreshold,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      }),
      alarm('CleanUpFailedAlarm', {
        alarmDescription:
          'The clean-up of an ended FHIR bulk export did not succeed: its source may stay locked (and its server job open) until the lock deadline',
        metric: new cloudwatch.MathExpression({
          label: 'Clean-ups failed, timed out or aborted',
          expression: 'failed + timedOut + aborted',
          usingMetrics: {
            failed: cleanUpStateMachine.metricFailed(fiveMinutes),
            timedOut: cleanUpStateMachine.metricTimedOut(fiveMinutes),
            aborted: cleanUpStateMachine.metricAborted(fiveMinutes),
          },
          period: Duration.minutes(5),
        }),
        ...atLeastOnce,
      }),
      alarm('CleanUpDeadLetterAlarm', {
        alarmDescription:
          'The clean-up of an ended FHIR bulk export could not be started (event in the clean-up DLQ): start the clean-up state machine with it',
        metric: props.cleanUpDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
          period: Duration.minutes(5),
          statistic: cloudwatch.Stats.MAXIMUM,
        }),
        ...atLeastOnce,
      }),
      alarm('ScheduleDeadLetterAlarm', {
        alarmDescription: 'A scheduled FHIR bulk export could not be started (message in the schedule DLQ)',
        metric: props.scheduleDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
          period: Duration.minutes(5),
          statistic: cloudwatch.Stats.MAXIMUM,
        }),
        ...atLeastOnce,
      }),
      ...(props.validation ? this.validationAlarms(props.validation, alarm, atLeastOnce, fiveMinutes) : []),
      ...(props.warehouse ? this.warehouseAlarms(props.warehouse, alarm, atLeastOnce, fiveMinutes) : []),
    ];
  }

  /**
   * Success rate, average duration, file-size trend and failures by error
   * category from the functions' metrics; the running exports' age and
   * chunk progress per source; the state machine's executions and the
   * functions' errors and throttles below. The dashboard must not change (or
   * outgrow its size limit) as sources are added: per-source lines come from
   * SEARCH expressions, never from one widget line per source.
   */
  private createDashboard(props: MonitoringProps): cloudwatch.Dashboard {
    const { metrics, stateMachine: machine } = props;
    const hour = { period: Duration.hours(1) };
    const successRate = new cloudwatch.MathExpression({
      label: 'Success rate (%)',
      expression: '100 * succeeded / (succeeded + failed)',
      usingMetrics: { succeeded: metrics.exportsSucceeded(hour), failed: metrics.exportsFailed(hour) },
      period: Duration.hours(1),
    });
    const sum = { ...hour, statistic: cloudwatch.Stats.SUM };
    const functions = Object.entries(props.functions);

    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', { defaultInterval: Duration.days(7) });
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Export success rate',
        left: [successRate],
        leftYAxis: { min: 0, max: 100 },
        width: 6,
      }),
      new cloudwatch.GraphWidget({
        title: 'Average export duration (seconds)',
        left: [metrics.exportDuration({ ...hour, label: 'average' })],
        width: 6,
      }),
      new cloudwatch.GraphWidget({
        title: 'File size trend (bytes)',
        left: [
          metrics.fileSize({ ...hour, statistic: cloudwatch.Stats.p(50), label: 'p50' }),
          metrics.fileSize({ ...hour, statistic: cloudwatch.Stats.p(90), label: 'p90' }),
          metrics.fileSize({ ...hour, statistic: cloudwatch.Stats.MAXIMUM, label: 'max' }),
        ],
        width: 6,
      }),
      new cloudwatch.GraphWidget({
        title: 'Failed exports by error category',
        left: EXPORT_ERROR_CATEGORIES.map((errorCategory) =>
          metrics.exportsFailed({ ...hour, errorCategory, label: errorCategory }),
        ),
        stacked: true,
        width: 6,
      }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Running export age per source (seconds, at each status poll)',
        left: [metrics.perSource('ExportAge')],
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Chunks done / total per source (chunked exports)',
        left: [
          metrics.perSource('ChunksDone', { label: `${SOURCE_LABEL} done` }),
          metrics.perSource('ChunksTotal', { label: `${SOURCE_LABEL} total` }),
        ],
        width: 12,
      }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Executions',
        left: [
          machine.metricStarted(sum),
          machine.metricSucceeded(sum),
          machine.metricFailed(sum),
          machine.metricTimedOut(sum),
          machine.metricAborted(sum),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Lambda errors',
        left: functions.map(([name, fn]) => fn.metricErrors({ ...sum, label: name })),
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Lambda throttles',
        left: functions.map(([name, fn]) => fn.metricThrottles({ ...sum, label: name })),
        width: 8,
      }),
    );
    return dashboard;
  }
}
