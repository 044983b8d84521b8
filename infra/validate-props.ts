import { Duration, Token } from 'aws-cdk-lib';
import {
  DEFAULT_MAX_LINE_BYTES,
  MAX_MAX_LINE_BYTES,
  MIN_MAX_LINE_BYTES,
} from '../lambdas/core/ndjson/line-limit.js';
import { parseWith } from '../lambdas/schema/fields.js';
import { CREDENTIAL_KEYS, SOURCE_ID_PATTERN, SourceSettingsSchema } from '../lambdas/schema/source.js';
import { MIN_BYTES_SCANNED_CUTOFF } from './constructs/warehouse-stage.js';
import type {
  BulkExportPipelineProps,
  BulkExportSourceProps,
  ExportBucketProps,
  ExportScheduleProps,
  ExportSourceSettings,
} from './pipeline-props.js';
import { SIGNING_KEY_SPECS } from './pipeline-props.js';
import { isKnownTimeZone, scheduleExpressionProblem } from './schedule-expression.js';

/**
 * Synth-time checks of BulkExportPipelineProps. Everything here would
 * otherwise fail later and further away: at deploy (CloudFormation), when a
 * Lambda reads a source's registration, or silently (a schedule
 * that fires at the wrong hour). Messages name the prop path and what was
 * expected; the construct throws them as they are.
 *
 * Source settings go through the Lambdas' own validation (`lambdas/config.ts`,
 * a pure module; infra imports no handler).
 */

/** The bucket props a caller may set; the security-relevant ones are fixed by the construct. */
export const EXPORT_BUCKET_PROP_KEYS: readonly (keyof ExportBucketProps)[] = [
  'bucketName',
  'lifecycleRules',
  'intelligentTieringConfigurations',
  'inventories',
  'metrics',
  'objectLockEnabled',
  'objectLockDefaultRetention',
  'replicationRules',
  'replicationRole',
];

const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$/;
const ALIAS_PREFIX = /^[A-Za-z0-9/_-]{1,200}$/;

export class BulkExportPipelinePropsError extends Error {
  constructor(message: string) {
    super(`BulkExportPipeline: ${message}`);
    this.name = 'BulkExportPipelinePropsError';
  }
}

const fail = (message: string): never => {
  throw new BulkExportPipelinePropsError(message);
};

function checkSettings(settings: ExportSourceSettings, id: string, path: string): void {
  if (settings === null || typeof settings !== 'object' || Array.isArray(settings))
    fail(`${path} must be an object of source settings`);
  const keys = Object.keys(settings);
  const auth = keys.filter((key) => CREDENTIAL_KEYS.includes(key));
  if (auth.length > 0) {
    fail(
      `${path}.${auth[0]} belongs in the source's client secret (Secrets Manager), not in its settings: settings are stored in the source registry, which every task function reads`,
    );
  }
  if (settings.id !== undefined && settings.id !== id) {
    fail(`${path}.id is "${settings.id}" but the source id is "${id}"; set the id once, on the source`);
  }
  if (settings.allowInsecureHttp === true)
    fail(`${path}.allowInsecureHttp is for local mode only; on AWS every FHIR URL must be https`);
  // The Lambdas' own schema, run at synth: a bad setting fails here, not when an export starts.
  parseWith(SourceSettingsSchema, settings, path, (message) => new BulkExportPipelinePropsError(message));
}

function checkSchedule(schedule: ExportScheduleProps, path: string): void {
  if (typeof schedule.expression !== 'string') fail(`${path}.expression must be a string`);
  const problem = scheduleExpressionProblem(schedule.expression);
  if (problem) fail(`${path}.expression "${schedule.expression}" is invalid: ${problem}`);
  if (schedule.timeZone !== undefined && !isKnownTimeZone(schedule.timeZone))
    fail(`${path}.timeZone "${schedule.timeZone}" is not an IANA time zone such as America/New_York`);
  const window = schedule.flexibleTimeWindow;
  if (window !== undefined && !window.isUnresolved()) {
    const minutes = window.toMinutes({ integral: false });
    if (minutes !== 0 && (minutes < 1 || minutes > 1440 || !Number.isInteger(minutes)))
      fail(`${path}.flexibleTimeWindow must be 0 (off) or whole minutes from 1 to 1440`);
  }
  const retries = schedule.retryAttempts;
  if (retries !== undefined && (!Number.isInteger(retries) || retries < 0 || retries > 185))
    fail(`${path}.retryAttempts must be an integer from 0 to 185`);
  const age = schedule.maximumEventAge;
  if (age !== undefined && !age.isUnresolved()) {
    const seconds = age.toSeconds({ integral: false });
    if (seconds < 60 || seconds > 86_400) fail(`${path}.maximumEventAge must be from 1 minute to 24 hours`);
  }
}

function checkClientSecret(source: BulkExportSourceProps, path: string): void {
  const secret = source.clientSecret as Partial<BulkExportSourceProps['clientSecret']> | undefined;
  if (secret === null || typeof secret !== 'object' || typeof secret.secretArn !== 'string')
    fail(`${path}.clientSecret is required: the source's Secrets Manager secret (secretsmanager.ISecret)`);
  const arn = secret!.secretArn!;
  if (!Token.isUnresolved(arn) && !SECRET_ARN.test(arn))
    fail(`${path}.clientSecret "${arn}" is not a Secrets Manager secret ARN`);
}

function checkSource(source: BulkExportSourceProps, path: string): void {
  if (source === null || typeof source !== 'object') fail(`${path} must be an object`);
  if (typeof source.id !== 'string' || !SOURCE_ID_PATTERN.test(source.id)) {
    fail(
      `${path}.id ${JSON.stringify(source.id)} must be 1-63 lower-case letters, digits or dashes, starting with a letter or digit`,
    );
  }
  checkSettings(source.settings, source.id, `${path}.settings`);
  checkClientSecret(source, path);
  if (source.signingKeySpec !== undefined && !SIGNING_KEY_SPECS.includes(source.signingKeySpec))
    fail(`${path}.signingKeySpec must be one of ${SIGNING_KEY_SPECS.join(', ')}`);
  if (source.schedule !== undefined) checkSchedule(source.schedule, `${path}.schedule`);
}

/** Throws a BulkExportPipelinePropsError naming the first problem found. */
export function validatePipelineProps(props: BulkExportPipelineProps): void {
  if (!Array.isArray(props.sources) || props.sources.length === 0)
    fail('sources must list at least one source');
  const seen = new Set<string>();
  props.sources.forEach((source, index) => {
    checkSource(source, `sources[${index}]`);
    if (seen.has(source.id)) fail(`sources[${index}].id "${source.id}" is a duplicate`);
    seen.add(source.id);
  });
  if (props.bucket && props.bucketProps)
    fail(
      'set either bucket (an existing bucket) or bucketProps (for the bucket this construct creates), not both',
    );
  if (props.bucket && props.lifecycle)
    fail(
      'lifecycle applies to the bucket this construct creates; with your own bucket, manage its lifecycle there',
    );
  if (props.bucketProps) {
    const unsupported = Object.keys(props.bucketProps).find(
      (key) => !(EXPORT_BUCKET_PROP_KEYS as readonly string[]).includes(key),
    );
    if (unsupported !== undefined) {
      fail(
        `bucketProps.${unsupported} cannot be set: encryption, TLS-only access, public access blocking, versioning, access logging and EventBridge notifications are fixed; settable: ${EXPORT_BUCKET_PROP_KEYS.join(', ')}`,
      );
    }
  }
  const prefix = props.exportPrefix ?? '';
  if (prefix !== '' && (prefix.startsWith('/') || /[*?\s]/.test(prefix) || prefix.includes('//')))
    fail(`exportPrefix "${prefix}" must be a plain S3 key prefix without a leading slash, spaces, * or ?`);
  if (props.keyAliasPrefix !== undefined && !ALIAS_PREFIX.test(props.keyAliasPrefix))
    fail(`keyAliasPrefix "${props.keyAliasPrefix}" may use only letters, digits, /, _ and -`);
  if (props.vpcSubnets && !props.vpc) fail('vpcSubnets needs vpc');
  const threshold = props.longExportThreshold;
  if (
    threshold !== undefined &&
    !threshold.isUnresolved() &&
    threshold.toSeconds() < Duration.minutes(5).toSeconds()
  )
    fail('longExportThreshold must be at least 5 minutes');
  for (const key of ['maxConcurrentExports', 'maxConcurrentDownloads'] as const) {
    const value = props[key];
    if (value !== undefined && (!Number.isInteger(value) || value < 1))
      fail(`${key} must be a positive integer`);
  }
  const maxLineBytes = props.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  if (
    !Number.isInteger(maxLineBytes) ||
    maxLineBytes < MIN_MAX_LINE_BYTES ||
    maxLineBytes > MAX_MAX_LINE_BYTES
  )
    fail(`maxLineBytes must be an integer from ${MIN_MAX_LINE_BYTES} to ${MAX_MAX_LINE_BYTES}`);
  // Download File's memory is sized for the pipeline's ceiling; a source above it would fail at run time.
  props.sources.forEach((source, index) => {
    const own = source.settings.maxLineBytes;
    if (own !== undefined && own > maxLineBytes)
      fail(
        `sources[${index}].settings.maxLineBytes ${own} is above the pipeline's maxLineBytes ${maxLineBytes}; raise maxLineBytes (Download File's memory follows it)`,
      );
  });
  const cutoff = props.warehouse?.bytesScannedCutoffPerQuery;
  if (cutoff !== undefined && (!Number.isSafeInteger(cutoff) || cutoff < MIN_BYTES_SCANNED_CUTOFF))
    fail(
      `warehouse.bytesScannedCutoffPerQuery must be a whole number of bytes of at least ${MIN_BYTES_SCANNED_CUTOFF} (Athena's 10 MB floor), got ${cutoff}`,
    );
  const errors = props.downloadErrorThreshold;
  if (errors !== undefined && (!Number.isInteger(errors) || errors < 1))
    fail('downloadErrorThreshold must be a positive integer');
}
