import { Duration, Validations } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import type { ExportBucketProps, ExportLifecycleProps } from '../pipeline-props.js';
import { type PipelineContext, PipelinePart } from './shared.js';

export interface ExportBucketPartProps {
  readonly context: PipelineContext;
  /** An existing bucket: nothing is created. */
  readonly bucket?: s3.IBucket;
  readonly bucketProps?: ExportBucketProps;
  readonly lifecycle?: ExportLifecycleProps;
}

/**
 * Where exports land: a bucket that is SSE-KMS with its own key and a bucket
 * key, TLS only, versioned, access-logged into a bucket of its own, sending
 * EventBridge notifications, with lifecycle rules for the pipeline's work
 * files; or the bucket you give, as it is.
 */
export class ExportBucket extends PipelinePart {
  public readonly bucket: s3.IBucket;
  /** The SSE-KMS key of the bucket, when there is one. */
  public readonly dataKey?: kms.IKey;
  /** The server access log bucket of a created export bucket. */
  public readonly accessLogBucket?: s3.Bucket;

  constructor(scope: Construct, id: string, props: ExportBucketPartProps) {
    super(scope, id);
    // Set before any child exists: the access log bucket gets a bucket policy, not ACLs.
    this.node.setContext('@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy', true);
    if (props.bucket) {
      this.bucket = props.bucket;
      this.dataKey = props.bucket.encryptionKey;
      return;
    }
    const { context } = props;
    const lifecycle = props.lifecycle ?? {};
    // S3 delivers access logs to SSE-KMS buckets when the key lets logging.s3 use it (CDK grants that).
    const accessLogBucket = new s3.Bucket(this, 'AccessLogBucket', {
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: context.operationsKey,
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
      removalPolicy: context.removalPolicy,
    });
    Validations.of(accessLogBucket).acknowledge({
      id: 'HIPAA.Security-S3BucketReplicationEnabled',
      reason:
        'The bucket holds S3 server access logs (request metadata, never resource content); replicating them is left to the account’s log archive.',
    });

    const dataKey = new kms.Key(this, 'DataKey', {
      description: 'SSE-KMS key of the FHIR bulk export bucket',
      enableKeyRotation: true,
      removalPolicy: context.removalPolicy,
    });
    const prefix = context.exportPrefix;
    const bucketProps = props.bucketProps ?? {};
    const exportsRule: s3.LifecycleRule[] =
      lifecycle.exportTransitions || lifecycle.exportExpiration
        ? [
            {
              id: 'age-exported-data',
              prefix: `${prefix}source=`,
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
          prefix: `${prefix}_work/`,
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
      removalPolicy: context.removalPolicy,
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
    this.bucket = bucket;
    this.dataKey = dataKey;
    this.accessLogBucket = accessLogBucket;
  }
}
