/**
 * One measured validation in its own process, so that its peak RSS and CPU
 * time are its own (bundled, as the Lambda is: see bundleChild):
 *
 *   node validate-child.mjs engine '{"patients":200,"rounds":5}'
 *   node validate-child.mjs file '{"endpoint":…,"bucket":…,"key":…,"bytes":…,"exportFolder":…}'
 *
 * `engine` is the rule engine alone on the sandbox's mix, parsed from
 * strings in memory; `file` is Validate Batch, the Lambda's own code, over
 * one NDJSON object streamed from S3, its issue lines and partial summary
 * written back. Prints one JSON line on stdout.
 */

import { loadUsCoreValidator } from '../../lambdas/validation/engine/index.js';
import { partialSummaryKey } from '../../lambdas/validation/layout.js';
import type { FilePartialSummary } from '../../lambdas/validation/stage.js';
import { validateBatch } from '../../lambdas/validation/stage.js';
import { embeddedS3ClientConfig } from '../local/embedded-s3.js';
import { createLocalRuntime } from '../local/runtime.js';
import { measureValidation, sandboxValidationMix } from '../validation/bench-mix.js';

interface FileArgs {
  readonly endpoint: string;
  readonly bucket: string;
  readonly key: string;
  readonly bytes: number;
  readonly exportFolder: string;
}

/** The kernel's high-water mark, sampled too: RSS that rises with the file would show here as a slope. */
const rssSamples: number[] = [];
let peakHeapUsed = 0;
let peakArrayBuffers = 0;
const sampler = setInterval(() => {
  const usage = process.memoryUsage();
  rssSamples.push(usage.rss);
  peakHeapUsed = Math.max(peakHeapUsed, usage.heapUsed);
  peakArrayBuffers = Math.max(peakArrayBuffers, usage.arrayBuffers);
}, 250);
sampler.unref();

function memory() {
  return {
    peakRssMb: Math.round((process.resourceUsage().maxRSS * 1024) / 1e6),
    peakHeapUsedMb: Math.round(peakHeapUsed / 1e6),
    peakArrayBuffersMb: Math.round(peakArrayBuffers / 1e6),
    // RSS in the first and last quarter of the run: flat memory means these two are close.
    rssFirstQuarterMb: quarterMb(0),
    rssLastQuarterMb: quarterMb(3),
  };
}

function quarterMb(quarter: number): number | undefined {
  if (rssSamples.length < 8) return undefined;
  const size = Math.floor(rssSamples.length / 4);
  const slice = rssSamples.slice(quarter * size, (quarter + 1) * size);
  return Math.round(Math.max(...slice) / 1e6);
}

async function engine(args: { patients: number; rounds: number }) {
  const lines = sandboxValidationMix(args.patients);
  const result = measureValidation(lines, args.rounds);
  return { ...result, lines: lines.length, ...memory() };
}

async function file(args: FileArgs) {
  const local = createLocalRuntime({
    sources: [],
    s3ClientConfig: embeddedS3ClientConfig(args.endpoint),
    bucket: args.bucket,
  });
  try {
    const started = process.hrtime.bigint();
    const cpu = process.cpuUsage();
    const validator = loadUsCoreValidator();
    const progress = await validateBatch(
      local.runtime,
      validator,
      {
        validation: {
          bucket: args.bucket,
          exportFolder: args.exportFolder,
          workPrefix: `${args.exportFolder}_bench-work/`,
        },
        batch: { batch: 0, files: [{ index: 0, key: args.key, type: 'Observation', bytes: args.bytes }] },
        progress: { status: 'pending', checkpointKey: null, invocations: 0 },
      },
      // One Lambda invocation with all the time it needs: no checkpoint in the measured run.
      { getRemainingTimeInMillis: () => 15 * 60_000 } as never,
    );
    if (progress.status !== 'complete') throw new Error(`Validate Batch ended ${progress.status}`);
    const used = process.cpuUsage(cpu);
    const partial = await local.runtime.store.getJson<FilePartialSummary>(
      partialSummaryKey(`${args.exportFolder}_bench-work/`, 0),
    );
    if (!partial) throw new Error('Validate Batch wrote no partial summary');
    return {
      seconds: Number(process.hrtime.bigint() - started) / 1e9,
      cpuSeconds: (used.user + used.system) / 1e6,
      lines: partial.lines,
      issueLines: partial.issueLines,
      ...memory(),
    };
  } finally {
    await local.close();
  }
}

const [mode, raw] = process.argv.slice(2);
const args = JSON.parse(raw ?? '{}');
const result = mode === 'engine' ? await engine(args) : mode === 'file' ? await file(args) : undefined;
if (!result) throw new Error(`unknown mode ${mode}: engine or file`);
process.stdout.write(`${JSON.stringify(result)}\n`);
