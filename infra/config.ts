import { readFileSync } from 'node:fs';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { ExportLifecycleProps, ExportSourceSettings, SigningKeySpec } from './bulk-export-pipeline.js';
import type { BulkExportStackProps, ConfiguredSourceProps } from './bulk-export-stack.js';

/**
 * The deployment's configuration file (`infra/pipeline.config.json` unless
 * `cdk synth -c config=<file>`): JSON in days, hours and minutes, turned into
 * the stack's props. This module checks the shape (types, unknown keys, so a
 * misspelled key fails loudly); the construct checks the meaning (cron, time
 * zones, duplicate ids, secrets in settings).
 */
export interface PipelineConfig {
  /** @default 'FhirBulkExport' */
  readonly stackName?: string;
  /** Pin the stack to an account/region. @default environment-agnostic */
  readonly account?: string;
  readonly region?: string;
  /** @default '' */
  readonly exportPrefix?: string;
  readonly bucketName?: string;
  readonly sources: readonly SourceConfig[];
  readonly lifecycle?: LifecycleConfig;
  /** One of CloudWatch Logs' retention values (1, 3, 5, 7, 14, 30, 60, 90, …, 3653). @default 365 */
  readonly logRetentionDays?: number;
  readonly alarmEmails?: readonly string[];
  /** @default 24 */
  readonly longExportThresholdHours?: number;
  /** @default 5 */
  readonly downloadErrorThreshold?: number;
  /** @default true */
  readonly reservedConcurrency?: boolean;
  /** @default 'retain' */
  readonly removalPolicy?: 'retain' | 'destroy';
  /** @default true */
  readonly completionQueue?: boolean;
  /** @default 'fhir-bulk-export' */
  readonly keyAliasPrefix?: string;
  /** @default 'info' */
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** @default 3600 */
  readonly jwksMaxAgeSeconds?: number;
}

export interface SourceConfig {
  readonly id: string;
  /** ARN (complete, with its 6-character suffix) or name of the source's Secrets Manager secret. */
  readonly clientSecret: string;
  readonly clientSecretEncryptionKeyArn?: string;
  /** @default 'ECC_NIST_P384' */
  readonly signingKeySpec?: SigningKeySpec;
  readonly schedule?: ScheduleConfig;
  /** The source's non-secret settings (lambdas/config.ts SourceSettings, without credentials). */
  readonly settings: ExportSourceSettings;
}

export interface ScheduleConfig {
  /** `cron(0 2 * * ? *)` or `rate(1 day)`. */
  readonly expression: string;
  /** @default 'UTC' */
  readonly timeZone?: string;
  /** @default 15 (0 = off) */
  readonly flexibleWindowMinutes?: number;
  /** @default true */
  readonly enabled?: boolean;
  /** @default 5 */
  readonly retryAttempts?: number;
  /** @default 60 */
  readonly maximumEventAgeMinutes?: number;
}

export interface LifecycleConfig {
  /** @default 7 */
  readonly workExpirationDays?: number;
  /** @default 7 */
  readonly incompleteUploadExpirationDays?: number;
  /** @default 30 */
  readonly noncurrentVersionExpirationDays?: number;
  /** Move exported data to S3 Standard-IA after this many days. @default never */
  readonly exportInfrequentAccessAfterDays?: number;
  /** Move exported data to S3 Glacier Flexible Retrieval after this many days. @default never */
  readonly exportGlacierAfterDays?: number;
  /** Delete exported data after this many days. @default never */
  readonly exportExpirationDays?: number;
  /** @default 365 */
  readonly accessLogExpirationDays?: number;
}

export class PipelineConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PipelineConfigError';
  }
}

type Json = Record<string, unknown>;

const describe = (value: unknown) =>
  value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;

function object(value: unknown, path: string, keys: readonly string[]): Json {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new PipelineConfigError(`${path} must be an object, got ${describe(value)}`);
  const unknown = Object.keys(value).find((key) => !keys.includes(key) && key !== '$comment');
  if (unknown !== undefined)
    throw new PipelineConfigError(
      `${path}.${unknown} is not a known key (expected one of ${keys.join(', ')})`,
    );
  return value as Json;
}

function optional<T>(
  json: Json,
  key: string,
  path: string,
  expected: string,
  check: (value: unknown) => boolean,
) {
  const value = json[key];
  if (value === undefined) return undefined;
  if (!check(value))
    throw new PipelineConfigError(`${path}.${key} must be ${expected}, got ${describe(value)}`);
  return value as T;
}

const isString = (value: unknown) => typeof value === 'string' && value !== '';
const isBoolean = (value: unknown) => typeof value === 'boolean';
const isCount = (value: unknown) => typeof value === 'number' && Number.isInteger(value) && value >= 0;
const isPositive = (value: unknown) => isCount(value) && (value as number) > 0;
const oneOf = (values: readonly string[]) => (value: unknown) =>
  typeof value === 'string' && values.includes(value);

const RETENTION_DAYS = Object.values(logs.RetentionDays).filter(
  (value): value is number => typeof value === 'number' && value !== logs.RetentionDays.INFINITE,
);

function parseSchedule(raw: unknown, path: string): ScheduleConfig {
  const json = object(raw, path, [
    'expression',
    'timeZone',
    'flexibleWindowMinutes',
    'enabled',
    'retryAttempts',
    'maximumEventAgeMinutes',
  ]);
  const expression = optional<string>(json, 'expression', path, 'a cron(…) or rate(…) string', isString);
  if (expression === undefined) throw new PipelineConfigError(`${path}.expression is required`);
  return {
    expression,
    timeZone: optional<string>(json, 'timeZone', path, 'an IANA time zone name', isString),
    flexibleWindowMinutes: optional<number>(json, 'flexibleWindowMinutes', path, 'whole minutes', isCount),
    enabled: optional<boolean>(json, 'enabled', path, 'true or false', isBoolean),
    retryAttempts: optional<number>(json, 'retryAttempts', path, 'a whole number', isCount),
    maximumEventAgeMinutes: optional<number>(
      json,
      'maximumEventAgeMinutes',
      path,
      'whole minutes',
      isPositive,
    ),
  };
}

function parseSource(raw: unknown, path: string): SourceConfig {
  const json = object(raw, path, [
    'id',
    'clientSecret',
    'clientSecretEncryptionKeyArn',
    'signingKeySpec',
    'schedule',
    'settings',
  ]);
  const id = optional<string>(json, 'id', path, 'a string', isString);
  if (id === undefined) throw new PipelineConfigError(`${path}.id is required`);
  const clientSecret = optional<string>(json, 'clientSecret', path, 'a secret ARN or name', isString);
  if (clientSecret === undefined)
    throw new PipelineConfigError(
      `${path}.clientSecret is required (the ARN or name of the source's secret)`,
    );
  const settings = json.settings;
  if (settings === null || typeof settings !== 'object' || Array.isArray(settings))
    throw new PipelineConfigError(`${path}.settings must be an object with at least fhirBaseUrl`);
  return {
    id,
    clientSecret,
    clientSecretEncryptionKeyArn: optional<string>(
      json,
      'clientSecretEncryptionKeyArn',
      path,
      'a KMS key ARN',
      isString,
    ),
    signingKeySpec: optional<SigningKeySpec>(
      json,
      'signingKeySpec',
      path,
      'ECC_NIST_P384, RSA_2048, RSA_3072 or RSA_4096',
      oneOf(['ECC_NIST_P384', 'RSA_2048', 'RSA_3072', 'RSA_4096']),
    ),
    schedule: json.schedule === undefined ? undefined : parseSchedule(json.schedule, `${path}.schedule`),
    settings: settings as ExportSourceSettings,
  };
}

function parseLifecycle(raw: unknown, path: string): LifecycleConfig {
  const keys = [
    'workExpirationDays',
    'incompleteUploadExpirationDays',
    'noncurrentVersionExpirationDays',
    'exportInfrequentAccessAfterDays',
    'exportGlacierAfterDays',
    'exportExpirationDays',
    'accessLogExpirationDays',
  ] as const;
  const json = object(raw, path, keys);
  return Object.fromEntries(
    keys.map((key) => [
      key,
      optional<number>(json, key, path, 'a positive whole number of days', isPositive),
    ]),
  ) as LifecycleConfig;
}

/** Checks the shape of a parsed config file; throws PipelineConfigError naming the bad key. */
export function parsePipelineConfig(raw: unknown, path = 'config'): PipelineConfig {
  const json = object(raw, path, [
    'stackName',
    'account',
    'region',
    'exportPrefix',
    'bucketName',
    'sources',
    'lifecycle',
    'logRetentionDays',
    'alarmEmails',
    'longExportThresholdHours',
    'downloadErrorThreshold',
    'reservedConcurrency',
    'removalPolicy',
    'completionQueue',
    'keyAliasPrefix',
    'logLevel',
    'jwksMaxAgeSeconds',
  ]);
  if (!Array.isArray(json.sources) || json.sources.length === 0)
    throw new PipelineConfigError(`${path}.sources must be a non-empty array of sources`);
  const alarmEmails = optional<string[]>(json, 'alarmEmails', path, 'an array of email addresses', (value) =>
    Array.isArray(value)
      ? value.every((email) => typeof email === 'string' && /^[^@\s]+@[^@\s]+$/.test(email))
      : false,
  );
  return {
    stackName: optional<string>(json, 'stackName', path, 'a stack name', (value) =>
      typeof value === 'string' ? /^[A-Za-z][A-Za-z0-9-]{0,127}$/.test(value) : false,
    ),
    account: optional<string>(json, 'account', path, 'a 12-digit account id', (value) =>
      typeof value === 'string' ? /^\d{12}$/.test(value) : false,
    ),
    region: optional<string>(json, 'region', path, 'a region such as us-east-1', (value) =>
      typeof value === 'string' ? /^[a-z]{2}(-[a-z]+)+-\d$/.test(value) : false,
    ),
    exportPrefix: optional<string>(
      json,
      'exportPrefix',
      path,
      'a string',
      (value) => typeof value === 'string',
    ),
    bucketName: optional<string>(json, 'bucketName', path, 'a bucket name', isString),
    sources: json.sources.map((source, index) => parseSource(source, `${path}.sources[${index}]`)),
    lifecycle: json.lifecycle === undefined ? undefined : parseLifecycle(json.lifecycle, `${path}.lifecycle`),
    logRetentionDays: optional<number>(
      json,
      'logRetentionDays',
      path,
      `one of ${RETENTION_DAYS.join(', ')}`,
      (value) => typeof value === 'number' && RETENTION_DAYS.includes(value),
    ),
    alarmEmails,
    longExportThresholdHours: optional<number>(
      json,
      'longExportThresholdHours',
      path,
      'a positive number',
      (value) => (typeof value === 'number' ? value > 0 : false),
    ),
    downloadErrorThreshold: optional<number>(
      json,
      'downloadErrorThreshold',
      path,
      'a positive whole number',
      isPositive,
    ),
    reservedConcurrency: optional<boolean>(json, 'reservedConcurrency', path, 'true or false', isBoolean),
    removalPolicy: optional<'retain' | 'destroy'>(
      json,
      'removalPolicy',
      path,
      'retain or destroy',
      oneOf(['retain', 'destroy']),
    ),
    completionQueue: optional<boolean>(json, 'completionQueue', path, 'true or false', isBoolean),
    keyAliasPrefix: optional<string>(json, 'keyAliasPrefix', path, 'a string', isString),
    logLevel: optional<PipelineConfig['logLevel']>(
      json,
      'logLevel',
      path,
      'debug, info, warn or error',
      oneOf(['debug', 'info', 'warn', 'error']),
    ),
    jwksMaxAgeSeconds: optional<number>(
      json,
      'jwksMaxAgeSeconds',
      path,
      'a whole number of seconds',
      isCount,
    ),
  };
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
      removalPolicy: config.removalPolicy === 'destroy' ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
      completionQueue: config.completionQueue,
      keyAliasPrefix: config.keyAliasPrefix,
      logLevel: config.logLevel,
      jwksMaxAge:
        config.jwksMaxAgeSeconds === undefined ? undefined : Duration.seconds(config.jwksMaxAgeSeconds),
    },
  };
}
