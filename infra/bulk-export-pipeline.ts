import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArnFormat, Aws, Duration, Names, RemovalPolicy, Stack, TimeZone, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { type BundlingOptions, NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import {
  DEFAULT_MAX_LINE_BYTES,
  DOWNLOAD_FILE_MIN_MEMORY_MB,
  downloadFileMemoryMb,
} from '../lambdas/core/ndjson/line-limit.js';
import type { SourceSettingsInput } from '../lambdas/schema/source.js';
import type { SIGNING_KEY_SPECS } from './config.js';
import { acknowledgeWildcards, type ExplainedStatement } from './nag-findings.js';
import { checkEnvironmentSize, validatePipelineProps } from './validate-props.js';

/** KMS key specs that sign SMART client assertions: ES384 on P-384, RS384 on RSA. */
export type SigningKeySpec = (typeof SIGNING_KEY_SPECS)[number];

/**
 * The non-secret settings of a source: the source schema's input
 * (lambdas/schema/source.ts), defaults left out. Credentials never go here:
 * they live in the source's client secret.
 */
export type ExportSourceSettings = SourceSettingsInput;

/** When a source's daily delta runs: an EventBridge Scheduler schedule that starts `{ sourceId, since: "auto" }`. */
export interface ExportScheduleProps {
  /** `cron(minutes hours day-of-month month day-of-week year)` or `rate(value unit)`, as EventBridge Scheduler reads them. */
  readonly expression: string;
  /** IANA time zone the cron expression is read in. @default 'UTC' */
  readonly timeZone?: string;
  /** Scheduler may start the execution anywhere in this window (spreads load on the EHR); `Duration.minutes(0)` turns it off. @default Duration.minutes(15) */
  readonly flexibleTimeWindow?: Duration;
  /** @default true */
  readonly enabled?: boolean;
  /** Attempts to start the execution when StartExecution fails (e.g. throttling). @default 5 */
  readonly retryAttempts?: number;
  /** Give up starting the execution after this long; then it lands in the dead-letter queue. @default Duration.hours(1) */
  readonly maximumEventAge?: Duration;
}

/** One EHR or FHIR server to export from. */
export interface BulkExportSourceProps {
  /** Lower-case id used in S3 keys, execution names, schedules and key aliases. */
  readonly id: string;
  /** Non-secret settings (they end up in the Lambdas' `SOURCES` environment variable). */
  readonly settings: ExportSourceSettings;
  /**
   * The Secrets Manager secret holding the client's credentials as JSON
   * (`{ clientId, kmsKeyId | privateJwk, scope?, tokenUrl?, scopeSyntax?, extraScopes? }`):
   * its complete ARN (with the 6-character suffix) or its name. Only the
   * token-minting function may read it.
   */
  readonly clientSecret: string;
  /** The customer managed KMS key the secret is encrypted with, if not `aws/secretsmanager`. @default the AWS managed key */
  readonly clientSecretEncryptionKeyArn?: string;
  /** @default no schedule: exports start by hand or from a backfill */
  readonly schedule?: ExportScheduleProps;
  /** Spec of this source's asymmetric signing key. @default 'ECC_NIST_P384' (ES384) */
  readonly signingKeySpec?: SigningKeySpec;
}

/** The bucket props a caller may set on the bucket this construct creates. */
export type ExportBucketProps = Pick<
  s3.BucketProps,
  | 'bucketName'
  | 'lifecycleRules'
  | 'intelligentTieringConfigurations'
  | 'inventories'
  | 'metrics'
  | 'objectLockEnabled'
  | 'objectLockDefaultRetention'
  | 'replicationRules'
  | 'replicationRole'
>;

/** Retention of what the pipeline writes to the bucket it creates. */
export interface ExportLifecycleProps {
  /** Manifests, file lists and per-file results under `_work/`. @default Duration.days(7) */
  readonly workExpiration?: Duration;
  /** Multipart uploads left open by a crashed download. Must outlast the longest download. @default Duration.days(7) */
  readonly incompleteUploadExpiration?: Duration;
  /** Overwritten or deleted object versions. @default Duration.days(30) */
  readonly noncurrentVersionExpiration?: Duration;
  /** Storage-class transitions of exported data (`source=…/`). @default none */
  readonly exportTransitions?: readonly s3.Transition[];
  /** Delete exported data after this long. @default never */
  readonly exportExpiration?: Duration;
  /** Server access logs of the export bucket. @default Duration.days(365) */
  readonly accessLogExpiration?: Duration;
}

export interface BulkExportPipelineProps {
  /** The sources to export from; at least one, ids unique. */
  readonly sources: readonly BulkExportSourceProps[];
  /**
   * An existing export bucket. It must have EventBridge notifications on;
   * when it is SSE-KMS encrypted, import it with its `encryptionKey`.
   * Conflicts with `bucketProps` and `lifecycle`.
   * @default a new bucket: SSE-KMS with its own key and a bucket key, TLS only, versioned, access-logged, no public access
   */
  readonly bucket?: s3.IBucket;
  /** Settings for the bucket this construct creates. Conflicts with `bucket`. @default none */
  readonly bucketProps?: ExportBucketProps;
  /** Key prefix of everything the pipeline writes. @default '' (the bucket root) */
  readonly exportPrefix?: string;
  /** Lifecycle of the created bucket. Conflicts with `bucket`. @default see ExportLifecycleProps */
  readonly lifecycle?: ExportLifecycleProps;
  /** Signing key aliases are `alias/<keyAliasPrefix>/<sourceId>`. @default 'fhir-bulk-export' */
  readonly keyAliasPrefix?: string;
  /** Retention of every log group. @default logs.RetentionDays.ONE_YEAR */
  readonly logRetention?: logs.RetentionDays;
  /** Where alarms go. @default a new SNS topic encrypted with the pipeline's operations key */
  readonly alarmTopic?: sns.ITopic;
  /** An export running longer than this (ExecutionTime p99) raises an alarm. @default Duration.hours(24) */
  readonly longExportThreshold?: Duration;
  /** Download-file errors per 15 minutes that raise an alarm (transient errors are retried). @default 5 */
  readonly downloadErrorThreshold?: number;
  /**
   * Reserve concurrency for each function, sized from the sources'
   * `maxConcurrency`. Turn off in accounts whose Lambda concurrency quota is
   * the 10 of a new account. @default true
   */
  readonly reservedConcurrency?: boolean;
  /** The bus the pipeline emits `Bulk Export Succeeded` / `Failed` on (source `fhir.bulk-export`). @default the account's default bus */
  readonly eventBus?: events.IEventBus;
  /** Run the functions in this VPC (it needs a NAT or egress path to the EHRs, and S3/KMS/Secrets Manager endpoints or NAT). @default no VPC */
  readonly vpc?: ec2.IVpc;
  /** @default the VPC's private subnets with egress */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /** Create the example downstream: an EventBridge rule on completion markers feeding an encrypted SQS queue. @default true */
  readonly completionQueue?: boolean;
  /** Removal policy of the buckets, keys and log groups. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /** @default a CloudFormation-generated name */
  readonly stateMachineName?: string;
  /** Namespace of the per-source metrics. @default 'FhirBulkExport' */
  readonly metricNamespace?: string;
  /** `LOG_LEVEL` of the functions. @default 'info' */
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** How long EHRs may cache the JWKS. @default Duration.hours(1) */
  readonly jwksMaxAge?: Duration;
  /**
   * The repository root holding `lambdas/`, `state-machines/`, `infra/jwks-function/`
   * and `package-lock.json`. @default the parent of this file's directory
   */
  readonly projectRoot?: string;
}

/** The Task functions of both state machines, by the name their `${<Name>FunctionArn}` placeholders use. */
export type TaskFunctionName =
  | 'PrepareExport'
  | 'MintToken'
  | 'KickOff'
  | 'PollStatus'
  | 'DownloadFile'
  | 'CheckFiles'
  | 'FinalizeExport'
  | 'CompleteExport'
  | 'CleanUp'
  | 'CleanUpEndedExport';

interface TaskFunctionSpec {
  readonly name: TaskFunctionName;
  readonly file: string;
  readonly description: string;
  readonly memorySize: number;
  readonly timeout: Duration;
}

/**
 * Memory and timeouts. Download File streams gigabytes and checkpoints before
 * 15 minutes; Finalize Export verifies every file one by one (Oracle Health
 * can list ~20,000), so it gets the same ceiling; Clean Up pages through open
 * uploads; Clean Up Ended Export also waits for downloads still in flight
 * when their execution ended, which can take a download's whole 15 minutes.
 * Check Files reads one result per file, like Poll Status's file list.
 * Everything else is one HTTP or KMS call.
 */
const TASK_FUNCTIONS: readonly TaskFunctionSpec[] = [
  {
    name: 'PrepareExport',
    file: 'prepare-export.ts',
    description: 'Validates the input, resolves since=auto, takes the per-source lock',
    memorySize: 256,
    timeout: Duration.minutes(1),
  },
  {
    name: 'MintToken',
    file: 'mint-token.ts',
    description: 'Signs SMART client assertions with KMS and hands out sealed access tokens',
    memorySize: 256,
    timeout: Duration.minutes(1),
  },
  {
    name: 'KickOff',
    file: 'kick-off.ts',
    description: 'Kicks off the FHIR $export',
    memorySize: 256,
    timeout: Duration.minutes(1),
  },
  {
    name: 'PollStatus',
    file: 'poll-status.ts',
    description: 'Polls the export status once; on completion stores the manifest and file list',
    memorySize: 512,
    timeout: Duration.minutes(1),
  },
  {
    name: 'DownloadFile',
    file: 'download-file.ts',
    description: 'Streams one NDJSON file into S3 with validation, counting and hashing',
    // The floor: raised for sources whose lines may be longer (downloadFileMemoryMb below).
    memorySize: DOWNLOAD_FILE_MIN_MEMORY_MB,
    timeout: Duration.minutes(15),
  },
  {
    name: 'CheckFiles',
    file: 'check-files.ts',
    description: 'Lists the files without a verified result: the retry pass downloads only those',
    memorySize: 512,
    timeout: Duration.minutes(1),
  },
  {
    name: 'FinalizeExport',
    file: 'finalize-export.ts',
    description: 'Verifies every file, writes the receipt and completion marker, advances the watermark',
    memorySize: 512,
    timeout: Duration.minutes(15),
  },
  {
    name: 'CompleteExport',
    file: 'complete-export.ts',
    description:
      'After the completion marker: advances the watermark, deletes the server job, releases the lock, announces success',
    memorySize: 256,
    timeout: Duration.minutes(5),
  },
  {
    name: 'CleanUp',
    file: 'clean-up.ts',
    description: 'Aborts uploads, deletes the server job, records the failure',
    memorySize: 256,
    timeout: Duration.minutes(5),
  },
  {
    name: 'CleanUpEndedExport',
    file: 'clean-up-ended-export.ts',
    description:
      'Cleans up after an export execution that was stopped, timed out or failed without its own clean-up',
    memorySize: 256,
    timeout: Duration.minutes(15),
  },
];

/**
 * What each state machine's ASL may name, and so all its role may invoke:
 * the clean-up machine runs on every ended export, and has no business
 * kicking off or downloading anything.
 */
const EXPORT_MACHINE_FUNCTIONS: readonly TaskFunctionName[] = [
  'PrepareExport',
  'MintToken',
  'KickOff',
  'PollStatus',
  'DownloadFile',
  'CheckFiles',
  'FinalizeExport',
  'CompleteExport',
  'CleanUp',
];
const CLEAN_UP_MACHINE_FUNCTIONS: readonly TaskFunctionName[] = ['MintToken', 'CleanUpEndedExport'];

/**
 * Ends of an export execution that start the clean-up machine. A stop or a
 * time-out never reaches the Clean Up state, and a failure may not have (a
 * Lambda timeout beyond its retries, the execution history limit); the
 * clean-up handler tells a failure already cleaned up from one that was not.
 */
const CLEAN_UP_AFTER_STATUSES = ['ABORTED', 'TIMED_OUT', 'FAILED'];

/** How every function is bundled by esbuild (exported so a test can bundle a handler the same way). */
export const LAMBDA_BUNDLING = {
  format: OutputFormat.ESM,
  target: 'node24',
  mainFields: ['module', 'main'],
  minify: true,
  // Error names are the ASL's ErrorEquals contract (`this.name = this.constructor.name`): never mangle them.
  keepNames: true,
  sourceMap: true,
  sourcesContent: false,
  // Bundle the AWS SDK too: the version we tested, not the runtime's.
  externalModules: [],
  // CommonJS dependencies call require(); give the ESM bundle one.
  banner:
    "import { createRequire as __bulkExportCreateRequire } from 'node:module'; const require = __bulkExportCreateRequire(import.meta.url);",
} as const satisfies BundlingOptions;

/** Source of the events the pipeline emits (lambdas/runtime-aws.ts). */
export const EVENT_SOURCE = 'fhir.bulk-export';
/** Suffix of the completion marker that downstream jobs trigger on (lambdas/core/layout.ts). */
export const COMPLETION_MARKER_SUFFIX = '_SUCCESS.json';

const DEFAULT_PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));

const KEY_SPECS: Record<SigningKeySpec, kms.KeySpec> = {
  ECC_NIST_P384: kms.KeySpec.ECC_NIST_P384,
  RSA_2048: kms.KeySpec.RSA_2048,
  RSA_3072: kms.KeySpec.RSA_3072,
  RSA_4096: kms.KeySpec.RSA_4096,
};

const APPLICATION_LOG_LEVELS: Record<
  NonNullable<BulkExportPipelineProps['logLevel']>,
  lambda.ApplicationLogLevel
> = {
  debug: lambda.ApplicationLogLevel.DEBUG,
  info: lambda.ApplicationLogLevel.INFO,
  warn: lambda.ApplicationLogLevel.WARN,
  error: lambda.ApplicationLogLevel.ERROR,
};

/** The encryption context keys the sealer binds a token to (lambdas/runtime.ts `sealContext`). */
const SEALING_CONTEXT_KEYS = ['sourceId', 'executionId'];

const LAMBDA_REASONS = {
  dlq: 'Step Functions and the Function URL invoke these functions synchronously; failures return to the caller (the ASL Retry/Catch handles them), so an asynchronous-invocation DLQ would never receive anything.',
  vpc: 'The functions reach EHR FHIR endpoints on the internet and AWS APIs only; no VPC resources are used. Pass `vpc` to run them in a VPC with controlled egress.',
  concurrency:
    'reservedConcurrency is off for this deployment (e.g. an account with the default concurrency quota of 10); concurrency is bounded by each source’s maxConcurrency in the state machine instead.',
};

/**
 * The AWS side of the FHIR Bulk Data `$export` pipeline: keys, the export
 * bucket, the Task functions, the state machine loaded from
 * `state-machines/bulk-export.asl.json`, one schedule per source, the public
 * JWKS, alarms and a dashboard.
 *
 * Least privilege is the point: only the token minter may `kms:Sign` or read
 * client secrets, each function gets exactly the S3 and KMS actions its code
 * calls, and every remaining wildcard is acknowledged for cdk-nag next to the
 * statement that needs it, with its reason.
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
  /** Asymmetric SIGN_VERIFY key per source id. */
  public readonly signingKeys: ReadonlyMap<string, kms.Key>;
  /** Alias per source id: `alias/<keyAliasPrefix>/<sourceId>`, usable as the secret's `kmsKeyId`. */
  public readonly signingKeyAliases: ReadonlyMap<string, kms.Alias>;
  /** The Task functions by ASL name. */
  public readonly functions: Readonly<Record<TaskFunctionName, NodejsFunction>>;
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
  public readonly jwksFunction: NodejsFunction;
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
  /** `Bulk Export Succeeded` / `Failed` events, kept for the per-source metrics. */
  public readonly outcomeLogGroup: logs.LogGroup;
  /** EventBridge pattern of completion markers landing in the bucket: what downstream ETL should trigger on. */
  public readonly completionEventPattern: events.EventPattern;
  /** The example downstream queue fed by completion markers. */
  public readonly completionQueue?: sqs.Queue;

  private readonly props: BulkExportPipelineProps;
  private readonly stack: Stack;
  private readonly removalPolicy: RemovalPolicy;
  private readonly exportPrefix: string;
  private readonly projectRoot: string;

  constructor(scope: Construct, id: string, props: BulkExportPipelineProps) {
    super(scope, id);
    validatePipelineProps(props);
    // Set before any child exists: the access log bucket gets a bucket policy, not ACLs.
    this.node.setContext('@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy', true);
    this.node.setContext('@aws-cdk/aws-events:eventsTargetQueueSameAccount', true);

    this.props = props;
    this.stack = Stack.of(this);
    this.removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const prefix = props.exportPrefix ?? '';
    this.exportPrefix = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    this.projectRoot = props.projectRoot ?? DEFAULT_PROJECT_ROOT;

    this.operationsKey = this.createOperationsKey();
    this.sealingKey = new kms.Key(this, 'SealingKey', {
      description: 'Seals FHIR access tokens carried in Step Functions state (KMS Encrypt with context)',
      enableKeyRotation: true,
      removalPolicy: this.removalPolicy,
    });

    const { bucket, dataKey, accessLogBucket } = this.createBucket();
    this.bucket = bucket;
    this.dataKey = dataKey;
    this.accessLogBucket = accessLogBucket;

    const functions = {} as Record<TaskFunctionName, NodejsFunction>;
    const roles = {} as Record<TaskFunctionName, iam.Role>;
    for (const spec of TASK_FUNCTIONS) {
      roles[spec.name] = new iam.Role(this, `${spec.name}Role`, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description: `${spec.name} function of the FHIR bulk export pipeline`,
      });
    }
    const { signingKeys, signingKeyAliases } = this.createSigningKeys(roles.MintToken);
    this.signingKeys = signingKeys;
    this.signingKeyAliases = signingKeyAliases;

    const environment = this.commonEnvironment();
    const concurrency = this.reservedConcurrency();
    for (const spec of TASK_FUNCTIONS) {
      const env =
        spec.name === 'MintToken'
          ? {
              ...environment,
              SOURCE_SECRET_ARNS: JSON.stringify(
                Object.fromEntries(props.sources.map((source) => [source.id, source.clientSecret])),
              ),
            }
          : environment;
      const fn = this.createFunction(spec.name, {
        entry: join(this.projectRoot, 'lambdas', 'handlers', spec.file),
        description: spec.description,
        memorySize: spec.name === 'DownloadFile' ? this.downloadFileMemoryMb() : spec.memorySize,
        timeout: spec.timeout,
        role: roles[spec.name],
        environment: env,
        reservedConcurrentExecutions: concurrency[spec.name],
      });
      functions[spec.name] = fn;
    }
    this.functions = functions;
    this.grantTaskFunctions(roles);
    // A function is usable only once its permissions exist.
    for (const spec of TASK_FUNCTIONS)
      functions[spec.name].node.addDependency(this.node.findChild(`${spec.name}Policy`));

    this.stateMachine = this.createExportStateMachine();
    const livenessPolicies = this.grantLockLiveness(roles);
    const cleanUp = this.createCleanUp(livenessPolicies.CleanUpEndedExport);
    this.cleanUpStateMachine = cleanUp.stateMachine;
    this.cleanUpRule = cleanUp.rule;
    this.cleanUpDeadLetterQueue = cleanUp.deadLetterQueue;
    const jwks = this.createJwksEndpoint();
    this.jwksFunction = jwks.fn;
    this.jwksUrl = jwks.url;

    this.scheduleDeadLetterQueue = this.encryptedQueue('ScheduleDeadLetterQueue', {
      retentionPeriod: Duration.days(14),
    });
    Validations.of(this.scheduleDeadLetterQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason:
        'This queue is the dead-letter queue of the EventBridge Scheduler schedules (Target.DeadLetterConfig); cdk-nag only recognises DLQs named in an SQS redrive policy.',
    });
    this.schedules = this.createSchedules(livenessPolicies.PrepareExport);

    this.completionEventPattern = {
      source: ['aws.s3'],
      detailType: ['Object Created'],
      detail: {
        bucket: { name: [this.bucket.bucketName] },
        object: { key: [{ suffix: COMPLETION_MARKER_SUFFIX }] },
      },
    };
    if (props.completionQueue ?? true) this.completionQueue = this.createCompletionQueue();

    this.outcomeLogGroup = this.createOutcomeLog();
    this.alarmTopic = props.alarmTopic ?? this.createAlarmTopic();
    this.alarms = this.createAlarms();
    this.dashboard = this.createDashboard();
  }

  /** Encrypts log groups, the alarm topic and the queues; the services that write to them may use it. */
  private createOperationsKey(): kms.Key {
    const key = new kms.Key(this, 'OperationsKey', {
      description: 'Encrypts the FHIR bulk export pipeline log groups, alarm topic and queues',
      enableKeyRotation: true,
      removalPolicy: this.removalPolicy,
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

  private createBucket(): { bucket: s3.IBucket; dataKey?: kms.IKey; accessLogBucket?: s3.Bucket } {
    if (this.props.bucket) return { bucket: this.props.bucket, dataKey: this.props.bucket.encryptionKey };
    const lifecycle = this.props.lifecycle ?? {};
    // S3 delivers access logs to SSE-KMS buckets when the key lets logging.s3 use it (CDK grants that).
    const accessLogBucket = new s3.Bucket(this, 'AccessLogBucket', {
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.operationsKey,
      bucketKeyEnabled: true,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      lifecycleRules: [
        {
          id: 'expire-access-logs',
          expiration: lifecycle.accessLogExpiration ?? Duration.days(365),
          noncurrentVersionExpiration: Duration.days(30),
        },
      ],
      removalPolicy: this.removalPolicy,
    });
    Validations.of(accessLogBucket).acknowledge({
      id: 'HIPAA.Security-S3BucketReplicationEnabled',
      reason:
        'The bucket holds S3 server access logs (request metadata, never resource content); replicating them is left to the account’s log archive.',
    });

    const dataKey = new kms.Key(this, 'DataKey', {
      description: 'SSE-KMS key of the FHIR bulk export bucket',
      enableKeyRotation: true,
      removalPolicy: this.removalPolicy,
    });
    const bucketProps = this.props.bucketProps ?? {};
    const exportsRule: s3.LifecycleRule[] =
      lifecycle.exportTransitions || lifecycle.exportExpiration
        ? [
            {
              id: 'age-exported-data',
              prefix: `${this.exportPrefix}source=`,
              transitions: lifecycle.exportTransitions ? [...lifecycle.exportTransitions] : undefined,
              expiration: lifecycle.exportExpiration,
            },
          ]
        : [];
    const bucket = new s3.Bucket(this, 'ExportBucket', {
      ...bucketProps,
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: dataKey,
      bucketKeyEnabled: true,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      serverAccessLogsBucket: accessLogBucket,
      serverAccessLogsPrefix: 'export-bucket/',
      lifecycleRules: [
        {
          id: 'expire-work-files',
          prefix: `${this.exportPrefix}_work/`,
          expiration: lifecycle.workExpiration ?? Duration.days(7),
          noncurrentVersionExpiration: Duration.days(1),
        },
        {
          id: 'abort-incomplete-uploads',
          abortIncompleteMultipartUploadAfter: lifecycle.incompleteUploadExpiration ?? Duration.days(7),
        },
        {
          id: 'expire-noncurrent-versions',
          noncurrentVersionExpiration: lifecycle.noncurrentVersionExpiration ?? Duration.days(30),
          expiredObjectDeleteMarker: true,
        },
        ...exportsRule,
        ...(bucketProps.lifecycleRules ?? []),
      ],
      removalPolicy: this.removalPolicy,
    });
    // Set on the L1 so no notifications custom resource (a Lambda with a wildcard policy) is needed.
    (bucket.node.defaultChild as s3.CfnBucket).notificationConfiguration = {
      eventBridgeConfiguration: { eventBridgeEnabled: true },
    };
    if (!bucketProps.replicationRules) {
      Validations.of(bucket).acknowledge({
        id: 'HIPAA.Security-S3BucketReplicationEnabled',
        reason:
          'Exports can be re-run from the EHR, and cross-region replication of PHI is a data-residency decision for the deployer: set bucketProps.replicationRules to replicate.',
      });
    }
    return { bucket, dataKey, accessLogBucket };
  }

  private createSigningKeys(mintTokenRole: iam.Role) {
    const signingKeys = new Map<string, kms.Key>();
    const signingKeyAliases = new Map<string, kms.Alias>();
    const aliasPrefix = this.props.keyAliasPrefix ?? 'fhir-bulk-export';
    for (const source of this.props.sources) {
      const spec = source.signingKeySpec ?? 'ECC_NIST_P384';
      const key = new kms.Key(this, `SigningKey-${source.id}`, {
        description: `Signs SMART Backend Services client assertions for FHIR source ${source.id} (${spec === 'ECC_NIST_P384' ? 'ES384' : 'RS384'})`,
        keySpec: KEY_SPECS[spec],
        keyUsage: kms.KeyUsage.SIGN_VERIFY,
        removalPolicy: this.removalPolicy,
      });
      // Defence in depth behind IAM: even an administrator's role cannot sign as this client.
      key.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'OnlyTheTokenMinterSigns',
          effect: iam.Effect.DENY,
          principals: [new iam.AnyPrincipal()],
          actions: ['kms:Sign'],
          resources: ['*'],
          conditions: { ArnNotEquals: { 'aws:PrincipalArn': mintTokenRole.roleArn } },
        }),
      );
      signingKeys.set(source.id, key);
      signingKeyAliases.set(
        source.id,
        new kms.Alias(this, `SigningKeyAlias-${source.id}`, {
          aliasName: `alias/${aliasPrefix}/${source.id}`,
          targetKey: key,
        }),
      );
    }
    return { signingKeys, signingKeyAliases };
  }

  /** What every Task function reads (lambdas/runtime-aws.ts). */
  private commonEnvironment(): Record<string, string> {
    const sources = this.props.sources.map(({ id, settings }) => {
      const { id: _repeated, ...rest } = settings;
      return { id, ...rest };
    });
    return {
      EXPORT_BUCKET: this.bucket.bucketName,
      EXPORT_PREFIX: this.exportPrefix,
      ...(this.dataKey ? { DATA_KMS_KEY_ID: this.dataKey.keyArn } : {}),
      SOURCES: JSON.stringify(sources),
      SEALING_KMS_KEY_ID: this.sealingKey.keyArn,
      EVENT_BUS_NAME: this.props.eventBus?.eventBusName ?? 'default',
      LOG_LEVEL: this.props.logLevel ?? 'info',
      NODE_OPTIONS: '--enable-source-maps',
    };
  }

  /** Enough memory for the longest line any source accepts (measured model in line-limit.ts). */
  private downloadFileMemoryMb(): number {
    const longest = Math.max(
      ...this.props.sources.map((source) => source.settings.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES),
    );
    return downloadFileMemoryMb(longest);
  }

  /**
   * Each source runs one export at a time (the per-source lock), so only the
   * file downloads and their token mints scale with `maxConcurrency`. A
   * clean-up of an ended export may overlap the source's next export, so the
   * minter keeps room for one clean-up per source on top.
   */
  private reservedConcurrency(): Partial<Record<TaskFunctionName | 'Jwks', number>> {
    if (this.props.reservedConcurrency === false) return {};
    const sources = this.props.sources.length;
    const files = this.props.sources.reduce((sum, source) => sum + (source.settings.maxConcurrency ?? 4), 0);
    const perExport = sources + 2;
    return {
      PrepareExport: perExport,
      MintToken: files + 3 * sources + 2,
      KickOff: perExport,
      PollStatus: perExport,
      DownloadFile: files + sources,
      CheckFiles: perExport,
      FinalizeExport: perExport,
      CompleteExport: perExport,
      CleanUp: perExport,
      CleanUpEndedExport: perExport,
      Jwks: 5,
    };
  }

  private createFunction(
    name: string,
    options: {
      entry: string;
      description: string;
      memorySize: number;
      timeout: Duration;
      role: iam.Role;
      environment: Record<string, string>;
      reservedConcurrentExecutions?: number;
    },
  ): NodejsFunction {
    checkEnvironmentSize(name, options.environment);
    const logGroup = new logs.LogGroup(this, `${name}Logs`, {
      retention: this.props.logRetention ?? logs.RetentionDays.ONE_YEAR,
      encryptionKey: this.operationsKey,
      removalPolicy: this.removalPolicy,
    });
    const basePolicy = this.attachPolicy(
      `${name}RuntimePolicy`,
      options.role,
      `Logging (and VPC networking) of the ${name} function`,
      [
        {
          statement: new iam.PolicyStatement({
            actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
            resources: [logGroup.logGroupArn],
          }),
        },
        this.props.vpc
          ? {
              statement: new iam.PolicyStatement({
                actions: [
                  'ec2:CreateNetworkInterface',
                  'ec2:DescribeNetworkInterfaces',
                  'ec2:DescribeSubnets',
                  'ec2:DeleteNetworkInterface',
                  'ec2:AssignPrivateIpAddresses',
                  'ec2:UnassignPrivateIpAddresses',
                ],
                resources: ['*'],
              }),
              wildcardReason:
                'Lambda creates and deletes the network interfaces of a VPC function itself; the EC2 Describe actions have no resource-level permissions, and the rest name interfaces that do not exist yet (the same actions as AWSLambdaVPCAccessExecutionRole).',
            }
          : undefined,
      ],
    );
    const fn = new NodejsFunction(this, name, {
      entry: options.entry,
      handler: 'handler',
      description: options.description,
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: options.memorySize,
      timeout: options.timeout,
      role: options.role,
      environment: options.environment,
      reservedConcurrentExecutions: options.reservedConcurrentExecutions,
      logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      // Lambda filters on the `level` our logger writes; keep it in step with LOG_LEVEL.
      applicationLogLevelV2: APPLICATION_LOG_LEVELS[this.props.logLevel ?? 'info'],
      systemLogLevelV2: lambda.SystemLogLevel.INFO,
      vpc: this.props.vpc,
      vpcSubnets: this.props.vpc ? this.props.vpcSubnets : undefined,
      projectRoot: this.projectRoot,
      depsLockFilePath: join(this.projectRoot, 'package-lock.json'),
      bundling: LAMBDA_BUNDLING,
    });
    // Lambda checks the VPC permissions when the function is created.
    fn.node.addDependency(basePolicy);
    this.acknowledgeLambdaFindings(fn, options.reservedConcurrentExecutions === undefined);
    return fn;
  }

  private acknowledgeLambdaFindings(fn: lambda.Function, noReservedConcurrency: boolean): void {
    Validations.of(fn).acknowledge({ id: 'HIPAA.Security-LambdaDLQ', reason: LAMBDA_REASONS.dlq });
    if (!this.props.vpc) {
      Validations.of(fn).acknowledge({ id: 'HIPAA.Security-LambdaInsideVPC', reason: LAMBDA_REASONS.vpc });
    }
    if (noReservedConcurrency) {
      Validations.of(fn).acknowledge({
        id: 'HIPAA.Security-LambdaConcurrency',
        reason: LAMBDA_REASONS.concurrency,
      });
    }
  }

  /** Attaches statements as one customer managed policy, acknowledging each wildcard with its reason. */
  private attachPolicy(
    id: string,
    role: iam.IRole,
    description: string,
    statements: readonly (ExplainedStatement | undefined)[],
  ): iam.ManagedPolicy {
    const present = statements.filter((entry): entry is ExplainedStatement => entry !== undefined);
    const policy = new iam.ManagedPolicy(this, id, {
      description,
      roles: [role],
      statements: present.map((entry) => entry.statement),
    });
    acknowledgeWildcards(policy, present);
    return policy;
  }

  /**
   * One statement per need, by what each handler's code actually calls:
   * - HeadObject/GetObject of a missing key answers 404 (not 403) only with
   *   s3:ListBucket, and the handlers rely on 404 for a first watermark,
   *   a free lock, an absent checkpoint;
   * - with SSE-KMS, PutObject and multipart uploads need kms:GenerateDataKey,
   *   reads and multipart completion kms:Decrypt, both only via S3.
   */
  private grantTaskFunctions(roles: Record<TaskFunctionName, iam.Role>): void {
    const objects = this.bucket.arnForObjects(`${this.exportPrefix}*`);
    const objectsReason =
      'Objects are created per export under keys that embed the source, export time and resource type (and under _work/ and _state/), so they can only be named by the pipeline prefix.';
    const s3Objects = (...actions: string[]): ExplainedStatement => ({
      statement: new iam.PolicyStatement({ actions, resources: [objects] }),
      wildcardReason: objectsReason,
    });
    const s3Bucket = (...actions: string[]): ExplainedStatement => ({
      statement: new iam.PolicyStatement({ actions, resources: [this.bucket.bucketArn] }),
    });
    const s3WorkObjects = (...actions: string[]): ExplainedStatement => ({
      statement: new iam.PolicyStatement({
        actions,
        resources: [this.bucket.arnForObjects(`${this.exportPrefix}_work/*`)],
      }),
      wildcardReason:
        'Work objects (file lists, per-file results, retry lists) are written per execution under _work/source=<id>/execution=<name>/, named at run time.',
    });
    const dataKey = (...actions: string[]): ExplainedStatement | undefined =>
      this.dataKey
        ? {
            statement: new iam.PolicyStatement({
              actions,
              resources: [this.dataKey.keyArn],
              conditions: { StringEquals: { 'kms:ViaService': `s3.${Aws.REGION}.amazonaws.com` } },
            }),
          }
        : undefined;
    const sealing = (action: 'kms:Encrypt' | 'kms:Decrypt'): ExplainedStatement => ({
      statement: new iam.PolicyStatement({
        actions: [action],
        resources: [this.sealingKey.keyArn],
        conditions: {
          'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': SEALING_CONTEXT_KEYS },
          Null: { 'kms:EncryptionContextKeys': 'false' },
          StringEquals: { 'kms:EncryptionContext:sourceId': this.props.sources.map((source) => source.id) },
        },
      }),
    });
    const eventBusArn =
      this.props.eventBus?.eventBusArn ??
      this.stack.formatArn({ service: 'events', resource: 'event-bus', resourceName: 'default' });
    const putEvents: ExplainedStatement = {
      statement: new iam.PolicyStatement({
        actions: ['events:PutEvents'],
        resources: [eventBusArn],
        conditions: { StringEquals: { 'events:source': EVENT_SOURCE } },
      }),
    };

    // What ending an export takes, before or after its marker: write receipts and the lock, abort
    // uploads, remove staged copies for good (versions included), announce the outcome; and, but for
    // a run taking over a dead holder, open the sealed token for the job's DELETE.
    const endingAnExportWithoutToken = (): (ExplainedStatement | undefined)[] => [
      s3Objects(
        's3:GetObject',
        's3:PutObject',
        's3:DeleteObject',
        's3:DeleteObjectVersion',
        's3:AbortMultipartUpload',
      ),
      s3Bucket('s3:ListBucket', 's3:ListBucketVersions', 's3:ListBucketMultipartUploads'),
      dataKey('kms:GenerateDataKey', 'kms:Decrypt'),
      putEvents,
    ];
    const endingAnExport = () => [sealing('kms:Decrypt'), ...endingAnExportWithoutToken()];

    this.attachPolicy(
      'PrepareExportPolicy',
      roles.PrepareExport,
      'Watermark read, per-source lock; ends a dead holder it takes the lock from',
      // Taking over a dead holder's lock ends its export; its job's DELETE is the new run's Kick Off's.
      endingAnExportWithoutToken(),
    );

    const secretStatements = this.props.sources.flatMap((source): ExplainedStatement[] => {
      const statements: ExplainedStatement[] = [
        {
          statement: new iam.PolicyStatement({
            actions: ['secretsmanager:GetSecretValue'],
            resources: [this.secretResourceArn(source.clientSecret)],
          }),
        },
      ];
      if (source.clientSecretEncryptionKeyArn) {
        statements.push({
          statement: new iam.PolicyStatement({
            actions: ['kms:Decrypt'],
            resources: [source.clientSecretEncryptionKeyArn],
            conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${Aws.REGION}.amazonaws.com` } },
          }),
        });
      }
      return statements;
    });
    this.attachPolicy(
      'MintTokenPolicy',
      roles.MintToken,
      'Client secrets, assertion signing, token sealing',
      [
        {
          statement: new iam.PolicyStatement({
            actions: ['kms:Sign', 'kms:GetPublicKey'],
            resources: [...this.signingKeys.values()].map((key) => key.keyArn),
          }),
        },
        sealing('kms:Encrypt'),
        ...secretStatements,
      ],
    );

    this.attachPolicy('KickOffPolicy', roles.KickOff, 'Opens sealed tokens', [sealing('kms:Decrypt')]);

    this.attachPolicy('PollStatusPolicy', roles.PollStatus, 'Opens sealed tokens, stores the manifest', [
      sealing('kms:Decrypt'),
      s3Objects('s3:PutObject'),
      dataKey('kms:GenerateDataKey'),
    ]);

    this.attachPolicy(
      'DownloadFilePolicy',
      roles.DownloadFile,
      'Streams files into S3 with multipart uploads',
      [
        sealing('kms:Decrypt'),
        s3Objects(
          's3:GetObject',
          's3:PutObject',
          's3:PutObjectTagging',
          's3:DeleteObject',
          's3:AbortMultipartUpload',
          's3:ListMultipartUploadParts',
        ),
        s3Bucket('s3:ListBucket'),
        dataKey('kms:GenerateDataKey', 'kms:Decrypt'),
      ],
    );

    this.attachPolicy(
      'FinalizeExportPolicy',
      roles.FinalizeExport,
      'Verifies, publishes the staged files (server-side copies, tags included), writes receipt and marker',
      [
        s3Objects(
          's3:GetObject',
          's3:GetObjectTagging',
          's3:PutObject',
          's3:PutObjectTagging',
          's3:DeleteObject',
          's3:AbortMultipartUpload',
        ),
        s3Bucket('s3:ListBucket', 's3:ListBucketMultipartUploads'),
        dataKey('kms:GenerateDataKey', 'kms:Decrypt'),
      ],
    );

    this.attachPolicy(
      'CheckFilesPolicy',
      roles.CheckFiles,
      'Reads the per-file results and writes the retry list, under _work/ only',
      [
        s3WorkObjects('s3:GetObject', 's3:PutObject'),
        s3Bucket('s3:ListBucket'),
        dataKey('kms:GenerateDataKey', 'kms:Decrypt'),
      ],
    );

    this.attachPolicy(
      'CompleteExportPolicy',
      roles.CompleteExport,
      'After the marker: advances the watermark, DELETEs the server job, releases the lock, announces success',
      endingAnExport(),
    );

    this.attachPolicy(
      'CleanUpEndedExportPolicy',
      roles.CleanUpEndedExport,
      'Cleans up a stopped, timed-out or unhandled failed export: aborts uploads, records the failure, releases the lock',
      endingAnExport(),
    );

    this.attachPolicy(
      'CleanUpPolicy',
      roles.CleanUp,
      'Aborts uploads, records the failure, releases the lock',
      endingAnExport(),
    );
  }

  /** IAM resource of a secret given by complete ARN, partial ARN or name (Secrets Manager appends `-XXXXXX`). */
  private secretResourceArn(secret: string): string {
    if (secret.startsWith('arn:')) return /-[A-Za-z0-9]{6}$/.test(secret) ? secret : `${secret}-??????`;
    return this.stack.formatArn({
      service: 'secretsmanager',
      resource: 'secret',
      resourceName: `${secret}-??????`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
  }

  /**
   * The `${<Name>FunctionArn}` substitutions of an ASL file, and the functions
   * they name. Only the functions the machine may use are offered: a
   * placeholder outside them (a typo, or a function of the other machine)
   * fails the synth here rather than the deploy, or worse, widening the role.
   */
  private taskSubstitutions(
    aslFile: string,
    definition: string,
    allowed: readonly TaskFunctionName[],
  ): { substitutions: Record<string, string>; invoked: TaskFunctionName[] } {
    const offered = new Map(allowed.map((name) => [`${name}FunctionArn`, name]));
    const placeholders = [
      ...new Set([...definition.matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((match) => match[1]!)),
    ];
    const unknown = placeholders.filter((placeholder) => !offered.has(placeholder));
    if (unknown.length > 0) {
      throw new Error(
        `BulkExportPipeline: state-machines/${aslFile} uses \${${unknown.join('}, ${')}} but the construct only provides ${[...offered.keys()].join(', ')} to it`,
      );
    }
    const invoked = placeholders.map((placeholder) => offered.get(placeholder)!);
    return {
      substitutions: Object.fromEntries(
        invoked.map((name) => [`${name}FunctionArn`, this.functions[name].functionArn]),
      ),
      invoked,
    };
  }

  /**
   * A Standard state machine from `state-machines/<aslFile>`, traced, logging
   * every event (without execution data) to its own encrypted log group, with
   * a role that may invoke exactly the Task functions its ASL names.
   */
  private createStateMachineFrom(options: {
    /** Construct ids are `<idPrefix>StateMachine…`; the export machine keeps its first ids (a new id replaces a machine). */
    idPrefix: string;
    aslFile: string;
    allowedFunctions: readonly TaskFunctionName[];
    description: string;
    policyDescription: string;
    logGroupSuffix: string;
    stateMachineName?: string;
    extraStatements: readonly (ExplainedStatement | undefined)[];
  }): { stateMachine: sfn.StateMachine; role: iam.Role } {
    const { idPrefix, aslFile } = options;
    const definition = readFileSync(join(this.projectRoot, 'state-machines', aslFile), 'utf8');
    const { substitutions, invoked } = this.taskSubstitutions(aslFile, definition, options.allowedFunctions);

    const logGroup = new logs.LogGroup(this, `${idPrefix}StateMachineLogs`, {
      // The vendedlogs prefix keeps Step Functions from growing the account's log resource policy.
      logGroupName: `/aws/vendedlogs/states/${Names.uniqueResourceName(this, { maxLength: 200, separator: '-' })}${options.logGroupSuffix}`,
      retention: this.props.logRetention ?? logs.RetentionDays.ONE_YEAR,
      encryptionKey: this.operationsKey,
      removalPolicy: this.removalPolicy,
    });
    const role = new iam.Role(this, `${idPrefix}StateMachineRole`, {
      assumedBy: new iam.ServicePrincipal('states.amazonaws.com'),
      description: options.description,
    });
    const policy = this.attachPolicy(`${idPrefix}StateMachinePolicy`, role, options.policyDescription, [
      {
        statement: new iam.PolicyStatement({
          actions: ['lambda:InvokeFunction'],
          resources: invoked.map((name) => this.functions[name].functionArn),
        }),
      },
      ...options.extraStatements,
      {
        statement: new iam.PolicyStatement({
          actions: [
            'logs:CreateLogDelivery',
            'logs:GetLogDelivery',
            'logs:UpdateLogDelivery',
            'logs:DeleteLogDelivery',
            'logs:ListLogDeliveries',
            'logs:PutResourcePolicy',
            'logs:DescribeResourcePolicies',
            'logs:DescribeLogGroups',
          ],
          resources: ['*'],
        }),
        wildcardReason:
          'CloudWatch Logs log-delivery actions used by Step Functions logging do not support resource-level permissions (AWS documents Resource "*").',
      },
      {
        statement: new iam.PolicyStatement({
          actions: [
            'xray:PutTraceSegments',
            'xray:PutTelemetryRecords',
            'xray:GetSamplingRules',
            'xray:GetSamplingTargets',
          ],
          resources: ['*'],
        }),
        wildcardReason:
          'X-Ray tracing actions do not support resource-level permissions (AWS documents Resource "*").',
      },
    ]);

    const stateMachine = new sfn.StateMachine(this, `${idPrefix}StateMachine`, {
      stateMachineName: options.stateMachineName,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromString(definition),
      definitionSubstitutions: substitutions,
      // Policies are ours (a managed policy, created first): Step Functions checks logging permissions on create.
      role: role.withoutPolicyUpdates(),
      tracingEnabled: true,
      logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
      removalPolicy: this.removalPolicy,
    });
    stateMachine.node.addDependency(role, policy);
    return { stateMachine, role };
  }

  private createExportStateMachine(): sfn.StateMachine {
    const { stateMachine, role } = this.createStateMachineFrom({
      idPrefix: '',
      aslFile: 'bulk-export.asl.json',
      allowedFunctions: EXPORT_MACHINE_FUNCTIONS,
      description: 'FHIR bulk export state machine',
      policyDescription: 'Invokes the Task functions, reads the file list',
      logGroupSuffix: '',
      stateMachineName: this.props.stateMachineName,
      extraStatements: [
        {
          statement: new iam.PolicyStatement({
            actions: ['s3:GetObject'],
            resources: [this.bucket.arnForObjects(`${this.exportPrefix}_work/*`)],
          }),
          wildcardReason:
            'The Distributed Maps’ ItemReaders read the file list and the retry list written per execution under _work/source=<id>/execution=<name>/; the keys are only known at run time.',
        },
        this.dataKey
          ? {
              statement: new iam.PolicyStatement({
                actions: ['kms:Decrypt'],
                resources: [this.dataKey.keyArn],
                conditions: { StringEquals: { 'kms:ViaService': `s3.${Aws.REGION}.amazonaws.com` } },
              }),
            }
          : undefined,
      ],
    });

    // A separate policy created after the state machine: it names the state machine, which needs the role first.
    this.attachPolicy(
      'DistributedMapPolicy',
      role,
      'Lets the Distributed Maps start, stop and redrive their child executions',
      [
        {
          statement: new iam.PolicyStatement({
            actions: ['states:StartExecution'],
            resources: [stateMachine.stateMachineArn],
          }),
        },
        {
          // A redriven export redrives the Map Run that failed, which redrives its failed children.
          statement: new iam.PolicyStatement({
            actions: ['states:DescribeExecution', 'states:StopExecution', 'states:RedriveExecution'],
            resources: [this.mapChildExecutionsArn(stateMachine)],
          }),
          wildcardReason:
            'The Distributed Maps (Download Files, Retry Failed Files) describe, stop and redrive the child executions they start; their ARNs carry the Map Run label and a name generated at run time, under this state machine only.',
        },
      ],
    );
    return stateMachine;
  }

  /**
   * ARN pattern of the export executions themselves (`execution:<name>:<execution>`),
   * what a lock holder is. The name is the state machine's attribute, so a
   * policy that uses it must not be one the machine's functions wait for.
   */
  private exportExecutionsArn(): string {
    return this.stack.formatArn({
      service: 'states',
      resource: 'execution',
      resourceName: `${this.stateMachine.stateMachineName}:*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
  }

  /** ARN pattern of the Distributed Maps' children (`execution:<name>/<map run label>:<child>`), whatever the Map. */
  private mapChildExecutionsArn(stateMachine: sfn.StateMachine): string {
    return this.stack.formatArn({
      service: 'states',
      resource: 'execution',
      resourceName: `${stateMachine.stateMachineName}/*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
  }

  /**
   * Prepare Export and Clean Up Ended Export find out whether a lock's holder
   * (an export execution's ARN) still runs: a dead holder's lock is taken
   * over instead of stranding the source until its deadline. Separate
   * policies, after the export machine: Prepare Export is one of its Tasks.
   */
  private grantLockLiveness(
    roles: Record<TaskFunctionName, iam.Role>,
  ): Record<'PrepareExport' | 'CleanUpEndedExport', iam.ManagedPolicy> {
    const describeHolder = (): ExplainedStatement => ({
      statement: new iam.PolicyStatement({
        actions: ['states:DescribeExecution'],
        resources: [this.exportExecutionsArn()],
      }),
      wildcardReason:
        'A lock holder is an execution of the export state machine, named at run time; DescribeExecution is granted on that state machine’s executions only.',
    });
    return {
      PrepareExport: this.attachPolicy(
        'PrepareExportLockLivenessPolicy',
        roles.PrepareExport,
        'Asks whether the holder of a source lock still runs',
        [describeHolder()],
      ),
      CleanUpEndedExport: this.attachPolicy(
        'CleanUpEndedExportLockLivenessPolicy',
        roles.CleanUpEndedExport,
        'Asks whether the holder of a source lock still runs',
        [describeHolder()],
      ),
    };
  }

  /**
   * What runs when an export ends without reaching its own Clean Up state:
   * `StopExecution`, a time-out, a failure no Catch saw. Without it the
   * server job stays open and the source stays locked until its deadline
   * (72 hours by default), failing every scheduled run in between. So the
   * start is retried for a day, what still fails lands in a dead-letter queue
   * that alarms, and a failed clean-up alarms too.
   */
  private createCleanUp(livenessPolicy: iam.ManagedPolicy): {
    stateMachine: sfn.StateMachine;
    rule: events.Rule;
    deadLetterQueue: sqs.Queue;
  } {
    const { stateMachine } = this.createStateMachineFrom({
      idPrefix: 'CleanUp',
      aslFile: 'clean-up-ended-export.asl.json',
      allowedFunctions: CLEAN_UP_MACHINE_FUNCTIONS,
      description: 'Cleans up after FHIR bulk export executions that ended without their own clean-up',
      policyDescription: 'Invokes the token minter and the clean-up of ended exports',
      logGroupSuffix: '-clean-up',
      extraStatements: [],
    });
    stateMachine.node.addDependency(livenessPolicy);

    const deadLetterQueue = this.encryptedQueue('CleanUpDeadLetterQueue', {
      retentionPeriod: Duration.days(14),
    });
    Validations.of(deadLetterQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason:
        'This queue is the dead-letter queue of the clean-up rule’s target (Target.DeadLetterConfig); cdk-nag only recognises DLQs named in an SQS redrive policy.',
    });
    // EventBridge writes the undelivered event into the queue, encrypted with the operations key.
    this.operationsKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'EventBridgeWritesUndeliveredCleanUps',
        principals: [new iam.ServicePrincipal('events.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
        resources: ['*'],
        conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
    );

    const role = new iam.Role(this, 'CleanUpRuleRole', {
      assumedBy: new iam.ServicePrincipal('events.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
      description: 'Starts the clean-up of FHIR bulk export executions that ended without their own clean-up',
    });
    const policy = this.attachPolicy('CleanUpRulePolicy', role, 'Starts the clean-up state machine', [
      {
        statement: new iam.PolicyStatement({
          actions: ['states:StartExecution'],
          resources: [stateMachine.stateMachineArn],
        }),
      },
    ]);
    // On the default bus whatever `eventBus` says: Step Functions sends its status changes there only.
    const rule = new events.Rule(this, 'CleanUpRule', {
      description:
        'A FHIR bulk export execution ended ABORTED, TIMED_OUT or FAILED: clean up its server job, uploads and lock',
      eventPattern: {
        source: ['aws.states'],
        detailType: ['Step Functions Execution Status Change'],
        detail: {
          status: CLEAN_UP_AFTER_STATUSES,
          // Exactly this machine: a Distributed Map's children carry `stateMachine:<name>/<label>`.
          stateMachineArn: [this.stateMachine.stateMachineArn],
        },
      },
      targets: [
        // No input: the clean-up machine reads the whole event ($.detail.name, .status, .input …).
        new eventsTargets.SfnStateMachine(stateMachine, {
          role: role.withoutPolicyUpdates(),
          deadLetterQueue,
          // EventBridge's ceilings: a throttled or failing StartExecution is tried for a day before the DLQ.
          retryAttempts: 185,
          maxEventAge: Duration.hours(24),
        }),
      ],
    });
    rule.node.addDependency(policy);
    return { stateMachine, rule, deadLetterQueue };
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

  /**
   * A grant on the export machine's executions, whose names are only known at
   * run time. The wildcard is the construct's to explain, so it is
   * acknowledged for cdk-nag under the principal, where its policy lands.
   */
  private grantOnExportExecutions(grantee: iam.IGrantable, actions: string[]): iam.Grant {
    const resourceArns = [this.exportExecutionsArn()];
    const grant = iam.Grant.addToPrincipal({ grantee, actions, resourceArns });
    const principal = grantee.grantPrincipal;
    const scope = Construct.isConstruct(principal)
      ? principal
      : Construct.isConstruct(grantee)
        ? grantee
        : undefined;
    if (scope) {
      acknowledgeWildcards(scope, [
        {
          statement: new iam.PolicyStatement({ actions, resources: resourceArns }),
          wildcardReason:
            'Executions of the FHIR bulk export state machine are named per export at run time; the grant covers that state machine’s executions only.',
        },
      ]);
    }
    return grant;
  }

  private createJwksEndpoint(): { fn: NodejsFunction; url: string } {
    const role = new iam.Role(this, 'JwksRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'Publishes the public JWKS of the FHIR bulk export signing keys',
    });
    this.attachPolicy('JwksPolicy', role, 'Reads the public half of the signing keys', [
      {
        statement: new iam.PolicyStatement({
          actions: ['kms:GetPublicKey'],
          resources: [...this.signingKeys.values()].map((key) => key.keyArn),
        }),
      },
    ]);
    const fn = this.createFunction('Jwks', {
      entry: join(this.projectRoot, 'infra', 'jwks-function', 'handler.ts'),
      description:
        'Serves the JWKS (public keys from KMS GetPublicKey) that EHRs verify client assertions with',
      memorySize: 256,
      timeout: Duration.seconds(10),
      role,
      environment: {
        JWKS_KEY_IDS: JSON.stringify([...this.signingKeys.values()].map((key) => key.keyArn)),
        JWKS_MAX_AGE_SECONDS: String((this.props.jwksMaxAge ?? Duration.hours(1)).toSeconds()),
        LOG_LEVEL: this.props.logLevel ?? 'info',
        NODE_OPTIONS: '--enable-source-maps',
      },
      reservedConcurrentExecutions: this.reservedConcurrency().Jwks,
    });
    const functionUrl = fn.addFunctionUrl({
      authType: lambda.FunctionUrlAuthType.NONE,
      cors: { allowedOrigins: ['*'], allowedMethods: [lambda.HttpMethod.GET] },
    });
    Validations.of(fn).acknowledge({
      id: 'HIPAA.Security-LambdaFunctionPublicAccessProhibited',
      reason:
        'The JWKS is public by design (SMART Backend Services: the EHR fetches it anonymously over HTTPS); the function returns only public keys and has reserved concurrency.',
    });
    return { fn, url: `${functionUrl.url}.well-known/jwks.json` };
  }

  private encryptedQueue(id: string, props: sqs.QueueProps = {}): sqs.Queue {
    return new sqs.Queue(this, id, {
      ...props,
      encryption: sqs.QueueEncryption.KMS,
      encryptionMasterKey: this.operationsKey,
      enforceSSL: true,
    });
  }

  /** `livenessPolicy`: a scheduled run's Prepare Export may find a lock whose holder it must ask about. */
  private createSchedules(livenessPolicy: iam.ManagedPolicy): Map<string, scheduler.Schedule> {
    const schedules = new Map<string, scheduler.Schedule>();
    const scheduled = this.props.sources.filter((source) => source.schedule);
    if (scheduled.length === 0) return schedules;
    const role = new iam.Role(this, 'SchedulerRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
      description: 'Starts scheduled FHIR bulk exports',
    });
    const policy = this.attachPolicy(
      'SchedulerPolicy',
      role,
      'Starts executions; failed starts go to the DLQ',
      [
        {
          statement: new iam.PolicyStatement({
            actions: ['states:StartExecution'],
            resources: [this.stateMachine.stateMachineArn],
          }),
        },
        {
          statement: new iam.PolicyStatement({
            actions: ['sqs:SendMessage'],
            resources: [this.scheduleDeadLetterQueue.queueArn],
          }),
        },
        {
          statement: new iam.PolicyStatement({
            actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
            resources: [this.operationsKey.keyArn],
            conditions: { StringEquals: { 'kms:ViaService': `sqs.${Aws.REGION}.amazonaws.com` } },
          }),
        },
      ],
    );
    for (const source of scheduled) {
      const schedule = source.schedule!;
      const window = schedule.flexibleTimeWindow ?? Duration.minutes(15);
      const created = new scheduler.Schedule(this, `Schedule-${source.id}`, {
        description: `Daily delta export of FHIR source ${source.id} (since = last successful export)`,
        schedule: scheduler.ScheduleExpression.expression(
          schedule.expression,
          TimeZone.of(schedule.timeZone ?? 'UTC'),
        ),
        timeWindow:
          window.toMinutes({ integral: false }) === 0
            ? scheduler.TimeWindow.off()
            : scheduler.TimeWindow.flexible(window),
        enabled: schedule.enabled ?? true,
        target: new schedulerTargets.StepFunctionsStartExecution(this.stateMachine, {
          role: role.withoutPolicyUpdates(),
          input: scheduler.ScheduleTargetInput.fromObject({ sourceId: source.id, since: 'auto' }),
          deadLetterQueue: this.scheduleDeadLetterQueue,
          retryAttempts: schedule.retryAttempts ?? 5,
          maxEventAge: schedule.maximumEventAge ?? Duration.hours(1),
        }),
      });
      created.node.addDependency(policy, livenessPolicy);
      schedules.set(source.id, created);
    }
    return schedules;
  }

  /** The example downstream: completion markers (written last, after the receipt) feed a queue. */
  private createCompletionQueue(): sqs.Queue {
    const deadLetterQueue = this.encryptedQueue('CompletionDeadLetterQueue', {
      retentionPeriod: Duration.days(14),
    });
    const queue = this.encryptedQueue('CompletionQueue', {
      retentionPeriod: Duration.days(4),
      visibilityTimeout: Duration.minutes(15),
      deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount: 5 },
    });
    new events.Rule(this, 'CompletionMarkerRule', {
      description:
        'A FHIR bulk export completed: its _SUCCESS.json marker landed (example trigger for downstream ETL)',
      eventPattern: this.completionEventPattern,
      targets: [new eventsTargets.SqsQueue(queue, { deadLetterQueue, retryAttempts: 10 })],
    });
    return queue;
  }

  /**
   * Keeps the pipeline's own events in a log group so metric filters can
   * count them per source: Step Functions metrics know nothing of sources.
   */
  private createOutcomeLog(): logs.LogGroup {
    const logGroup = new logs.LogGroup(this, 'OutcomeEvents', {
      logGroupName: `/aws/events/${Names.uniqueResourceName(this, { maxLength: 200, separator: '-' })}`,
      retention: this.props.logRetention ?? logs.RetentionDays.ONE_YEAR,
      encryptionKey: this.operationsKey,
      removalPolicy: this.removalPolicy,
    });
    new logs.ResourcePolicy(this, 'OutcomeEventsDelivery', {
      policyStatements: [
        new iam.PolicyStatement({
          principals: [new iam.ServicePrincipal('events.amazonaws.com')],
          actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          resources: [logGroup.logGroupArn],
        }),
      ],
    });
    const logGroupTargetArn = this.stack.formatArn({
      service: 'logs',
      resource: 'log-group',
      resourceName: logGroup.logGroupName,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    new events.Rule(this, 'OutcomeEventsRule', {
      description: 'Keeps Bulk Export Succeeded/Failed events for per-source metrics',
      eventBus: this.props.eventBus,
      eventPattern: { source: [EVENT_SOURCE], detailType: ['Bulk Export Succeeded', 'Bulk Export Failed'] },
      targets: [{ bind: () => ({ arn: logGroupTargetArn }) }],
    });
    const namespace = this.props.metricNamespace ?? 'FhirBulkExport';
    const metricFilter = (id: string, metricName: string, field: string, metricValue: string) =>
      new logs.MetricFilter(this, id, {
        logGroup,
        metricNamespace: namespace,
        metricName,
        filterPattern: logs.FilterPattern.exists(field),
        metricValue,
        dimensions: { SourceId: '$.detail.sourceId' },
        unit: metricName === 'BytesExported' ? cloudwatch.Unit.BYTES : cloudwatch.Unit.COUNT,
      });
    // Only a success event has a completion marker key, only a failure event an error.
    metricFilter('ExportsSucceededMetric', 'ExportsSucceeded', '$.detail.completionMarkerKey', '1');
    metricFilter('ExportsFailedMetric', 'ExportsFailed', '$.detail.error', '1');
    metricFilter(
      'ResourcesExportedMetric',
      'ResourcesExported',
      '$.detail.totals.resources',
      '$.detail.totals.resources',
    );
    metricFilter('BytesExportedMetric', 'BytesExported', '$.detail.totals.bytes', '$.detail.totals.bytes');
    return logGroup;
  }

  private createAlarmTopic(): sns.Topic {
    return new sns.Topic(this, 'AlarmTopic', {
      displayName: 'FHIR bulk export alarms',
      masterKey: this.operationsKey,
      enforceSSL: true,
    });
  }

  private createAlarms(): cloudwatch.Alarm[] {
    const action = new cloudwatchActions.SnsAction(this.alarmTopic);
    const alarm = (id: string, props: cloudwatch.AlarmProps) => {
      const created = new cloudwatch.Alarm(this, id, {
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        ...props,
      });
      created.addAlarmAction(action);
      created.addOkAction(action);
      return created;
    };
    const threshold = this.props.longExportThreshold ?? Duration.hours(24);
    const fiveMinutes = { period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM };
    return [
      alarm('ExecutionsFailedAlarm', {
        alarmDescription:
          'A FHIR bulk export failed (see the Bulk Export Failed event and the failure receipt)',
        metric: this.stateMachine.metricFailed(fiveMinutes),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      }),
      alarm('ExecutionsTimedOutAlarm', {
        alarmDescription: 'A FHIR bulk export execution timed out',
        metric: this.stateMachine.metricTimedOut(fiveMinutes),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      }),
      alarm('ExecutionsAbortedAlarm', {
        alarmDescription:
          'A FHIR bulk export execution was aborted (stopped by hand); the clean-up state machine closes its server job and lock',
        metric: this.stateMachine.metricAborted(fiveMinutes),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      }),
      alarm('LongExportAlarm', {
        alarmDescription: `FHIR bulk exports take longer than ${threshold.toHumanString()} (ExecutionTime p99)`,
        metric: this.stateMachine.metricTime({
          period: Duration.hours(1),
          statistic: cloudwatch.Stats.p(99),
        }),
        threshold: threshold.toMilliseconds(),
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      }),
      alarm('DownloadFileErrorsAlarm', {
        alarmDescription:
          'The download-file function keeps failing (transient errors are retried by the state machine)',
        metric: this.functions.DownloadFile.metricErrors({
          period: Duration.minutes(15),
          statistic: cloudwatch.Stats.SUM,
        }),
        threshold: this.props.downloadErrorThreshold ?? 5,
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
            failed: this.cleanUpStateMachine.metricFailed(fiveMinutes),
            timedOut: this.cleanUpStateMachine.metricTimedOut(fiveMinutes),
            aborted: this.cleanUpStateMachine.metricAborted(fiveMinutes),
          },
          period: Duration.minutes(5),
        }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      }),
      alarm('CleanUpDeadLetterAlarm', {
        alarmDescription:
          'The clean-up of an ended FHIR bulk export could not be started (event in the clean-up DLQ): start the clean-up state machine with it',
        metric: this.cleanUpDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
          period: Duration.minutes(5),
          statistic: cloudwatch.Stats.MAXIMUM,
        }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      }),
      alarm('ScheduleDeadLetterAlarm', {
        alarmDescription: 'A scheduled FHIR bulk export could not be started (message in the schedule DLQ)',
        metric: this.scheduleDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
          period: Duration.minutes(5),
          statistic: cloudwatch.Stats.MAXIMUM,
        }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      }),
    ];
  }

  private createDashboard(): cloudwatch.Dashboard {
    const machine = this.stateMachine;
    const hour = { period: Duration.hours(1), statistic: cloudwatch.Stats.SUM };
    const finished = {
      succeeded: machine.metricSucceeded(hour),
      failed: machine.metricFailed(hour),
      timedOut: machine.metricTimedOut(hour),
      aborted: machine.metricAborted(hour),
    };
    const successRate = new cloudwatch.MathExpression({
      label: 'Success rate (%)',
      expression: '100 * succeeded / (succeeded + failed + timedOut + aborted)',
      usingMetrics: finished,
      period: Duration.hours(1),
    });
    const namespace = this.props.metricNamespace ?? 'FhirBulkExport';
    const perSource = (metricName: string, sourceId: string, label: string) =>
      new cloudwatch.Metric({
        namespace,
        metricName,
        dimensionsMap: { SourceId: sourceId },
        statistic: cloudwatch.Stats.SUM,
        period: Duration.days(1),
        label,
      });
    const functions = Object.entries(this.functions);

    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.days(7),
    });
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Export success rate',
        left: [successRate],
        leftYAxis: { min: 0, max: 100 },
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Export duration',
        left: [
          machine.metricTime({ statistic: cloudwatch.Stats.p(50), period: Duration.hours(1), label: 'p50' }),
          machine.metricTime({ statistic: cloudwatch.Stats.p(99), period: Duration.hours(1), label: 'p99' }),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Executions',
        left: [machine.metricStarted(hour), ...Object.values(finished)],
        stacked: false,
        width: 8,
      }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Lambda errors',
        left: functions.map(([name, fn]) => fn.metricErrors({ ...hour, label: name })),
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Lambda throttles',
        left: functions.map(([name, fn]) => fn.metricThrottles({ ...hour, label: name })),
        width: 12,
      }),
    );
    dashboard.addWidgets(
      ...this.props.sources.map(
        (source) =>
          new cloudwatch.GraphWidget({
            title: `Source ${source.id}`,
            left: [
              perSource('ExportsSucceeded', source.id, 'succeeded'),
              perSource('ExportsFailed', source.id, 'failed'),
            ],
            right: [perSource('ResourcesExported', source.id, 'resources exported')],
            width: 8,
          }),
      ),
    );
    return dashboard;
  }
}
