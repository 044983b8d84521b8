import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { HeadBucketCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { describeS3Error } from '../../lambdas/adapters/s3-store.js';
import { parseExecutionInput } from '../../lambdas/core/execution-input.js';
import type { Receipt } from '../../lambdas/core/receipt.js';
import { InvalidExecutionInputError } from '../../lambdas/errors.js';
import { resolveFromCaller, UsageError } from './command.js';
import { type EmbeddedS3, embeddedS3ClientConfig, startEmbeddedS3 } from './embedded-s3.js';
import { renderSummaryTable } from './progress.js';

export { localExecutionName } from './runner.js';

import type { LocalSource } from './runtime.js';

/** What the export and backfill commands share: reading the source file and choosing where data lands. */
export interface S3Target {
  readonly s3ClientConfig: S3ClientConfig;
  readonly bucket: string;
  readonly description: string;
  close(): Promise<void>;
}

/** The bucket in the embedded S3 when --bucket is not given. */
export const DEFAULT_LOCAL_BUCKET = 'bulk-export';

/** Reads `--source`, a path relative to the folder the command was run from. */
export async function readSourceFile(path: string): Promise<LocalSource & { readonly id: string }> {
  const sourcePath = resolveFromCaller(path);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(sourcePath, 'utf8'));
  } catch (error) {
    throw new Error(`cannot read source file ${sourcePath}: ${(error as Error).message}`);
  }
  const id = (raw as { id?: unknown } | null)?.id;
  if (typeof id !== 'string') throw new Error(`source file ${sourcePath} has no "id" string`);
  return { raw, baseDir: dirname(sourcePath), origin: path, id };
}

export interface S3TargetOptions {
  /** @default DEFAULT_LOCAL_BUCKET in the embedded S3; required with `awsS3` */
  readonly bucket?: string;
  /** Any S3-compatible endpoint (credentials from the environment); the bucket must exist. */
  readonly s3Endpoint?: string;
  /** Real S3 with the SDK's default credentials and region; the bucket must exist. */
  readonly awsS3?: boolean;
  /** Where the embedded S3 keeps its files (one folder per bucket). */
  readonly localDirectory: string;
}

/** `--bucket`, `--s3-endpoint` and `--aws-s3` as export and backfill take them, checked before anything starts. */
export function s3TargetOptions(
  values: { readonly bucket?: string; readonly 's3-endpoint'?: string; readonly 'aws-s3'?: boolean },
  localDirectory: string,
): S3TargetOptions {
  if (values['s3-endpoint'] && values['aws-s3']) {
    throw new UsageError('--s3-endpoint and --aws-s3 name two different stores; give one of them');
  }
  if (values['aws-s3'] && !values.bucket)
    throw new UsageError('--aws-s3 needs --bucket NAME (an existing bucket)');
  return {
    ...(values.bucket ? { bucket: values.bucket } : {}),
    ...(values['s3-endpoint'] ? { s3Endpoint: values['s3-endpoint'] } : {}),
    ...(values['aws-s3'] ? { awsS3: true } : {}),
    localDirectory,
  };
}

/**
 * By default the embedded S3 server, files under `<localDirectory>/<bucket>`,
 * the bucket created if new (a second run finds it there). `s3Endpoint`: any
 * S3-compatible endpoint; `awsS3`: real S3. Those buckets are someone else's
 * to create; a missing one is said before the export starts.
 */
export async function openS3Target(options: S3TargetOptions): Promise<S3Target> {
  const bucket = options.bucket ?? DEFAULT_LOCAL_BUCKET;
  if (options.s3Endpoint || options.awsS3) {
    let s3ClientConfig: S3ClientConfig = {};
    let where = 'real S3';
    if (options.s3Endpoint) {
      const { credentials: _credentials, ...config } = embeddedS3ClientConfig(options.s3Endpoint);
      s3ClientConfig = config;
      where = options.s3Endpoint;
    }
    await assertBucketExists(s3ClientConfig, bucket, where);
    return { s3ClientConfig, bucket, description: `s3://${bucket} at ${where}`, close: async () => {} };
  }
  const embedded: EmbeddedS3 = await startEmbeddedS3({ directory: options.localDirectory });
  try {
    await embedded.createBucket(bucket);
  } catch (error) {
    await embedded.close();
    throw new Error(`cannot create bucket ${bucket} in the embedded S3: ${describeS3Error(error)}`);
  }
  return {
    s3ClientConfig: embedded.clientConfig,
    bucket,
    description: `embedded S3 (${embedded.endpoint}), files under ${join(options.localDirectory, bucket)}`,
    close: () => embedded.close(),
  };
}

async function assertBucketExists(config: S3ClientConfig, bucket: string, where: string): Promise<void> {
  const s3 = new S3Client(config);
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch (error) {
    if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) {
      throw new Error(
        `bucket ${bucket} does not exist at ${where}: create it first (e.g. \`aws s3 mb s3://${bucket}\`), or leave out --s3-endpoint and --aws-s3 to use the embedded S3, which creates it`,
      );
    }
    throw new Error(`cannot use bucket ${bucket} at ${where}: ${describeS3Error(error)}`);
  } finally {
    s3.destroy();
  }
}

/**
 * An export's window and scope from the command line, checked by the parser Prepare Export
 * uses, before anything is read or started: a mistyped option is a usage error (exit 2), not a
 * failed workflow. Messages name the option (`--since`), not the input field.
 */
/**
 * `--chunk patients:500`, `--chunk time:30d` or `--chunk none`: the execution input's `chunk`
 * (none: in one piece, whatever the source says). Anything else is a usage error naming the forms.
 */
export function chunkOption(
  text: string,
): { by: 'patients'; size: number } | { by: 'time'; window: string } | false {
  if (text === 'none') return false;
  const patients = /^patients:(\d+)$/.exec(text);
  if (patients) return { by: 'patients', size: Number(patients[1]) };
  const time = /^time:(.+)$/.exec(text);
  if (time) return { by: 'time', window: time[1]! };
  throw new UsageError(
    `--chunk must be patients:<size>, time:<window such as 30d> or none (got ${JSON.stringify(text)})`,
  );
}

export function checkExportRequest(request: Record<string, unknown>): void {
  try {
    parseExecutionInput({ sourceId: 'command-line', ...request });
  } catch (error) {
    if (!(error instanceof InvalidExecutionInputError)) throw error;
    const option = {
      since: '--since',
      until: '--until',
      types: '--types',
      groupId: '--group',
      chunk: '--chunk',
    };
    throw new UsageError(
      error.message.replace(
        /input\.(since|until|types|groupId|chunk)/g,
        (_match, name: keyof typeof option) => option[name],
      ),
    );
  }
}

/** What every export command prints once a run succeeded: per type, then what else landed and the next `_since`. */
export function summarize(receipt: Receipt): string {
  return [
    renderSummaryTable(Object.entries(receipt.byType).map(([type, totals]) => ({ type, ...totals }))),
    '',
    `Error files: ${receipt.errors.files} (${receipt.errors.lines} OperationOutcomes); deleted files: ${receipt.deleted.files} (${receipt.deleted.lines} deleted resources)`,
    `Asked for: ${receipt.request.since ? `changes since ${receipt.request.since}` : 'everything (no _since)'}${receipt.request.until ? ` until ${receipt.request.until}` : ''}`,
    `transactionTime (next _since): ${receipt.transactionTime}${receipt.watermark.advanced ? '' : ` (watermark not moved: ${receipt.watermark.reason})`}`,
    ...chunkSummary(receipt),
  ].join('\n');
}

/** A chunked export: how it was split, which chunks needed more than one job, what two chunks both carried. */
function chunkSummary(receipt: Receipt): string[] {
  const { chunking, duplicateResources } = receipt;
  if (!chunking) return [];
  const retried = chunking.chunks.filter((chunk) => chunk.attempts > 1);
  const lines = [
    `Chunks: ${chunking.chunks.length} by ${chunking.by}${chunking.reason === 'timeout' ? ' (the export in one piece timed out: chunkOnTimeout)' : ''}${retried.length > 0 ? `; kicked off again: ${retried.map((chunk) => `chunk ${chunk.index} (${chunk.attempts} attempts)`).join(', ')}` : ''}`,
  ];
  if (duplicateResources && duplicateResources.extraCopies > 0) {
    lines.push(
      `In more than one chunk: ${duplicateResources.resources} resources, ${duplicateResources.extraCopies} extra copies kept (${Object.entries(
        duplicateResources.byType,
      )
        .map(([type, count]) => `${type} ${count.extraCopies}`)
        .join(', ')}); downstream keeps one per resourceType/id`,
    );
  }
  return lines;
}

/** `30d`, `12h`, `1.5d` → days. */
export function parseWindow(text: string): number {
  const match = /^(\d+(?:\.\d+)?)([dh])$/.exec(text.trim());
  if (!match || Number(match[1]) <= 0)
    throw new UsageError(`--window must look like 30d or 12h (got ${JSON.stringify(text.slice(0, 20))})`);
  const value = Number(match[1]);
  return match[2] === 'h' ? value / 24 : value;
}
