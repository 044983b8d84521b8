/**
 * Whole-workflow scenarios: the real ASL, handlers, sandbox and embedded S3,
 * as `npm run demo` runs them, measured from the execution events.
 *
 * - `many-small-files`: an Oracle Health-like Group export of ~10 resources
 *   per file (thousands of files, redirected to presigned URLs on another
 *   origin): per-file overhead, Map concurrency and token caching show here.
 * - `huge-files`: a few files of hundreds of MB each: flat memory and
 *   throughput of whole files through the workflow.
 */
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EmbeddedS3 } from '../local/embedded-s3.js';
import { ensureLocalKeyPair } from '../local/local-keys.js';
import { EXPORTABLE_TYPES, type ExportableType } from '../sandbox/data/types.js';
import { type FaultPlan, startSandbox } from '../sandbox/index.js';
import { estimatedCostUsd, expressChildrenCostUsd, LIST_PRICES_USD, s3RequestCostUsd } from './billing.js';
import { progress, runNodeChild, WORKFLOW_CHILD_COMMAND } from './children.js';
import { startCpuMeter } from './process-stats.js';
import type { WorkflowChildArgs, WorkflowChildResult } from './workflow-child.js';

/** Resources per file in the many-small-files scenario (files of ~10 KB). */
const SMALL_FILE_RESOURCES = 10;
/** Resources per synthetic patient in a Group export, and Observations per patient (seed 42). */
const RESOURCES_PER_PATIENT = 17.9;
const OBSERVATIONS_PER_PATIENT = 7.1;
const OBSERVATION_BYTES = 990;

export interface WorkflowScenarioOptions {
  readonly s3: EmbeddedS3;
  readonly s3Pid: number | undefined;
  /** Write a V8 CPU profile of the workflow process into this folder. */
  readonly cpuProfDir?: string;
}

export async function runManySmallFiles(
  options: WorkflowScenarioOptions & { readonly files: number; readonly mapConcurrency: number },
): Promise<string> {
  const patientCount = Math.max(
    10,
    Math.round((options.files * SMALL_FILE_RESOURCES) / RESOURCES_PER_PATIENT),
  );
  return runWorkflowScenario(options, {
    scenario: 'many-small-files',
    patientCount,
    types: [...EXPORTABLE_TYPES],
    faults: { resourcesPerFile: SMALL_FILE_RESOURCES, redirectFiles: true, groupExportOnly: true },
    export: { level: 'group', groupId: 'cohort' },
    mapConcurrency: options.mapConcurrency,
  });
}

export async function runHugeFiles(
  options: WorkflowScenarioOptions & { readonly files: number; readonly fileBytes: number },
): Promise<string> {
  const patientCount = Math.ceil(
    (options.files * options.fileBytes * 1.02) / (OBSERVATIONS_PER_PATIENT * OBSERVATION_BYTES),
  );
  return runWorkflowScenario(options, {
    scenario: 'huge-files',
    patientCount,
    types: ['Observation'],
    // resourcesPerFile is set from the dataset's count once the sandbox is up.
    faults: {},
    splitInto: options.files,
    export: { level: 'system', types: ['Observation'] },
    mapConcurrency: options.files,
  });
}

interface WorkflowScenario {
  readonly scenario: string;
  readonly patientCount: number;
  readonly types: readonly ExportableType[];
  readonly faults: FaultPlan;
  /** Split the exported type into this many files (sets resourcesPerFile). */
  readonly splitInto?: number;
  readonly export: Record<string, unknown>;
  readonly mapConcurrency: number;
}

let runs = 0;

async function runWorkflowScenario(options: WorkflowScenarioOptions, scenario: WorkflowScenario) {
  const work = await mkdtemp(join(tmpdir(), 'bench-workflow-'));
  const spoolDirectory = join(work, 'spool');
  await mkdir(spoolDirectory);
  progress(`${scenario.scenario}: sandbox with ${scenario.patientCount} patients`);
  const sandbox = await startSandbox({ patientCount: scenario.patientCount, spoolDirectory });
  try {
    const counts = scenario.types.map((type) => sandbox.dataset.count({ type }));
    const totalResources = counts.reduce((sum, count) => sum + count, 0);
    const resourcesPerFile = scenario.splitInto
      ? Math.ceil(totalResources / scenario.splitInto)
      : (scenario.faults.resourcesPerFile ?? 5000);
    const expectedFiles = counts.reduce((sum, count) => sum + Math.ceil(count / resourcesPerFile), 0);
    const expectedBytes = estimateBytes(sandbox.dataset, scenario.types, counts);
    // A real server writes its files while the export is "in progress"; give the sandbox time to
    // do the same, so that downloads measure transfers rather than the sandbox generating data.
    const generationSecondsPerMb = measureGeneration(sandbox.dataset);
    const jobDurationMs = Math.ceil(2 * (expectedBytes / 1e6) * generationSecondsPerMb * 1000) + 2_000;
    progress(
      `${scenario.scenario}: ≈${expectedFiles} files, ≈${(expectedBytes / 1e6).toFixed(0)} MB; the sandbox job takes ${(jobDurationMs / 1000).toFixed(0)} s to write them`,
    );

    const key = await ensureLocalKeyPair(join(work, 'keys'));
    const faults: FaultPlan = { ...scenario.faults, resourcesPerFile, jobDurationMs };
    const { clientId } = await sandbox.registerClient({ jwks: { keys: [key.publicJwk] }, faults });
    runs++;
    const bucket = `bench-workflow-${runs}`;
    await options.s3.createBucket(bucket);

    const spool = watchGrowth(spoolDirectory);
    const meter = startCpuMeter(options.s3Pid);
    const childArgs: WorkflowChildArgs = {
      label: scenario.scenario,
      source: {
        id: `bench-${runs}`,
        fhirBaseUrl: sandbox.baseUrl,
        clientId,
        privateKeyFile: key.privateKeyFile,
        allowInsecureHttp: true,
        export: scenario.export,
        maxConcurrency: scenario.mapConcurrency,
      },
      s3Endpoint: options.s3.endpoint,
      bucket,
    };
    const profile = options.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`] : [];
    const result = await runNodeChild<WorkflowChildResult>(
      [...profile, ...WORKFLOW_CHILD_COMMAND],
      [JSON.stringify(childArgs)],
    );
    const cpu = meter.stop();
    const spoolFinishedAt = await spool.stop();
    if (result.status !== 'SUCCEEDED') throw new Error(`${scenario.scenario} failed: ${result.error}`);

    await sandbox.settled();
    const log = sandbox.requestLog;
    const tokenRequests = log.filter((entry) => entry.path.endsWith('/auth/token')).length;
    const fileRequests = log.filter((entry) => entry.path.includes('/files/')).length;

    const round = (value: number, digits = 1) => Number(value.toFixed(digits));
    const mb = result.bytes / 1e6;
    const perThousandFiles = (value: number) => round((value * 1000) / result.files, 2);
    const perGb = (value: number) => round(value / (result.bytes / 1e9), 2);
    const transitions = result.transitions.total;
    const gbSeconds = result.lambda.gbSeconds;
    const cost = estimatedCostUsd(transitions, gbSeconds, result.lambda.requests);
    const s3Cost = s3RequestCostUsd(result.s3Requests);
    const s3RequestTotal = Object.values(result.s3Requests).reduce((sum, count) => sum + count, 0);
    const byFunction = Object.fromEntries(
      Object.entries(result.lambda.byFunction).map(([name, usage]) => [
        name,
        {
          invocations: usage.invocations,
          memoryMb: usage.memoryMb,
          medianMs: round(usage.medianMs, 0),
          gbSeconds: round(usage.gbSeconds, 2),
        },
      ]),
    );
    return JSON.stringify({
      scenario: scenario.scenario,
      files: result.files,
      bytes: result.bytes,
      lines: result.resources,
      mapConcurrency: scenario.mapConcurrency,
      seconds: round(result.seconds, 2),
      downloadSeconds: round(result.downloadSeconds, 2),
      mbPerSec: round(mb / result.downloadSeconds),
      filesPerSecond: round(result.files / result.downloadSeconds),
      // Wall time per file at this concurrency, and as if one file at a time.
      msPerFile: round((result.downloadSeconds * 1000) / result.files, 1),
      fileLatencyMs: round(
        (result.lambda.byFunction.DownloadFile?.medianMs ?? 0) +
          (result.lambda.byFunction.MintToken?.medianMs ?? 0),
        0,
      ),
      // Finalize verifies file by file (result GET + object HEAD): its time grows with the file count.
      finalizeSeconds: round((result.lambda.byFunction.FinalizeExport?.medianMs ?? 0) / 1000, 2),
      finalizeMsPerFile: round((result.lambda.byFunction.FinalizeExport?.medianMs ?? 0) / result.files, 2),
      stateTransitions: transitions,
      transitions: result.transitions,
      // The issue-15 targets: the largest execution history (AWS stops one at 25,000), Lambda
      // invocations and the Step Functions + Lambda cost, in all and per file.
      historyEvents: Math.max(...result.historyEvents.executions),
      historyEventsLargestChild: result.historyEvents.largestChild,
      executions: result.historyEvents.executions.length,
      lambdaInvocations: result.lambda.requests,
      costUsd: Number(cost.toPrecision(3)),
      perFile: {
        stateTransitions: round(transitions / result.files, 3),
        lambdaInvocations: round(result.lambda.requests / result.files, 3),
      },
      costUsdPerThousandFiles: Number(((cost * 1000) / result.files).toPrecision(3)),
      // Express children for the download Map instead of Standard ones: the children's transitions
      // priced as Express executions (their Lambda cost is the same either way).
      expressChildrenAlternative: {
        children: result.downloadChildren.count,
        standardChildrenCostUsd: Number(
          (result.downloadChildren.transitions * LIST_PRICES_USD.perStateTransition).toPrecision(3),
        ),
        expressChildrenCostUsd: Number(
          expressChildrenCostUsd(result.downloadChildren.spansMs).toPrecision(3),
        ),
        longestChildSeconds: round(Math.max(0, ...result.downloadChildren.spansMs) / 1000, 2),
      },
      lambdaGbSeconds: round(gbSeconds, 2),
      lambdaRequests: result.lambda.requests,
      lambda: byFunction,
      // Step Functions + Lambda (GB-s and requests); S3 requests are given apart.
      estimatedCostUsd: Number(cost.toPrecision(3)),
      s3Requests: result.s3Requests,
      s3RequestsPerFile: round(s3RequestTotal / result.files, 2),
      s3RequestsCostUsd: Number(s3Cost.toPrecision(3)),
      perThousandFiles: {
        stateTransitions: perThousandFiles(transitions),
        lambdaGbSeconds: perThousandFiles(gbSeconds),
        estimatedCostUsd: Number(((cost * 1000) / result.files).toPrecision(3)),
        s3RequestsCostUsd: Number(((s3Cost * 1000) / result.files).toPrecision(3)),
      },
      perGb: {
        stateTransitions: perGb(transitions),
        lambdaGbSeconds: perGb(gbSeconds),
        estimatedCostUsd: Number((cost / (result.bytes / 1e9)).toPrecision(3)),
      },
      invocations: result.invocations,
      tokenRequests,
      fileRequests,
      peakRssMb: result.peakRssMb,
      // CPU per MB landed: the process running every handler, the sandbox, and s3rver.
      cpuMsPerMb: round((result.cpuSeconds * 1000) / mb, 2),
      sandboxCpuMsPerMb: round((cpu.sandbox * 1000) / mb, 2),
      s3CpuMsPerMb: cpu.s3 === undefined ? null : round((cpu.s3 * 1000) / mb, 2),
      // Seconds the sandbox was still writing its files after downloads began (0 = none).
      sandboxSpoolOverlapSeconds: round(Math.max(0, spoolFinishedAt - result.downloadStartedAt) / 1000, 1),
      prices: LIST_PRICES_USD,
    });
  } finally {
    await sandbox.close();
    await rm(work, { recursive: true, force: true });
  }
}

/** Average line size of each type from a sample, times its count. */
function estimateBytes(
  dataset: Awaited<ReturnType<typeof startSandbox>>['dataset'],
  types: readonly ExportableType[],
  counts: readonly number[],
): number {
  let total = 0;
  types.forEach((type, index) => {
    let bytes = 0;
    let lines = 0;
    for (const line of dataset.lines({ type }, 0, 200)) {
      bytes += line.length + 1;
      lines++;
    }
    total += lines === 0 ? 0 : (bytes / lines) * (counts[index] ?? 0);
  });
  return total;
}

/** Seconds the sandbox needs to generate one MB of NDJSON, from a short sample. */
function measureGeneration(dataset: Awaited<ReturnType<typeof startSandbox>>['dataset']): number {
  const started = performance.now();
  let bytes = 0;
  for (const line of dataset.lines({ type: 'Observation' }, 0, 5_000)) bytes += line.length + 1;
  return (performance.now() - started) / 1000 / Math.max(1, bytes / 1e6);
}

/**
 * Watches the sandbox's spool folder; stop() says when a file last appeared
 * or grew (epoch ms). A file whose size held still between two samples is
 * not looked at again, so thousands of files cost few stat calls.
 */
function watchGrowth(directory: string) {
  const sizes = new Map<string, number>();
  const settled = new Set<string>();
  let lastGrowth = Date.now();
  let stopped = false;
  const sample = async () => {
    for (const folder of await readdir(directory).catch(() => [] as string[])) {
      const path = join(directory, folder);
      for (const name of await readdir(path).catch(() => [] as string[])) {
        const file = join(path, name);
        if (settled.has(file)) continue;
        const size = await stat(file).then(
          (info) => info.size,
          () => -1,
        );
        const before = sizes.get(file);
        if (before === undefined || size > before) lastGrowth = Date.now();
        else settled.add(file);
        sizes.set(file, size);
      }
    }
  };
  const loop = (async () => {
    while (!stopped) {
      await sample();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return lastGrowth;
    },
  };
}
