import { Duration } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
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
