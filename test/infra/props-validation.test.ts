import { App, Duration, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { type ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { describe, expect, it } from 'vitest';
import {
  BulkExportPipeline,
  type BulkExportPipelineProps,
  type BulkExportSourceProps,
} from '../../infra/bulk-export-pipeline.js';
import { BulkExportPipelinePropsError } from '../../infra/validate-props.js';

/** A secret imported by ARN: the props hold an ISecret, made in the stack the case builds. */
const SECRET_ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:fhir-bulk-export/epic-prod-AbC123';
const SOURCE: BulkExportSourceProps = {
  id: 'epic-prod',
  clientSecret: { secretArn: SECRET_ARN, secretFullArn: SECRET_ARN } as unknown as ISecret,
  settings: { fhirBaseUrl: 'https://fhir.epic.example.org/api/FHIR/R4' },
};

const withSource = (overrides: Record<string, unknown>): BulkExportSourceProps =>
  ({ ...SOURCE, ...overrides }) as unknown as BulkExportSourceProps;
const withSettings = (settings: Record<string, unknown>) =>
  withSource({ settings: { ...SOURCE.settings, ...settings } });
const withSchedule = (schedule: Record<string, unknown>) => withSource({ schedule });

/** Each case: what is wrong, the props (built in a fresh stack), the exact message. */
const CASES: readonly [string, (stack: Stack) => BulkExportPipelineProps, string | RegExp][] = [
  ['no sources', () => ({ sources: [] }), 'sources must list at least one source'],
  [
    'a duplicate source id',
    () => ({ sources: [SOURCE, { ...SOURCE }] }),
    'sources[1].id "epic-prod" is a duplicate',
  ],
  [
    'a source id that cannot go into S3 keys and aliases',
    () => ({ sources: [withSource({ id: 'Epic_Prod' })] }),
    'sources[0].id "Epic_Prod" must be 1-63 lower-case letters, digits or dashes, starting with a letter or digit',
  ],
  [
    'both bucket and bucketProps',
    (stack) => ({
      sources: [SOURCE],
      bucket: s3.Bucket.fromBucketName(stack, 'Existing', 'existing-bucket'),
      bucketProps: { bucketName: 'new-bucket' },
    }),
    'set either bucket (an existing bucket) or bucketProps (for the bucket this construct creates), not both',
  ],
  [
    'lifecycle with an existing bucket',
    (stack) => ({
      sources: [SOURCE],
      bucket: s3.Bucket.fromBucketName(stack, 'Existing', 'existing-bucket'),
      lifecycle: { workExpiration: Duration.days(3) },
    }),
    'lifecycle applies to the bucket this construct creates; with your own bucket, manage its lifecycle there',
  ],
  [
    'a bucket prop that would weaken the bucket',
    () => ({ sources: [SOURCE], bucketProps: { enforceSSL: false } as never }),
    'bucketProps.enforceSSL cannot be set: encryption, TLS-only access, public access blocking, versioning, access logging and EventBridge notifications are fixed; settable: bucketName, lifecycleRules, intelligentTieringConfigurations, inventories, metrics, objectLockEnabled, objectLockDefaultRetention, replicationRules, replicationRole',
  ],
  [
    'a cron expression with both day fields set',
    () => ({ sources: [withSchedule({ expression: 'cron(0 2 * * * *)' })] }),
    'sources[0].schedule.expression "cron(0 2 * * * *)" is invalid: cron needs ? in exactly one of day-of-month and day-of-week (e.g. "0 2 * * ? *")',
  ],
  [
    'a five-field (Unix) cron expression',
    () => ({ sources: [withSchedule({ expression: 'cron(0 2 * * ?)' })] }),
    'sources[0].schedule.expression "cron(0 2 * * ?)" is invalid: cron needs 6 fields (minutes hours day-of-month month day-of-week year), got 5',
  ],
  [
    'an hour out of range',
    () => ({ sources: [withSchedule({ expression: 'cron(0 24 * * ? *)' })] }),
    'sources[0].schedule.expression "cron(0 24 * * ? *)" is invalid: hours "24" is outside 0-23',
  ],
  [
    'an expression that is neither cron nor rate',
    () => ({ sources: [withSchedule({ expression: '0 2 * * ? *' })] }),
    'sources[0].schedule.expression "0 2 * * ? *" is invalid: expected cron(minutes hours day-of-month month day-of-week year) or rate(value unit)',
  ],
  [
    'an unknown time zone',
    () => ({ sources: [withSchedule({ expression: 'cron(0 2 * * ? *)', timeZone: 'America/Springfield' })] }),
    'sources[0].schedule.timeZone "America/Springfield" is not an IANA time zone such as America/New_York',
  ],
  [
    'a flexible window over a day',
    () => ({
      sources: [withSchedule({ expression: 'rate(1 day)', flexibleTimeWindow: Duration.minutes(2000) })],
    }),
    'sources[0].schedule.flexibleTimeWindow must be 0 (off) or whole minutes from 1 to 1440',
  ],
  [
    'a credential in the settings',
    () => ({ sources: [withSettings({ clientId: 'abc' })] }),
    "sources[0].settings.clientId belongs in the source's client secret (Secrets Manager), not in its settings: settings are stored in the source registry, which every task function reads",
  ],
  [
    'a misspelled setting',
    () => ({ sources: [withSettings({ maxConcurency: 4 })] }),
    'sources[0].settings has unknown key(s) maxConcurency; expected only id, description, profile, fhirBaseUrl, export, serverSupports, scopeSyntax, scopeCasing, extraScopes, tokenLifetimeSeconds, maxConcurrency, filesPerBatch, retryAfterCeilingSeconds, deadlineHours, maxConsecutiveTransientErrors, maxClockSkewSeconds, allowInsecureHttp, invalidLinePolicy, maxLineBytes, fileLinksValidHours, retryPassDelaySeconds, serverFileErrors, trustedOrigins, auth, validation, warehouse',
  ],
  [
    'a settings id that disagrees with the source id',
    () => ({ sources: [withSettings({ id: 'other' })] }),
    'sources[0].settings.id is "other" but the source id is "epic-prod"; set the id once, on the source',
  ],
  [
    'plain http on AWS',
    () => ({ sources: [withSettings({ fhirBaseUrl: 'http://fhir.example.org/r4' })] }),
    'sources[0].settings.fhirBaseUrl uses http: on a non-loopback host; only https is allowed',
  ],
  [
    'local-mode http allowance on AWS',
    () => ({ sources: [withSettings({ allowInsecureHttp: true })] }),
    'sources[0].settings.allowInsecureHttp is for local mode only; on AWS every FHIR URL must be https',
  ],
  [
    'a client secret ARN of another service',
    (stack) => ({
      sources: [
        withSource({
          clientSecret: Secret.fromSecretPartialArn(
            stack,
            'Ssm',
            'arn:aws:ssm:us-east-1:123456789012:parameter/x',
          ),
        }),
      ],
    }),
    'sources[0].clientSecret "arn:aws:ssm:us-east-1:123456789012:parameter/x" is not a Secrets Manager secret ARN',
  ],
  [
    'a client secret given as a string (an ARN needs importing: Secret.fromSecretCompleteArn)',
    () => ({ sources: [withSource({ clientSecret: SECRET_ARN })] }),
    "sources[0].clientSecret is required: the source's Secrets Manager secret (secretsmanager.ISecret)",
  ],
  [
    'a source accepting longer lines than the pipeline sizes Download File for',
    () => ({ sources: [withSettings({ maxLineBytes: 128 * 1024 * 1024 })] }),
    "sources[0].settings.maxLineBytes 134217728 is above the pipeline's maxLineBytes 67108864; raise maxLineBytes (Download File's memory follows it)",
  ],
  [
    'a line ceiling Download File cannot be sized for',
    () => ({ sources: [SOURCE], maxLineBytes: 512 * 1024 * 1024 }),
    'maxLineBytes must be an integer from 1024 to 268435456',
  ],
  [
    'no room for a single export',
    () => ({ sources: [SOURCE], maxConcurrentExports: 0 }),
    'maxConcurrentExports must be a positive integer',
  ],
  [
    'a signing key spec SMART cannot use',
    () => ({ sources: [withSource({ signingKeySpec: 'ECC_NIST_P256' })] }),
    'sources[0].signingKeySpec must be one of ECC_NIST_P384, RSA_2048, RSA_3072, RSA_4096',
  ],
  [
    'an absolute export prefix',
    () => ({ sources: [SOURCE], exportPrefix: '/fhir' }),
    'exportPrefix "/fhir" must be a plain S3 key prefix without a leading slash, spaces, * or ?',
  ],
  [
    'subnets without a VPC',
    () => ({ sources: [SOURCE], vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS } }),
    'vpcSubnets needs vpc',
  ],
];

describe('BulkExportPipeline props', () => {
  it.each(CASES)('rejects %s at synth with a message that says what to fix', (_, props, message) => {
    const stack = new Stack(new App(), 'Test');
    let thrown: unknown;
    try {
      new BulkExportPipeline(stack, 'Pipeline', props(stack));
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(BulkExportPipelinePropsError);
    expect((thrown as Error).name).toBe('BulkExportPipelinePropsError');
    if (message instanceof RegExp) expect((thrown as Error).message).toMatch(message);
    else expect((thrown as Error).message).toBe(`BulkExportPipeline: ${message}`);
  });
});
