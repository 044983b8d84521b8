import { Duration, Stack } from 'aws-cdk-lib';
import type * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import type { ValidationFunctionName } from '../lambda-bundles.js';
import type { ExplainedStatement } from '../nag-findings.js';
import { createMarkerTrigger, createStageFunctions, createStageStateMachine } from './downstream-stage.js';
import { dataKeyStatement, type PipelineContext, PipelinePart } from './shared.js';
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
    const exports = props.concurrency?.exports;
    const functions = createStageFunctions(this, props, {
      specs: VALIDATION_FUNCTIONS,
      stage: 'validation stage',
      policies: this.grants(props),
      reserved:
        exports === undefined
          ? undefined
          : {
              PlanValidation: exports + 2,
              ValidateFile: VALIDATE_BATCHES_AT_ONCE * exports,
              WriteValidationReport: exports + 2,
            },
    });
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
    return createStageStateMachine(this, props, {
      idPrefix: 'Validation',
      aslFile: VALIDATION_ASL_FILE,
      functions: this.functions,
      stage: 'the validation stage',
      logSuffix: 'validation',
      roleDescription: 'FHIR bulk export validation state machine',
      policyDescription: 'Invokes the validation functions, reads the batch list',
      workPrefix: '_work/validation/',
      itemReaderReason:
        'The Validate Files ItemReader reads the batch list written per export under _work/validation/source=<id>/export=<…>/, known only at run time.',
      mapPolicyDescription: 'Lets Validate Files start and stop its child executions',
      mapReason:
        'The Validate Files Distributed Map describes and stops the child executions it starts; their ARNs carry the Map Run label and a generated name, under this state machine only.',
    });
  }

  /** The export bucket's Object Created events (EventBridge notifications are on) whose key ends in _SUCCESS.json. */
  private createTrigger(props: ValidationStageProps): { rule: events.Rule; deadLetterQueue: sqs.IQueue } {
    return createMarkerTrigger(this, props, {
      idPrefix: 'Validation',
      stateMachine: this.stateMachine,
      markers: ['_SUCCESS.json'],
      ruleDescription: 'A FHIR bulk export completed (its _SUCCESS.json landed): validate it against US Core',
      roleDescription: 'Starts the validation of a completed FHIR bulk export',
      policyDescription: 'Starts the validation state machine',
      ruleName: 'the validation rule',
    });
  }
}
