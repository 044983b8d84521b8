/**
 * One large bulk data file through transferFile (download, line checks,
 * SHA-256, multipart upload) into the embedded S3, next to the two ends
 * alone: a plain download of the same URL to nowhere, and a plain multipart
 * upload of as many bytes to the same S3. Scenarios:
 *
 * - `single-file`: the transfer as it runs (it asks for gzip) against the raw
 *   identity download and the raw upload, plus the transfer with S3 answered
 *   in-process (our pipeline's own ceiling).
 * - `gzip`: the transfer with gzip on and off, each against a raw download
 *   of the same encoding (gzip decoded, as the transfer decodes it).
 *
 * Every measured run is a child process; the sandbox lives in this process
 * and the S3 server in its own, so the CPU of each end is measured apart.
 */
import { createHash } from 'node:crypto';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { request } from 'undici';
import { repeatingSource, startFileServer } from '../../test/unit/download/support/file-server.js';
import { patientNdjson } from '../../test/unit/download/support/ndjson-body.js';
import type { EmbeddedS3 } from '../local/embedded-s3.js';
import type { FaultPlan } from '../sandbox/faults.js';
import { estimatedCostUsd } from './billing.js';
import type { ChildResult } from './child.js';
import { progress, type TransferChildRunner } from './children.js';
import { startCpuMeter } from './process-stats.js';
import { startSandboxClient } from './sandbox-source.js';

export interface SingleFileOptions {
  readonly sizeBytes: number;
  readonly source: 'sandbox' | 'local';
  /** Parts in flight in the transfer (and in the raw upload, to compare like with like). */
  readonly concurrency: number;
  readonly s3: EmbeddedS3;
  readonly s3Pid: number | undefined;
  readonly children: TransferChildRunner;
}

/** A child's result with the CPU the other two processes spent meanwhile. */
interface Measured extends ChildResult {
  readonly sandboxCpuSeconds: number;
  readonly s3CpuSeconds: number | undefined;
}

/** The Map child of one file that transfers in one invocation: child start, Mint, Download, Choice, Succeed. */
const TRANSITIONS_PER_FILE = 5;
const DOWNLOAD_FILE_MEMORY_GB = 1024 / 1024;

async function objectSha256(s3: EmbeddedS3, bucket: string, key: string): Promise<string> {
  const client = new S3Client(s3.clientConfig);
  try {
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const hash = createHash('sha256');
    for await (const chunk of object.Body as AsyncIterable<Uint8Array>) hash.update(chunk);
    return hash.digest('hex');
  } finally {
    client.destroy();
  }
}

/**
 * The sandbox writes a file to disk when an export completes, then a gzipped copy of it, in the
 * background. Waits for both before anything is timed (HEAD waits for the file; a HEAD that
 * accepts gzip carries a Content-Length once the copy is made), and answers the copy's size.
 * HEAD, unlike GET, takes none of a file's count faults.
 */
async function storedCopiesReady(url: string, accessToken: string | undefined): Promise<number> {
  for (;;) {
    const head = await request(url, {
      method: 'HEAD',
      headers: {
        ...(accessToken ? { authorization: `Bearer ${accessToken}` } : {}),
        'accept-encoding': 'gzip',
      },
      headersTimeout: 600_000,
    });
    await head.body.dump();
    const length = head.headers['content-length'];
    if (typeof length === 'string') return Number(length);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export interface SingleFileBench {
  run(scenario: 'single-file' | 'gzip' | 'resume'): Promise<string[]>;
  close(): Promise<void>;
}

export async function prepareSingleFile(options: SingleFileOptions): Promise<SingleFileBench> {
  const { s3, children } = options;
  await s3.createBucket('bench');
  let url: string;
  let accessToken: string | undefined;
  let resourceType: string;
  let close: () => Promise<void>;
  /** Size of the sandbox's gzipped copy of the file. */
  let gzipLength: number | undefined;
  /** The same file in another export of the same data, meeting `faults`. */
  let exportFaulted: ((faults: FaultPlan) => Promise<string>) | undefined;
  if (options.source === 'sandbox') {
    // About 7 KB of Observations per synthetic patient; one file holds them all.
    const patientCount = Math.ceil((options.sizeBytes * 1.05) / 6_500);
    progress(`single file: sandbox exporting Observation for ${patientCount} patients`);
    const client = await startSandboxClient({ patientCount, resourcesPerFile: 1_000_000_000 });
    close = client.close;
    const manifest = await client.exportFiles(['Observation']);
    url = manifest.output[0]!.url;
    accessToken = client.accessToken;
    resourceType = 'Observation';
    gzipLength = await storedCopiesReady(url, accessToken);
    exportFaulted = async (faults) => (await client.exportFiles(['Observation'], faults)).output[0]!.url;
  } else {
    const block = patientNdjson(4000);
    const copies = Math.ceil(options.sizeBytes / block.length);
    const server = await startFileServer({ body: repeatingSource(block, copies), writeBytes: 256 * 1024 });
    close = () => server.close();
    url = server.url;
    resourceType = 'Patient';
  }

  // Each run at most once, shared by the scenarios that need it.
  const runs = new Map<string, Promise<Measured>>();
  const once = (name: string, mode: 'download' | 'upload' | 'transfer', args: () => object) => {
    let run = runs.get(name);
    if (!run) {
      run = (async () => {
        progress(`${name}`);
        const meter = startCpuMeter(options.s3Pid);
        const result = await children.run(mode, args());
        const cpu = meter.stop();
        progress(
          `${name}: ${result.bytes} bytes in ${result.seconds.toFixed(1)} s (${(result.bytes / 1e6 / result.seconds).toFixed(1)} MB/s)`,
        );
        return { ...result, sandboxCpuSeconds: cpu.sandbox, s3CpuSeconds: cpu.s3 };
      })();
      runs.set(name, run);
    }
    return run;
  };
  const transferArgs = (key: string, extra: object = {}) => ({
    url,
    accessToken,
    requiresAccessToken: accessToken !== undefined,
    endpoint: s3.endpoint,
    bucket: 'bench',
    key,
    resourceType,
    concurrency: options.concurrency,
    ...extra,
  });
  const rawDownload = () => once('raw download (identity)', 'download', () => ({ url, accessToken }));
  const rawDownloadGzip = () =>
    once('raw download (gzip, decoded)', 'download', () => ({ url, accessToken, gzip: true }));
  const rawUpload = async () => {
    const { bytes } = await rawDownload();
    return once('raw upload', 'upload', () => ({
      endpoint: s3.endpoint,
      bucket: 'bench',
      key: 'raw-upload.ndjson',
      bytes,
      concurrency: options.concurrency,
    }));
  };
  const transfer = () =>
    once('transfer (gzip on, as it runs)', 'transfer', () => transferArgs('transfer.ndjson'));
  const transferIdentity = () =>
    once('transfer (gzip off)', 'transfer', () => transferArgs('transfer-identity.ndjson', { gzip: false }));
  const transferNullS3 = () =>
    once('transfer with S3 answered in-process (our pipeline alone)', 'transfer', () => ({
      ...transferArgs('null.ndjson'),
      nullS3: true,
      concurrency: undefined,
    }));

  const line = (scenario: string, result: Measured, rawDown: Measured, rawUp: Measured | undefined) => {
    const mbPerSec = (r: ChildResult) => r.bytes / 1e6 / r.seconds;
    const round = (value: number, digits = 1) => Number(value.toFixed(digits));
    const mb = result.bytes / 1e6;
    const rawDownloadMbPerSec = mbPerSec(rawDown);
    const rawUploadMbPerSec = rawUp ? mbPerSec(rawUp) : Number.POSITIVE_INFINITY;
    const raw = Math.min(rawDownloadMbPerSec, rawUploadMbPerSec);
    const lambdaGbSeconds = result.seconds * DOWNLOAD_FILE_MEMORY_GB;
    return JSON.stringify({
      scenario,
      bytes: result.bytes,
      lines: result.lines,
      seconds: round(result.seconds, 2),
      mbPerSec: round(mbPerSec(result)),
      rawDownloadMbPerSec: round(rawDownloadMbPerSec),
      rawUploadMbPerSec: rawUp ? round(rawUploadMbPerSec) : null,
      rawMbPerSec: round(raw),
      ratio: round(mbPerSec(result) / raw, 2),
      peakRssMb: result.peakRssMb,
      peakHeapMb: result.peakHeapMb,
      peakArrayBuffersMb: result.peakArrayBuffersMb,
      // CPU of the transferring process: per MB, and the share of the wall time it was busy.
      cpuMsPerMb: round((result.cpuSeconds * 1000) / mb, 2),
      cpuBusy: round(result.cpuSeconds / result.seconds, 2),
      // CPU the two ends spent meanwhile: the sandbox (this process: file reads, gzip) and s3rver.
      sandboxCpuMsPerMb: round((result.sandboxCpuSeconds * 1000) / mb, 2),
      s3CpuMsPerMb: result.s3CpuSeconds === undefined ? null : round((result.s3CpuSeconds * 1000) / mb, 2),
      // The raw ends' own CPU per MB: the client process, and s3rver for the upload.
      rawDownloadCpuMsPerMb: round((rawDown.cpuSeconds * 1000) / (rawDown.bytes / 1e6), 2),
      rawUploadCpuMsPerMb: rawUp ? round((rawUp.cpuSeconds * 1000) / (rawUp.bytes / 1e6), 2) : null,
      rawUploadS3CpuMsPerMb:
        rawUp?.s3CpuSeconds === undefined
          ? null
          : round((rawUp.s3CpuSeconds * 1000) / (rawUp.bytes / 1e6), 2),
      ...(rawDown.wireBytes ? { wireBytes: rawDown.wireBytes } : {}),
      // On AWS this file is one Map child: its transitions, and one DownloadFile invocation this long.
      billingScope: 'one Map child, one invocation',
      stateTransitions: TRANSITIONS_PER_FILE,
      lambdaGbSeconds: round(lambdaGbSeconds, 3),
      estimatedCostUsd: Number(estimatedCostUsd(TRANSITIONS_PER_FILE, lambdaGbSeconds, 2).toPrecision(3)),
    });
  };

  return {
    async run(scenario) {
      if (scenario === 'single-file') {
        const down = await rawDownload();
        const up = await rawUpload();
        const measured = await transfer();
        if (measured.bytes !== down.bytes) {
          throw new Error(`transfer landed ${measured.bytes} bytes, the file has ${down.bytes}`);
        }
        const ceiling = await transferNullS3();
        return [
          line(`transfer-${options.source}`, measured, down, up),
          // Same download, no S3: the ratio is against the raw download alone.
          line(`transfer-${options.source}-null-s3`, ceiling, down, undefined),
        ];
      }
      if (options.source !== 'sandbox' || gzipLength === undefined || exportFaulted === undefined) {
        progress(
          `${scenario}: needs --source sandbox (the local file server neither compresses nor injects faults); skipped`,
        );
        return [];
      }
      if (scenario === 'resume') {
        // The same data exported again, so that its file drops once, 40% into the gzip stream.
        const dropAt = Math.floor(gzipLength * 0.4);
        progress(`resume: a second export whose file drops after ${dropAt} gzip bytes`);
        const faultedUrl = await exportFaulted({ dropAfterBytes: { bytes: dropAt, times: 1 } });
        await storedCopiesReady(faultedUrl, accessToken);
        const reference = await once('reference download (identity, hashed)', 'download', () => ({
          url,
          accessToken,
          hash: true,
        }));
        const up = await rawUpload();
        const down = await rawDownload();
        // The uncut transfer's time sets the first invocation's budget: it runs out about 70% of
        // the way, and the rest lands in a second invocation, as a file too big for one Lambda does.
        const uncut = await transfer();
        const resumed = await once('transfer cut by a drop, then by a checkpoint', 'transfer', () =>
          transferArgs('transfer-resumed.ndjson', {
            url: faultedUrl,
            firstInvocationSeconds: uncut.seconds * 0.7,
          }),
        );
        // Read back here, not in the child, so that its peak RSS is the transfer's alone.
        const landedSha256 = await objectSha256(s3, 'bench', 'transfer-resumed.ndjson');
        const byteIdentical =
          resumed.bytes === reference.bytes &&
          resumed.sha256 === reference.sha256 &&
          landedSha256 === reference.sha256;
        const measured = JSON.parse(line('transfer-resumed', resumed, down, up)) as Record<string, unknown>;
        const result = JSON.stringify({
          ...measured,
          invocations: resumed.invocations,
          requests: resumed.requests,
          rangeRequests: resumed.rangeRequests,
          referenceSha256: reference.sha256,
          reportedSha256: resumed.sha256,
          landedSha256,
          byteIdentical,
        });
        if (!byteIdentical) {
          process.stdout.write(`${result}\n`);
          throw new Error('the resumed transfer did not land the file byte for byte');
        }
        return [result];
      }
      const down = await rawDownload();
      const downGzip = await rawDownloadGzip();
      const up = await rawUpload();
      const on = await transfer();
      const off = await transferIdentity();
      for (const measured of [on, off, downGzip]) {
        if (measured.bytes !== down.bytes) {
          throw new Error(`a gzip run counted ${measured.bytes} bytes, the file has ${down.bytes}`);
        }
      }
      return [line('transfer-gzip-on', on, downGzip, up), line('transfer-gzip-off', off, down, up)];
    },
    close,
  };
}
