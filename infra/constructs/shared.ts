import { createHash } from 'node:crypto';
import { Aws, CfnElement, type Duration, type RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct, type IConstruct } from 'constructs';
import { METRICS_NAMESPACE, SERVICE_NAME } from '../../lambdas/observability/metrics.js';
import { acknowledgeWildcards, type ExplainedStatement, reacknowledgeWildcards } from '../nag-findings.js';

/** What every part of the pipeline shares: where logs go, how long they stay, what is retained. */
export interface PipelineContext {
  readonly removalPolicy: RemovalPolicy;
  readonly logRetention: logs.RetentionDays;
  /** Encrypts log groups, the access log bucket, the alarm topic and the queues. */
  readonly operationsKey: kms.IKey;
  /** Normalized: '' or ending in '/'. */
  readonly exportPrefix: string;
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
  readonly vpc?: ec2.IVpc;
  readonly vpcSubnets?: ec2.SubnetSelection;
}

/** Powertools reads these (lambdas/observability): one service name and namespace for every function. */
export const POWERTOOLS_SERVICE_NAME = SERVICE_NAME;
export const DEFAULT_METRIC_NAMESPACE = METRICS_NAMESPACE;

/** Attaches statements as one customer managed policy, acknowledging each wildcard with its reason. */
export function attachPolicy(
  scope: Construct,
  id: string,
  role: iam.IRole,
  description: string,
  statements: readonly (ExplainedStatement | undefined)[],
): iam.ManagedPolicy {
  const present = statements.filter((entry): entry is ExplainedStatement => entry !== undefined);
  const policy = new iam.ManagedPolicy(scope, id, {
    description,
    roles: [role],
    statements: present.map((entry) => entry.statement),
  });
  acknowledgeWildcards(policy, present);
  return policy;
}

export function encryptedQueue(
  scope: Construct,
  id: string,
  key: kms.IKey,
  props: sqs.QueueProps = {},
): sqs.Queue {
  return new sqs.Queue(scope, id, {
    ...props,
    encryption: sqs.QueueEncryption.KMS,
    encryptionMasterKey: key,
    enforceSSL: true,
  });
}

const APPLICATION_LOG_LEVELS: Record<PipelineContext['logLevel'], lambda.ApplicationLogLevel> = {
  debug: lambda.ApplicationLogLevel.DEBUG,
  info: lambda.ApplicationLogLevel.INFO,
  warn: lambda.ApplicationLogLevel.WARN,
  error: lambda.ApplicationLogLevel.ERROR,
};

const LAMBDA_REASONS = {
  dlq: 'Step Functions and the Function URL invoke these functions synchronously; failures return to the caller (the ASL Retry/Catch handles them), so an asynchronous-invocation DLQ would never receive anything.',
  vpc: 'The functions reach EHR FHIR endpoints on the internet and AWS APIs only; no VPC resources are used. Pass `vpc` to run them in a VPC with controlled egress.',
  concurrency:
    'reservedConcurrency is off for this deployment (e.g. an account with the default concurrency quota of 10); concurrency is bounded by each source’s maxConcurrency in the state machine instead.',
};

/** The statements Lambda itself needs for a function: its log group, tracing, and VPC networking. */
function runtimeStatements(logGroup: logs.ILogGroup, vpc: boolean): (ExplainedStatement | undefined)[] {
  return [
    {
      statement: new iam.PolicyStatement({
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [logGroup.logGroupArn],
      }),
    },
    {
      statement: new iam.PolicyStatement({
        actions: ['xray:PutTraceSegments', 'xray:PutTelemetryRecords'],
        resources: ['*'],
      }),
      wildcardReason:
        'X-Ray tracing actions do not support resource-level permissions (AWS documents Resource "*").',
    },
    vpc
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
  ];
}

export interface PipelineFunctionOptions {
  readonly code: string;
  readonly description: string;
  readonly memorySize: number;
  readonly timeout: Duration;
  readonly role: iam.Role;
  readonly environment: Record<string, string>;
  readonly reservedConcurrentExecutions?: number;
}

/**
 * One of the pipeline's functions from its prebundled directory: arm64,
 * Node.js 24, JSON logs into its own encrypted log group, active tracing,
 * and a runtime policy created before it (Lambda checks VPC permissions on
 * create).
 */
export function createPipelineFunction(
  scope: Construct,
  name: string,
  context: PipelineContext,
  options: PipelineFunctionOptions,
): lambda.Function {
  const logGroup = new logs.LogGroup(scope, `${name}Logs`, {
    retention: context.logRetention,
    encryptionKey: context.operationsKey,
    removalPolicy: context.removalPolicy,
  });
  const basePolicy = attachPolicy(
    scope,
    `${name}RuntimePolicy`,
    options.role,
    `Logging, tracing (and VPC networking) of the ${name} function`,
    runtimeStatements(logGroup, context.vpc !== undefined),
  );
  const fn = new lambda.Function(scope, name, {
    code: lambda.Code.fromAsset(options.code),
    handler: 'index.handler',
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
    applicationLogLevelV2: APPLICATION_LOG_LEVELS[context.logLevel],
    systemLogLevelV2: lambda.SystemLogLevel.INFO,
    vpc: context.vpc,
    vpcSubnets: context.vpc ? context.vpcSubnets : undefined,
  });
  // Active tracing set on the L1: `tracing: Tracing.ACTIVE` would add the X-Ray statement as an inline
  // policy on the role (HIPAA IAMNoInlinePolicy); runtimeStatements grants it in the managed policy instead.
  (fn.node.defaultChild as lambda.CfnFunction).tracingConfig = { mode: lambda.Tracing.ACTIVE };
  fn.node.addDependency(basePolicy);
  acknowledgeLambdaFindings(fn, context, options.reservedConcurrentExecutions === undefined);
  return fn;
}

export function acknowledgeLambdaFindings(
  fn: IConstruct,
  context: Pick<PipelineContext, 'vpc'>,
  noReservedConcurrency: boolean,
): void {
  Validations.of(fn).acknowledge({ id: 'HIPAA.Security-LambdaDLQ', reason: LAMBDA_REASONS.dlq });
  if (!context.vpc) {
    Validations.of(fn).acknowledge({ id: 'HIPAA.Security-LambdaInsideVPC', reason: LAMBDA_REASONS.vpc });
  }
  if (noReservedConcurrency) {
    Validations.of(fn).acknowledge({
      id: 'HIPAA.Security-LambdaConcurrency',
      reason: LAMBDA_REASONS.concurrency,
    });
  }
}

/** `kms:ViaService` of S3 in this region: the data key is used only through S3. */
export const viaS3 = () => ({ StringEquals: { 'kms:ViaService': `s3.${Aws.REGION}.amazonaws.com` } });

/** Statements on the data key (none when the bucket is not SSE-KMS). */
export function dataKeyStatement(
  dataKey: kms.IKey | undefined,
  ...actions: string[]
): ExplainedStatement | undefined {
  return dataKey
    ? {
        statement: new iam.PolicyStatement({ actions, resources: [dataKey.keyArn], conditions: viaS3() }),
      }
    : undefined;
}

/**
 * A part of the pipeline: a construct of its own in the tree (and a file of
 * its own), whose CloudFormation resources keep the logical ids they had when
 * the pipeline was one flat construct. A changed logical id is a replaced
 * resource: a new export bucket and signing keys, an alias or named state
 * machine that fails to create because the old one still exists.
 */
export abstract class PipelinePart extends Construct {}

/** `makeUniqueId` of aws-cdk-lib (core/lib/private/uniqueid), which is not exported. */
function makeUniqueId(components: string[]): string {
  const path = components.filter((component) => component !== 'Default');
  const alphanumeric = (value: string) => value.replace(/[^A-Za-z0-9]/g, '');
  if (path.length === 1 && alphanumeric(path[0]!).length <= 255) return alphanumeric(path[0]!);
  const hash = createHash('md5').update(path.join('/')).digest('hex').slice(0, 8).toUpperCase();
  const human: string[] = [];
  for (const component of path)
    if (human.length === 0 || !human[human.length - 1]!.endsWith(component)) human.push(component);
  return (
    human
      .filter((component) => component !== 'Resource')
      .map(alphanumeric)
      .join('')
      .slice(0, 240) + hash
  );
}

/**
 * Gives every CloudFormation element under a PipelinePart of `root` the
 * logical id it would have without the part in its path. Throws on a clash,
 * which only two parts creating children of the same id could cause.
 */
export function keepFlatLogicalIds(root: Construct): void {
  const stack = Stack.of(root);
  const seen = new Map<string, string>();
  for (const element of root.node.findAll()) {
    if (!(element instanceof CfnElement)) continue;
    const scopes = element.node.scopes;
    const own = scopes.slice(scopes.indexOf(stack) + 1);
    if (!own.some((scope) => scope instanceof PipelinePart)) continue;
    const id = makeUniqueId(
      own.filter((scope) => !(scope instanceof PipelinePart)).map((scope) => scope.node.id),
    );
    const clash = seen.get(id);
    if (clash)
      throw new Error(`BulkExportPipeline: ${element.node.path} and ${clash} would share logical id ${id}`);
    seen.set(id, element.node.path);
    element.overrideLogicalId(id);
  }
  reacknowledgeWildcards(root);
}
