import type { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as acm from 'aws-cdk-lib/aws-certificatemanager';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as events from 'aws-cdk-lib/aws-events';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type { SourceSettingsInput } from '../lambdas/schema/source.js';

/** KMS key specs that sign SMART client assertions: ES384 on P-384, RS384 on RSA. */
export const SIGNING_KEY_SPECS = ['ECC_NIST_P384', 'RSA_2048', 'RSA_3072', 'RSA_4096'] as const;
export type SigningKeySpec = (typeof SIGNING_KEY_SPECS)[number];

/**
 * The tag that ties a client secret and a signing key to their source
 * (value: the source id). The token minter reads a secret and signs only in a
 * session tagged with the same source id, so a resource without the tag, or
 * with another source's, is out of its reach.
 */
export const SOURCE_TAG_KEY = 'fhir-bulk-export-source';

/**
 * The non-secret settings of a source: the input of the one source schema
 * (lambdas/schema/source.ts), defaults left out. The Lambdas read them from
 * the source registry. Credentials never go here: they live in the source's
 * client secret.
 */
export type ExportSourceSettings = SourceSettingsInput;

/** When a source's daily delta runs: an EventBridge Scheduler schedule that starts `{ sourceId, since: "auto" }`. */
export interface ExportScheduleProps {
  /** `cron(minutes hours day-of-month month day-of-week year)` or `rate(value unit)`, as EventBridge Scheduler reads them. */
  readonly expression: string;
  /** IANA time zone the cron expression is read in. @default 'UTC' */
  readonly timeZone?: string;
  /** Scheduler may start the execution anywhere in this window (spreads load on the EHR); `Duration.minutes(0)` turns it off. @default Duration.minutes(15) */
  readonly flexibleTimeWindow?: Duration;
  /** @default true */
  readonly enabled?: boolean;
  /** Attempts to start the execution when StartExecution fails (e.g. throttling). @default 5 */
  readonly retryAttempts?: number;
  /** Give up starting the execution after this long; then it lands in the dead-letter queue. @default Duration.hours(1) */
  readonly maximumEventAge?: Duration;
}

/** One EHR or FHIR server to export from. */
export interface BulkExportSourceProps {
  /** Lower-case id used in S3 keys, execution names, schedules and key aliases. */
  readonly id: string;
  /** Non-secret settings, published to the source registry (`<prefix>_registry/sources/<id>.json`). */
  readonly settings: ExportSourceSettings;
  /**
   * The Secrets Manager secret holding the client's credentials as JSON
   * (`{ clientId, kmsKeyId | privateJwk, scope?, tokenUrl?, scopeSyntax?, extraScopes? }`),
   * in this stack's account and region. It must carry the tag
   * `fhir-bulk-export-source=<id>`: the token minter reads it only in a
   * session tagged with this source id. A secret created in the same CDK app
   * (`new secretsmanager.Secret`) is tagged by the construct; tag an imported
   * one yourself.
   */
  readonly clientSecret: secretsmanager.ISecret;
  /** The customer managed KMS key the secret is encrypted with. @default `clientSecret.encryptionKey`, else the AWS managed key */
  readonly clientSecretEncryptionKey?: kms.IKey;
  /** @default no schedule: exports start by hand or from a backfill */
  readonly schedule?: ExportScheduleProps;
  /** Spec of the signing key the construct creates. Ignored with `signingKey`. @default 'ECC_NIST_P384' (ES384) */
  readonly signingKeySpec?: SigningKeySpec;
  /**
   * An asymmetric SIGN_VERIFY key you created (e.g. `aws kms create-key --tags
   * TagKey=fhir-bulk-export-source,TagValue=<id>`), tagged with this source
   * id and aliased `alias/<keyAliasPrefix>/<id>` so the JWKS publishes it.
   * Costs no CloudFormation resources, which matters past ~200 sources.
   * @default a new key and alias, tagged by the construct
   */
  readonly signingKey?: kms.IKey;
  // Signing-key rotation (issue 16 part 2; docs/deploy.md "Rotating a signing key").
  /**
   * With `signingKey`: the key you will promote next, published in the JWKS now so EHR caches
   * hold it before it signs. It never signs while it is `nextSigningKey`: leave it untagged
   * until it becomes `signingKey` (the tag is what lets the token minter sign with it).
   */
  readonly nextSigningKey?: kms.IKey;
  /** With `signingKey`: the key it replaced, still published until EHR caches have the new one. Untag it. */
  readonly previousSigningKey?: kms.IKey;
  /** Without `signingKey`: the generations of the keys the construct creates. @default { current: 1 } */
  readonly signingKeyRotation?: SigningKeyRotation;
}

/**
 * The construct's keys of one source, by generation (1, 2, …). A rotation: `publishNext` →
 * deploy → wait for EHR JWKS caches → `current + 1` with `keepPrevious` → deploy → later drop
 * `keepPrevious` → deploy. Only `current` signs; the others are published only.
 */
export interface SigningKeyRotation {
  /** The generation that signs, behind `alias/<prefix>/<id>`. @default 1 */
  readonly current?: number;
  /** Create generation `current + 1` now, published behind `alias/<prefix>/<id>/next`. @default false */
  readonly publishNext?: boolean;
  /** Keep generation `current - 1` published, behind `alias/<prefix>/<id>/previous`. @default false */
  readonly keepPrevious?: boolean;
}

export interface JwksDomainProps {
  /** e.g. `jwks.example.org`; point its DNS (CNAME or alias) at the distribution. */
  readonly domainName: string;
  /** An ACM certificate for `domainName`, in us-east-1. */
  readonly certificate: acm.ICertificate;
}

/** The bucket props a caller may set on the bucket this construct creates. */
export type ExportBucketProps = Pick<
  s3.BucketProps,
  | 'bucketName'
  | 'lifecycleRules'
  | 'intelligentTieringConfigurations'
  | 'inventories'
  | 'metrics'
  | 'objectLockEnabled'
  | 'objectLockDefaultRetention'
  | 'replicationRules'
  | 'replicationRole'
>;

/** Retention of what the pipeline writes to the bucket it creates. */
export interface ExportLifecycleProps {
  /** Manifests, file lists and per-file results under `_work/`. @default Duration.days(7) */
  readonly workExpiration?: Duration;
  /** Multipart uploads left open by a crashed download. Must outlast the longest download. @default Duration.days(7) */
  readonly incompleteUploadExpiration?: Duration;
  /** Overwritten or deleted object versions. @default Duration.days(30) */
  readonly noncurrentVersionExpiration?: Duration;
  /** Storage-class transitions of exported data (`source=…/`). @default none */
  readonly exportTransitions?: readonly s3.Transition[];
  /** Delete exported data after this long. @default never */
  readonly exportExpiration?: Duration;
  /** Server access logs of the export bucket. @default Duration.days(365) */
  readonly accessLogExpiration?: Duration;
}

/** The warehouse load and its query side (Glue, Athena). */
export interface WarehouseProps {
  /** @default true */
  readonly enabled?: boolean;
  /**
   * The Athena workgroup cancels a query that scans more than this many bytes (at least 10 MB, Athena's
   * floor). @default 10 GB (10,000,000,000 bytes: $0.05 at Athena's $5 per TB)
   */
  readonly bytesScannedCutoffPerQuery?: number;
}

export interface BulkExportPipelineProps {
  /**
   * The sources this deployment declares, at least one, ids unique; each is
   * published to the source registry. More can be registered without a
   * deployment (`npm run sources -- put`): the functions never change with
   * the list.
   */
  readonly sources: readonly BulkExportSourceProps[];
  /**
   * An existing export bucket. It must have EventBridge notifications on;
   * when it is SSE-KMS encrypted, import it with its `encryptionKey`.
   * Conflicts with `bucketProps` and `lifecycle`.
   * @default a new bucket: SSE-KMS with its own key and a bucket key, TLS only, versioned, access-logged, no public access
   */
  readonly bucket?: s3.IBucket;
  /** Settings for the bucket this construct creates. Conflicts with `bucket`. @default none */
  readonly bucketProps?: ExportBucketProps;
  /** Key prefix of everything the pipeline writes. @default '' (the bucket root) */
  readonly exportPrefix?: string;
  /** Lifecycle of the created bucket. Conflicts with `bucket`. @default see ExportLifecycleProps */
  readonly lifecycle?: ExportLifecycleProps;
  /** Signing key aliases are `alias/<keyAliasPrefix>/<sourceId>`; the JWKS publishes every key under it. @default 'fhir-bulk-export' */
  readonly keyAliasPrefix?: string;
  /** Retention of every log group. @default logs.RetentionDays.ONE_YEAR */
  readonly logRetention?: logs.RetentionDays;
  /** Where alarms go. @default a new SNS topic encrypted with the pipeline's operations key */
  readonly alarmTopic?: sns.ITopic;
  /** An export running longer than this (ExecutionTime p99) raises an alarm. @default Duration.hours(24) */
  readonly longExportThreshold?: Duration;
  /** Download-file errors per 15 minutes that raise an alarm (transient errors are retried). @default 5 */
  readonly downloadErrorThreshold?: number;
  /**
   * Reserve concurrency for each function, sized from `maxConcurrentExports`
   * and `maxConcurrentDownloads`. Turn off in accounts whose Lambda
   * concurrency quota is the 10 of a new account. @default true
   */
  readonly reservedConcurrency?: boolean;
  /**
   * Exports expected to run at once, across all sources (each source runs one
   * at a time). Sizes the reserved concurrency of the per-export functions;
   * past it, their invocations are throttled and retried by the state machine.
   * @default 5
   */
  readonly maxConcurrentExports?: number;
  /**
   * File downloads expected to run at once, across all exports (the sum of
   * the running sources' `maxConcurrency`). Sizes Download File's and Mint
   * Token's reserved concurrency. @default 20
   */
  readonly maxConcurrentDownloads?: number;
  /**
   * The longest NDJSON line any source may accept: Download File's memory is
   * sized for it (lambdas/core/ndjson/line-limit.ts) and its `MAX_LINE_BYTES`.
   * A source whose `maxLineBytes` is larger fails with a configuration error.
   * @default 64 MiB
   */
  readonly maxLineBytes?: number;
  /** The bus the pipeline emits `Bulk Export Succeeded` / `Failed` on (source `fhir.bulk-export`). @default the account's default bus */
  readonly eventBus?: events.IEventBus;
  /** Run the functions in this VPC (it needs a NAT or egress path to the EHRs, and S3/KMS/Secrets Manager/STS endpoints or NAT). @default no VPC */
  readonly vpc?: ec2.IVpc;
  /** @default the VPC's private subnets with egress */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /** Create the example downstream: an EventBridge rule on completion markers feeding an encrypted SQS queue. @default true */
  readonly completionQueue?: boolean;
  /**
   * The validation stage (issue 17, docs/validation.md): every `_SUCCESS.json` starts a US Core 6.1.0
   * validation of its export (validate-export.asl.json). `{ enabled: false }` leaves it out; a source's
   * own `validation` setting turns it off or makes it a gate per source. @default { enabled: true }
   */
  readonly validation?: { readonly enabled?: boolean };
  /**
   * The warehouse load (issue 18, docs/warehouse.md): each validated export (each `_SUCCESS.json` when
   * validation is off) is loaded as Parquet tables of SQL on FHIR views (load-warehouse.asl.json), with a
   * Glue database (one table per view, partition projection on `source`) and an Athena workgroup to query
   * them. `{ enabled: false }` leaves it all out; a source's own `warehouse` setting turns it off per source.
   * @default { enabled: true }
   */
  readonly warehouse?: WarehouseProps;
  /** Removal policy of the buckets, keys and log groups. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /** @default a CloudFormation-generated name */
  readonly stateMachineName?: string;
  /** Namespace of the pipeline's metrics (`POWERTOOLS_METRICS_NAMESPACE`). @default 'FhirBulkExport' */
  readonly metricNamespace?: string;
  /** `LOG_LEVEL` of the functions. @default 'info' */
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** How long EHRs may cache the JWKS. @default Duration.hours(1) */
  readonly jwksMaxAge?: Duration;
  /**
   * Serve the JWKS at `https://<domainName>/.well-known/jwks.json` (CloudFront in front of the
   * function URL), so replacing the function never changes the URL EHRs registered. The
   * certificate must be in us-east-1 (CloudFront's rule). @default the function URL
   */
  readonly jwksDomain?: JwksDomainProps;
  /** Where the prebundled functions are (`<dir>/<FunctionName>/index.mjs`). @default the package's dist/lambdas (npm run build:lambdas) */
  readonly lambdaBundleDirectory?: string;
  /** Where `bulk-export.asl.json` and `clean-up-ended-export.asl.json` are. @default the package's state-machines/ */
  readonly stateMachineDirectory?: string;
}
