import { Aws, CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import * as snsSubscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type { Construct } from 'constructs';
import { BulkExportPipeline, type BulkExportPipelineProps } from './bulk-export-pipeline.js';

export interface BulkExportStackProps extends StackProps {
  /** The pipeline's props. */
  readonly pipeline: BulkExportPipelineProps;
  /** Email addresses subscribed to the alarm topic (each must confirm). @default none */
  readonly alarmEmails?: readonly string[];
}

/** `epic-prod` → `EpicProd`, for output ids (alphanumeric only). */
const pascal = (id: string) =>
  id
    .split('-')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');

/** The deployable stack: one pipeline and the outputs an operator needs. */
export class BulkExportStack extends Stack {
  public readonly pipeline: BulkExportPipeline;

  constructor(scope: Construct, id: string, props: BulkExportStackProps) {
    super(scope, id, props);
    const pipeline = new BulkExportPipeline(this, 'Pipeline', props.pipeline);
    this.pipeline = pipeline;
    for (const email of props.alarmEmails ?? []) {
      pipeline.alarmTopic.addSubscription(new snsSubscriptions.EmailSubscription(email));
    }

    new CfnOutput(this, 'StateMachineArn', {
      description: 'Start exports and backfills here (aws stepfunctions start-execution / npm run backfill)',
      value: pipeline.stateMachine.stateMachineArn,
    });
    new CfnOutput(this, 'CleanUpStateMachineArn', {
      description:
        'Cleans up exports that were stopped, timed out or failed without their own clean-up (started by EventBridge)',
      value: pipeline.cleanUpStateMachine.stateMachineArn,
    });
    new CfnOutput(this, 'ExportBucketName', {
      description:
        'Where exports land: source=<id>/export=<transactionTime>/…, completion marker _SUCCESS.json',
      value: pipeline.bucket.bucketName,
    });
    new CfnOutput(this, 'JwksUrl', {
      description: 'Register this JWKS URL with each EHR (SMART Backend Services)',
      value: pipeline.jwksUrl,
    });
    new CfnOutput(this, 'DashboardUrl', {
      value: `https://console.aws.amazon.com/cloudwatch/home?region=${Aws.REGION}#dashboards:name=${pipeline.dashboard.dashboardName}`,
    });
    new CfnOutput(this, 'AlarmTopicArn', { value: pipeline.alarmTopic.topicArn });
    new CfnOutput(this, 'ScheduleDeadLetterQueueUrl', { value: pipeline.scheduleDeadLetterQueue.queueUrl });
    new CfnOutput(this, 'CleanUpDeadLetterQueueUrl', {
      description:
        'Ended exports whose clean-up could not be started: their sources stay locked until cleaned up',
      value: pipeline.cleanUpDeadLetterQueue.queueUrl,
    });
    if (pipeline.completionQueue) {
      new CfnOutput(this, 'CompletionQueueUrl', {
        description: 'Example downstream: one message per completion marker',
        value: pipeline.completionQueue.queueUrl,
      });
    }
    for (const [sourceId, key] of pipeline.signingKeys) {
      new CfnOutput(this, `SigningKeyArn${pascal(sourceId)}`, {
        description: `Signing key of source ${sourceId}: put it (or the alias) in the source's secret as kmsKeyId`,
        value: key.keyArn,
      });
      new CfnOutput(this, `SigningKeyAlias${pascal(sourceId)}`, {
        description: `Alias of the signing key of source ${sourceId}`,
        value: pipeline.signingKeyAliases.get(sourceId)!.aliasName,
      });
    }
  }
}
