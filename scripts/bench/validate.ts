/**
 * The `validate` scenario: the US Core validation stage's speed and memory.
 *
 * - engine: the rule engine alone on the sandbox's export mix (every type, in
 *   the proportions a cohort's export has), every check on, in one process:
 *   resources per second of wall clock and per CPU second (= per core: the
 *   engine is single-threaded), and that process's peak RSS.
 * - file: Validate Batch, the Lambda's own code, over one NDJSON object of
 *   the same mix streamed from the embedded S3 (100 MB quick, 1 GB --full):
 *   peak RSS, and RSS in the first and last quarter of the run, which are
 *   close when memory stays flat whatever the file's size.
 *
 * Both run bundled in a child process, as the Lambda runs its bundle.
 */
import { Readable } from 'node:stream';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { EmbeddedS3 } from '../local/embedded-s3.js';
import { sandboxValidationMix } from '../validation/bench-mix.js';
import { bundleChild, progress, runNodeChild } from './children.js';

export interface ValidateBenchOptions {
  readonly s3: EmbeddedS3;
  /** Size of the file case's NDJSON object. */
  readonly fileBytes: number;
  /** Patients of the sandbox cohort whose resources make the mix. @default 200 */
  readonly patients?: number;
  /** The Validate Batch child's V8 old-space limit (--max-old-space-size), as a smaller Lambda has. @default V8's */
  readonly heapMb?: number;
}

interface EngineChildResult {
  readonly lines: number;
  readonly resources: number;
  readonly seconds: number;
  readonly resourcesPerSecond: number;
  readonly resourcesPerCpuSecond: number;
  readonly conformant: number;
  readonly byType: Record<string, number>;
  readonly peakRssMb: number;
}

interface FileChildResult {
  readonly seconds: number;
  readonly cpuSeconds: number;
  readonly lines: number;
  readonly issueLines: number;
  readonly peakRssMb: number;
  readonly peakHeapUsedMb: number;
  readonly peakArrayBuffersMb: number;
  readonly rssFirstQuarterMb?: number;
  readonly rssLastQuarterMb?: number;
}

const BUCKET = 'bench-validate';
const EXPORT_FOLDER = 'source=bench/export=2026-01-01T000000.000Z/';

/** The mix's lines over and over until `bytes`: generated as it is uploaded, never held whole. */
function* repeatedMix(lines: readonly string[], bytes: number): Generator<Buffer> {
  const block = Buffer.from(`${lines.join('\n')}\n`);
  let written = 0;
  while (written < bytes) {
    const piece = written + block.length <= bytes ? block : cutAtLine(block, bytes - written);
    if (piece.length === 0) return;
    written += piece.length;
    yield piece;
  }
}

function cutAtLine(block: Buffer, room: number): Buffer {
  const end = block.lastIndexOf(10, room - 1);
  return end < 0 ? Buffer.alloc(0) : block.subarray(0, end + 1);
}

export async function runValidateBench(options: ValidateBenchOptions): Promise<string[]> {
  const command = await bundleChild('validate-child.ts');
  const out: string[] = [];
  const patients = options.patients ?? 200;

  progress(`validate: the engine on the sandbox mix of ${patients} patients`);
  const engine = await runNodeChild<EngineChildResult>(command, [
    'engine',
    JSON.stringify({ patients, rounds: 5 }),
  ]);
  out.push(
    JSON.stringify({
      scenario: 'validate',
      case: 'engine, sandbox mix, every check on',
      resources: engine.resources,
      distinctResources: engine.lines,
      conformantPercent: +((engine.conformant * 100) / engine.lines).toFixed(1),
      byType: engine.byType,
      seconds: +engine.seconds.toFixed(2),
      resourcesPerSecond: engine.resourcesPerSecond,
      resourcesPerCpuSecond: engine.resourcesPerCpuSecond,
      peakRssMb: engine.peakRssMb,
    }),
  );

  await options.s3.createBucket(BUCKET);
  const key = `${EXPORT_FOLDER}type=Observation/part-0001.ndjson`;
  const lines = sandboxValidationMix(patients);
  progress(`validate: uploading ${(options.fileBytes / 1e6).toFixed(0)} MB of the mix`);
  const client = new S3Client(options.s3.clientConfig);
  let bytes = 0;
  const body = Readable.from(
    (function* () {
      for (const piece of repeatedMix(lines, options.fileBytes)) {
        bytes += piece.length;
        yield piece;
      }
    })(),
  );
  await new Upload({ client, params: { Bucket: BUCKET, Key: key, Body: body } }).done();
  client.destroy();

  progress('validate: Validate Batch over the file');
  // A heap limit shows whether the file's memory is bounded: V8 grows its heap lazily up to a limit set by
  // the machine's memory, so an unbounded run's RSS says little.
  const heapFlags = options.heapMb ? [`--max-old-space-size=${options.heapMb}`] : [];
  const file = await runNodeChild<FileChildResult>(
    [...heapFlags, ...command],
    [
      'file',
      JSON.stringify({
        endpoint: options.s3.endpoint,
        bucket: BUCKET,
        key,
        bytes,
        exportFolder: EXPORT_FOLDER,
      }),
    ],
  );
  out.push(
    JSON.stringify({
      scenario: 'validate',
      case: 'Validate Batch, one file streamed from S3',
      mb: +(bytes / 1e6).toFixed(1),
      heapLimitMb: options.heapMb ?? null,
      resources: file.lines,
      issueLines: file.issueLines,
      seconds: +file.seconds.toFixed(1),
      mbPerSecond: +(bytes / 1e6 / file.seconds).toFixed(1),
      resourcesPerSecond: Math.round(file.lines / file.seconds),
      resourcesPerCpuSecond: Math.round(file.lines / file.cpuSeconds),
      peakRssMb: file.peakRssMb,
      peakHeapUsedMb: file.peakHeapUsedMb,
      peakArrayBuffersMb: file.peakArrayBuffersMb,
      rssFirstQuarterMb: file.rssFirstQuarterMb,
      rssLastQuarterMb: file.rssLastQuarterMb,
    }),
  );
  return out;
}
