import { Duration, type Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { describe, expect, it } from 'vitest';
import { SigningKeys } from '../../infra/constructs/signing-keys.js';
import { DEFAULT_LAMBDA_BUNDLE_DIR } from '../../infra/lambda-bundles.js';
import { partStack } from './part-context.js';

describe('SigningKeys', () => {
  const { stack, context } = partStack();
  const secret = secretsmanager.Secret.fromSecretNameV2(stack, 'Secret', 'fhir-bulk-export/any');
  const settings = { fhirBaseUrl: 'https://fhir.example.org/r4' };
  const part = new SigningKeys(stack, 'SigningKeys', {
    context,
    sources: [
      { id: 'created', clientSecret: secret, settings, signingKeySpec: 'RSA_2048' },
      {
        id: 'brought',
        clientSecret: secret,
        settings,
        signingKey: kms.Key.fromKeyArn(stack, 'Brought', 'arn:aws:kms:us-east-1:123456789012:key/abc'),
      },
    ],
    keyAliasPrefix: 'team-a',
    signer: iam.Role.fromRoleArn(stack, 'Signer', 'arn:aws:iam::123456789012:role/signer'),
    bundleRoot: DEFAULT_LAMBDA_BUNDLE_DIR,
    metricNamespace: 'FhirBulkExport',
    jwksMaxAge: Duration.minutes(10),
  });
  const template = Template.fromStack(stack);

  it('creates a tagged key and alias only for the source that brings none', () => {
    expect([...part.keys.keys()]).toEqual(['created']);
    template.resourcePropertiesCountIs('AWS::KMS::Key', { KeyUsage: 'SIGN_VERIFY' }, 1);
    template.hasResourceProperties('AWS::KMS::Key', {
      KeySpec: 'RSA_2048',
      Tags: [{ Key: 'fhir-bulk-export-source', Value: 'created' }],
    });
    template.hasResourceProperties('AWS::KMS::Alias', { AliasName: 'alias/team-a/created' });
  });

  it('serves the JWKS of every key under the alias prefix, cacheable for jwksMaxAge', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          JWKS_KEY_ALIAS_PREFIX: 'alias/team-a/',
          JWKS_MAX_AGE_SECONDS: '600',
        }),
      },
    });
    expect(part.jwksUrl).toMatch(/\.well-known\/jwks\.json$/);
  });
});

describe('SigningKeys during a rotation', () => {
  const build = (sources: Parameters<typeof partSources>[1], jwksDomain?: boolean) => {
    const { stack, context } = partStack();
    const part = new SigningKeys(stack, 'SigningKeys', {
      context,
      sources: partSources(stack, sources),
      keyAliasPrefix: 'team-a',
      signer: iam.Role.fromRoleArn(stack, 'Signer', 'arn:aws:iam::123456789012:role/signer'),
      bundleRoot: DEFAULT_LAMBDA_BUNDLE_DIR,
      metricNamespace: 'FhirBulkExport',
      jwksMaxAge: Duration.minutes(10),
      ...(jwksDomain
        ? {
            jwksDomain: {
              domainName: 'jwks.example.org',
              certificate: acm.Certificate.fromCertificateArn(
                stack,
                'Certificate',
                'arn:aws:acm:us-east-1:123456789012:certificate/abcd',
              ),
            },
          }
        : {}),
    });
    return { stack, part, template: Template.fromStack(stack) };
  };

  /** The key policy statement ids of the key an alias targets. */
  const policySidsBehind = (template: Template, aliasName: string): string[] => {
    const alias = Object.values(template.findResources('AWS::KMS::Alias')).find(
      (resource) => resource.Properties.AliasName === aliasName,
    );
    // An alias of this name that targets one of this stack's keys by its ARN.
    expect(alias?.Properties, aliasName).toStrictEqual({
      AliasName: aliasName,
      TargetKeyId: { 'Fn::GetAtt': [expect.stringMatching(/^[A-Za-z0-9]+$/), 'Arn'] },
    });
    const keyId = (alias!.Properties.TargetKeyId as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
    const key = template.findResources('AWS::KMS::Key')[keyId]!;
    return (key.Properties.KeyPolicy.Statement as { Sid?: string }[]).flatMap((statement) =>
      statement.Sid ? [statement.Sid] : [],
    );
  };

  it('publishes a created next key behind …/next, denied kms:Sign, and signs with the current one', () => {
    const { template } = build([{ id: 'epic', signingKeyRotation: { publishNext: true } }]);
    template.resourcePropertiesCountIs('AWS::KMS::Key', { KeyUsage: 'SIGN_VERIFY' }, 2);
    expect(policySidsBehind(template, 'alias/team-a/epic')).toContain('OnlyTheTokenMinterSigns');
    expect(policySidsBehind(template, 'alias/team-a/epic')).not.toContain('PublishedOnlyNeverSigns');
    expect(policySidsBehind(template, 'alias/team-a/epic/next')).toContain('PublishedOnlyNeverSigns');
    expect(policySidsBehind(template, 'alias/team-a/epic/next')).not.toContain('OnlyTheTokenMinterSigns');
    // Both tagged, so the JWKS function (alias prefix alias/team-a/) reads both public halves.
    template.resourcePropertiesCountIs(
      'AWS::KMS::Key',
      { Tags: [{ Key: 'fhir-bulk-export-source', Value: 'epic' }] },
      2,
    );
  });

  it('after promotion keeps generation 1 under its old id as …/previous, and the alias new minters sign with targets generation 2', () => {
    const before = build([{ id: 'epic', signingKeyRotation: { publishNext: true } }]);
    const after = build([{ id: 'epic', signingKeyRotation: { current: 2, keepPrevious: true } }]);
    const idOf = (t: Template, aliasName: string) =>
      (
        Object.values(t.findResources('AWS::KMS::Alias')).find((r) => r.Properties.AliasName === aliasName)!
          .Properties.TargetKeyId as { 'Fn::GetAtt': [string] }
      )['Fn::GetAtt'][0];
    // The same CloudFormation keys, with new roles: promotion replaces no key.
    expect(idOf(after.template, 'alias/team-a/epic')).toBe(idOf(before.template, 'alias/team-a/epic/next'));
    expect(idOf(after.template, 'alias/team-a/epic/previous')).toBe(
      idOf(before.template, 'alias/team-a/epic'),
    );
    expect(policySidsBehind(after.template, 'alias/team-a/epic')).toContain('OnlyTheTokenMinterSigns');
    // A warm minter may still sign with the previous key for up to an hour; the JWKS still publishes it.
    expect(policySidsBehind(after.template, 'alias/team-a/epic/previous')).toContain(
      'OnlyTheTokenMinterSigns',
    );
    expect(policySidsBehind(after.template, 'alias/team-a/epic/previous')).not.toContain(
      'PublishedOnlyNeverSigns',
    );
    expect(after.part.keys.get('epic')).toBeDefined();
  });

  it('names a brought next key to the JWKS function and lets it read only that key’s public half', () => {
    const next = 'arn:aws:kms:us-east-1:123456789012:key/next-0001';
    const { template } = build([
      {
        id: 'brought',
        signingKey: 'arn:aws:kms:us-east-1:123456789012:key/current-0001',
        nextSigningKey: next,
      },
    ]);
    template.resourceCountIs('AWS::KMS::Key', 1); // the part stack's operations key only
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ JWKS_EXTRA_KEY_IDS: next }) },
    });
    template.hasResourceProperties('AWS::IAM::ManagedPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([{ Action: 'kms:GetPublicKey', Effect: 'Allow', Resource: next }]),
      },
    });
    const signs = JSON.stringify(template.findResources('AWS::IAM::ManagedPolicy')).includes('kms:Sign');
    expect(signs).toBe(false);
  });

  it('serves the JWKS from a custom domain through CloudFront', () => {
    const { part, template } = build([{ id: 'epic' }], true);
    expect(part.jwksUrl).toBe('https://jwks.example.org/.well-known/jwks.json');
    template.hasResourceProperties('AWS::CloudFront::Distribution', {
      DistributionConfig: Match.objectLike({
        Aliases: ['jwks.example.org'],
        ViewerCertificate: Match.objectLike({
          AcmCertificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/abcd',
          MinimumProtocolVersion: 'TLSv1.2_2021',
        }),
      }),
    });
  });

  it.each([
    [
      'keepPrevious at generation 1',
      [{ id: 'epic', signingKeyRotation: { keepPrevious: true } }],
      'source epic: signingKeyRotation.keepPrevious needs current 2 or more (generation 1 has no previous key)',
    ],
    [
      'a next key without a brought signingKey',
      [{ id: 'epic', nextSigningKey: 'arn:aws:kms:us-east-1:123456789012:key/n' }],
      'source epic: nextSigningKey and previousSigningKey go with a brought signingKey; for keys this construct creates, use signingKeyRotation',
    ],
    [
      'signingKeyRotation with a brought key',
      [
        {
          id: 'epic',
          signingKey: 'arn:aws:kms:us-east-1:123456789012:key/c',
          signingKeyRotation: { publishNext: true },
        },
      ],
      'source epic: signingKeyRotation is for keys this construct creates; with a brought signingKey, set nextSigningKey or previousSigningKey',
    ],
  ] as const)('refuses %s', (_, sources, message) => {
    expect(() => build(sources as never)).toThrow(message);
  });
});

interface RotationSource {
  readonly id: string;
  readonly signingKey?: string;
  readonly nextSigningKey?: string;
  readonly signingKeyRotation?: { current?: number; publishNext?: boolean; keepPrevious?: boolean };
}

/** Sources with key ARNs made into imported keys. */
function partSources(stack: Stack, sources: readonly RotationSource[]) {
  const secret = secretsmanager.Secret.fromSecretNameV2(stack, 'Secret', 'fhir-bulk-export/any');
  const key = (name: string, arn: string | undefined) =>
    arn === undefined ? {} : { [name]: kms.Key.fromKeyArn(stack, `${name}-${arn}`, arn) };
  return sources.map((source) => ({
    id: source.id,
    clientSecret: secret,
    settings: { fhirBaseUrl: 'https://fhir.example.org/r4' },
    ...key('signingKey', source.signingKey),
    ...key('nextSigningKey', source.nextSigningKey),
    ...(source.signingKeyRotation ? { signingKeyRotation: source.signingKeyRotation } : {}),
  }));
}
