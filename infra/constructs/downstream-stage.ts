/**
 * What the downstream stages (validation, warehouse load) have in common: each is three functions with a
 * role apiece, a state machine from an ASL file whose Distributed Map reads its items from the stage's work
 * prefix, and an EventBridge rule on the export bucket's "Object Created" events of a marker. One place, so
 * the stages cannot drift in what they grant or how they log.
 */
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
import { type BundledFunctionName, bundleDirectory } from '../lambda-bundles.js';
import type { ExplainedStatement } from '../nag-findings.js';
import {
  attachPolicy,
  createPipelineFunction,
  dataKeyStatement,
  encryptedQueue,
  type PipelineContext,
  POWERTOOLS_SERVICE_NAME,
} from './shared.js';

export interface StageFunctionSpec<Name extends BundledFunctionName> {
  readonly name: Name;
  readonly description: string;
  readonly memorySize: number;
  readonly timeout: Duration;
}

export interface StageProps {
  readonly context: PipelineContext;
  readonly bucket: s3.IBucket;
  readonly dataKey?: kms.IKey;
  readonly sealingKey: kms.IKey;
  readonly eventBus?: events.IEventBus;
  readonly bundleRoot: string;
  readonly stateMachineDirectory: string;
  readonly metricNamespace: string;
  readonly nameScope: Construct;
}

/** The functions' environment: where the exports are, the keys, the bus, the telemetry names. */
export function stageEnvironment(props: StageProps): Record<string, string> {
  const { context, bucket, dataKey } = props;
  return {
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
}

/** One function per spec, each with its own role holding only its own policy (`<Name>Role`, `<Name>Policy`). */
export function createStageFunctions<Name extends BundledFunctionName>(
  scope: Construct,
  props: StageProps,
  options: {
    readonly specs: readonly StageFunctionSpec<Name>[];
    /** `validation stage`, `warehouse load`: the roles' descriptions say which. */
    readonly stage: string;
    readonly policies: Record<Name, { description: string; statements: (ExplainedStatement | undefined)[] }>;
    readonly reserved?: Record<Name, number>;
  },
): Record<Name, lambda.Function> {
  const environment = stageEnvironment(props);
  const functions = {} as Record<Name, lambda.Function>;
  for (const spec of options.specs) {
    const role = new iam.Role(scope, `${spec.name}Role`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `${spec.name} function of the FHIR bulk export ${options.stage}`,
    });
    const policy = attachPolicy(
      scope,
      `${spec.name}Policy`,
      role,
      options.policies[spec.name].description,
      options.policies[spec.name].statements,
    );
    functions[spec.name] = createPipelineFunction(scope, spec.name, props.context, {
      code: bundleDirectory(props.bundleRoot, spec.name),
      description: spec.description,
      memorySize: spec.memorySize,
      timeout: spec.timeout,
      role,
      environment,
      reservedConcurrentExecutions: options.reserved?.[spec.name],
    });
    functions[spec.name].node.addDependency(policy);
  }
  return functions;
}

/**
 * The stage's state machine from its ASL file, every `${<Name>FunctionArn}` bound to the stage's function
 * (an unknown placeholder fails the synth), logged without execution data (it could carry keys, never
 * content, but the logs need not), traced, and allowed to start, describe and stop its Distributed Map's
 * child executions. Construct ids start with `idPrefix` (`Validation`, `Warehouse`).
 */
export function createStageStateMachine<Name extends BundledFunctionName>(
  scope: Construct,
  props: StageProps,
  options: {
    readonly idPrefix: string;
    readonly aslFile: string;
    readonly functions: Record<Name, lambda.Function>;
    /** The ASL's name in errors: `the validation stage`. */
    readonly stage: string;
    /** The log group's name ends in `-<logSuffix>`. */
    readonly logSuffix: string;
    readonly roleDescription: string;
    readonly policyDescription: string;
    /** `_work/<stage>/`: where the Map's ItemReader reads, under the pipeline's prefix. */
    readonly workPrefix: string;
    readonly itemReaderReason: string;
    readonly mapPolicyDescription: string;
    readonly mapReason: string;
  },
): sfn.StateMachine {
  const { context, bucket, dataKey } = props;
  const { idPrefix } = options;
  const definition = readFileSync(join(props.stateMachineDirectory, options.aslFile), 'utf8');
  const placeholders = [...new Set([...definition.matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]!))];
  const offered = new Map(Object.keys(options.functions).map((name) => [`${name}FunctionArn`, name as Name]));
  const unknown = placeholders.filter((placeholder) => !offered.has(placeholder));
  if (unknown.length > 0) {
    throw new Error(
      `BulkExportPipeline: state-machines/${options.aslFile} uses \${${unknown.join('}, ${')}} but ${options.stage} only provides ${[...offered.keys()].join(', ')}`,
    );
  }
  const uniqueName = Names.uniqueResourceName(props.nameScope, { maxLength: 200, separator: '-' });
  const logGroup = new logs.LogGroup(scope, `${idPrefix}StateMachineLogs`, {
    logGroupName: `/aws/vendedlogs/states/${uniqueName}-${options.logSuffix}`,
    retention: context.logRetention,
    encryptionKey: context.operationsKey,
    removalPolicy: context.removalPolicy,
  });
  const role = new iam.Role(scope, `${idPrefix}StateMachineRole`, {
    assumedBy: new iam.ServicePrincipal('states.amazonaws.com'),
    description: options.roleDescription,
  });
  const policy = attachPolicy(scope, `${idPrefix}StateMachinePolicy`, role, options.policyDescription, [
    {
      statement: new iam.PolicyStatement({
        actions: ['lambda:InvokeFunction'],
        resources: Object.values<lambda.Function>(options.functions).map((fn) => fn.functionArn),
      }),
    },
    {
      statement: new iam.PolicyStatement({
        actions: ['s3:GetObject'],
        resources: [bucket.arnForObjects(`${context.exportPrefix}${options.workPrefix}*`)],
      }),
      wildcardReason: options.itemReaderReason,
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
  ]);
  const stateMachine = new sfn.StateMachine(scope, `${idPrefix}StateMachine`, {
    stateMachineType: sfn.StateMachineType.STANDARD,
    definitionBody: sfn.DefinitionBody.fromString(definition),
    definitionSubstitutions: Object.fromEntries(
      placeholders.map((placeholder) => [
        placeholder,
        options.functions[offered.get(placeholder)!].functionArn,
      ]),
    ),
    role: role.withoutPolicyUpdates(),
    tracingEnabled: true,
    logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
    removalPolicy: context.removalPolicy,
  });
  stateMachine.node.addDependency(role, policy);
  // A Distributed Map starts child executions of its own machine: a separate policy, named after it.
  if (/"Mode"\s*:\s*"DISTRIBUTED"/.test(definition)) {
    attachPolicy(scope, `${idPrefix}DistributedMapPolicy`, role, options.mapPolicyDescription, [
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
            Stack.of(scope).formatArn({
              service: 'states',
              resource: 'execution',
              resourceName: `${stateMachine.stateMachineName}/*`,
              arnFormat: ArnFormat.COLON_RESOURCE_NAME,
            }),
          ],
        }),
        wildcardReason: options.mapReason,
      },
    ]);
  }
  return stateMachine;
}

/**
 * The rule that starts the stage: the export bucket's "Object Created" events (EventBridge notifications
 * are on) whose key ends in one of `markers`, the whole event to the state machine, with retries for a day
 * and a dead-letter queue for what still cannot be delivered.
 */
export function createMarkerTrigger(
  scope: Construct,
  props: StageProps,
  options: {
    readonly idPrefix: string;
    readonly stateMachine: sfn.StateMachine;
    readonly markers: readonly string[];
    readonly ruleDescription: string;
    readonly roleDescription: string;
    readonly policyDescription: string;
    /** `the validation rule`: what the dead-letter queue belongs to, for cdk-nag's reader. */
    readonly ruleName: string;
  },
): { rule: events.Rule; deadLetterQueue: sqs.IQueue } {
  const { idPrefix } = options;
  const deadLetterQueue = encryptedQueue(
    scope,
    `${idPrefix}TriggerDeadLetterQueue`,
    props.context.operationsKey,
    {
      retentionPeriod: Duration.days(14),
    },
  );
  Validations.of(deadLetterQueue).acknowledge({
    id: 'AwsSolutions-SQS3',
    reason: `This queue is the dead-letter queue of ${options.ruleName}’s target (Target.DeadLetterConfig); cdk-nag only recognises DLQs named in an SQS redrive policy.`,
  });
  const role = new iam.Role(scope, `${idPrefix}TriggerRole`, {
    assumedBy: new iam.ServicePrincipal('events.amazonaws.com', {
      conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
    }),
    description: options.roleDescription,
  });
  const policy = attachPolicy(scope, `${idPrefix}TriggerPolicy`, role, options.policyDescription, [
    {
      statement: new iam.PolicyStatement({
        actions: ['states:StartExecution'],
        resources: [options.stateMachine.stateMachineArn],
      }),
    },
  ]);
  const rule = new events.Rule(scope, `${idPrefix}Trigger`, {
    description: options.ruleDescription,
    eventPattern: {
      source: ['aws.s3'],
      detailType: ['Object Created'],
      detail: {
        bucket: { name: [props.bucket.bucketName] },
        object: { key: options.markers.map((marker) => ({ suffix: marker })) },
      },
    },
    targets: [
      // The whole event: the state machine reads $.detail.bucket.name and $.detail.object.key.
      new eventsTargets.SfnStateMachine(options.stateMachine, {
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
