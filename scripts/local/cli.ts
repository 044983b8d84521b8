import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import type { Receipt } from '../../lambdas/core/receipt.js';
import { type EmbeddedS3, embeddedS3ClientConfig, startEmbeddedS3 } from './embedded-s3.js';
import { renderSummaryTable } from './progress.js';
import type { LocalSource } from './runtime.js';

/** What the export and backfill commands share: reading the source file and choosing where data lands. */
export interface S3Target {
  readonly s3ClientConfig: S3ClientConfig;
  readonly bucket: string;
  readonly description: string;
  close(): Promise<void>;
}

export async function readSourceFile(path: string): Promise<LocalSource & { readonly id: string }> {
  const sourcePath = resolve(path);
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

/**
 * No --bucket and no --s3-endpoint: the embedded S3 server, files under
 * .local/s3. --s3-endpoint: any S3-compatible endpoint (credentials from the
 * environment). --bucket alone: real S3 with the default credential chain.
 */
export async function openS3Target(options: { bucket?: string; s3Endpoint?: string }): Promise<S3Target> {
  const bucket = options.bucket ?? 'bulk-export';
  if (options.s3Endpoint) {
    const { credentials: _credentials, ...config } = embeddedS3ClientConfig(options.s3Endpoint);
    return {
      s3ClientConfig: config,
      bucket,
      description: `s3://${bucket} at ${options.s3Endpoint}`,
      close: async () => {},
    };
  }
  if (options.bucket) {
    return { s3ClientConfig: {}, bucket, description: `s3://${bucket}`, close: async () => {} };
  }
  const embedded: EmbeddedS3 = await startEmbeddedS3({ directory: resolve('.local', 's3') });
  await embedded.createBucket(bucket);
  return {
    s3ClientConfig: embedded.clientConfig,
    bucket,
    description: `embedded S3 (${embedded.endpoint}), files under .local/s3/${bucket}`,
    close: () => embedded.close(),
  };
}

export function summarize(receipt: Receipt): string {
  return renderSummaryTable(Object.entries(receipt.byType).map(([type, totals]) => ({ type, ...totals })));
}

/** `30d`, `12h`, `1.5d` → days. */
export function parseWindow(text: string): number {
  const match = /^(\d+(?:\.\d+)?)([dh])$/.exec(text.trim());
  if (!match)
    throw new Error(`--window must look like 30d or 12h (got ${JSON.stringify(text.slice(0, 20))})`);
  const value = Number(match[1]);
  return match[2] === 'h' ? value / 24 : value;
}
