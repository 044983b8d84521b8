import { readFileSync } from 'node:fs';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { z } from 'zod';
import { MAX_MAX_LINE_BYTES, MIN_MAX_LINE_BYTES } from '../lambdas/core/ndjson/line-limit.js';
import { describe } from '../lambdas/core/validate.js';
import {
  flag,
  integer,
  oneOf,
  parseWith,
  patterned,
  strictObject,
  text,
  textList,
} from '../lambdas/schema/fields.js';
import { SourceSettingsSchema, sourceId } from '../lambdas/schema/source.js';
import type { ExportLifecycleProps } from './bulk-export-pipeline.js';
import type { BulkExportStackProps, ConfiguredSourceProps } from './bulk-export-stack.js';
import { SIGNING_KEY_SPECS } from './pipeline-props.js';

/**
 * The deployment's configuration file (`infra/pipeline.config.json` unless
 * `cdk synth -c config=<file>`): JSON in days, hours and minutes, turned into
 * the stack's props. Its schema (below, JSON Schema in
 * `schemas/pipeline-config.schema.json`) checks shapes, ranges and each
 * source's settings with the Lambdas' own source schema; the construct checks
 * what needs CDK (cron expressions, time zones, duplicate ids).
 */

/** CloudWatch Logs' retention values (CDK's RetentionDays, without "never expire"). */
const RETENTION_DAYS = Object.values(logs.RetentionDays).filter(
  (value): value is number => typeof value === 'number' && value !== logs.RetentionDays.INFINITE,
);

const dayCount = (description: string) => integer(1, 36_500, description);

const ScheduleConfigSchema = strictObject(
  {
    expression: text('`cron(0 2 * * ? *)` or `rate(1 day)`.'),
    timeZone: text('IANA time zone of a cron expression. Default UTC.').optional(),
    flexibleWindowMinutes: integer(0, 1440, 'Flexible time window; 0 = off. Default 15.').optional(),
    enabled: flag('Default true.').optional(),
    retryAttempts: integer(0, 185, 'Default 5.').optional(),
    maximumEventAgeMinutes: integer(1, 1440, 'Default 60.').optional(),
  },
  'When EventBridge Scheduler starts a delta export of this source.',
);

const SourceConfigSchema = strictObject(
  {
    id: sourceId(),
    clientSecret: text(
      "ARN (complete, with its 6-character suffix) or name of the source's Secrets Manager secret.",
    ),
    clientSecretEncryptionKeyArn: patterned(
      /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/,
      'a KMS key ARN',
      'The customer managed key the secret is encrypted with, if any.',
    ).optional(),
    signingKeySpec: oneOf(
      SIGNING_KEY_SPECS,
      'Key spec of the KMS signing key the construct creates. Default ECC_NIST_P384.',
    ).optional(),
    // Signing-key rotation (docs/deploy.md "Rotate a signing key").
    signingKeyRotation: strictObject(
      {
        current: integer(1, 1000, 'The generation that signs. Default 1.').optional(),
        publishNext: flag('Create generation current+1 and publish it (it does not sign).').optional(),
        keepPrevious: flag('Keep generation current-1 published after a promotion.').optional(),
      },
      'The generations of the signing keys the construct creates for this source.',
    ).optional(),
    schedule: ScheduleConfigSchema.optional(),
    settings: SourceSettingsSchema,
  },
  'A source of this deployment: its secret, signing key, schedule and settings.',
);

const LifecycleConfigSchema = strictObject({
  workExpirationDays: dayCount('Default 7.').optional(),
  incompleteUploadExpirationDays: dayCount('Default 7.').optional(),
  noncurrentVersionExpirationDays: dayCount('Default 30.').optional(),
  exportInfrequentAccessAfterDays: dayCount(
    'Move exported data to S3 Standard-IA after this many days.',
  ).optional(),
  exportGlacierAfterDays: dayCount(
    'Move exported data to S3 Glacier Flexible Retrieval after this many days.',
  ).optional(),
  exportExpirationDays: dayCount('Delete exported data after this many days.').optional(),
  accessLogExpirationDays: dayCount('Default 365.').optional(),
});

export const PipelineConfigSchema = strictObject(
  {
    stackName: patterned(
      /^[A-Za-z][A-Za-z0-9-]{0,127}$/,
      'a CloudFormation stack name',
      'Default FhirBulkExport.',
    ).optional(),
    account: patterned(/^\d{12}$/, 'a 12-digit account id', 'Pin the stack to an account.').optional(),
    region: patterned(
      /^[a-z]{2}(-[a-z]+)+-\d$/,
      'a region such as us-east-1',
      'Pin the stack to a region.',
    ).optional(),
    exportPrefix: z.string().optional().meta({ description: 'Key prefix in the bucket. Default none.' }),
    bucketName: text('Name of the bucket the construct creates.').optional(),
    sources: z
      .array(SourceConfigSchema, { error: () => 'must be a non-empty array of sources' })
      .min(1, { error: () => 'must be a non-empty array of sources' }),
    lifecycle: LifecycleConfigSchema.optional(),
    logRetentionDays: z
      .number({
        error: (issue) => `must be one of ${RETENTION_DAYS.join(', ')} (got ${describe(issue.input)})`,
      })
      .refine((value) => RETENTION_DAYS.includes(value), {
        error: (issue) => `must be one of ${RETENTION_DAYS.join(', ')} (got ${String(issue.input)})`,
      })
      .optional()
      .meta({ description: 'CloudWatch Logs retention. Default 365.' }),
    alarmEmails: textList(
      { regex: /^[^@\s]+@[^@\s]+$/, expected: 'an email address' },
      'Subscribed to the alarm topic (each must confirm).',
    ).optional(),
    longExportThresholdHours: integer(
      1,
      24 * 30,
      'Alarm on an export running longer. Default 24.',
    ).optional(),
    downloadErrorThreshold: integer(1, 1_000_000, 'Default 5.').optional(),
    reservedConcurrency: flag('Default true.').optional(),
    maxConcurrentExports: integer(
      1,
      1000,
      'Exports expected at once across sources; sizes reserved concurrency. Default 5.',
    ).optional(),
    maxConcurrentDownloads: integer(
      1,
      10_000,
      'File downloads expected at once across exports; sizes Download File concurrency. Default 20.',
    ).optional(),
    maxLineBytes: integer(
      MIN_MAX_LINE_BYTES,
      MAX_MAX_LINE_BYTES,
      "Longest NDJSON line any source may accept: Download File's memory. Default 64 MiB.",
    ).optional(),
    removalPolicy: oneOf(['retain', 'destroy'], 'Default retain.').optional(),
    completionQueue: flag('Default true.').optional(),
    // Issue 17: the US Core validation stage (docs/validation.md); per source, its `validation` setting.
    validation: strictObject(
      { enabled: flag('Validate every complete export against US Core 6.1.0. Default true.').optional() },
      'The validation stage started by each _SUCCESS.json.',
    ).optional(),
    // Issue 18: the warehouse load and its Glue tables and Athena workgroup (docs/warehouse.md).
    warehouse: strictObject(
      {
        enabled: flag(
          'Load every complete (validated) export into the warehouse as Parquet, with Glue tables and an Athena workgroup. Default true.',
        ).optional(),
        bytesScannedCutoffPerQuery: integer(
          10_000_000,
          Number.MAX_SAFE_INTEGER,
          "The Athena workgroup cancels a query that scans more bytes than this (Athena's floor: 10 MB). Default 10 GB.",
        ).optional(),
      },
      'The warehouse load started by each _VALIDATED.json (each _SUCCESS.json without validation).',
    ).optional(),
    keyAliasPrefix: patterned(
      /^[A-Za-z0-9/_-]{1,200}$/,
      'letters, digits, /, _ and -',
      'Default fhir-bulk-export.',
    ).optional(),
    logLevel: oneOf(['debug', 'info', 'warn', 'error'], 'Default info.').optional(),
    jwksMaxAgeSeconds: integer(0, 31_536_000, 'Default 3600.').optional(),
    jwksDomain: strictObject(
      {
        domainName: text('The domain the JWKS is served at, such as jwks.example.org.'),
        certificateArn: patterned(
          /^arn:aws[a-z-]*:acm:us-east-1:\d{12}:certificate\/[A-Za-z0-9-]+$/,
          'an ACM certificate ARN in us-east-1 (CloudFront takes no other region)',
          'The certificate for domainName.',
        ),
      },
      'Serve the JWKS at https://<domainName>/.well-known/jwks.json (CloudFront), a URL that survives replacing the function.',
    ).optional(),
  },
  'The deployment configuration of a FHIR Bulk Data export pipeline (infra/pipeline.config.json).',
);

export type PipelineConfig = z.input<typeof PipelineConfigSchema>;
export type SourceConfig = z.input<typeof SourceConfigSchema>;
export type ScheduleConfig = z.input<typeof ScheduleConfigSchema>;
export type LifecycleConfig = z.input<typeof LifecycleConfigSchema>;

export class PipelineConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PipelineConfigError';
  }
}

/** Checks a parsed config file; throws PipelineConfigError naming the bad key and what was expected. */
export function parsePipelineConfig(raw: unknown, path = 'config'): PipelineConfig {
  // The input is returned, not the parsed output: defaults are the construct's, filled in once there.
  parseWith(PipelineConfigSchema, raw, path, (message) => new PipelineConfigError(message));
  return raw as PipelineConfig;
}

/** Reads and checks a config file. */
export function loadPipelineConfig(file: string): PipelineConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new PipelineConfigError(`cannot read the pipeline config ${file}: ${(error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new PipelineConfigError(`${file} is not valid JSON: ${(error as Error).message}`);
  }
  return parsePipelineConfig(raw, file);
}

const days = (value: number | undefined) => (value === undefined ? undefined : Duration.days(value));

function lifecycleProps(config: LifecycleConfig | undefined): ExportLifecycleProps | undefined {
  if (!config) return undefined;
  const transitions: s3.Transition[] = [];
  if (config.exportInfrequentAccessAfterDays !== undefined)
    transitions.push({
      storageClass: s3.StorageClass.INFREQUENT_ACCESS,
      transitionAfter: Duration.days(config.exportInfrequentAccessAfterDays),
    });
  if (config.exportGlacierAfterDays !== undefined)
    transitions.push({
      storageClass: s3.StorageClass.GLACIER,
      transitionAfter: Duration.days(config.exportGlacierAfterDays),
    });
  return {
    workExpiration: days(config.workExpirationDays),
    incompleteUploadExpiration: days(config.incompleteUploadExpirationDays),
    noncurrentVersionExpiration: days(config.noncurrentVersionExpirationDays),
    exportTransitions: transitions.length > 0 ? transitions : undefined,
    exportExpiration: days(config.exportExpirationDays),
    accessLogExpiration: days(config.accessLogExpirationDays),
  };
}

/** The secret stays an ARN or name here: BulkExportStack imports it (an import needs a scope). */
function sourceProps(source: SourceConfig): ConfiguredSourceProps {
  const schedule = source.schedule;
  return {
    id: source.id,
    clientSecret: source.clientSecret,
    clientSecretEncryptionKeyArn: source.clientSecretEncryptionKeyArn,
    signingKeySpec: source.signingKeySpec,
    signingKeyRotation: source.signingKeyRotation,
    settings: source.settings,
    schedule: schedule && {
      expression: schedule.expression,
      timeZone: schedule.timeZone,
      flexibleTimeWindow:
        schedule.flexibleWindowMinutes === undefined
          ? undefined
          : Duration.minutes(schedule.flexibleWindowMinutes),
      enabled: schedule.enabled,
      retryAttempts: schedule.retryAttempts,
      maximumEventAge:
        schedule.maximumEventAgeMinutes === undefined
          ? undefined
          : Duration.minutes(schedule.maximumEventAgeMinutes),
    },
  };
}

/** The stack props a config describes. */
export function stackPropsFromConfig(config: PipelineConfig): BulkExportStackProps {
  return {
    ...(config.account || config.region ? { env: { account: config.account, region: config.region } } : {}),
    description:
      'FHIR Bulk Data $export pipeline: Step Functions, Lambda, S3, KMS (fhir-bulk-export-pipeline)',
    alarmEmails: config.alarmEmails,
    pipeline: {
      sources: config.sources.map(sourceProps),
      exportPrefix: config.exportPrefix,
      bucketProps: config.bucketName ? { bucketName: config.bucketName } : undefined,
      lifecycle: lifecycleProps(config.lifecycle),
      logRetention: config.logRetentionDays as logs.RetentionDays | undefined,
      longExportThreshold:
        config.longExportThresholdHours === undefined
          ? undefined
          : Duration.hours(config.longExportThresholdHours),
      downloadErrorThreshold: config.downloadErrorThreshold,
      reservedConcurrency: config.reservedConcurrency,
      maxConcurrentExports: config.maxConcurrentExports,
      maxConcurrentDownloads: config.maxConcurrentDownloads,
      maxLineBytes: config.maxLineBytes,
      removalPolicy: config.removalPolicy === 'destroy' ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
      completionQueue: config.completionQueue,
      validation: config.validation,
      warehouse: config.warehouse,
      keyAliasPrefix: config.keyAliasPrefix,
      logLevel: config.logLevel,
      jwksMaxAge:
        config.jwksMaxAgeSeconds === undefined ? undefined : Duration.seconds(config.jwksMaxAgeSeconds),
      jwksDomain: config.jwksDomain,
    },
  };
}
