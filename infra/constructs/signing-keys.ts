import { Aws, Duration, Tags, Validations } from 'aws-cdk-lib';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import * as origins from 'aws-cdk-lib/aws-cloudfront-origins';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import { bundleDirectory } from '../lambda-bundles.js';
import {
  type BulkExportSourceProps,
  type JwksDomainProps,
  type SigningKeyRotation,
  type SigningKeySpec,
  SOURCE_TAG_KEY,
} from '../pipeline-props.js';
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
  readonly jwksDomain?: JwksDomainProps;
}

/**
 * An asymmetric signing key per declared source that brings none (tagged
 * with its source id, behind `alias/<prefix>/<id>`; during a rotation also
 * a next or previous key behind `…/<id>/next` and `…/<id>/previous`, which
 * never sign), and the public JWKS endpoint EHRs verify our client
 * assertions with. The JWKS lists the keys behind the alias prefix at
 * request time, so a key created outside CDK for a new source is published
 * without a deploy.
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
  /** With `jwksDomain`: the distribution to point the domain's DNS at. */
  public readonly jwksDistribution?: cloudfront.Distribution;

  constructor(scope: Construct, id: string, props: SigningKeysProps) {
    super(scope, id);
    const { context } = props;
    const keys = new Map<string, kms.Key>();
    const aliases = new Map<string, kms.Alias>();
    const publishedOnly: kms.IKey[] = [];
    for (const source of props.sources) {
      if (source.signingKey) {
        checkBroughtRotation(source);
        // Brought keys are found by their alias; a brought next/previous key is named here instead,
        // as it stays untagged (so unsignable) and needs no alias of ours.
        for (const key of [source.nextSigningKey, source.previousSigningKey])
          if (key) publishedOnly.push(key);
        continue;
      }
      if (source.nextSigningKey || source.previousSigningKey)
        throw new Error(
          `source ${source.id}: nextSigningKey and previousSigningKey go with a brought signingKey; for keys this construct creates, use signingKeyRotation`,
        );
      const rotation = checkedRotation(source.id, source.signingKeyRotation);
      const roles: [SigningKeyRole, number][] = [['current', rotation.current]];
      if (rotation.publishNext) roles.push(['next', rotation.current + 1]);
      if (rotation.keepPrevious) roles.push(['previous', rotation.current - 1]);
      for (const [role, generation] of roles) {
        const key = this.createSigningKey(source, generation, role, props);
        const suffix = role === 'current' ? '' : `-${role}`;
        const alias = new kms.Alias(this, `SigningKeyAlias-${source.id}${suffix}`, {
          aliasName: `alias/${props.keyAliasPrefix}/${source.id}${role === 'current' ? '' : `/${role}`}`,
          targetKey: key,
        });
        if (role === 'current') {
          keys.set(source.id, key);
          aliases.set(source.id, alias);
        }
      }
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
      ...(publishedOnly.length === 0
        ? []
        : [
            {
              // Untagged on purpose (the tag would let the minter sign), so named one by one.
              statement: new iam.PolicyStatement({
                actions: ['kms:GetPublicKey'],
                resources: publishedOnly.map((key) => key.keyArn),
              }),
            },
          ]),
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
        ...(publishedOnly.length === 0
          ? {}
          : { JWKS_EXTRA_KEY_IDS: publishedOnly.map((key) => key.keyArn).join(',') }),
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
    if (props.jwksDomain) {
      this.jwksDistribution = jwksDistribution(this, functionUrl, props.jwksDomain);
      this.jwksUrl = `https://${props.jwksDomain.domainName}/.well-known/jwks.json`;
    } else {
      this.jwksUrl = `${functionUrl.url}.well-known/jwks.json`;
    }
  }

  /**
   * One generation of a source's key. Generation 1 keeps the id keys always had, so an
   * existing deployment adopts rotation without replacing its key.
   */
  private createSigningKey(
    source: BulkExportSourceProps,
    generation: number,
    role: SigningKeyRole,
    props: SigningKeysProps,
  ): kms.Key {
    const spec = source.signingKeySpec ?? 'ECC_NIST_P384';
    const key = new kms.Key(this, `SigningKey-${source.id}${generation === 1 ? '' : `-g${generation}`}`, {
      description: `Signs SMART Backend Services client assertions for FHIR source ${source.id} (${spec === 'ECC_NIST_P384' ? 'ES384' : 'RS384'}), generation ${generation}`,
      keySpec: KEY_SPECS[spec],
      keyUsage: kms.KeyUsage.SIGN_VERIFY,
      removalPolicy: props.context.removalPolicy,
    });
    // What the source access role's ABAC statement matches the session's source id against,
    // and what lets the JWKS function read the public half.
    Tags.of(key).add(SOURCE_TAG_KEY, source.id);
    // A previous key keeps the minter's right to sign: a warm minter resolved the alias before
    // the promotion and signs with it until it refreshes (within the hour), and the JWKS still
    // publishes it, so its assertions keep verifying. A next key has never signed and must not.
    key.addToResourcePolicy(
      role !== 'next'
        ? // Defence in depth behind IAM: even an administrator's role cannot sign as this client.
          new iam.PolicyStatement({
            sid: 'OnlyTheTokenMinterSigns',
            effect: iam.Effect.DENY,
            principals: [new iam.AnyPrincipal()],
            actions: ['kms:Sign'],
            resources: ['*'],
            conditions: { ArnNotEquals: { 'aws:PrincipalArn': props.signer.roleArn } },
          })
        : // Published ahead of its promotion, never used before it: a secret naming it fails loudly.
          new iam.PolicyStatement({
            sid: 'PublishedOnlyNeverSigns',
            effect: iam.Effect.DENY,
            principals: [new iam.AnyPrincipal()],
            actions: ['kms:Sign'],
            resources: ['*'],
          }),
    );
    return key;
  }
}

type SigningKeyRole = 'current' | 'next' | 'previous';

function checkedRotation(
  sourceId: string,
  rotation: SigningKeyRotation | undefined,
): Required<SigningKeyRotation> {
  const current = rotation?.current ?? 1;
  if (!Number.isInteger(current) || current < 1 || current > 1000)
    throw new Error(
      `source ${sourceId}: signingKeyRotation.current must be an integer from 1 to 1000 (got ${current})`,
    );
  if (rotation?.keepPrevious && current === 1)
    throw new Error(
      `source ${sourceId}: signingKeyRotation.keepPrevious needs current 2 or more (generation 1 has no previous key)`,
    );
  return {
    current,
    publishNext: rotation?.publishNext ?? false,
    keepPrevious: rotation?.keepPrevious ?? false,
  };
}

function checkBroughtRotation(source: BulkExportSourceProps): void {
  if (source.signingKeyRotation)
    throw new Error(
      `source ${source.id}: signingKeyRotation is for keys this construct creates; with a brought signingKey, set nextSigningKey or previousSigningKey`,
    );
}

/**
 * CloudFront in front of the function URL: the URL EHRs registered names our domain, not the
 * function, and the origin's Cache-Control (jwksMaxAge) governs both CloudFront and the EHR.
 */
function jwksDistribution(
  scope: Construct,
  functionUrl: lambda.FunctionUrl,
  domain: JwksDomainProps,
): cloudfront.Distribution {
  const distribution = new cloudfront.Distribution(scope, 'JwksDistribution', {
    comment: 'The public JWKS of the FHIR bulk export signing keys, at a stable domain',
    domainNames: [domain.domainName],
    certificate: domain.certificate,
    minimumProtocolVersion: cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
    defaultBehavior: {
      origin: new origins.FunctionUrlOrigin(functionUrl),
      viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
      allowedMethods: cloudfront.AllowedMethods.ALLOW_GET_HEAD,
      cachePolicy: cloudfront.CachePolicy.USE_ORIGIN_CACHE_CONTROL_HEADERS,
    },
  });
  for (const [id, reason] of [
    [
      'AwsSolutions-CFR1',
      'The JWKS is public key material every EHR must reach wherever it runs; a geo restriction would only break registrations.',
    ],
    [
      'AwsSolutions-CFR2',
      'The origin serves only public keys from a function with reserved concurrency, and responses are cached for jwksMaxAge: a WAF would protect nothing secret.',
    ],
    [
      'AwsSolutions-CFR3',
      'Requests for public keys carry no data worth an access log; the function logs its own failures.',
    ],
  ] as const)
    Validations.of(distribution).acknowledge({ id, reason });
  return distribution;
}
