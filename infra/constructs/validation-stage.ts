import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ArnFormat, Aws, Duration, Names, Stack, Validations } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import { bundleDirectory, type ValidationFunctionName } from '../lambda-bundles.js';
import type { ExplainedStatement } from '../nag-findings.js';
import {
  attachPolicy,
  createPipelineFunction,
  dataKeyStatement,
  encryptedQueue,
  type PipelineContext,
  PipelinePart,
  POWERTOOLS_SERVICE_NAME,
} from './shared.js';
import { registryPrefix } from './source-registry.js';
import { EVENT_SOURCE } from './task-functions.js';

/** The validation stage's ASL (state-machines/validate-export.asl.json). */
export const VALIDATION_ASL_FILE = 'validate-export.asl.json';

/**
 * Memory and timeouts. Plan Validation streams the receipt's file index (200,000 files) into
 * batches it holds until written; Validate File streams one batch of NDJSON files with the US
 * Core rules compiled once per container (constant memory: a line, an issues part, the counts),
 * checkpointing before its 15 minutes; Write Validation Report merges one partial at a time.
 */
const VALIDATION_FUNCTIONS: readonly {
  readonly name: ValidationFunctionName;
  readonly description: string;
  readonly memorySize: number;
  readonly timeout: Duration;
}[] = [
  {
    name: 'PlanValidation',
    description:
      'Reads a complete export’s receipt and file index, writes the batches of data files to validate',
    memorySize: 1024,
    timeout: Duration.minutes(5),
  },
  {
    name: 'ValidateFile',
    description:
      'Streams a batch of NDJSON files through the US Core 6.1.0 rules; checkpoints before its timeout',
    memorySize: 1024,
    timeout: Duration.minutes(15),
  },
  {
    name: 'WriteValidationReport',
    description:
      'Merges the files’ counts, writes the validation summary and _VALIDATED.json, announces the outcome',
    memorySize: 512,
    timeout: Duration.minutes(15),
  },
];

/** The MaxConcurrency of Validate Files in validate-export.asl.json. */
export const VALIDATE_BATCHES_AT_ONCE = 20;

export interface ValidationStageProps {
  readonly context: PipelineContext;
  readonly bucket: s3.IBucket;
  readonly dataKey?: kms.IKey;
  /** Only its ARN goes into the functions' environment (the shared runtime reads it); they are not granted it. */
  readonly sealingKey: kms.IKey;
  readonly eventBus?: events.IEventBus;
  readonly bundleRoot: string;
  readonly stateMachineDirectory: string;
  readonly metricNamespace: string;
  /** For a unique log group name. */
  readonly nameScope: Construct;
  /** As the pipeline reserves it (undefined: none): validations run at most one per export at once. */
  readonly concurrency?: { readonly exports: number };
}

/**
 * The validation stage (issue 17): its three functions, the state machine
 * from validate-export.asl.json, and the EventBridge rule that starts it on
 * every `_SUCCESS.json` the export bucket announces (Object Created, key
 * suffix). It writes only under `_validation/` and `_VALIDATED.json` of an
 * export folder and under `_work/validation/`; it reads the data, never writes it.
 */
export class ValidationStage extends PipelinePart {
  public readonly functions: Readonly<Record<ValidationFunctionName, lambda.Function>>;
  public readonly stateMachine: sfn.StateMachine;
  public readonly rule: events.Rule;
  /** Where the rule puts a completion event it could not start a validation with. */
  public readonly triggerDeadLetterQueue: sqs.IQueue;

  constructor(scope: Construct, id: string, props: ValidationStageProps) {
    super(scope, id);
    const { context, bucket, dataKey } = props;
    const environment: Record<string, string> = {
      EXPORT_BUCKET: bucket.bucketName,
      EXPORT_PREFIX: context.exportPrefix,
      ...(dataKey ? { DATA_KMS_KEY_ID: dataKey.keyArn } : {}),
      SEALING_KMS_KEY_ID: props.sealingKey.keyArn,
      EVENT_BUS_NAME: props.eventBus?.eventBusName ?? 'default',
      LOG_LEVEL: context.logLevel,
      POWERTOOLS_SERVICE_NAME,
      POWERTOOLS_METRICS_NAMESPACE: props.metricNamespace,
      NODE_OPTIONS: '--enable-source-maps',
    };
    const roles = {} as Record<ValidationFunctionName, iam.Role>;
    const functions = {} as Record<ValidationFunctionName, lambda.Function>;
    const policies = this.grants(props);
    const exports = props.concurrency?.exports;
    const reserved: Record<ValidationFunctionName, number> | undefined =
      exports === undefined
        ? undefined
        : {
            PlanValidation: exports + 2,
            ValidateFile: VALIDATE_BATCHES_AT_ONCE * exports,
            WriteValidationReport: exports + 2,
          };
    for (const spec of VALIDATION_FUNCTIONS) {
      roles[spec.name] = new iam.Role(this, `${spec.name}Role`, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description: `${spec.name} function of the FHIR bulk export validation stage`,
      });
      const policy = attachPolicy(
        this,
        `${spec.name}Policy`,
        roles[spec.name],
        policies[spec.name].description,
        policies[spec.name].statements,
      );
      functions[spec.name] = createPipelineFunction(this, spec.name, context, {
        code: bundleDirectory(props.bundleRoot, spec.name),
        description: spec.description,
        memorySize: spec.memorySize,
        timeout: spec.timeout,
        role: roles[spec.name],
        environment,
        reservedConcurrentExecutions: reserved?.[spec.name],
      });
      functions[spec.name].node.addDependency(policy);
    }
    this.functions = functions;
    this.stateMachine = this.createStateMachine(props);
    const trigger = this.createTrigger(props);
    this.rule = trigger.rule;
    this.triggerDeadLetterQueue = trigger.deadLetterQueue;
  }

  /**
   * By what each handler calls. All read the export's objects (marker, receipt, index, data) and
   * their work objects; a 404 on a missing partial or marker needs s3:ListBucket.
   */
  private grants(
    props: ValidationStageProps,
  ): Record<ValidationFunctionName, { description: string; statements: (ExplainedStatement | undefined)[] }> {
    const { bucket, dataKey, context } = props;
    const prefix = context.exportPrefix;
    const exportObjects = bucket.arnForObjects(`${prefix}source=*`);
    const work = bucket.arnForObjects(`${prefix}_work/validation/*`);
    const readExports: ExplainedStatement = {
      statement: new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [exportObjects] }),
      wildcardReason:
        'Export folders are source=<id>/export=<transactionTime>/, named at run time; the validation reads their marker, receipt, file index and data files.',
    };
    const writeWork = (...actions: string[]): ExplainedStatement => ({
      statement: new iam.PolicyStatement({ actions, resources: [work] }),
      wildcardReason:
        'The validation’s plan, batches, checkpoints and partial counts are written per export under _work/validation/source=<id>/export=<…>/, named at run time.',
    });
    const writeReport = (...actions: string[]): ExplainedStatement => ({
      statement: new iam.PolicyStatement({
        actions,
        resources: [
          bucket.arnForObjects(`${prefix}source=*/_validation/*`),
          bucket.arnForObjects(`${prefix}source=*/_VALIDATED.json`),
        ],
      }),
      wildcardReason:
        'The report is written inside each export folder (source=<id>/export=<…>/_validation/ and _VALIDATED.json), named at run time; never the data.',
    });
    const listBucket: ExplainedStatement = {
      statement: new iam.PolicyStatement({ actions: ['s3:ListBucket'], resources: [bucket.bucketArn] }),
    };
    const eventBusArn =
      props.eventBus?.eventBusArn ??
      Stack.of(this).formatArn({ service: 'events', resource: 'event-bus', resourceName: 'default' });
    return {
      PlanValidation: {
        description: 'Reads the marker, receipt, file index and the source’s registration; writes the plan',
        statements: [
          readExports,
          {
            statement: new iam.PolicyStatement({
              actions: ['s3:GetObject'],
              resources: [bucket.arnForObjects(`${registryPrefix(prefix)}*`)],
            }),
            wildcardReason:
              'Source registrations are one object per source id under _registry/sources/, registered without a deploy.',
          },
          writeWork('s3:GetObject', 's3:PutObject'),
          listBucket,
          dataKeyStatement(dataKey, 'kms:GenerateDataKey', 'kms:Decrypt'),
        ],
      },
      ValidateFile: {
        description:
          'Streams data files, writes their issues parts (multipart), checkpoints and partial counts',
        statements: [
          readExports,
          writeWork('s3:GetObject', 's3:PutObject'),
          writeReport('s3:PutObject', 's3:AbortMultipartUpload'),
          listBucket,
          dataKeyStatement(dataKey, 'kms:GenerateDataKey', 'kms:Decrypt'),
        ],
      },
      WriteValidationReport: {
        description:
          'Merges the partial counts, writes the summary and _VALIDATED.json, announces the outcome',
        statements: [
          readExports,
          writeWork('s3:GetObject', 's3:PutObject', 's3:DeleteObject'),
          writeReport('s3:PutObject'),
          listBucket,
          dataKeyStatement(dataKey, 'kms:GenerateDataKey', 'kms:Decrypt'),
          {
            statement: new iam.PolicyStatement({
              actions: ['events:PutEvents'],
              resources: [eventBusArn],
              conditions: { StringEquals: { 'events:source': EVENT_SOURCE } },
            }),
          },
        ],
      },
    };
  }

  private createStateMachine(props: ValidationStageProps): sfn.StateMachine {
    const { context, bucket, dataKey } = props;
    const definition = readFileSync(join(props.stateMachineDirectory, VALIDATION_ASL_FILE), 'utf8');
    const placeholders = [...new Set([...definition.matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]!))];
    const offered = new Map(VALIDATION_FUNCTIONS.map(({ name }) => [`${name}FunctionArn`, name]));
    const unknown = placeholders.filter((placeholder) => !offered.has(placeholder));
    if (unknown.length > 0) {
      throw new Error(
        `BulkExportPipeline: state-machines/${VALIDATION_ASL_FILE} uses \${${unknown.join('}, ${')}} but the validation stage only provides ${[...offered.keys()].join(', ')}`,
      );
    }
    const uniqueName = Names.uniqueResourceName(props.nameScope, { maxLength: 200, separator: '-' });
    const logGroup = new logs.LogGroup(this, 'ValidationStateMachineLogs', {
      logGroupName: `/aws/vendedlogs/states/${uniqueName}-validation`,
      retention: context.logRetention,
      encryptionKey: context.operationsKey,
      removalPolicy: context.removalPolicy,
    });
    const role = new iam.Role(this, 'ValidationStateMachineRole', {
      assumedBy: new iam.ServicePrincipal('states.amazonaws.com'),
      description: 'FHIR bulk export validation state machine',
    });
    const policy = attachPolicy(
      this,
      'ValidationStateMachinePolicy',
      role,
      'Invokes the validation functions, reads the batch list',
      [
        {
          statement: new iam.PolicyStatement({
            actions: ['lambda:InvokeFunction'],
            resources: Object.values(this.functions).map((fn) => fn.functionArn),
          }),
        },
        {
          statement: new iam.PolicyStatement({
            actions: ['s3:GetObject'],
            resources: [bucket.arnForObjects(`${context.exportPrefix}_work/validation/*`)],
          }),
          wildcardReason:
            'The Validate Files ItemReader reads the batch list written per export under _work/validation/source=<id>/export=<…>/, known only at run time.',
        },
        dataKeyStatement(dataKey, 'kms:Decrypt'),
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
      ],
    );
    const stateMachine = new sfn.StateMachine(this, 'ValidationStateMachine', {
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromString(definition),
      definitionSubstitutions: Object.fromEntries(
        placeholders.map((placeholder) => [
          placeholder,
          this.functions[offered.get(placeholder)!].functionArn,
        ]),
      ),
      role: role.withoutPolicyUpdates(),
      tracingEnabled: true,
      logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
      removalPolicy: context.removalPolicy,
    });
    stateMachine.node.addDependency(role, policy);
    // Named after the machine: a separate policy, created after it.
    attachPolicy(
      this,
      'ValidationDistributedMapPolicy',
      role,
      'Lets Validate Files start and stop its child executions',
      [
        {
          statement: new iam.PolicyStatement({
            actions: ['states:StartExecution'],
            resources: [stateMachine.stateMachineArn],
          }),
        },
        {
          statement: new iam.PolicyStatement({
            actions: ['states:DescribeExecution', 'states:StopExecution'],
            resources: [
              Stack.of(this).formatArn({
                service: 'states',
                resource: 'execution',
                resourceName: `${stateMachine.stateMachineName}/*`,
                arnFormat: ArnFormat.COLON_RESOURCE_NAME,
              }),
            ],
          }),
          wildcardReason:
            'The Validate Files Distributed Map describes and stops the child executions it starts; their ARNs carry the Map Run label and a generated name, under this state machine only.',
        },
      ],
    );
    return stateMachine;
  }

  /** The export bucket's Object Created events (EventBridge notifications are on) whose key ends in _SUCCESS.json. */
  private createTrigger(props: ValidationStageProps): { rule: events.Rule; deadLetterQueue: sqs.IQueue } {
    const { context } = props;
    const deadLetterQueue = encryptedQueue(this, 'ValidationTriggerDeadLetterQueue', context.operationsKey, {
      retentionPeriod: Duration.days(14),
    });
    Validations.of(deadLetterQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason:
        'This queue is the dead-letter queue of the validation rule’s target (Target.DeadLetterConfig); cdk-nag only recognises DLQs named in an SQS redrive policy.',
    });
    const role = new iam.Role(this, 'ValidationTriggerRole', {
      assumedBy: new iam.ServicePrincipal('events.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
      description: 'Starts the validation of a completed FHIR bulk export',
    });
    const policy = attachPolicy(
      this,
      'ValidationTriggerPolicy',
      role,
      'Starts the validation state machine',
      [
        {
          statement: new iam.PolicyStatement({
            actions: ['states:StartExecution'],
            resources: [this.stateMachine.stateMachineArn],
          }),
        },
      ],
    );
    const rule = new events.Rule(this, 'ValidationTrigger', {
      description: 'A FHIR bulk export completed (its _SUCCESS.json landed): validate it against US Core',
      eventPattern: {
        source: ['aws.s3'],
        detailType: ['Object Created'],
        detail: {
          bucket: { name: [props.bucket.bucketName] },
          object: { key: [{ suffix: '_SUCCESS.json' }] },
        },
      },
      targets: [
        // The whole event: the state machine reads $.detail.bucket.name and $.detail.object.key.
        new eventsTargets.SfnStateMachine(this.stateMachine, {
          role: role.withoutPolicyUpdates(),
          deadLetterQueue,
          retryAttempts: 185,
          maxEventAge: Duration.hours(24),
        }),
      ],
    });
    rule.node.addDependency(policy);
    return { rule, deadLetterQueue };
  }
}
