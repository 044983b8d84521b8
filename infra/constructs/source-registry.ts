import { Aws, Stack, Tags, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3deploy from 'aws-cdk-lib/aws-s3-deployment';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import type { ExplainedStatement } from '../nag-findings.js';
import { type BulkExportSourceProps, SOURCE_TAG_KEY } from '../pipeline-props.js';
import {
  acknowledgeLambdaFindings,
  attachPolicy,
  type PipelineContext,
  PipelinePart,
  viaS3,
} from './shared.js';

/** Where the registry lives under the export prefix (lambdas/adapters/source-registry.ts reads it). */
export const registryPrefix = (exportPrefix: string) => `${exportPrefix}_registry/sources/`;

/** What a registry object holds for a source: its secret, and its settings without the id. */
export function registration(source: BulkExportSourceProps): Record<string, unknown> {
  const { id: _repeated, ...settings } = source.settings;
  const secret = source.clientSecret;
  return { id: source.id, clientSecret: secret.secretFullArn ?? secret.secretName, settings };
}

export interface SourceRegistryProps {
  readonly context: PipelineContext;
  readonly bucket: s3.IBucket;
  readonly dataKey?: kms.IKey;
  readonly sources: readonly BulkExportSourceProps[];
}

/**
 * Publishes the sources declared in the props to the source registry, one
 * object per source (`<prefix>_registry/sources/<id>.json`, SSE-KMS with the
 * data key). It only ever writes its own objects: sources registered with
 * `npm run sources -- put` survive every deploy, and a source removed from
 * the props keeps its object until `npm run sources -- remove`.
 *
 * The publisher is CDK's BucketDeployment with a role of ours, whose only
 * permissions are reading its assets and writing under the registry prefix:
 * CDK's own grant would be read/write/delete on the whole PHI bucket.
 */
export class SourceRegistry extends PipelinePart {
  public readonly deployment: s3deploy.BucketDeployment;
  /** The publisher's role. */
  public readonly role: iam.Role;

  constructor(scope: Construct, id: string, props: SourceRegistryProps) {
    super(scope, id);
    const { context, bucket, dataKey } = props;
    const prefix = registryPrefix(context.exportPrefix);
    this.role = new iam.Role(this, 'RegistryPublisherRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'Publishes the declared FHIR sources to the source registry (no prune)',
    });
    const logGroup = new logs.LogGroup(this, 'RegistryPublisherLogs', {
      retention: context.logRetention,
      encryptionKey: context.operationsKey,
      removalPolicy: context.removalPolicy,
    });
    const assetBuckets = new Map<string, s3.IBucket>();
    const stack = Stack.of(this);
    // Binding is where a source names the bucket its asset is in; we grant reads on it ourselves.
    const remembered = (source: s3deploy.ISource): s3deploy.ISource => ({
      bind: (bindScope, bindContext) => {
        const config = source.bind(bindScope, bindContext);
        assetBuckets.set(JSON.stringify(stack.resolve(config.bucket.bucketName)), config.bucket);
        return config;
      },
    });
    this.deployment = new s3deploy.BucketDeployment(this, 'Registry', {
      destinationBucket: bucket,
      destinationKeyPrefix: prefix,
      sources: props.sources.map((source) =>
        remembered(s3deploy.Source.jsonData(`${source.id}.json`, registration(source))),
      ),
      prune: false,
      retainOnDelete: true,
      ...(dataKey
        ? {
            serverSideEncryption: s3deploy.ServerSideEncryption.AWS_KMS,
            serverSideEncryptionAwsKmsKeyId: dataKey.keyId,
          }
        : {}),
      // Grants to an immutable role land nowhere: the policy below is the publisher's whole access.
      role: this.role.withoutPolicyUpdates(),
      logGroup,
      // Its own singleton handler (the memory is part of its id): another BucketDeployment in the stack
      // with the default memory must not run with this role, nor this one with theirs.
      memoryLimit: 256,
    });
    const policy = attachPolicy(this, 'RegistryPublisherPolicy', this.role, 'Writes the registry objects', [
      {
        statement: new iam.PolicyStatement({
          actions: ['s3:GetObject'],
          resources: [...assetBuckets.values()].map((assetBucket) => assetBucket.arnForObjects('*')),
        }),
        wildcardReason:
          'The registry objects are CDK assets in the deployment’s asset bucket, under content-hashed keys; only reads are granted there.',
      },
      {
        statement: new iam.PolicyStatement({
          actions: ['s3:PutObject'],
          resources: [bucket.arnForObjects(`${prefix}*`)],
        }),
        wildcardReason: 'One object per source id under the registry prefix; the ids are the props’ own.',
      },
      {
        // `aws s3 sync` lists the destination first; the listing is confined to the registry prefix.
        statement: new iam.PolicyStatement({
          actions: ['s3:ListBucket'],
          resources: [bucket.bucketArn],
          conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } },
        }),
      },
      dataKey
        ? {
            statement: new iam.PolicyStatement({
              actions: ['kms:GenerateDataKey'],
              resources: [dataKey.keyArn],
              conditions: viaS3(),
            }),
          }
        : undefined,
      {
        statement: new iam.PolicyStatement({
          actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          resources: [logGroup.logGroupArn],
        }),
      },
    ]);
    this.deployment.node.addDependency(policy);
    this.acknowledgePublisher();
  }

  /** The handler is CDK's (Python, AWS CLI layer), created once per stack outside this construct. */
  private acknowledgePublisher(): void {
    const stack = Stack.of(this);
    const handlers = stack.node.children.filter(
      (child) => child.node.id.startsWith('Custom::CDKBucketDeployment') && child.node.id.endsWith('256MiB'),
    );
    for (const target of handlers) {
      acknowledgeLambdaFindings(target, {}, true);
      Validations.of(target).acknowledge(
        {
          id: 'AwsSolutions-L1',
          reason:
            'The runtime of CDK’s BucketDeployment handler is chosen by aws-cdk-lib; it runs once per deploy, on the deployment’s own assets only.',
        },
        {
          id: 'HIPAA.Security-LambdaInsideVPC',
          reason:
            'The registry publisher copies CDK assets into S3 during a deploy and reaches only S3; it holds no PHI.',
        },
      );
    }
  }
}

export interface SourceAccessProps {
  /** The only principal that may assume the role: the token minter's. */
  readonly mintTokenRole: iam.IRole;
  readonly sources: readonly BulkExportSourceProps[];
}

/**
 * Per-source isolation by attribute (ABAC): the role the token minter
 * assumes for one source, with the session tag `fhir-bulk-export-source=<id>`.
 * In that session it may read only secrets and sign only with keys that carry
 * the same tag value, so one source's execution cannot read another's secret
 * or sign as another client, and no policy grows with the sources.
 */
export class SourceAccess extends PipelinePart {
  public readonly role: iam.Role;

  constructor(scope: Construct, id: string, props: SourceAccessProps) {
    super(scope, id);
    const principalTag = `\${aws:PrincipalTag/${SOURCE_TAG_KEY}}`;
    this.role = new iam.Role(this, 'SourceAccessRole', {
      assumedBy: new iam.PrincipalWithConditions(new iam.ArnPrincipal(props.mintTokenRole.roleArn), {
        // A session without the source tag, or with other tags, is refused.
        StringLike: { [`aws:RequestTag/${SOURCE_TAG_KEY}`]: '?*' },
        'ForAllValues:StringEquals': { 'aws:TagKeys': [SOURCE_TAG_KEY] },
      }).withSessionTags(),
      description:
        "Assumed by the token minter per source (session tag): reads that source's secret and signs with its key",
    });
    const arnIn = (service: string, resource: string) =>
      `arn:${Aws.PARTITION}:${service}:${Aws.REGION}:${Aws.ACCOUNT_ID}:${resource}`;
    // Secret CMKs the props name explicitly; CMKs in this account are covered by the pattern.
    const stack = Stack.of(this);
    const secretKeys = new Map<string, string>();
    for (const source of props.sources) {
      const key = source.clientSecretEncryptionKey ?? source.clientSecret.encryptionKey;
      if (key) secretKeys.set(JSON.stringify(stack.resolve(key.keyArn)), key.keyArn);
      // A secret created in this app is tagged here; an imported one is the operator's to tag (docs/deploy.md).
      if (source.clientSecret instanceof secretsmanager.Secret)
        Tags.of(source.clientSecret).add(SOURCE_TAG_KEY, source.id);
    }
    const statements: ExplainedStatement[] = [
      {
        statement: new iam.PolicyStatement({
          actions: ['secretsmanager:GetSecretValue'],
          resources: [arnIn('secretsmanager', 'secret:*')],
          conditions: { StringEquals: { [`secretsmanager:ResourceTag/${SOURCE_TAG_KEY}`]: principalTag } },
        }),
        wildcardReason:
          'Any secret of the account, but only one whose fhir-bulk-export-source tag equals the session’s source id (ABAC): sources are registered without a deploy, so their secrets cannot be listed here.',
      },
      {
        statement: new iam.PolicyStatement({
          actions: ['kms:Sign', 'kms:GetPublicKey', 'kms:DescribeKey'],
          resources: [arnIn('kms', 'key/*')],
          conditions: { StringEquals: { [`aws:ResourceTag/${SOURCE_TAG_KEY}`]: principalTag } },
        }),
        wildcardReason:
          'Any key of the account, but only one whose fhir-bulk-export-source tag equals the session’s source id (ABAC): signing keys of sources registered without a deploy cannot be listed here.',
      },
      {
        // Only through Secrets Manager, which has already checked the secret's tag above.
        statement: new iam.PolicyStatement({
          actions: ['kms:Decrypt'],
          resources: [arnIn('kms', 'key/*'), ...secretKeys.values()],
          conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${Aws.REGION}.amazonaws.com` } },
        }),
        wildcardReason:
          'A secret under a customer managed key is decrypted by Secrets Manager on the caller’s behalf; kms:ViaService confines this to Secrets Manager, where GetSecretValue is already limited to the source’s own secrets.',
      },
    ];
    attachPolicy(
      this,
      'SourceAccessPolicy',
      this.role,
      'Reads one source’s secret and signs with its key, by session tag',
      statements,
    );
  }
}
