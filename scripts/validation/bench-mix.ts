/**
 * The rule engine's micro-benchmark: the sandbox's own export mix (every exportable type, in the proportions
 * an export of its cohort has), validated with every check on. `npm run bench -- --scenario validate` calls
 * measureValidation(); the mix is generated in memory, so the figure is the engine's alone (no I/O).
 */
import { loadUsCoreValidator } from '../../lambdas/validation/engine/index.js';
import { createDataset } from '../sandbox/data/dataset.js';
import { EXPORTABLE_TYPES } from '../sandbox/data/types.js';

/** One NDJSON line per resource, the types interleaved as an export's files would be read in parallel. */
export function sandboxValidationMix(patientCount = 200, seed = 42): string[] {
  const dataset = createDataset({ patientCount, seed });
  const perType = EXPORTABLE_TYPES.map((type) => [...dataset.lines({ type })]);
  const out: string[] = [];
  const longest = Math.max(...perType.map((lines) => lines.length));
  for (let i = 0; i < longest; i++) for (const lines of perType) if (i < lines.length) out.push(lines[i]!);
  return out;
}

export interface ValidationBenchResult {
  readonly resources: number;
  readonly seconds: number;
  /** Wall clock: single-threaded, so per core when the machine is otherwise idle. */
  readonly resourcesPerSecond: number;
  /** Per second of this process's CPU time: per core even on a busy machine. */
  readonly resourcesPerCpuSecond: number;
  readonly conformant: number;
  readonly byType: Record<string, number>;
}

/** Parses and validates the mix `rounds` times after one warm-up round (JIT, per-process compilation). */
export function measureValidation(
  lines: readonly string[] = sandboxValidationMix(),
  rounds = 3,
): ValidationBenchResult {
  const validator = loadUsCoreValidator();
  const byType: Record<string, number> = {};
  let conformant = 0;
  for (const line of lines) {
    const result = validator.validate(JSON.parse(line));
    byType[result.resourceType] = (byType[result.resourceType] ?? 0) + 1;
    if (result.conformant) conformant++;
  }
  const start = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  for (let r = 0; r < rounds; r++) for (const line of lines) validator.validate(JSON.parse(line));
  const used = process.cpuUsage(cpu);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpuSeconds = (used.user + used.system) / 1e6;
  const resources = lines.length * rounds;
  return {
    resources,
    seconds,
    resourcesPerSecond: Math.round(resources / seconds),
    resourcesPerCpuSecond: Math.round(resources / cpuSeconds),
    conformant,
    byType,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = measureValidation();
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
