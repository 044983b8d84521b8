import { Aws, Duration, Tags, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import { bundleDirectory } from '../lambda-bundles.js';
import { type BulkExportSourceProps, type SigningKeySpec, SOURCE_TAG_KEY } from '../pipeline-props.js';
import {
  attachPolicy,
  createPipelineFunction,
  type PipelineContext,
  PipelinePart,
  POWERTOOLS_SERVICE_NAME,
} from './shared.js';

const KEY_SPECS: Record<SigningKeySpec, kms.KeySpec> = {
  ECC_NIST_P384: kms.KeySpec.ECC_NIST_P384,
  RSA_2048: kms.KeySpec.RSA_2048,
  RSA_3072: kms.KeySpec.RSA_3072,
  RSA_4096: kms.KeySpec.RSA_4096,
};

export interface SigningKeysProps {
  readonly context: PipelineContext;
  readonly sources: readonly BulkExportSourceProps[];
  /** `alias/<keyAliasPrefix>/<sourceId>`. */
  readonly keyAliasPrefix: string;
  /** The only principal that may sign: the role the token minter assumes per source. */
  readonly signer: iam.IRole;
  readonly bundleRoot: string;
  readonly metricNamespace: string;
  readonly jwksMaxAge: Duration;
  readonly reservedConcurrency?: number;
}

/**
 * An asymmetric signing key per declared source that brings none (tagged
 * with its source id, behind `alias/<prefix>/<id>`), and the public JWKS
 * endpoint EHRs verify our client assertions with. The JWKS lists the keys
 * behind the alias prefix at request time, so a key created outside CDK for
 * a new source is published without a deploy.
 */
export class SigningKeys extends PipelinePart {
  /** The keys this construct created, by source id. */
  public readonly keys: ReadonlyMap<string, kms.Key>;
  /** Alias per created key: `alias/<keyAliasPrefix>/<sourceId>`, usable as the secret's `kmsKeyId`. */
  public readonly aliases: ReadonlyMap<string, kms.Alias>;
  /** Serves the JWKS. */
  public readonly jwksFunction: lambda.Function;
  /** HTTPS URL of the JWKS, to register with the EHR. */
  public readonly jwksUrl: string;

  constructor(scope: Construct, id: string, props: SigningKeysProps) {
    super(scope, id);
    const { context } = props;
    const keys = new Map<string, kms.Key>();
    const aliases = new Map<string, kms.Alias>();
    for (const source of props.sources) {
      if (source.signingKey) continue;
      const spec = source.signingKeySpec ?? 'ECC_NIST_P384';
      const key = new kms.Key(this, `SigningKey-${source.id}`, {
        description: `Signs SMART Backend Services client assertions for FHIR source ${source.id} (${spec === 'ECC_NIST_P384' ? 'ES384' : 'RS384'})`,
        keySpec: KEY_SPECS[spec],
        keyUsage: kms.KeyUsage.SIGN_VERIFY,
        removalPolicy: context.removalPolicy,
      });
      // What the source access role's ABAC statement matches the session's source id against.
      Tags.of(key).add(SOURCE_TAG_KEY, source.id);
      // Defence in depth behind IAM: even an administrator's role cannot sign as this client.
      key.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'OnlyTheTokenMinterSigns',
          effect: iam.Effect.DENY,
          principals: [new iam.AnyPrincipal()],
          actions: ['kms:Sign'],
          resources: ['*'],
          conditions: { ArnNotEquals: { 'aws:PrincipalArn': props.signer.roleArn } },
        }),
      );
      keys.set(source.id, key);
      aliases.set(
        source.id,
        new kms.Alias(this, `SigningKeyAlias-${source.id}`, {
          aliasName: `alias/${props.keyAliasPrefix}/${source.id}`,
          targetKey: key,
        }),
      );
    }
    this.keys = keys;
    this.aliases = aliases;

    const role = new iam.Role(this, 'JwksRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'Publishes the public JWKS of the FHIR bulk export signing keys',
    });
    attachPolicy(this, 'JwksPolicy', role, 'Finds the signing keys by alias and reads their public half', [
      {
        statement: new iam.PolicyStatement({ actions: ['kms:ListAliases'], resources: ['*'] }),
        wildcardReason: 'kms:ListAliases has no resource-level permissions (AWS documents Resource "*").',
      },
      {
        statement: new iam.PolicyStatement({
          actions: ['kms:GetPublicKey'],
          resources: [`arn:${Aws.PARTITION}:kms:${Aws.REGION}:${Aws.ACCOUNT_ID}:key/*`],
          conditions: { Null: { [`aws:ResourceTag/${SOURCE_TAG_KEY}`]: 'false' } },
        }),
        wildcardReason:
          'Signing keys of sources registered without a deploy are created outside CDK; only keys tagged with a source id are readable, and only their public half.',
      },
    ]);
    this.jwksFunction = createPipelineFunction(this, 'Jwks', context, {
      code: bundleDirectory(props.bundleRoot, 'Jwks'),
      description:
        'Serves the JWKS (public keys from KMS GetPublicKey) that EHRs verify client assertions with',
      memorySize: 256,
      timeout: Duration.seconds(10),
      role,
      environment: {
        JWKS_KEY_ALIAS_PREFIX: `alias/${props.keyAliasPrefix}/`,
        JWKS_MAX_AGE_SECONDS: String(props.jwksMaxAge.toSeconds()),
        LOG_LEVEL: context.logLevel,
        POWERTOOLS_SERVICE_NAME,
        POWERTOOLS_METRICS_NAMESPACE: props.metricNamespace,
        NODE_OPTIONS: '--enable-source-maps',
      },
      reservedConcurrentExecutions: props.reservedConcurrency,
    });
    const functionUrl = this.jwksFunction.addFunctionUrl({
      authType: lambda.FunctionUrlAuthType.NONE,
      cors: { allowedOrigins: ['*'], allowedMethods: [lambda.HttpMethod.GET] },
    });
    Validations.of(this.jwksFunction).acknowledge({
      id: 'HIPAA.Security-LambdaFunctionPublicAccessProhibited',
      reason:
        'The JWKS is public by design (SMART Backend Services: the EHR fetches it anonymously over HTTPS); the function returns only public keys and has reserved concurrency.',
    });
    this.jwksUrl = `${functionUrl.url}.well-known/jwks.json`;
  }
}
