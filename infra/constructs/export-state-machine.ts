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
import type { TaskFunctionName } from '../lambda-bundles.js';
import type { ExplainedStatement } from '../nag-findings.js';
import {
  attachPolicy,
  dataKeyStatement,
  encryptedQueue,
  type PipelineContext,
  PipelinePart,
} from './shared.js';

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
  'PlanChunks',
  'MergeChunks',
  'DownloadFile',
  'CheckFiles',
  'VerifyFiles',
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

export interface ExportStateMachinesProps {
  readonly context: PipelineContext;
  readonly functions: Readonly<Record<TaskFunctionName, lambda.IFunction>>;
  readonly roles: Readonly<Record<TaskFunctionName, iam.IRole>>;
  readonly bucket: s3.IBucket;
  readonly dataKey?: kms.IKey;
  readonly stateMachineDirectory: string;
  readonly stateMachineName?: string;
  /** The construct whose unique name the log group names carry (the pipeline's, as before the split). */
  readonly nameScope: Construct;
}

/**
 * The export state machine (`state-machines/bulk-export.asl.json`), the
 * clean-up state machine that runs when an export ends without its own
 * clean-up (`clean-up-ended-export.asl.json`), the EventBridge rule that
 * starts it, and the lock-liveness permissions both need.
 */
export class ExportStateMachines extends PipelinePart {
  public readonly stateMachine: sfn.StateMachine;
  public readonly cleanUpStateMachine: sfn.StateMachine;
  public readonly cleanUpRule: events.Rule;
  public readonly cleanUpDeadLetterQueue: sqs.Queue;
  /** Prepare Export's lock-liveness policy: a scheduled run depends on it. */
  public readonly prepareExportLivenessPolicy: iam.ManagedPolicy;

  private readonly props: ExportStateMachinesProps;

  constructor(scope: Construct, id: string, props: ExportStateMachinesProps) {
    super(scope, id);
    this.props = props;
    this.stateMachine = this.createExportStateMachine();
    const liveness = this.grantLockLiveness();
    this.prepareExportLivenessPolicy = liveness.PrepareExport;
    const cleanUp = this.createCleanUp(liveness.CleanUpEndedExport);
    this.cleanUpStateMachine = cleanUp.stateMachine;
    this.cleanUpRule = cleanUp.rule;
    this.cleanUpDeadLetterQueue = cleanUp.deadLetterQueue;
  }

  /**
   * ARN pattern of the export executions themselves (`execution:<name>:<execution>`),
   * what a lock holder is. The name is the state machine's attribute, so a
   * policy that uses it must not be one the machine's functions wait for.
   */
  public exportExecutionsArn(): string {
    return Stack.of(this).formatArn({
      service: 'states',
      resource: 'execution',
      resourceName: `${this.stateMachine.stateMachineName}:*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
  }

  /** ARN pattern of the Distributed Maps' children (`execution:<name>/<map run label>:<child>`), whatever the Map. */
  private mapChildExecutionsArn(stateMachine: sfn.StateMachine): string {
    return Stack.of(this).formatArn({
      service: 'states',
      resource: 'execution',
      resourceName: `${stateMachine.stateMachineName}/*`,
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
        invoked.map((name) => [`${name}FunctionArn`, this.props.functions[name].functionArn]),
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
    const { context } = this.props;
    const definition = readFileSync(join(this.props.stateMachineDirectory, aslFile), 'utf8');
    const { substitutions, invoked } = this.taskSubstitutions(aslFile, definition, options.allowedFunctions);

    const uniqueName = Names.uniqueResourceName(this.props.nameScope, { maxLength: 200, separator: '-' });
    const logGroup = new logs.LogGroup(this, `${idPrefix}StateMachineLogs`, {
      // The vendedlogs prefix keeps Step Functions from growing the account's log resource policy.
      logGroupName: `/aws/vendedlogs/states/${uniqueName}${options.logGroupSuffix}`,
      retention: context.logRetention,
      encryptionKey: context.operationsKey,
      removalPolicy: context.removalPolicy,
    });
    const role = new iam.Role(this, `${idPrefix}StateMachineRole`, {
      assumedBy: new iam.ServicePrincipal('states.amazonaws.com'),
      description: options.description,
    });
    const policy = attachPolicy(this, `${idPrefix}StateMachinePolicy`, role, options.policyDescription, [
      {
        statement: new iam.PolicyStatement({
          actions: ['lambda:InvokeFunction'],
          resources: invoked.map((name) => this.props.functions[name].functionArn),
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
      removalPolicy: context.removalPolicy,
    });
    stateMachine.node.addDependency(role, policy);
    return { stateMachine, role };
  }

  private createExportStateMachine(): sfn.StateMachine {
    const { bucket, dataKey, context } = this.props;
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
            resources: [bucket.arnForObjects(`${context.exportPrefix}_work/*`)],
          }),
          wildcardReason:
            'The Distributed Maps’ ItemReaders read the file list and the retry list written per execution under _work/source=<id>/execution=<name>/; the keys are only known at run time.',
        },
        dataKeyStatement(dataKey, 'kms:Decrypt'),
      ],
    });

    // A separate policy created after the state machine: it names the state machine, which needs the role first.
    attachPolicy(
      this,
      'DistributedMapPolicy',
      role,
      'Lets the Distributed Maps start, stop and redrive their child executions, and an export continue in a new execution of this machine (history budget)',
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
   * Prepare Export and Clean Up Ended Export find out whether a lock's holder
   * (an export execution's ARN) still runs: a dead holder's lock is taken
   * over instead of stranding the source until its deadline. Separate
   * policies, after the export machine: Prepare Export is one of its Tasks.
   */
  private grantLockLiveness(): Record<'PrepareExport' | 'CleanUpEndedExport', iam.ManagedPolicy> {
    const describeHolder = (): ExplainedStatement => ({
      statement: new iam.PolicyStatement({
        actions: ['states:DescribeExecution'],
        resources: [this.exportExecutionsArn()],
      }),
      wildcardReason:
        'A lock holder is an execution of the export state machine, named at run time; DescribeExecution is granted on that state machine’s executions only.',
    });
    const policy = (name: 'PrepareExport' | 'CleanUpEndedExport') =>
      attachPolicy(
        this,
        `${name}LockLivenessPolicy`,
        this.props.roles[name],
        'Asks whether the holder of a source lock still runs',
        [describeHolder()],
      );
    return { PrepareExport: policy('PrepareExport'), CleanUpEndedExport: policy('CleanUpEndedExport') };
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
    const { context } = this.props;
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

    const deadLetterQueue = encryptedQueue(this, 'CleanUpDeadLetterQueue', context.operationsKey, {
      retentionPeriod: Duration.days(14),
    });
    Validations.of(deadLetterQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason:
        'This queue is the dead-letter queue of the clean-up rule’s target (Target.DeadLetterConfig); cdk-nag only recognises DLQs named in an SQS redrive policy.',
    });
    // EventBridge writes the undelivered event into the queue, encrypted with the operations key.
    context.operationsKey.addToResourcePolicy(
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
    const policy = attachPolicy(this, 'CleanUpRulePolicy', role, 'Starts the clean-up state machine', [
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
}
