import { Aws, CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as snsSubscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type { Construct } from 'constructs';
import {
  BulkExportPipeline,
  type BulkExportPipelineProps,
  type BulkExportSourceProps,
} from './bulk-export-pipeline.js';
import type { JwksDomainProps } from './pipeline-props.js';

/**
 * A source as the config file names it: its secret by ARN or name, its CMK
 * by ARN. The stack imports them (an import needs a scope, which the config
 * file cannot give).
 */
export interface ConfiguredSourceProps
  extends Omit<BulkExportSourceProps, 'clientSecret' | 'clientSecretEncryptionKey'> {
  /** The secret itself, or its complete ARN (with the 6-character suffix), partial ARN or name. */
  readonly clientSecret: secretsmanager.ISecret | string;
  readonly clientSecretEncryptionKeyArn?: string;
}

export interface BulkExportStackProps extends StackProps {
  /** The pipeline's props, with sources as the config file names them. */
  readonly pipeline: Omit<BulkExportPipelineProps, 'sources' | 'jwksDomain'> & {
    readonly sources: readonly ConfiguredSourceProps[];
    /** The certificate itself, or its ARN (us-east-1) as the config file names it. */
    readonly jwksDomain?: JwksDomainProps | { readonly domainName: string; readonly certificateArn: string };
  };
  /** Email addresses subscribed to the alarm topic (each must confirm). @default none */
  readonly alarmEmails?: readonly string[];
}

/** A complete secret ARN ends in `-` and the 6 characters Secrets Manager appends. */
const COMPLETE_SECRET_ARN = /^arn:[^:]+:secretsmanager:.*-[A-Za-z0-9]{6}$/;

function importSource(scope: Construct, source: ConfiguredSourceProps): BulkExportSourceProps {
  const { clientSecret, clientSecretEncryptionKeyArn, ...rest } = source;
  const encryptionKey = clientSecretEncryptionKeyArn
    ? kms.Key.fromKeyArn(scope, `SecretKey-${source.id}`, clientSecretEncryptionKeyArn)
    : undefined;
  if (typeof clientSecret !== 'string')
    return { ...rest, clientSecret, clientSecretEncryptionKey: encryptionKey };
  const id = `Secret-${source.id}`;
  const imported = clientSecret.startsWith('arn:')
    ? secretsmanager.Secret.fromSecretAttributes(scope, id, {
        ...(COMPLETE_SECRET_ARN.test(clientSecret)
          ? { secretCompleteArn: clientSecret }
          : { secretPartialArn: clientSecret }),
        encryptionKey,
      })
    : secretsmanager.Secret.fromSecretNameV2(scope, id, clientSecret);
  return { ...rest, clientSecret: imported, clientSecretEncryptionKey: encryptionKey };
}

/** The deployable stack: one pipeline and the outputs an operator needs. */
export class BulkExportStack extends Stack {
  public readonly pipeline: BulkExportPipeline;

  constructor(scope: Construct, id: string, props: BulkExportStackProps) {
    super(scope, id, props);
    const { jwksDomain, ...pipelineProps } = props.pipeline;
    const pipeline = new BulkExportPipeline(this, 'Pipeline', {
      ...pipelineProps,
      sources: props.pipeline.sources.map((source) => importSource(this, source)),
      ...(jwksDomain === undefined
        ? {}
        : {
            jwksDomain:
              'certificateArn' in jwksDomain
                ? {
                    domainName: jwksDomain.domainName,
                    certificate: acm.Certificate.fromCertificateArn(
                      this,
                      'JwksCertificate',
                      jwksDomain.certificateArn,
                    ),
                  }
                : jwksDomain,
          }),
    });
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
    // One output for all keys: outputs per source would hit CloudFormation's 200-output limit.
    new CfnOutput(this, 'SigningKeyAliasPrefix', {
      description:
        "Signing keys are alias/<prefix>/<sourceId>: put the alias in the source's secret as kmsKeyId; the JWKS publishes every key under this prefix",
      value: pipeline.signingKeyAliasPrefix,
    });
    new CfnOutput(this, 'SourceRegistry', {
      description: 'Where sources are registered (npm run sources -- put|list|show|remove)',
      value: `s3://${pipeline.bucket.bucketName}/${pipeline.sourceRegistryPrefix}`,
    });
    new CfnOutput(this, 'SourceAccessRoleArn', {
      description:
        'Assumed by the token minter per source; its secret and key must carry the tag fhir-bulk-export-source=<id>',
      value: pipeline.sourceAccessRole.roleArn,
    });
  }
}
