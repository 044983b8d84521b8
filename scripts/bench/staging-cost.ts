/**
 * `staging-cost`: what keeping an unfinished export out of the query layout
 * costs, both ways, on one synthetic export in the embedded S3:
 *
 * - publish: the files landed under `_staging/`; on success they are copied
 *   to their keys, each copy verified (HEAD), and the staging objects removed;
 * - remove on give-up: the files landed at their keys; a failed export that
 *   will not be resumed has them deleted.
 *
 * The export is built once, staged; publishing it leaves a landed export at
 * the final keys, which the give-up case then removes. On AWS a copy runs
 * inside S3 (no byte passes through the Lambda); here it is a disk copy by
 * the S3 server, so wall time and disk figures are this machine's, while the
 * request counts, the bytes through the client and the request cost are what
 * AWS would see.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { PutObjectCommand, PutObjectTaggingCommand, S3Client } from '@aws-sdk/client-s3';
import { mapInOrder } from '../../lambdas/core/concurrency.js';
import {
  type ObjectToPublish,
  publishObjects,
  removeObjects,
  S3_MAX_COPY_OBJECT_BYTES,
  stagingKey,
  verifyPublished,
} from '../../lambdas/services/publish-export.js';
import type { EmbeddedS3 } from '../local/embedded-s3.js';
import { LIST_PRICES_USD, s3RequestCostUsd } from './billing.js';
import { progress } from './children.js';
import { startCpuMeter } from './process-stats.js';

/** S3 Standard storage, us-east-1, first 50 TB: $0.023 per GB-month (check https://aws.amazon.com/s3/pricing/). */
const STORAGE_USD_PER_GB_MONTH = 0.023;
/** How long a deleted object's bytes stay as a noncurrent version in the pipeline's bucket (infra: noncurrentVersionExpiration). */
const NONCURRENT_DAYS = 30;
const DAYS_PER_MONTH = 30.4;
const TYPES = ['Patient', 'Encounter', 'Observation', 'Condition', 'MedicationRequest', 'Procedure'];

export interface StagingCostOptions {
  readonly s3: EmbeddedS3;
  readonly s3Pid: number;
  readonly totalBytes: number;
  readonly files: number;
  /** Copy requests in flight (publishObjects' concurrency). */
  readonly concurrency: number;
  /** Copy every file part by part (UploadPartCopy) in parts of this size, as files above 5 GiB are. */
  readonly copyPartBytes?: number;
}

let runs = 0;

export async function runStagingCost(options: StagingCostOptions): Promise<string[]> {
  runs++;
  const bucket = `bench-staging-${runs}`;
  await options.s3.createBucket(bucket);
  const counter = countRequests();
  const client = new S3Client(options.s3.clientConfig);
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { method: string; path: string; body?: unknown };
      counter.sending(context.commandName, request);
      const result = await next(args);
      counter.received(request.method, result.response as { headers?: Record<string, string> });
      return result;
    },
    { step: 'deserialize', name: 'countRequests' },
  );
  try {
    progress(
      `staging-cost: staging ${options.files} files, ${(options.totalBytes / 1024 ** 3).toFixed(2)} GiB in all`,
    );
    const objects = await stageExport(client, bucket, options);
    const bytes = objects.reduce((sum, object) => sum + object.bytes, 0);
    await flushToDisk();

    progress('staging-cost: publishing (copy, verify, remove the staging objects)');
    const publish = await measure(options.s3Pid, counter, async (phase) => {
      const published = await phase('copy', () =>
        publishObjects(client, {
          bucket,
          objects,
          concurrency: options.concurrency,
          ...(options.copyPartBytes
            ? { multipartCopyThresholdBytes: options.copyPartBytes, copyPartBytes: options.copyPartBytes }
            : {}),
        }),
      );
      await phase('verify', () => verifyPublished(client, { bucket, objects: published }));
      await phase('removeStaging', () =>
        removeObjects(
          client,
          bucket,
          published.map(({ from, fromVersionId }) => ({ key: from, versionId: fromVersionId })),
        ),
      );
    });

    progress('staging-cost: removing the landed export, as a give-up would');
    const giveUp = await measure(options.s3Pid, counter, async (phase) => {
      await phase('remove', () =>
        removeObjects(
          client,
          bucket,
          objects.map(({ to }) => to),
        ),
      );
    });

    const common = {
      scenario: 'staging-cost',
      files: objects.length,
      bytes,
      gib: round(bytes / 1024 ** 3, 2),
      copy: options.copyPartBytes
        ? `UploadPartCopy, ${options.copyPartBytes / 1024 ** 2} MiB parts`
        : 'CopyObject',
      concurrency: options.concurrency,
    };
    // An object deleted from a versioned bucket (the pipeline's) keeps its bytes as a noncurrent
    // version for NONCURRENT_DAYS, unless it is deleted by version id (publishObjects' `fromVersionId`):
    // every published export pays this for its staging copy, only a given-up one for its files.
    const noncurrentUsd = (bytes / 1e9) * STORAGE_USD_PER_GB_MONTH * (NONCURRENT_DAYS / DAYS_PER_MONTH);
    const noncurrent = { noncurrentStorageUsdUnlessDeletedByVersion: round(noncurrentUsd, 4) };
    const publishLine = { ...common, case: 'publish', ...publish, ...noncurrent };
    const giveUpLine = { ...common, case: 'remove-on-give-up', ...giveUp, ...noncurrent };
    const ratio = (a: number, b: number) => (b === 0 ? null : round(a / b, 1));
    const comparison = {
      ...common,
      case: 'publish-vs-give-up',
      wallRatio: ratio(publish.seconds, giveUp.seconds),
      wallRatioFlushed: ratio(publish.seconds + publish.flushSeconds, giveUp.seconds + giveUp.flushSeconds),
      requestRatio: ratio(publish.requestCount, giveUp.requestCount),
      requestCostRatio: ratio(publish.s3RequestsCostUsd, giveUp.s3RequestsCostUsd),
      // Requests are per file, not per byte: every successful export pays this, only a failed one a give-up.
      publishRequestCostUsdPerThousandFiles: round((publish.s3RequestsCostUsd * 1000) / objects.length, 4),
      prices: {
        perS3WriteOrListRequest: LIST_PRICES_USD.perS3WriteOrListRequest,
        perS3ReadRequest: LIST_PRICES_USD.perS3ReadRequest,
        storagePerGbMonth: STORAGE_USD_PER_GB_MONTH,
      },
    };
    return [publishLine, giveUpLine, comparison].map((line) => JSON.stringify(line));
  } finally {
    client.destroy();
  }
}

const round = (value: number, digits = 2) => Number(value.toFixed(digits));

/**
 * Files of whole NDJSON lines as Download File lands a large one: the facts
 * (sha256, lines) in tags, not in metadata. One PUT per file keeps the set-up
 * to one disk write (a multipart upload is written twice by s3rver).
 */
async function stageExport(client: S3Client, bucket: string, options: StagingCostOptions) {
  const root = `bench/source=bench/export=2026-01-01T000000.000Z/`;
  const perFile = Math.floor(options.totalBytes / options.files);
  if (perFile > S3_MAX_COPY_OBJECT_BYTES) {
    progress(`staging-cost: files of ${perFile} bytes are above 5 GiB: they are copied part by part`);
  }
  let staged = 0;
  return mapInOrder(
    Array.from({ length: options.files }, (_, index) => index),
    2,
    async (index): Promise<ObjectToPublish> => {
      const type = TYPES[index % TYPES.length]!;
      const to = `${root}type=${type}/part-${String(index + 1).padStart(4, '0')}.ndjson`;
      const from = stagingKey(to);
      const line = Buffer.from(
        `${JSON.stringify({ resourceType: type, id: `f${index}`, meta: { source: 'bench' }, text: 'x'.repeat(900) })}\n`,
      );
      const lines = Math.max(1, Math.floor(perFile / line.length));
      const block = Buffer.concat(
        Array.from({ length: Math.max(1, Math.floor((8 * 1024 ** 2) / line.length)) }, () => line),
      );
      const blockLines = block.length / line.length;
      const hash = createHash('sha256');
      const body = Readable.from(
        (function* () {
          for (let left = lines; left > 0; left -= blockLines) {
            const chunk = left >= blockLines ? block : block.subarray(0, left * line.length);
            hash.update(chunk);
            yield chunk;
          }
        })(),
      );
      const bytes = lines * line.length;
      await client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: from,
          Body: body,
          ContentLength: bytes,
          ContentType: 'application/fhir+ndjson',
          Metadata: { 'resource-type': type, 'file-kind': 'output' },
        }),
      );
      const sha256 = hash.digest('hex');
      await client.send(
        new PutObjectTaggingCommand({
          Bucket: bucket,
          Key: from,
          Tagging: {
            TagSet: [
              { Key: 'sha256', Value: sha256 },
              { Key: 'lines', Value: String(lines) },
            ],
          },
        }),
      );
      staged++;
      if (staged % 10 === 0 || staged === options.files) progress(`staging-cost: ${staged} files staged`);
      return { from, to, bytes, sha256 };
    },
  );
}

/** Requests by command and HTTP method, and the bytes of request and response bodies. */
function countRequests() {
  let byCommand: Record<string, number> = {};
  let byMethod: Record<string, number> = {};
  let sentBytes = 0;
  let receivedBytes = 0;
  const bodyBytes = (body: unknown) =>
    typeof body === 'string' ? Buffer.byteLength(body) : body instanceof Uint8Array ? body.length : 0;
  return {
    /** Counts one request on its way out (each attempt: S3 bills retries too). */
    sending(commandName: string | undefined, request: { method: string; path: string; body?: unknown }) {
      const command = (commandName ?? 'unknown').replace(/Command$/, '');
      byCommand[command] = (byCommand[command] ?? 0) + 1;
      // As S3 bills: a GET on a bucket is a LIST; DELETE is free; the rest by method.
      const bucketLevel = request.path.replace(/^\/[^/]+\/?/, '') === '';
      const method = request.method === 'GET' && bucketLevel ? 'LIST' : request.method;
      byMethod[method] = (byMethod[method] ?? 0) + 1;
      sentBytes += bodyBytes(request.body);
    },
    received(method: string, response: { headers?: Record<string, string> }) {
      // A HEAD answer states the object's length and carries no body.
      if (method !== 'HEAD') receivedBytes += Number(response.headers?.['content-length'] ?? 0);
    },
    take() {
      const taken = { byCommand, byMethod, sentBytes, receivedBytes };
      byCommand = {};
      byMethod = {};
      sentBytes = 0;
      receivedBytes = 0;
      return taken;
    },
  };
}

/** Bytes the S3 server's process had the kernel read from and write to disk (Linux). */
function diskBytes(pid: number): { read: number; written: number } | undefined {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? Number.NaN);
    return { read: field('read_bytes'), written: field('write_bytes') };
  } catch {
    return undefined;
  }
}

/**
 * S3 answers a copy once it is durable; s3rver once it is in the page cache.
 * `sync` writes the rest out, and its time is reported apart.
 */
async function flushToDisk(): Promise<number> {
  const started = performance.now();
  await promisify(execFile)('sync');
  return (performance.now() - started) / 1000;
}

async function measure(
  s3Pid: number,
  counter: ReturnType<typeof countRequests>,
  work: (phase: <T>(name: string, run: () => Promise<T>) => Promise<T>) => Promise<void>,
) {
  counter.take();
  const phases: Record<string, number> = {};
  const disk = diskBytes(s3Pid);
  const cpu = startCpuMeter(s3Pid);
  const started = performance.now();
  await work(async (name, run) => {
    const phaseStarted = performance.now();
    try {
      return await run();
    } finally {
      phases[name] = round((performance.now() - phaseStarted) / 1000, 2);
    }
  });
  const seconds = (performance.now() - started) / 1000;
  const used = cpu.stop();
  const flushSeconds = await flushToDisk();
  const diskAfter = diskBytes(s3Pid);
  const requests = counter.take();
  const requestCount = Object.values(requests.byCommand).reduce((sum, count) => sum + count, 0);
  return {
    seconds: round(seconds, 2),
    phaseSeconds: phases,
    flushSeconds: round(flushSeconds, 2),
    requestCount,
    requests: requests.byCommand,
    requestsByMethod: requests.byMethod,
    s3RequestsCostUsd: Number(s3RequestCostUsd(requests.byMethod).toPrecision(3)),
    // Request and response bodies through this client: the copy's bytes never are.
    clientBodyBytes: { sent: requests.sentBytes, received: requests.receivedBytes },
    s3ServerDiskBytes:
      disk && diskAfter
        ? { read: diskAfter.read - disk.read, written: diskAfter.written - disk.written }
        : null,
    clientCpuSeconds: round(used.sandbox, 2),
    s3ServerCpuSeconds: used.s3 === undefined ? null : round(used.s3, 2),
  };
}
