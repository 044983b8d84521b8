/**
 * End-to-end throughput of one large bulk data file through transferFile
 * (download, line checks, SHA-256, multipart upload) into the embedded S3,
 * compared with the two ends alone: a plain download of the same URL to
 * nowhere, and a plain multipart upload of as many bytes to the same S3.
 *
 *   npm run bench -- [--size-mb 1000] [--source sandbox|local]
 *
 * Each measured run is a child process, so peak RSS is that run's own.
 * MB = 10^6 bytes. One JSON line per scenario on stdout; progress on stderr.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { repeatingSource, startFileServer } from '../../test/unit/download/support/file-server.js';
import { patientNdjson } from '../../test/unit/download/support/ndjson-body.js';
import { startEmbeddedS3 } from '../local/embedded-s3.js';
import type { ChildResult } from './child.js';
import { startSandboxClient } from './sandbox-source.js';

const { values } = parseArgs({
  options: {
    'size-mb': { type: 'string', default: '1000' },
    source: { type: 'string', default: 'sandbox' },
    /** Parts in flight in the transfer (and in the raw upload, to compare like with like). */
    concurrency: { type: 'string', default: '3' },
    /** Write a V8 CPU profile of the transfer child into this folder. */
    'cpu-prof-dir': { type: 'string' },
  },
});
const sizeBytes = Number(values['size-mb']) * 1e6;
const source = values.source;
if (!Number.isFinite(sizeBytes) || sizeBytes <= 0) throw new Error('--size-mb must be a positive number');
if (source !== 'sandbox' && source !== 'local') throw new Error('--source must be sandbox or local');
const concurrency = Number(values.concurrency);
if (!Number.isInteger(concurrency) || concurrency < 1)
  throw new Error('--concurrency must be a positive integer');

const progress = (message: string) => process.stderr.write(`[bench] ${message}\n`);

/**
 * The children run as one bundled ES module, as the code runs in Lambda:
 * under tsx the loader thread alone adds ~30 MB of RSS that is not ours.
 * The bundle goes under node_modules/.cache so that bare imports resolve.
 */
async function bundleChild(): Promise<string[]> {
  const entry = fileURLToPath(new URL('./child.ts', import.meta.url));
  const outfile = fileURLToPath(new URL('../../node_modules/.cache/bench/child.mjs', import.meta.url));
  try {
    const esbuild = await import('esbuild');
    await esbuild.build({
      entryPoints: [entry],
      outfile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node22',
      packages: 'external',
      logLevel: 'error',
    });
    return [outfile];
  } catch (error) {
    progress(`could not bundle the child (${(error as Error).message}); running it under tsx`);
    return ['--import', 'tsx', entry];
  }
}
const childCommand = await bundleChild();

function runChild(mode: string, args: object): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const profile =
      mode === 'transfer' && values['cpu-prof-dir']
        ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof-dir']}`]
        : [];
    const child = spawn(process.execPath, [...profile, ...childCommand, mode, JSON.stringify(args)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on('exit', (code) => {
      if (code === 0) resolve(JSON.parse(out.trim().split('\n').at(-1)!) as ChildResult);
      else reject(new Error(`bench child ${mode} exited with ${code}`));
    });
  });
}

const s3 = await startEmbeddedS3();
await s3.createBucket('bench');
let closeSource: (() => Promise<void>) | undefined;
let url: string;
let accessToken: string | undefined;
let resourceType: string;
try {
  if (source === 'sandbox') {
    // About 7 KB of Observations per synthetic patient; one file holds them all.
    const patientCount = Math.ceil((sizeBytes * 1.05) / 6_500);
    progress(`sandbox: exporting Observation for ${patientCount} patients`);
    const client = await startSandboxClient({ patientCount, resourcesPerFile: 1_000_000_000 });
    closeSource = client.close;
    const manifest = await client.exportFiles(['Observation']);
    url = manifest.output[0]!.url;
    accessToken = client.accessToken;
    resourceType = 'Observation';
    // The sandbox measures a file on its first request; do that before timing anything.
    const warm = await request(url, {
      headers: { authorization: `Bearer ${accessToken}`, range: 'bytes=0-0' },
    });
    await warm.body.dump();
  } else {
    const block = patientNdjson(4000);
    const copies = Math.ceil(sizeBytes / block.length);
    const server = await startFileServer({ body: repeatingSource(block, copies), writeBytes: 256 * 1024 });
    closeSource = () => server.close();
    url = server.url;
    resourceType = 'Patient';
  }

  progress('raw download');
  const rawDownload = await runChild('download', { url, accessToken });
  progress(`raw download: ${rawDownload.bytes} bytes in ${rawDownload.seconds.toFixed(1)} s`);
  progress('raw upload');
  const rawUpload = await runChild('upload', {
    endpoint: s3.endpoint,
    bucket: 'bench',
    key: 'raw-upload.ndjson',
    bytes: rawDownload.bytes,
    concurrency,
  });
  progress(`raw upload: ${rawUpload.bytes} bytes in ${rawUpload.seconds.toFixed(1)} s`);
  progress('transfer');
  const transfer = await runChild('transfer', {
    url,
    accessToken,
    requiresAccessToken: accessToken !== undefined,
    endpoint: s3.endpoint,
    bucket: 'bench',
    key: 'transfer.ndjson',
    resourceType,
    concurrency,
  });
  if (transfer.bytes !== rawDownload.bytes) {
    throw new Error(`transfer landed ${transfer.bytes} bytes, the file has ${rawDownload.bytes}`);
  }

  progress('transfer with S3 answered in-process (our pipeline alone)');
  const ceiling = await runChild('transfer', {
    url,
    accessToken,
    requiresAccessToken: accessToken !== undefined,
    endpoint: s3.endpoint,
    bucket: 'bench',
    key: 'null.ndjson',
    resourceType,
    nullS3: true,
  });

  const mbPerSec = (result: ChildResult) => result.bytes / 1e6 / result.seconds;
  const round = (value: number, digits = 1) => Number(value.toFixed(digits));
  const rawDownloadMbPerSec = mbPerSec(rawDownload);
  const rawUploadMbPerSec = mbPerSec(rawUpload);
  const rawMbPerSec = Math.min(rawDownloadMbPerSec, rawUploadMbPerSec);
  const line = (scenario: string, result: ChildResult, raw: number) =>
    `${JSON.stringify({
      scenario,
      bytes: result.bytes,
      lines: result.lines,
      seconds: round(result.seconds, 2),
      mbPerSec: round(mbPerSec(result)),
      rawDownloadMbPerSec: round(rawDownloadMbPerSec),
      rawUploadMbPerSec: round(rawUploadMbPerSec),
      rawMbPerSec: round(raw),
      ratio: round(mbPerSec(result) / raw, 2),
      peakRssMb: result.peakRssMb,
      peakHeapMb: result.peakHeapMb,
      peakArrayBuffersMb: result.peakArrayBuffersMb,
      // CPU of the transferring process: per MB, and the share of the wall time it was busy.
      cpuMsPerMb: round((result.cpuSeconds * 1000) / (result.bytes / 1e6), 2),
      cpuBusy: round(result.cpuSeconds / result.seconds, 2),
    })}\n`;
  process.stdout.write(line(`transfer-${source}`, transfer, rawMbPerSec));
  // Same download, no S3: the ratio is against the raw download alone.
  process.stdout.write(line(`transfer-${source}-null-s3`, ceiling, rawDownloadMbPerSec));
  progress(
    `raw download ${round(rawDownload.cpuSeconds, 2)} s CPU, ${rawDownload.peakRssMb} MB RSS; raw upload ${round(rawUpload.cpuSeconds, 2)} s CPU, ${rawUpload.peakRssMb} MB RSS`,
  );
} finally {
  await closeSource?.();
  await s3.close();
}
