import { fileURLToPath } from 'node:url';
import { App, Stack, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { describe, expect, it } from 'vitest';
import { BulkExportPipeline } from '../../infra/bulk-export-pipeline.js';
import { BulkExportStack } from '../../infra/bulk-export-stack.js';
import { loadPipelineConfig, parsePipelineConfig, stackPropsFromConfig } from '../../infra/config.js';
import { addNagChecks, nagPacks } from '../../infra/nag.js';
import { importedSources } from './pipeline-fixture.js';

/**
 * cdk-nag 3 runs as a CDK validation plugin: findings fail `app.synth()` and
 * land in `validation-report.json`. Each pack's `validateScope` returns the
 * same findings (after acknowledgements) without synthesizing, which gives a
 * readable assertion; `app.synth()` then proves the plugins pass for real.
 */
function unacknowledgedFindings(app: App): string[] {
  return nagPacks(app).flatMap((pack) =>
    pack
      .validateScope(app)
      .violations.flatMap((violation) =>
        violation.violatingResources.map(
          (resource) => `${violation.severity} ${violation.ruleName} at ${resource.constructPath}`,
        ),
      ),
  );
}

const bundlingSkipped = () => new App();

const VARIANTS: readonly [string, (app: App) => void][] = [
  [
    'the example deployment (infra/pipeline.config.json)',
    (app) => {
      const config = loadPipelineConfig(
        fileURLToPath(new URL('../../infra/pipeline.config.json', import.meta.url)),
      );
      new BulkExportStack(app, 'Example', stackPropsFromConfig(config));
    },
  ],
  [
    'an existing bucket, a VPC, no reserved concurrency, no example queue, a prefix, an operator who may redrive and cancel',
    (app) => {
      const stack = new Stack(app, 'Variant');
      const bucket = s3.Bucket.fromBucketAttributes(stack, 'Exports', {
        bucketName: 'hospital-fhir-exports',
        encryptionKey: kms.Key.fromKeyArn(
          stack,
          'ExportsKey',
          'arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
        ),
      });
      const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
        vpcId: 'vpc-0123456789abcdef0',
        availabilityZones: ['us-east-1a', 'us-east-1b'],
        privateSubnetIds: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0bbbbbbbbbbbbbbb2'],
      });
      const pipeline = new BulkExportPipeline(stack, 'Pipeline', {
        sources: importedSources(stack),
        bucket,
        vpc,
        reservedConcurrency: false,
        completionQueue: false,
        exportPrefix: 'fhir/',
      });
      // The grants acknowledge their own wildcard; the inline default policy is the deployer's to accept (docs/deploy.md).
      const operator = new iam.Role(stack, 'Operator', { assumedBy: new iam.AccountRootPrincipal() });
      pipeline.grantRedrive(operator);
      pipeline.grantCancel(operator);
      pipeline.grantStartExport(operator);
      pipeline.grantReadExports(operator);
      pipeline.grantReadExports(operator, 'cerner-test');
      Validations.of(operator).acknowledge({
        id: 'HIPAA.Security-IAMNoInlinePolicy',
        reason: 'CDK grants land in the operator role’s default policy.',
      });
    },
  ],
  [
    'a signing-key rotation in progress (current, next and previous keys) and the JWKS behind a custom domain, from a config',
    (app) => {
      const config = parsePipelineConfig({
        region: 'us-east-1',
        account: '123456789012',
        sources: [
          {
            id: 'epic-prod',
            clientSecret: 'fhir-bulk-export/epic-prod',
            signingKeyRotation: { current: 2, publishNext: true, keepPrevious: true },
            settings: { fhirBaseUrl: 'https://fhir.example.org/r4' },
          },
        ],
        jwksDomain: {
          domainName: 'jwks.example.org',
          certificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/abcd',
        },
      });
      new BulkExportStack(app, 'Rotation', stackPropsFromConfig(config));
    },
  ],
];

describe('cdk-nag AwsSolutions and HIPAA Security', () => {
  it.each(VARIANTS)('finds nothing unacknowledged in %s, and synth passes the plugins', (_, build) => {
    const app = bundlingSkipped();
    build(app);
    addNagChecks(app);
    expect(unacknowledgedFindings(app)).toEqual([]);
    expect(() => app.synth()).not.toThrow();
  });

  it('reports what it is not told to accept (the harness can fail)', () => {
    const app = bundlingSkipped();
    const stack = new Stack(app, 'Control');
    new sqs.Queue(stack, 'Plain', { encryption: sqs.QueueEncryption.UNENCRYPTED });
    addNagChecks(app);
    expect(unacknowledgedFindings(app)).toEqual(
      expect.arrayContaining(['error AwsSolutions-SQS2 at Control/Plain/Resource']),
    );
    expect(() => app.synth()).toThrow(/AwsSolutions-SQS2/);
  });
});
