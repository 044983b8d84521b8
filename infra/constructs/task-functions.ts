import { Duration, Stack } from 'aws-cdk-lib';
import type * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { DOWNLOAD_FILE_MIN_MEMORY_MB, downloadFileMemoryMb } from '../../lambdas/core/ndjson/line-limit.js';
import { bundleDirectory, type TaskFunctionName } from '../lambda-bundles.js';
import type { ExplainedStatement } from '../nag-findings.js';
import type { BulkExportSourceProps } from '../pipeline-props.js';
import {
  attachPolicy,
  createPipelineFunction,
  dataKeyStatement,
  type PipelineContext,
  PipelinePart,
  POWERTOOLS_SERVICE_NAME,
} from './shared.js';
import { registryPrefix, SourceAccess } from './source-registry.js';

/** Source of the events the pipeline emits (lambdas/runtime-aws.ts). */
export const EVENT_SOURCE = 'fhir.bulk-export';

/** The encryption context keys the sealer binds a token to (lambdas/runtime.ts `sealContext`). */
const SEALING_CONTEXT_KEYS = ['sourceId', 'executionId'];

interface TaskFunctionSpec {
  readonly name: TaskFunctionName;
  readonly description: string;
  readonly memorySize: number;
  readonly timeout: Duration;
}

/**
 * Memory and timeouts. Download File streams gigabytes and checkpoints before
 * 15 minutes; Verify Files checks and publishes one batch of up to 500
 * files (a batch may hold several multi-GB files to copy), so it gets the
 * same ceiling, as does Finalize Export, which reads every batch's record
 * back and streams the receipt's file index (200,000 files); Clean Up pages through open
 * uploads; Clean Up Ended Export also waits for downloads still in flight
 * when their execution ended, which can take a download's whole 15 minutes.
 * Check Files reads one result per file, like Poll Status's file list.
 * Everything else is one HTTP or KMS call.
 */
const TASK_FUNCTIONS: readonly TaskFunctionSpec[] = [
  {
    name: 'PrepareExport',
    description: 'Validates the input, resolves since=auto, takes the per-source lock',
    memorySize: 256,
    timeout: Duration.minutes(1),
  },
  {
    name: 'MintToken',
    description: 'Signs SMART client assertions with KMS and hands out sealed access tokens',
    memorySize: 256,
    timeout: Duration.minutes(1),
  },
  {
    name: 'KickOff',
    description: 'Kicks off the FHIR $export',
    memorySize: 256,
    timeout: Duration.minutes(1),
  },
  {
    name: 'PollStatus',
    description: 'Polls the export status once; on completion stores the manifest and file list',
    // A 200,000-file manifest with presigned URLs (122 MB) raises the heap by ~310 MB while it is
    // parsed and written (bench huge-manifest), and a paged one may take hundreds of page requests.
    memorySize: 1024,
    timeout: Duration.minutes(5),
  },
  {
    name: 'PlanChunks',
    description:
      'Splits a chunked export’s cohort (Group members, a patient list, or time windows) into chunks',
    memorySize: 512,
    timeout: Duration.minutes(5),
  },
  {
    name: 'MergeChunks',
    description: 'Merges every chunk’s manifest into one export: one folder, one file list',
    memorySize: 1024,
    timeout: Duration.minutes(5),
  },
  {
    name: 'DownloadFile',
    description: 'Streams one NDJSON file into S3 with validation, counting and hashing',
    // The floor: raised for the pipeline's maxLineBytes (downloadFileMemoryMb).
    memorySize: DOWNLOAD_FILE_MIN_MEMORY_MB,
    timeout: Duration.minutes(15),
  },
  {
    name: 'CheckFiles',
    description: 'Lists the files without a verified result: the retry pass downloads only those',
    memorySize: 512,
    timeout: Duration.minutes(1),
  },
  {
    name: 'VerifyFiles',
    description:
      'Verifies one batch of landed files (Verify Files) or publishes its staged data files (Publish Files)',
    memorySize: 512,
    timeout: Duration.minutes(15),
  },
  {
    name: 'FinalizeExport',
    description: 'Adds up the verified batches, writes the file index, the receipt and the completion marker',
    memorySize: 512,
    timeout: Duration.minutes(15),
  },
  {
    name: 'CompleteExport',
    description:
      'After the completion marker: advances the watermark, deletes the server job, releases the lock, announces success',
    memorySize: 256,
    timeout: Duration.minutes(5),
  },
  {
    name: 'CleanUp',
    description: 'Aborts uploads, deletes the server job, records the failure',
    memorySize: 256,
    timeout: Duration.minutes(5),
  },
  {
    name: 'CleanUpEndedExport',
    description:
      'Cleans up after an export execution that was stopped, timed out or failed without its own clean-up',
    memorySize: 256,
    timeout: Duration.minutes(15),
  },
];

/** The functions that read a source's registration (s3:GetObject on the registry). */
export const REGISTRY_READERS: readonly TaskFunctionName[] = [
  'PrepareExport',
  'MintToken',
  'KickOff',
  'PollStatus',
  'PlanChunks',
  'DownloadFile',
  'CleanUpEndedExport',
];

export interface TaskFunctionsProps {
  readonly context: PipelineContext;
  readonly bucket: s3.IBucket;
  readonly dataKey?: kms.IKey;
  readonly sealingKey: kms.IKey;
  readonly eventBus?: events.IEventBus;
  readonly bundleRoot: string;
  readonly metricNamespace: string;
  readonly maxLineBytes: number;
  /** Undefined: no reserved concurrency. */
  readonly concurrency?: { readonly exports: number; readonly downloads: number };
  /** For the source access role: the CMKs of declared secrets, and tagging secrets created in the app. */
  readonly sources: readonly BulkExportSourceProps[];
}

/**
 * The Task functions of both state machines, each with a role of its own and
 * exactly the S3 and KMS actions its code calls; and the source access role
 * the token minter assumes per source. Nothing here depends on the list of
 * sources: adding one changes no function.
 */
export class TaskFunctions extends PipelinePart {
  public readonly functions: Readonly<Record<TaskFunctionName, lambda.Function>>;
  public readonly roles: Readonly<Record<TaskFunctionName, iam.Role>>;
  /** What the token minter assumes, tagged with one source id, to read its secret and sign. */
  public readonly sourceAccessRole: iam.Role;

  constructor(scope: Construct, id: string, props: TaskFunctionsProps) {
    super(scope, id);
    const { context } = props;
    const roles = {} as Record<TaskFunctionName, iam.Role>;
    for (const spec of TASK_FUNCTIONS) {
      roles[spec.name] = new iam.Role(this, `${spec.name}Role`, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description: `${spec.name} function of the FHIR bulk export pipeline`,
      });
    }
    this.roles = roles;
    this.sourceAccessRole = new SourceAccess(this, 'SourceAccess', {
      mintTokenRole: roles.MintToken,
      sources: props.sources,
    }).role;

    const environment: Record<string, string> = {
      EXPORT_BUCKET: props.bucket.bucketName,
      EXPORT_PREFIX: context.exportPrefix,
      ...(props.dataKey ? { DATA_KMS_KEY_ID: props.dataKey.keyArn } : {}),
      SEALING_KMS_KEY_ID: props.sealingKey.keyArn,
      EVENT_BUS_NAME: props.eventBus?.eventBusName ?? 'default',
      LOG_LEVEL: context.logLevel,
      POWERTOOLS_SERVICE_NAME,
      POWERTOOLS_METRICS_NAMESPACE: props.metricNamespace,
      NODE_OPTIONS: '--enable-source-maps',
    };
    const extraEnvironment: Partial<Record<TaskFunctionName, Record<string, string>>> = {
      MintToken: { SOURCE_ACCESS_ROLE_ARN: this.sourceAccessRole.roleArn },
      DownloadFile: { MAX_LINE_BYTES: String(props.maxLineBytes) },
    };
    const concurrency = reservedConcurrency(props.concurrency);
    const functions = {} as Record<TaskFunctionName, lambda.Function>;
    for (const spec of TASK_FUNCTIONS) {
      functions[spec.name] = createPipelineFunction(this, spec.name, context, {
        code: bundleDirectory(props.bundleRoot, spec.name),
        description: spec.description,
        memorySize: spec.name === 'DownloadFile' ? downloadFileMemoryMb(props.maxLineBytes) : spec.memorySize,
        timeout: spec.timeout,
        role: roles[spec.name],
        environment: { ...environment, ...extraEnvironment[spec.name] },
        reservedConcurrentExecutions: concurrency[spec.name],
      });
    }
    this.functions = functions;
    const policies = this.grantTaskFunctions(props);
    // A function is usable only once its permissions exist.
    for (const spec of TASK_FUNCTIONS) functions[spec.name].node.addDependency(policies[spec.name]);
  }

  /**
   * One statement per need, by what each handler's code actually calls:
   * - HeadObject/GetObject of a missing key answers 404 (not 403) only with
   *   s3:ListBucket, and the handlers rely on 404 for a first watermark,
   *   a free lock, an absent checkpoint;
   * - with SSE-KMS, PutObject and multipart uploads need kms:GenerateDataKey,
   *   reads and multipart completion kms:Decrypt, both only via S3.
   */
  private grantTaskFunctions(props: TaskFunctionsProps): Record<TaskFunctionName, iam.ManagedPolicy> {
    const { bucket, dataKey, context } = props;
    const roles = this.roles;
    const prefix = context.exportPrefix;
    const objects = bucket.arnForObjects(`${prefix}*`);
    const objectsReason =
      'Objects are created per export under keys that embed the source, export time and resource type (and under _work/ and _state/), so they can only be named by the pipeline prefix.';
    const s3Objects = (...actions: string[]): ExplainedStatement => ({
      statement: new iam.PolicyStatement({ actions, resources: [objects] }),
      wildcardReason: objectsReason,
    });
    const s3Bucket = (...actions: string[]): ExplainedStatement => ({
      statement: new iam.PolicyStatement({ actions, resources: [bucket.bucketArn] }),
    });
    const s3WorkObjects = (...actions: string[]): ExplainedStatement => ({
      statement: new iam.PolicyStatement({ actions, resources: [bucket.arnForObjects(`${prefix}_work/*`)] }),
      wildcardReason:
        'Work objects (file lists, per-file results, retry lists) are written per execution under _work/source=<id>/execution=<name>/, named at run time.',
    });
    // For the readers without s3:GetObject on the whole prefix (the others read the registry through it).
    const registryRead = (): ExplainedStatement => ({
      statement: new iam.PolicyStatement({
        actions: ['s3:GetObject'],
        resources: [bucket.arnForObjects(`${registryPrefix(prefix)}*`)],
      }),
      wildcardReason:
        'Source registrations are one object per source id under _registry/sources/; sources are registered without a deploy, so they can only be named by that prefix.',
    });
    const dataKeyFor = (...actions: string[]) => dataKeyStatement(dataKey, ...actions);
    // Binding a token to its source is the encryption context's own doing: a token sealed for one
    // source opens only with that source id in the context. Requiring the key to be present keeps
    // that true without listing the sources, which would grow the policy and need a deploy per source.
    const sealing = (action: 'kms:Encrypt' | 'kms:Decrypt'): ExplainedStatement => ({
      statement: new iam.PolicyStatement({
        actions: [action],
        resources: [props.sealingKey.keyArn],
        conditions: {
          'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': SEALING_CONTEXT_KEYS },
          Null: { 'kms:EncryptionContextKeys': 'false', 'kms:EncryptionContext:sourceId': 'false' },
        },
      }),
    });
    const eventBusArn =
      props.eventBus?.eventBusArn ??
      Stack.of(this).formatArn({ service: 'events', resource: 'event-bus', resourceName: 'default' });
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
      dataKeyFor('kms:GenerateDataKey', 'kms:Decrypt'),
      putEvents,
    ];
    const endingAnExport = () => [sealing('kms:Decrypt'), ...endingAnExportWithoutToken()];
    const policy = (
      name: TaskFunctionName,
      description: string,
      statements: (ExplainedStatement | undefined)[],
    ) => attachPolicy(this, `${name}Policy`, roles[name], description, statements);

    return {
      // Taking over a dead holder's lock ends its export; its job's DELETE is the new run's Kick Off's.
      PrepareExport: policy(
        'PrepareExport',
        'Registry and watermark read, per-source lock; ends a dead holder it takes the lock from',
        endingAnExportWithoutToken(),
      ),
      MintToken: policy('MintToken', 'Assumes the source access role per source, seals tokens', [
        {
          statement: new iam.PolicyStatement({
            actions: ['sts:AssumeRole', 'sts:TagSession'],
            resources: [this.sourceAccessRole.roleArn],
          }),
        },
        sealing('kms:Encrypt'),
        registryRead(),
        dataKeyFor('kms:Decrypt'),
      ]),
      // The job record and a chunk's record and patient list are work objects; a chunk not yet on
      // record is a 404 only with ListBucket.
      // A chunk kicked off while its export ends reads the lock's fence.
      KickOff: policy('KickOff', 'Opens sealed tokens, reads the registry and the lock, records the job', [
        sealing('kms:Decrypt'),
        registryRead(),
        s3WorkObjects('s3:GetObject', 's3:PutObject'),
        {
          statement: new iam.PolicyStatement({
            actions: ['s3:GetObject'],
            resources: [bucket.arnForObjects(`${prefix}_state/*`)],
          }),
          wildcardReason: 'Each source has its lock at _state/source=<id>/lock.json, named at run time.',
        },
        s3Bucket('s3:ListBucket'),
        dataKeyFor('kms:GenerateDataKey', 'kms:Decrypt'),
      ]),
      PollStatus: policy(
        'PollStatus',
        'Opens sealed tokens, claims the export folder, stores the manifest and its last poll',
        [
          sealing('kms:Decrypt'),
          // Claiming the folder reads back a claim that exists (and looks for a receipt, a 404 only with
          // ListBucket); recording the last poll reads the job record first.
          s3Objects('s3:GetObject', 's3:PutObject'),
          s3Bucket('s3:ListBucket'),
          dataKeyFor('kms:GenerateDataKey', 'kms:Decrypt'),
        ],
      ),
      PlanChunks: policy(
        'PlanChunks',
        'Opens sealed tokens, reads the Group or the patient list, writes the chunk plan under _work/',
        [
          sealing('kms:Decrypt'),
          // A patient list (chunk.patientsFrom) lives in the export bucket, e.g. under _cohorts/.
          s3Objects('s3:GetObject', 's3:PutObject'),
          s3Bucket('s3:ListBucket'),
          dataKeyFor('kms:GenerateDataKey', 'kms:Decrypt'),
        ],
      ),
      MergeChunks: policy(
        'MergeChunks',
        'Reads the chunk manifests, claims the export folder, writes the merged file list under _work/',
        [
          s3Objects('s3:GetObject', 's3:PutObject'),
          s3Bucket('s3:ListBucket'),
          dataKeyFor('kms:GenerateDataKey', 'kms:Decrypt'),
        ],
      ),
      DownloadFile: policy('DownloadFile', 'Streams files into S3 with multipart uploads', [
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
        dataKeyFor('kms:GenerateDataKey', 'kms:Decrypt'),
      ]),
      FinalizeExport: policy(
        'FinalizeExport',
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
          dataKeyFor('kms:GenerateDataKey', 'kms:Decrypt'),
        ],
      ),
      VerifyFiles: policy(
        'VerifyFiles',
        'Verifies a batch of files, records it under _work/, publishes its staged files (server-side copies, tags included)',
        [
          s3Objects(
            's3:GetObject',
            's3:GetObjectTagging',
            's3:PutObject',
            's3:PutObjectTagging',
            's3:AbortMultipartUpload',
          ),
          s3Bucket('s3:ListBucket'),
          dataKeyFor('kms:GenerateDataKey', 'kms:Decrypt'),
        ],
      ),
      CheckFiles: policy(
        'CheckFiles',
        'Reads the per-file results and writes the retry list, under _work/ only',
        [
          s3WorkObjects('s3:GetObject', 's3:PutObject'),
          s3Bucket('s3:ListBucket'),
          dataKeyFor('kms:GenerateDataKey', 'kms:Decrypt'),
        ],
      ),
      CompleteExport: policy(
        'CompleteExport',
        'After the marker: advances the watermark, DELETEs the server job, releases the lock, announces success',
        endingAnExport(),
      ),
      CleanUpEndedExport: policy(
        'CleanUpEndedExport',
        'Cleans up a stopped, timed-out or unhandled failed export: aborts uploads, records the failure, releases the lock',
        endingAnExport(),
      ),
      CleanUp: policy('CleanUp', 'Aborts uploads, records the failure, releases the lock', endingAnExport()),
    };
  }
}

/**
 * Each source runs one export at a time (the per-source lock), so the
 * per-export functions need room for the exports running at once, plus a
 * clean-up of an ended export overlapping the next and one started by hand.
 * Downloads scale with the files in flight; the minter serves each download
 * and up to two mints per export (kick-off, clean-up).
 */
/** The MaxConcurrency of Verify Files and Publish Files in state-machines/bulk-export.asl.json. */
export const VERIFY_BATCHES_AT_ONCE = 20;

export function reservedConcurrency(
  concurrency: TaskFunctionsProps['concurrency'],
): Partial<Record<TaskFunctionName | 'Jwks', number>> {
  if (!concurrency) return {};
  const { exports, downloads } = concurrency;
  const perExport = exports + 2;
  return {
    PrepareExport: perExport,
    MintToken: downloads + 2 * exports + 2,
    KickOff: perExport,
    PollStatus: perExport,
    PlanChunks: perExport,
    MergeChunks: perExport,
    DownloadFile: downloads,
    CheckFiles: perExport,
    // Verify Files and Publish Files run up to VERIFY_BATCHES_AT_ONCE batches per export.
    VerifyFiles: VERIFY_BATCHES_AT_ONCE * exports,
    FinalizeExport: perExport,
    CompleteExport: perExport,
    CleanUp: perExport,
    CleanUpEndedExport: perExport,
    Jwks: 5,
  };
}
