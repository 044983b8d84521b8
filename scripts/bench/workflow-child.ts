/**
 * One whole export in its own process: the real ASL run by the local runner
 * with the real handlers, from the sandbox (in the parent process) into the
 * embedded S3 (in its own); only Task timeouts are lifted to Lambda's (see
 * withLambdaTimeouts). Every "Lambda" of the run shares this process,
 * as the local runner runs them. Prints progress on stderr and one JSON
 * result on stdout, derived from the execution events:
 *
 *   node --import tsx scripts/bench/workflow-child.ts <json>
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import type { Receipt } from '../../lambdas/core/receipt.js';
import { adaptDefinitionForLocalRun } from '../local/asl-adapter.js';
import { embeddedS3ClientConfig } from '../local/embedded-s3.js';
import { DEFINITION_PATH, type EventLog, runExportLocally } from '../local/runner.js';
import { createLocalRuntime } from '../local/runtime.js';
import {
  countStateTransitions,
  lambdaUsage,
  mapChildSpans,
  type StateTransitions,
  taskDurations,
} from './billing.js';

export interface WorkflowChildArgs {
  readonly label: string;
  /** The source file's JSON. */
  readonly source: Record<string, unknown> & { readonly id: string };
  readonly s3Endpoint: string;
  readonly bucket: string;
}

export interface WorkflowChildResult {
  readonly status: 'SUCCEEDED' | 'FAILED' | 'ABORTED';
  readonly error?: string;
  /** Files that landed: output, error and deleted. */
  readonly files: number;
  readonly bytes: number;
  readonly resources: number;
  /** The whole execution, kick-off and polling included. */
  readonly seconds: number;
  /** The Download Files Map state alone. */
  readonly downloadSeconds: number;
  /** Epoch ms when the Map state was entered (same clock as the parent's). */
  readonly downloadStartedAt: number;
  readonly transitions: StateTransitions;
  readonly lambda: ReturnType<typeof lambdaUsage>;
  readonly invocations: Readonly<Record<string, number>>;
  /** Each execution's history events as AWS would write them, and the largest Map child's. */
  readonly historyEvents: { readonly executions: readonly number[]; readonly largestChild: number };
  /** The first download pass's children: how many, their state transitions, and each one's wall time. */
  readonly downloadChildren: {
    readonly count: number;
    readonly transitions: number;
    readonly spansMs: readonly number[];
  };
  /** S3 API requests the handlers made, by S3 pricing class (see countingS3Config). */
  readonly s3Requests: Readonly<Record<string, number>>;
  readonly peakRssMb: number;
  readonly cpuSeconds: number;
}

const args = JSON.parse(process.argv[2] ?? '{}') as WorkflowChildArgs;
const say = (message: string) => process.stderr.write(`[bench] ${args.label}: ${message}\n`);

let filesDone = 0;
let bytesDone = 0;
let lastReport = Date.now();
const started = Date.now();
const cpuBefore = process.cpuUsage();

const s3Requests: Record<string, number> = {};

/**
 * The embedded S3 settings with a request handler that counts every request
 * on its way out, by what S3 bills: PUT/POST/LIST, GET/HEAD, DELETE.
 */
function countingS3Config(endpoint: string) {
  const config = embeddedS3ClientConfig(endpoint);
  const base = new S3Client(config).config.requestHandler as unknown as object;
  const requestHandler = new Proxy(base, {
    get(target, property) {
      const value = Reflect.get(target, property) as unknown;
      if (typeof value !== 'function') return value;
      if (property !== 'handle') return value.bind(target);
      return (
        request: { method: string; path: string; query?: Record<string, unknown> },
        options: unknown,
      ) => {
        const bucketLevel = request.path.replace(/^\/[^/]+\/?/, '') === '';
        const kind =
          request.method === 'GET' && bucketLevel
            ? 'LIST'
            : request.method === 'DELETE'
              ? 'DELETE'
              : request.method;
        s3Requests[kind] = (s3Requests[kind] ?? 0) + 1;
        return value.call(target, request, options);
      };
    },
  });
  return { ...config, requestHandler };
}

/** Lambda's own ceiling: what bounds a Task on AWS when its state sets no TimeoutSeconds. */
const LAMBDA_MAX_TIMEOUT_SECONDS = 900;

/**
 * The ASL file as it is, except that every Task without a TimeoutSeconds gets
 * Lambda's 15-minute ceiling. aws-local-stepfunctions otherwise times a Task
 * out after 60 s, which AWS does not do: a Finalize of 20,000 files or a
 * gigabyte file on this machine takes longer than that.
 */
function withLambdaTimeouts(machine: Record<string, unknown>): Record<string, unknown> {
  const states = machine.States as Record<string, Record<string, unknown>>;
  for (const state of Object.values(states)) {
    if (
      state.Type === 'Task' &&
      state.TimeoutSeconds === undefined &&
      state.TimeoutSecondsPath === undefined
    ) {
      state.TimeoutSeconds = LAMBDA_MAX_TIMEOUT_SECONDS;
    }
    const processor = (state.ItemProcessor ?? state.Iterator) as Record<string, unknown> | undefined;
    if (processor) withLambdaTimeouts(processor);
  }
  return machine;
}

const definition = JSON.parse(await readFile(DEFINITION_PATH, 'utf8')) as Record<string, unknown>;
const scratch = await mkdtemp(join(tmpdir(), 'bench-asl-'));
const definitionPath = join(scratch, 'bulk-export.asl.json');
await writeFile(definitionPath, JSON.stringify(withLambdaTimeouts(definition)));

const local = createLocalRuntime({
  sources: [{ raw: args.source, origin: 'bench source' }],
  s3ClientConfig: countingS3Config(args.s3Endpoint),
  bucket: args.bucket,
  progress: (event) => {
    if (event.kind === 'phase') {
      say(`${event.phase}${event.detail ? `: ${event.detail}` : ''}`);
      return;
    }
    if (event.kind !== 'file-done') return;
    filesDone++;
    bytesDone += event.bytes;
    if (Date.now() - lastReport >= 5_000) {
      lastReport = Date.now();
      const seconds = (lastReport - started) / 1000;
      say(`${filesDone} files, ${(bytesDone / 1e6).toFixed(0)} MB landed after ${seconds.toFixed(0)} s`);
    }
  },
});
let receipt: Receipt | undefined;
const run = await (async () => {
  try {
    const run = await runExportLocally({
      runtime: local.runtime,
      input: { sourceId: args.source.id },
      definitionPath,
    });
    const output = run.output as { receiptKey?: string } | undefined;
    if (run.status === 'SUCCEEDED' && output?.receiptKey) {
      receipt = await local.runtime.store.getJson<Receipt>(output.receiptKey);
    }
    return run;
  } finally {
    await local.close();
    await rm(scratch, { recursive: true, force: true });
  }
})();
const seconds = (Date.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);

const { taskFunctions } = adaptDefinitionForLocalRun(definition);
const events: readonly EventLog[] = run.events;
const isMapEvent = (event: EventLog, type: string) =>
  event.type === type && event.state?.name === 'Download Files' && typeof event.index !== 'number';
const mapEntered = events.find((event) => isMapEvent(event, 'StateEntered'))?.timestamp ?? 0;
const mapExited = events.find((event) => isMapEvent(event, 'StateExited'))?.timestamp ?? mapEntered;

/** The Download Files Map's children: the part Express child workflows could replace. */
function downloadChildren(all: readonly EventLog[]): WorkflowChildResult['downloadChildren'] {
  const map = (definition.States as Record<string, { ItemProcessor?: { States: object } }>)['Download Files'];
  const inMap = new Set(Object.keys(map?.ItemProcessor?.States ?? {}));
  const spansMs = mapChildSpans(all, 'Download Files');
  // One transition to start each child, then every state it entered (retries included).
  let transitions = spansMs.length;
  for (const event of all) {
    if (typeof event.index !== 'number' || !event.state || !inMap.has(event.state.name)) continue;
    if (event.type === 'StateEntered' || event.type === 'StateRetried') transitions++;
  }
  return { count: spansMs.length, transitions, spansMs };
}

const result: WorkflowChildResult = {
  status: run.status,
  ...(run.status !== 'SUCCEEDED' ? { error: `${run.error}: ${run.cause}` } : {}),
  files: receipt ? receipt.totals.files + receipt.errors.files + receipt.deleted.files : filesDone,
  bytes: receipt?.totals.bytes ?? bytesDone,
  resources: receipt?.totals.resources ?? 0,
  seconds,
  downloadSeconds: (mapExited - mapEntered) / 1000,
  downloadStartedAt: mapEntered,
  transitions: countStateTransitions(events),
  lambda: lambdaUsage(taskDurations(events, taskFunctions)),
  invocations: run.invocations,
  downloadChildren: downloadChildren(events),
  historyEvents: {
    executions: run.executions.map((execution) => execution.historyEvents.execution),
    largestChild: Math.max(0, ...run.executions.map((execution) => execution.historyEvents.largestChild)),
  },
  s3Requests,
  peakRssMb: Math.round((process.resourceUsage().maxRSS * 1024) / 1e6),
  cpuSeconds: (cpu.user + cpu.system) / 1e6,
};
process.stdout.write(`${JSON.stringify(result)}\n`);
