import { Aws, Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as scheduler from 'aws-cdk-lib/aws-scheduler';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { DEFAULT_MAX_LINE_BYTES } from '../lambdas/core/ndjson/line-limit.js';
import { CompletionQueue } from './constructs/completion-queue.js';
import { ExportBucket } from './constructs/export-bucket.js';
import { ExportSchedules } from './constructs/export-schedules.js';
import { ExportStateMachines } from './constructs/export-state-machine.js';
import {
  type ExportsFailedMetricOptions,
  Monitoring,
  type PipelineMetricOptions,
  PipelineMetrics,
} from './constructs/monitoring.js';
import { DEFAULT_METRIC_NAMESPACE, keepFlatLogicalIds, type PipelineContext } from './constructs/shared.js';
import { SigningKeys } from './constructs/signing-keys.js';
import { registryPrefix, SourceRegistry } from './constructs/source-registry.js';
import { reservedConcurrency, TaskFunctions } from './constructs/task-functions.js';
import { ValidationStage } from './constructs/validation-stage.js';
import { DEFAULT_BYTES_SCANNED_CUTOFF, WarehouseStage } from './constructs/warehouse-stage.js';
import {
  DEFAULT_LAMBDA_BUNDLE_DIR,
  DEFAULT_STATE_MACHINE_DIR,
  type TaskFunctionName,
  type ValidationFunctionName,
} from './lambda-bundles.js';
import { acknowledgeWildcards } from './nag-findings.js';
import type { BulkExportPipelineProps } from './pipeline-props.js';
import { validatePipelineProps } from './validate-props.js';

export type {
  ExportErrorCategory,
  ExportsFailedMetricOptions,
  PipelineMetricOptions,
} from './constructs/monitoring.js';
export { EVENT_SOURCE } from './constructs/task-functions.js';
export type { WarehouseFunctionName } from './constructs/warehouse-stage.js';
export type { TaskFunctionName } from './lambda-bundles.js';
export * from './pipeline-props.js';

/** Suffix of the completion marker that downstream jobs trigger on (lambdas/core/layout.ts). */
export const COMPLETION_MARKER_SUFFIX = '_SUCCESS.json';

/**
 * The AWS side of the FHIR Bulk Data `$export` pipeline, composed of parts
 * each in a file of its own (infra/constructs/): the export bucket, the
 * source registry, the Task functions and the source access role, the
 * signing keys and JWKS, the two state machines, the schedules and the
 * monitoring.
 *
 * Least privilege is the point: only the token minter, in a session tagged
 * with one source id, may read that source's secret and sign with its key;
 * each function gets exactly the S3 and KMS actions its code calls; and every
 * remaining wildcard is acknowledged for cdk-nag next to the statement that
 * needs it, with its reason.
 */
export class BulkExportPipeline extends Construct {
  /** The export bucket (created or given). */
  public readonly bucket: s3.IBucket;
  /** The server access log bucket of a created export bucket. */
  public readonly accessLogBucket?: s3.Bucket;
  /** The SSE-KMS key of the export bucket, when there is one. */
  public readonly dataKey?: kms.IKey;
  /** Symmetric key (rotation on) that seals access tokens in Step Functions state. */
  public readonly sealingKey: kms.Key;
  /** Encrypts log groups, the access log bucket, the alarm topic and the queues. */
  public readonly operationsKey: kms.Key;
  /** The signing keys this construct created, by source id (sources that bring a `signingKey` have none here). */
  public readonly signingKeys: ReadonlyMap<string, kms.Key>;
  /** Alias per created signing key: `alias/<keyAliasPrefix>/<sourceId>`, usable as the secret's `kmsKeyId`. */
  public readonly signingKeyAliases: ReadonlyMap<string, kms.Alias>;
  /** `alias/<keyAliasPrefix>/`: the JWKS publishes every key aliased under it. */
  public readonly signingKeyAliasPrefix: string;
  /** The Task functions by ASL name. */
  public readonly functions: Readonly<Record<TaskFunctionName, lambda.Function>>;
  /** What the token minter assumes with the session tag `fhir-bulk-export-source=<id>`. */
  public readonly sourceAccessRole: iam.Role;
  /** Publishes the declared sources to `<prefix>_registry/sources/`. */
  public readonly sourceRegistry: SourceRegistry;
  /** `<prefix>_registry/sources/`: one `<sourceId>.json` per registered source. */
  public readonly sourceRegistryPrefix: string;
  /** The export state machine (state-machines/bulk-export.asl.json). */
  public readonly stateMachine: sfn.StateMachine;
  /**
   * Cleans up after an export execution that ended ABORTED, TIMED_OUT or
   * FAILED (state-machines/clean-up-ended-export.asl.json): DELETEs the server
   * job, aborts open uploads, writes the failure receipt, releases the lock.
   */
  public readonly cleanUpStateMachine: sfn.StateMachine;
  /** Starts the clean-up state machine with each such Execution Status Change event. */
  public readonly cleanUpRule: events.Rule;
  /**
   * Status change events the clean-up state machine could not be started for:
   * each one is a source whose lock is held until it is cleaned up (start the
   * clean-up state machine with the message body as input).
   */
  public readonly cleanUpDeadLetterQueue: sqs.Queue;
  /** Serves the JWKS. */
  public readonly jwksFunction: lambda.Function;
  /** HTTPS URL of the JWKS, to register with the EHR. */
  public readonly jwksUrl: string;
  /** Schedule per source id (sources without a schedule have none). */
  public readonly schedules: ReadonlyMap<string, scheduler.Schedule>;
  /** Where a schedule's failed StartExecution lands. */
  public readonly scheduleDeadLetterQueue: sqs.Queue;
  /** Where alarms go. */
  public readonly alarmTopic: sns.ITopic;
  public readonly alarms: readonly cloudwatch.Alarm[];
  public readonly dashboard: cloudwatch.Dashboard;
  /** EventBridge pattern of completion markers landing in the bucket: what downstream ETL should trigger on. */
  public readonly completionEventPattern: events.EventPattern;
  /** The example downstream queue fed by completion markers. */
  public readonly completionQueue?: sqs.Queue;
  /** The validation stage (absent with `validation: { enabled: false }`): its state machine, trigger and functions. */
  public readonly validationStateMachine?: sfn.StateMachine;
  public readonly validationRule?: events.Rule;
  public readonly validationFunctions?: Readonly<Record<ValidationFunctionName, lambda.Function>>;
  /**
   * The warehouse load and its query side (absent with `warehouse: { enabled: false }`): the load's state
   * machine, trigger and functions; the Glue database and tables, the Athena workgroup, and the managed
   * policy (or `warehouse.grantQuery`) that lets a role query them.
   */
  public readonly warehouse?: WarehouseStage;

  private readonly exportPrefix: string;
  private readonly metrics: PipelineMetrics;
  private readonly parts: { readonly stateMachines: ExportStateMachines };

  constructor(scope: Construct, id: string, props: BulkExportPipelineProps) {
    super(scope, id);
    validatePipelineProps(props);
    // Set before any child exists (the bucket part sets its own): SQS targets get queue policies.
    this.node.setContext('@aws-cdk/aws-events:eventsTargetQueueSameAccount', true);

    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const prefix = props.exportPrefix ?? '';
    this.exportPrefix = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    const metricNamespace = props.metricNamespace ?? DEFAULT_METRIC_NAMESPACE;
    this.metrics = new PipelineMetrics(metricNamespace);
    const bundleRoot = props.lambdaBundleDirectory ?? DEFAULT_LAMBDA_BUNDLE_DIR;

    this.operationsKey = this.createOperationsKey(removalPolicy);
    this.sealingKey = new kms.Key(this, 'SealingKey', {
      description: 'Seals FHIR access tokens carried in Step Functions state (KMS Encrypt with context)',
      enableKeyRotation: true,
      removalPolicy,
    });
    const context: PipelineContext = {
      removalPolicy,
      logRetention: props.logRetention ?? logs.RetentionDays.ONE_YEAR,
      operationsKey: this.operationsKey,
      exportPrefix: this.exportPrefix,
      logLevel: props.logLevel ?? 'info',
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
    };

    const exportBucket = new ExportBucket(this, 'Bucket', {
      context,
      bucket: props.bucket,
      bucketProps: props.bucketProps,
      lifecycle: props.lifecycle,
    });
    this.bucket = exportBucket.bucket;
    this.dataKey = exportBucket.dataKey;
    this.accessLogBucket = exportBucket.accessLogBucket;

    this.sourceRegistryPrefix = registryPrefix(this.exportPrefix);
    this.sourceRegistry = new SourceRegistry(this, 'Registry', {
      context,
      bucket: this.bucket,
      dataKey: this.dataKey,
      sources: props.sources,
    });

    const concurrency =
      props.reservedConcurrency === false
        ? undefined
        : { exports: props.maxConcurrentExports ?? 5, downloads: props.maxConcurrentDownloads ?? 20 };
    const taskFunctions = new TaskFunctions(this, 'TaskFunctions', {
      context,
      bucket: this.bucket,
      dataKey: this.dataKey,
      sealingKey: this.sealingKey,
      eventBus: props.eventBus,
      bundleRoot,
      metricNamespace,
      maxLineBytes: props.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
      concurrency,
      sources: props.sources,
    });
    this.functions = taskFunctions.functions;
    this.sourceAccessRole = taskFunctions.sourceAccessRole;

    const keyAliasPrefix = props.keyAliasPrefix ?? 'fhir-bulk-export';
    this.signingKeyAliasPrefix = `alias/${keyAliasPrefix}/`;
    const signing = new SigningKeys(this, 'SigningKeys', {
      context,
      sources: props.sources,
      keyAliasPrefix,
      signer: this.sourceAccessRole,
      bundleRoot,
      metricNamespace,
      jwksMaxAge: props.jwksMaxAge ?? Duration.hours(1),
      reservedConcurrency: reservedConcurrency(concurrency).Jwks,
      ...(props.jwksDomain ? { jwksDomain: props.jwksDomain } : {}),
    });
    this.signingKeys = signing.keys;
    this.signingKeyAliases = signing.aliases;
    this.jwksFunction = signing.jwksFunction;
    this.jwksUrl = signing.jwksUrl;

    const stateMachines = new ExportStateMachines(this, 'StateMachines', {
      context,
      functions: taskFunctions.functions,
      roles: taskFunctions.roles,
      bucket: this.bucket,
      dataKey: this.dataKey,
      stateMachineDirectory: props.stateMachineDirectory ?? DEFAULT_STATE_MACHINE_DIR,
      stateMachineName: props.stateMachineName,
      nameScope: this,
    });
    this.parts = { stateMachines };
    this.stateMachine = stateMachines.stateMachine;
    this.cleanUpStateMachine = stateMachines.cleanUpStateMachine;
    this.cleanUpRule = stateMachines.cleanUpRule;
    this.cleanUpDeadLetterQueue = stateMachines.cleanUpDeadLetterQueue;

    const schedules = new ExportSchedules(this, 'Schedules', {
      context,
      sources: props.sources,
      stateMachine: this.stateMachine,
      dependsOn: [stateMachines.prepareExportLivenessPolicy],
    });
    this.schedules = schedules.schedules;
    this.scheduleDeadLetterQueue = schedules.deadLetterQueue;

    this.completionEventPattern = {
      source: ['aws.s3'],
      detailType: ['Object Created'],
      detail: {
        bucket: { name: [this.bucket.bucketName] },
        object: { key: [{ suffix: COMPLETION_MARKER_SUFFIX }] },
      },
    };
    if (props.completionQueue ?? true) {
      this.completionQueue = new CompletionQueue(this, 'Downstream', {
        context,
        eventPattern: this.completionEventPattern,
      }).queue;
    }

    let validation: ValidationStage | undefined;
    if (props.validation?.enabled ?? true) {
      validation = new ValidationStage(this, 'Validation', {
        context,
        bucket: this.bucket,
        dataKey: this.dataKey,
        sealingKey: this.sealingKey,
        eventBus: props.eventBus,
        bundleRoot,
        stateMachineDirectory: props.stateMachineDirectory ?? DEFAULT_STATE_MACHINE_DIR,
        metricNamespace,
        nameScope: this,
        ...(concurrency ? { concurrency } : {}),
      });
      this.validationStateMachine = validation.stateMachine;
      this.validationRule = validation.rule;
      this.validationFunctions = validation.functions;
    }

    if (props.warehouse?.enabled ?? true) {
      this.warehouse = new WarehouseStage(this, 'Warehouse', {
        context,
        bucket: this.bucket,
        dataKey: this.dataKey,
        sealingKey: this.sealingKey,
        eventBus: props.eventBus,
        bundleRoot,
        stateMachineDirectory: props.stateMachineDirectory ?? DEFAULT_STATE_MACHINE_DIR,
        metricNamespace,
        nameScope: this,
        ...(concurrency ? { concurrency } : {}),
        afterValidation: validation !== undefined,
        sourceViews: props.sources.map((source) => ({
          sourceId: source.id,
          views: source.settings.warehouse?.views ?? [],
        })),
        bytesScannedCutoffPerQuery:
          props.warehouse?.bytesScannedCutoffPerQuery ?? DEFAULT_BYTES_SCANNED_CUTOFF,
      });
    }

    const monitoring = new Monitoring(this, 'Monitoring', {
      context,
      metrics: this.metrics,
      stateMachine: this.stateMachine,
      cleanUpStateMachine: this.cleanUpStateMachine,
      cleanUpDeadLetterQueue: this.cleanUpDeadLetterQueue,
      scheduleDeadLetterQueue: this.scheduleDeadLetterQueue,
      ...(validation ? { validation } : {}),
      ...(this.warehouse ? { warehouse: this.warehouse } : {}),
      functions: { ...this.functions, Jwks: this.jwksFunction },
      alarmTopic: props.alarmTopic,
      longExportThreshold: props.longExportThreshold ?? Duration.hours(24),
      downloadErrorThreshold: props.downloadErrorThreshold ?? 5,
    });
    this.alarmTopic = monitoring.alarmTopic;
    this.alarms = monitoring.alarms;
    this.dashboard = monitoring.dashboard;

    keepFlatLogicalIds(this);
  }

  /** Encrypts log groups, the alarm topic and the queues; the services that write to them may use it. */
  private createOperationsKey(removalPolicy: RemovalPolicy): kms.Key {
    const key = new kms.Key(this, 'OperationsKey', {
      description: 'Encrypts the FHIR bulk export pipeline log groups, alarm topic and queues',
      enableKeyRotation: true,
      removalPolicy,
    });
    key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchLogsEncryptsPipelineLogGroups',
        principals: [new iam.ServicePrincipal(`logs.${Aws.REGION}.amazonaws.com`)],
        actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
        resources: ['*'],
        conditions: {
          ArnLike: {
            'kms:EncryptionContext:aws:logs:arn': `arn:${Aws.PARTITION}:logs:${Aws.REGION}:${Aws.ACCOUNT_ID}:log-group:*`,
          },
        },
      }),
    );
    key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublishToEncryptedTopic',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
    );
    return key;
  }

  /** Lets `grantee` start exports and backfills (states:StartExecution on the export state machine). */
  public grantStartExport(grantee: iam.IGrantable): iam.Grant {
    return this.stateMachine.grantStartExecution(grantee);
  }

  /**
   * Lets `grantee` read published exports: s3:GetObject under
   * `<prefix>source=<sourceId>/` (or every source's `<prefix>source=…/`),
   * s3:ListBucket limited to those prefixes, and kms:Decrypt on the data key
   * through S3. Never the pipeline's own `_work/`, `_state/`, `_registry/`
   * or `_failures/` objects.
   */
  public grantReadExports(grantee: iam.IGrantable, sourceId?: string): iam.Grant {
    const under =
      sourceId === undefined ? `${this.exportPrefix}source=*` : `${this.exportPrefix}source=${sourceId}/*`;
    const read = new iam.PolicyStatement({
      actions: ['s3:GetObject'],
      resources: [this.bucket.arnForObjects(under)],
    });
    const list = new iam.PolicyStatement({
      actions: ['s3:ListBucket'],
      resources: [this.bucket.bucketArn],
      conditions: { StringLike: { 's3:prefix': [under] } },
    });
    let grant = iam.Grant.addToPrincipal({
      grantee,
      actions: ['s3:GetObject'],
      resourceArns: read.resources,
    }).combine(
      iam.Grant.addToPrincipal({
        grantee,
        actions: ['s3:ListBucket'],
        resourceArns: [this.bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': [under] } },
      }),
    );
    if (this.dataKey) {
      grant = grant.combine(
        iam.Grant.addToPrincipal({
          grantee,
          actions: ['kms:Decrypt'],
          resourceArns: [this.dataKey.keyArn],
          conditions: { StringEquals: { 'kms:ViaService': `s3.${Aws.REGION}.amazonaws.com` } },
        }),
      );
    }
    this.acknowledgeGrant(grantee, [
      {
        statement: read,
        wildcardReason:
          'Exported files are named per export at run time (export time, resource type, part); the grant covers published data of the named source(s) only, never the pipeline’s _work/, _state/ or _registry/ objects.',
      },
      { statement: list },
    ]);
    return grant;
  }

  /**
   * Lets `grantee` resume a failed, timed-out or stopped export where it
   * stopped: Step Functions redrive keeps every state that succeeded
   * (landed files are not downloaded again) and redrives the failed Map Run,
   * where a new StartExecution would be a fresh export. DescribeExecution
   * lets the caller check `redriveStatus` first and follow the execution
   * after. Redrive works for 14 days after the execution ended, on the
   * definition it started with.
   */
  public grantRedrive(grantee: iam.IGrantable): iam.Grant {
    return this.grantOnExportExecutions(grantee, ['states:RedriveExecution', 'states:DescribeExecution']);
  }

  /**
   * Lets `grantee` cancel exports: StopExecution on an export execution
   * (ListExecutions to find a source's running one, DescribeExecution to
   * watch it end). Stopping is enough: the stop raises an ABORTED status
   * change, and the clean-up state machine then DELETEs the server job,
   * aborts open uploads, writes the failure receipt and releases the lock.
   */
  public grantCancel(grantee: iam.IGrantable): iam.Grant {
    return this.grantOnExportExecutions(grantee, [
      'states:StopExecution',
      'states:DescribeExecution',
    ]).combine(
      iam.Grant.addToPrincipal({
        grantee,
        actions: ['states:ListExecutions'],
        resourceArns: [this.stateMachine.stateMachineArn],
      }),
    );
  }

  /** Exports completed, once per export (`ExportsSucceeded`, Sum). */
  public metricExportsSucceeded(options?: PipelineMetricOptions): cloudwatch.Metric {
    return this.metrics.exportsSucceeded(options);
  }

  /** Exports failed or ended, once per export (`ExportsFailed`, Sum), by source and/or error category. */
  public metricExportsFailed(options?: ExportsFailedMetricOptions): cloudwatch.Metric {
    return this.metrics.exportsFailed(options);
  }

  /** Seconds from an export's start to its completion (`ExportDuration`, Average). */
  public metricExportDuration(options?: PipelineMetricOptions): cloudwatch.Metric {
    return this.metrics.exportDuration(options);
  }

  /** Resources in completed exports (`ResourcesExported`, Sum). */
  public metricResourcesExported(options?: PipelineMetricOptions): cloudwatch.Metric {
    return this.metrics.resourcesExported(options);
  }

  /** Bytes in completed exports (`BytesExported`, Sum). */
  public metricBytesExported(options?: PipelineMetricOptions): cloudwatch.Metric {
    return this.metrics.bytesExported(options);
  }

  /** Size of each landed file (`FileSize`, p90 unless `statistic` says otherwise). */
  public metricFileSize(options?: PipelineMetricOptions): cloudwatch.Metric {
    return this.metrics.fileSize(options);
  }

  /** Download attempts beyond the first, per landed file (`FileRetries`, Sum). */
  public metricFileRetries(options?: PipelineMetricOptions): cloudwatch.Metric {
    return this.metrics.fileRetries(options);
  }

  /** Checkpoints written per landed file (`Checkpoints`, Sum). */
  public metricCheckpoints(options?: PipelineMetricOptions): cloudwatch.Metric {
    return this.metrics.checkpoints(options);
  }

  /**
   * A grant on the export machine's executions, whose names are only known at
   * run time. The wildcard is the construct's to explain, so it is
   * acknowledged for cdk-nag under the principal, where its policy lands.
   */
  private grantOnExportExecutions(grantee: iam.IGrantable, actions: string[]): iam.Grant {
    const resourceArns = [this.parts.stateMachines.exportExecutionsArn()];
    const grant = iam.Grant.addToPrincipal({ grantee, actions, resourceArns });
    this.acknowledgeGrant(grantee, [
      {
        statement: new iam.PolicyStatement({ actions, resources: resourceArns }),
        wildcardReason:
          'Executions of the FHIR bulk export state machine are named per export at run time; the grant covers that state machine’s executions only.',
      },
    ]);
    return grant;
  }

  private acknowledgeGrant(
    grantee: iam.IGrantable,
    statements: Parameters<typeof acknowledgeWildcards>[1],
  ): void {
    const principal = grantee.grantPrincipal;
    const scope = Construct.isConstruct(principal)
      ? principal
      : Construct.isConstruct(grantee)
        ? grantee
        : undefined;
    if (scope) acknowledgeWildcards(scope, statements);
  }
}
