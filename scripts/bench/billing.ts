/**
 * What a local run would cost on AWS, derived from the execution events of
 * the real ASL run by the local runner: Step Functions Standard state
 * transitions, Lambda GB-seconds and requests, at public list prices.
 *
 * Pure: events in, numbers out.
 */
import type { EventLog } from '../local/runner.js';

/**
 * Public list prices (us-east-1, arm64) at the time of writing; free tiers
 * ignored. Check https://aws.amazon.com/step-functions/pricing/ and
 * https://aws.amazon.com/lambda/pricing/ before relying on them.
 */
export const LIST_PRICES_USD = Object.freeze({
  /** Step Functions Standard: $0.025 per 1,000 state transitions. */
  perStateTransition: 0.000_025,
  /** Lambda on arm64 (Graviton), first pricing tier: $0.0000133334 per GB-second. */
  perLambdaGbSecond: 0.0000133334,
  /** Lambda: $0.20 per million requests. */
  perLambdaRequest: 0.000_000_2,
  /** S3 Standard PUT, COPY, POST, LIST: $0.005 per 1,000 requests. */
  perS3WriteOrListRequest: 0.000_005,
  /** S3 Standard GET, HEAD and all other requests: $0.0004 per 1,000 (DELETE is free). */
  perS3ReadRequest: 0.000_000_4,
});

/**
 * Memory each function gets in the CDK app (infra/bulk-export-pipeline.ts,
 * TASK_FUNCTIONS): the downloader streams and hashes; Poll Status parses
 * manifests and Finalize verifies thousands of files; the rest only talk.
 */
export const LAMBDA_MEMORY_MB: Readonly<Record<string, number>> = Object.freeze({
  DownloadFile: 1024,
  PollStatus: 1024,
  VerifyFiles: 512,
  FinalizeExport: 512,
});
export const DEFAULT_LAMBDA_MEMORY_MB = 256;

/** The local runner's stand-in for a Distributed Map ItemReader: no state, no Lambda on AWS. */
const isLocalBridge = (stateName: string) => stateName.endsWith(' [ItemReader]');

export interface StateTransitions {
  /** What Standard bills: every state entered, every retry, every Distributed Map child started. */
  readonly total: number;
  /** States entered by the parent execution. */
  readonly parent: number;
  /** States entered inside Map child executions. */
  readonly children: number;
  /** Child workflow executions the Distributed Map started (one transition each). */
  readonly childExecutions: number;
  /** Retries of a state (each is billed as a transition). */
  readonly retries: number;
}

export function countStateTransitions(events: readonly EventLog[]): StateTransitions {
  let parent = 0;
  let children = 0;
  let childExecutions = 0;
  let retries = 0;
  for (const event of events) {
    if (event.type === 'MapIterationStarted') childExecutions++;
    if (!event.state || isLocalBridge(event.state.name)) continue;
    if (event.type === 'StateRetried') retries++;
    if (event.type !== 'StateEntered') continue;
    if (typeof event.index === 'number') children++;
    else parent++;
  }
  return { total: parent + children + childExecutions + retries, parent, children, childExecutions, retries };
}

export interface TaskDurations {
  /** Milliseconds of every Task visit, per function name. */
  readonly byFunction: ReadonlyMap<string, readonly number[]>;
}

/**
 * Task durations from the events: StateEntered to StateExited (or
 * StateFailed) of the same state in the same (parent or child) execution.
 * A visit that retried includes its backoff pauses: an overestimate, and
 * zero in a clean run.
 */
export function taskDurations(
  events: readonly EventLog[],
  functionOfState: ReadonlyMap<string, string>,
): TaskDurations {
  const open = new Map<string, number>();
  const byFunction = new Map<string, number[]>();
  for (const event of events) {
    const state = event.state;
    if (state?.type !== 'Task' || isLocalBridge(state.name)) continue;
    const key = `${typeof event.index === 'number' ? event.index : '-'}\n${state.name}`;
    if (event.type === 'StateEntered') {
      open.set(key, event.timestamp);
      continue;
    }
    if (event.type !== 'StateExited' && event.type !== 'StateFailed') continue;
    const started = open.get(key);
    if (started === undefined) continue;
    open.delete(key);
    const functionName = functionOfState.get(state.name) ?? state.name;
    let list = byFunction.get(functionName);
    if (!list) {
      list = [];
      byFunction.set(functionName, list);
    }
    list.push(event.timestamp - started);
  }
  return { byFunction };
}

export interface LambdaUsage {
  /** Sum over invocations of billed duration (whole ms, at least 1) × configured memory. */
  readonly gbSeconds: number;
  readonly requests: number;
  readonly byFunction: Readonly<
    Record<string, { invocations: number; memoryMb: number; gbSeconds: number; medianMs: number }>
  >;
}

export function lambdaUsage(durations: TaskDurations): LambdaUsage {
  let gbSeconds = 0;
  let requests = 0;
  const byFunction: Record<
    string,
    { invocations: number; memoryMb: number; gbSeconds: number; medianMs: number }
  > = {};
  for (const [functionName, list] of durations.byFunction) {
    const memoryMb = LAMBDA_MEMORY_MB[functionName] ?? DEFAULT_LAMBDA_MEMORY_MB;
    const billedMs = list.reduce((sum, ms) => sum + Math.max(1, Math.ceil(ms)), 0);
    const functionGbSeconds = (billedMs / 1000) * (memoryMb / 1024);
    gbSeconds += functionGbSeconds;
    requests += list.length;
    byFunction[functionName] = {
      invocations: list.length,
      memoryMb,
      gbSeconds: functionGbSeconds,
      medianMs: median(list),
    };
  }
  return { gbSeconds, requests, byFunction };
}

export function estimatedCostUsd(transitions: number, gbSeconds: number, requests: number): number {
  return (
    transitions * LIST_PRICES_USD.perStateTransition +
    gbSeconds * LIST_PRICES_USD.perLambdaGbSecond +
    requests * LIST_PRICES_USD.perLambdaRequest
  );
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Cost of S3 requests counted by method (PUT, POST, LIST, GET, HEAD, DELETE). */
export function s3RequestCostUsd(requests: Readonly<Record<string, number>>): number {
  let cost = 0;
  for (const [kind, count] of Object.entries(requests)) {
    if (kind === 'PUT' || kind === 'POST' || kind === 'LIST')
      cost += count * LIST_PRICES_USD.perS3WriteOrListRequest;
    else if (kind !== 'DELETE') cost += count * LIST_PRICES_USD.perS3ReadRequest;
  }
  return cost;
}

/**
 * Express child workflows, as an alternative for the download Map's children
 * (issue 15: measured, not adopted; see docs/performance.md). List prices,
 * us-east-1, at the time of writing: $1.00 per million executions, and
 * $0.00001667 per GB-second of duration billed in 100 ms steps at 64 MB (our
 * children carry small state). Check https://aws.amazon.com/step-functions/pricing/.
 */
export const EXPRESS_PRICES_USD = Object.freeze({
  perExecution: 0.000_001,
  perGbSecond: 0.000_016_67,
  billedMemoryGb: 64 / 1024,
  billedStepMs: 100,
});

/** Wall time of each child of `mapName` (MapIterationStarted to its end), in ms. */
export function mapChildSpans(events: readonly EventLog[], mapName: string): number[] {
  const started = new Map<number, number>();
  const spans: number[] = [];
  for (const event of events) {
    const parent = (event as { parentState?: { name?: string } }).parentState?.name;
    if (parent !== mapName || typeof event.index !== 'number') continue;
    if (event.type === 'MapIterationStarted') started.set(event.index, event.timestamp);
    else if (event.type === 'MapIterationSucceeded' || event.type === 'MapIterationFailed') {
      const at = started.get(event.index);
      if (at !== undefined) spans.push(event.timestamp - at);
      started.delete(event.index);
    }
  }
  return spans;
}

/** What the same children would cost as Express executions (their Lambda cost is the same either way). */
export function expressChildrenCostUsd(spansMs: readonly number[]): number {
  const { perExecution, perGbSecond, billedMemoryGb, billedStepMs } = EXPRESS_PRICES_USD;
  return spansMs.reduce((sum, ms) => {
    const billedSeconds = (Math.max(1, Math.ceil(ms / billedStepMs)) * billedStepMs) / 1000;
    return sum + perExecution + billedSeconds * billedMemoryGb * perGbSecond;
  }, 0);
}
