import { Aws, Duration, TimeZone, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct, IDependable } from 'constructs';
import type { BulkExportSourceProps } from '../pipeline-props.js';
import { attachPolicy, encryptedQueue, type PipelineContext, PipelinePart } from './shared.js';

export interface ExportSchedulesProps {
  readonly context: PipelineContext;
  readonly sources: readonly BulkExportSourceProps[];
  readonly stateMachine: sfn.IStateMachine;
  /** A scheduled run's Prepare Export may find a lock whose holder it must ask about. */
  readonly dependsOn: readonly IDependable[];
}

/**
 * One EventBridge Scheduler schedule per declared source that has one: it
 * starts `{ sourceId, since: "auto" }` (a delta since the last successful
 * export), retries a failed start and then parks it in a dead-letter queue.
 */
export class ExportSchedules extends PipelinePart {
  public readonly schedules: ReadonlyMap<string, scheduler.Schedule>;
  /** Where a schedule's failed StartExecution lands. */
  public readonly deadLetterQueue: sqs.Queue;

  constructor(scope: Construct, id: string, props: ExportSchedulesProps) {
    super(scope, id);
    const { context } = props;
    this.deadLetterQueue = encryptedQueue(this, 'ScheduleDeadLetterQueue', context.operationsKey, {
      retentionPeriod: Duration.days(14),
    });
    Validations.of(this.deadLetterQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason:
        'This queue is the dead-letter queue of the EventBridge Scheduler schedules (Target.DeadLetterConfig); cdk-nag only recognises DLQs named in an SQS redrive policy.',
    });
    const schedules = new Map<string, scheduler.Schedule>();
    this.schedules = schedules;
    const scheduled = props.sources.filter((source) => source.schedule);
    if (scheduled.length === 0) return;
    const role = new iam.Role(this, 'SchedulerRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
      description: 'Starts scheduled FHIR bulk exports',
    });
    const policy = attachPolicy(
      this,
      'SchedulerPolicy',
      role,
      'Starts executions; failed starts go to the DLQ',
      [
        {
          statement: new iam.PolicyStatement({
            actions: ['states:StartExecution'],
            resources: [props.stateMachine.stateMachineArn],
          }),
        },
        {
          statement: new iam.PolicyStatement({
            actions: ['sqs:SendMessage'],
            resources: [this.deadLetterQueue.queueArn],
          }),
        },
        {
          statement: new iam.PolicyStatement({
            actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
            resources: [context.operationsKey.keyArn],
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
        target: new schedulerTargets.StepFunctionsStartExecution(props.stateMachine, {
          role: role.withoutPolicyUpdates(),
          input: scheduler.ScheduleTargetInput.fromObject({ sourceId: source.id, since: 'auto' }),
          deadLetterQueue: this.deadLetterQueue,
          retryAttempts: schedule.retryAttempts ?? 5,
          maxEventAge: schedule.maximumEventAge ?? Duration.hours(1),
        }),
      });
      created.node.addDependency(policy, ...props.dependsOn);
      schedules.set(source.id, created);
    }
  }
}
