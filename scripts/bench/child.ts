/**
 * One measured run in its own process, so that its peak RSS (getrusage
 * maxRSS) is its own: `node --import tsx scripts/bench/child.ts <mode> <json>`.
 * Prints one JSON line on stdout; logs go to stderr.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Agent, Dispatcher } from 'undici';
import { createHttpAgent } from '../../lambdas/adapters/http-agent.js';
import { createLogger } from '../../lambdas/logger.js';
import {
  DEFAULT_TRANSFER_SETTINGS,
  type TransferCheckpoint,
  type TransferFileInput,
  type TransferOutcome,
  transferFile,
} from '../../lambdas/services/transfer-file.js';
import { embeddedS3ClientConfig } from '../local/embedded-s3.js';

export interface ChildResult {
  /** Decoded bytes (what lands in S3). */
  readonly bytes: number;
  /** Bytes on the wire, when the server sent gzip. */
  readonly wireBytes?: number;
  readonly lines?: number;
  readonly seconds: number;
  readonly peakRssMb: number;
  readonly peakHeapMb: number;
  readonly peakArrayBuffersMb: number;
  /** User + system CPU time of this process. */
  readonly cpuSeconds: number;
  readonly sha256?: string;
  /** transfer: invocations it took (more than 1 after a checkpoint). */
  readonly invocations?: number;
  /** transfer: file requests made, and how many of them asked for a Range (resumptions). */
  readonly requests?: number;
  readonly rangeRequests?: number;
}

interface ChildArgs {
  readonly url: string;
  readonly accessToken?: string;
  readonly requiresAccessToken?: boolean;
  readonly endpoint: string;
  readonly bucket: string;
  readonly key: string;
  readonly bytes?: number;
  readonly resourceType?: string;
  /**
   * download: ask for gzip and gunzip what comes (as the transfer does).
   * transfer: false rewrites its `Accept-Encoding: gzip` to identity. @default false / true
   */
  readonly gzip?: boolean;
  /** Answer every S3 call in-process: measures our pipeline's own ceiling, without S3. */
  readonly nullS3?: boolean;
  /** Parts in flight. @default the transfer's default */
  readonly concurrency?: number;
  /** download: SHA-256 of the decoded bytes (a reference to compare a landed object with). */
  readonly hash?: boolean;
  /**
   * transfer: the first invocation gets this many seconds (beyond the safety margin) on a
   * Lambda-like clock, so a file that takes longer checkpoints and resumes in a second one.
   */
  readonly firstInvocationSeconds?: number;
  /** transfer: the longest line accepted. @default the transfer's default */
  readonly maxLineBytes?: number;
}

const [mode, json] = process.argv.slice(2);
const args = JSON.parse(json ?? '{}') as ChildArgs;

// maxRSS is the kernel's high-water mark; the sampler is a cross-check and
// says where the memory is (JS heap, or Buffers waiting for the GC). Every
// 100 ms: process.memoryUsage() walks the heap, and at 20 ms it cost ~1.5% CPU.
let sampledPeak = process.memoryUsage.rss();
let peakHeap = 0;
let peakArrayBuffers = 0;
const sampler = setInterval(() => {
  const usage = process.memoryUsage();
  sampledPeak = Math.max(sampledPeak, usage.rss);
  peakHeap = Math.max(peakHeap, usage.heapUsed);
  peakArrayBuffers = Math.max(peakArrayBuffers, usage.arrayBuffers);
}, 100);

type Measured = Omit<
  ChildResult,
  'seconds' | 'peakRssMb' | 'peakHeapMb' | 'peakArrayBuffersMb' | 'cpuSeconds'
>;

async function download(): Promise<Measured> {
  // The pipeline's own pool and limits, so raw and transfer figures differ only in what we add.
  const agent = createHttpAgent();
  const response = await agent.request({
    origin: new URL(args.url).origin,
    path: `${new URL(args.url).pathname}${new URL(args.url).search}`,
    method: 'GET',
    headers: {
      'accept-encoding': args.gzip ? 'gzip' : 'identity',
      ...(args.accessToken ? { authorization: `Bearer ${args.accessToken}` } : {}),
    },
    highWaterMark: 256 * 1024,
  });
  if (response.statusCode !== 200) throw new Error(`download answered ${response.statusCode}`);
  let bytes = 0;
  if (response.headers['content-encoding'] !== 'gzip') {
    const hash = args.hash ? createHash('sha256') : undefined;
    for await (const chunk of response.body) {
      bytes += (chunk as Buffer).length;
      hash?.update(chunk as Buffer);
    }
    await agent.close();
    return { bytes, ...(hash ? { sha256: hash.digest('hex') } : {}) };
  }
  // The same decoder settings as the transfer's, so both sides pay the same gunzip.
  let wireBytes = 0;
  response.body.on('data', (chunk: Buffer) => {
    wireBytes += chunk.length;
  });
  const gunzip = response.body.pipe(createGunzip({ chunkSize: 256 * 1024 }));
  for await (const chunk of gunzip) bytes += (chunk as Buffer).length;
  await agent.close();
  return { bytes, wireBytes };
}

async function upload(): Promise<Measured> {
  const total = args.bytes ?? 0;
  const block = Buffer.alloc(1024 * 1024, '{"resourceType":"Observation","status":"final"}\n');
  const body = Readable.from(
    (function* () {
      for (let sent = 0; sent < total; sent += block.length)
        yield block.subarray(0, Math.min(block.length, total - sent));
    })(),
  );
  const client = new S3Client(embeddedS3ClientConfig(args.endpoint));
  await new Upload({
    client,
    params: { Bucket: args.bucket, Key: args.key, Body: body, ContentType: 'application/fhir+ndjson' },
    partSize: 8 * 1024 * 1024,
    queueSize: args.concurrency ?? 3,
  }).done();
  client.destroy();
  return { bytes: total };
}

/** An S3 client whose calls never leave the process: parts are counted and dropped. */
function nullS3Client(): S3Client {
  const client = new S3Client(embeddedS3ClientConfig(args.endpoint));
  let stored = 0;
  client.middlewareStack.add(
    (_next, context) => async (args) => {
      const input = args.input as { Body?: Uint8Array };
      const output: Record<string, unknown> = { $metadata: {} };
      if (context.commandName === 'CreateMultipartUploadCommand') output.UploadId = 'null-upload';
      if (context.commandName === 'UploadPartCommand' || context.commandName === 'PutObjectCommand') {
        stored += input.Body?.length ?? 0;
        output.ETag = '"null"';
      }
      if (context.commandName === 'HeadObjectCommand') output.ContentLength = stored;
      return { output, response: {} } as never;
    },
    { step: 'initialize', name: 'nullS3' },
  );
  return client;
}

/**
 * transferFile always asks for gzip on a fresh GET (there is no setting to
 * turn it off); to measure it without, rewrite the header on the way out.
 */
function identityOnly(agent: Agent): Dispatcher {
  return agent.compose(
    (dispatch) => (options, handler) =>
      dispatch(
        {
          ...options,
          headers: { ...(options.headers as Record<string, string>), 'accept-encoding': 'identity' },
        },
        handler,
      ),
  );
}

/** Counts the file requests, and those that resume with a Range. */
function counted(dispatcher: Dispatcher, counts: { requests: number; rangeRequests: number }): Dispatcher {
  return dispatcher.compose((dispatch) => (options, handler) => {
    counts.requests++;
    const headers = (options.headers ?? {}) as Record<string, string>;
    if (Object.keys(headers).some((name) => name.toLowerCase() === 'range')) counts.rangeRequests++;
    return dispatch(options, handler);
  });
}

async function transfer(): Promise<Measured> {
  const client = args.nullS3 ? nullS3Client() : new S3Client(embeddedS3ClientConfig(args.endpoint));
  const agent = createHttpAgent();
  const counts = { requests: 0, rangeRequests: 0 };
  const http = counted(args.gzip === false ? identityOnly(agent) : agent, counts);
  const request: TransferFileInput = {
    url: args.url,
    resourceType: args.resourceType ?? 'Observation',
    kind: 'output',
    requiresAccessToken: args.requiresAccessToken ?? false,
    ...(args.accessToken ? { accessToken: args.accessToken } : {}),
    allowInsecureHttp: true,
    bucket: args.bucket,
    key: args.key,
    ...(args.maxLineBytes ? { maxLineBytes: args.maxLineBytes } : {}),
  };
  let outcome: TransferOutcome | undefined;
  let invocations = 0;
  let checkpoint: TransferCheckpoint | undefined;
  while (outcome?.status !== 'complete') {
    if (++invocations > 10) throw new Error('the transfer did not complete in 10 invocations');
    const budgetMs =
      invocations === 1 && args.firstInvocationSeconds !== undefined
        ? args.firstInvocationSeconds * 1000
        : Number.POSITIVE_INFINITY;
    const startedAt = Date.now();
    outcome = await transferFile(checkpoint ? { ...request, checkpoint } : request, {
      s3: client,
      http,
      now: () => new Date(),
      remainingTimeMs: () => DEFAULT_TRANSFER_SETTINGS.safetyMarginMs + budgetMs - (Date.now() - startedAt),
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      random: Math.random,
      logger: createLogger({ level: 'warn', write: (line) => process.stderr.write(`${line}\n`) }),
      ...(args.concurrency ? { settings: { partConcurrency: args.concurrency } } : {}),
    });
    // Through JSON, as Step Functions carries it.
    if (outcome.status === 'checkpoint') checkpoint = JSON.parse(JSON.stringify(outcome.checkpoint));
  }
  client.destroy();
  await agent.close();
  return {
    bytes: outcome.bytes,
    lines: outcome.lines,
    sha256: outcome.sha256,
    invocations,
    ...counts,
  };
}

const started = process.hrtime.bigint();
const cpuBefore = process.cpuUsage();
const run =
  mode === 'download' ? download : mode === 'upload' ? upload : mode === 'transfer' ? transfer : undefined;
if (!run) throw new Error(`unknown mode ${mode}`);
const result = await run();
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const cpu = process.cpuUsage(cpuBefore);
const cpuSeconds = (cpu.user + cpu.system) / 1e6;
clearInterval(sampler);
const maxRssBytes = process.resourceUsage().maxRSS * 1024;
const peakRssMb = Math.round(Math.max(maxRssBytes, sampledPeak) / 1e6);
process.stdout.write(
  `${JSON.stringify({
    ...result,
    seconds,
    peakRssMb,
    peakHeapMb: Math.round(peakHeap / 1e6),
    peakArrayBuffersMb: Math.round(peakArrayBuffers / 1e6),
    cpuSeconds,
  } satisfies ChildResult)}\n`,
);
