import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { StateMachine } from 'aws-local-stepfunctions';
import { TASK_HANDLER_FACTORIES } from '../../lambdas/handlers/registry.js';
import type { InvocationContext } from '../../lambdas/middleware.js';
import type { Runtime } from '../../lambdas/runtime.js';
import {
  adaptDefinitionForLocalRun,
  batchItems,
  type ItemBatcherSettings,
  LOCAL_ITEM_READER_FUNCTION,
  LOCAL_START_EXECUTION_FUNCTION,
  retryingStateNames,
  taskTimeouts,
  waitStateNames,
  withLocalTaskTimeouts,
} from './asl-adapter.js';
import { countHistoryEvents, type HistoryEventCounts } from './history-events.js';
import { fenceRuntime, InvocationScope, runInScope } from './invocation-scope.js';

/** One execution event from the local library (its type is not exported). */
export interface EventLog {
  readonly type: string;
  readonly timestamp: number;
  readonly state?: {
    readonly name: string;
    readonly type: string;
    readonly input?: unknown;
    readonly output?: unknown;
  };
  readonly Error?: string;
  readonly Cause?: string;
  readonly [key: string]: unknown;
}

export const DEFINITION_PATH = fileURLToPath(
  new URL('../../state-machines/bulk-export.asl.json', import.meta.url),
);
/** Started by the execution status change of a run that ended without succeeding. */
export const CLEAN_UP_DEFINITION_PATH = fileURLToPath(
  new URL('../../state-machines/clean-up-ended-export.asl.json', import.meta.url),
);

export interface LocalRunOptions {
  readonly runtime: Runtime;
  readonly input: unknown;
  /** @default `<sourceId>-local-<uuid>` */
  readonly executionName?: string;
  /** Each Wait state lasts this many ms instead of its real seconds (tests). @default real waits */
  readonly waitOverrideMs?: number;
  /** Each Retry pauses this many ms instead of its real interval (tests). @default real intervals */
  readonly retryOverrideMs?: number;
  /** How long one simulated Lambda invocation may run (getRemainingTimeInMillis). @default 15 min */
  readonly invocationTimeoutMs?: number | ((functionName: string) => number);
  /**
   * Simulated hard timeouts: a Lambda killed at its timeout, or a Task past
   * its `TimeoutSeconds` (which is honoured the same way). Return when to
   * kill this invocation, or undefined to let it run. A killed invocation
   * fails with `error` and is fenced: whatever it still tries afterwards (S3,
   * HTTP, sleep) fails, so it never writes (see invocation-scope.ts).
   */
  readonly killInvocation?: (invocation: InvocationInfo) => SimulatedKill | undefined;
  /**
   * Called as each Task invocation is about to start; the handler starts once it has settled
   * (and fails with its error if it throws). For tests that change the world at one exact step
   * of the workflow: revoke a token just before the kick-off, take S3 away as downloads start.
   */
  readonly beforeInvocation?: (invocation: InvocationInfo) => void | Promise<void>;
  /** Every execution event, as it happens. */
  readonly onEvent?: (event: EventLog) => void;
  readonly definitionPath?: string;
  /**
   * Stops the execution, as StopExecution does: no further state starts, and
   * every invocation still running is killed (fenced: it can no longer write,
   * as a frozen Lambda sandbox). The run ends ABORTED.
   */
  readonly signal?: AbortSignal;
  /**
   * Runs the execution again from the state where an earlier run of it
   * failed, with the input that state had (see RedrivePoint): what
   * RedriveExecution does on AWS, where the history keeps that input.
   */
  readonly redrive?: RedrivePoint;
}

/**
 * Where a failed run can be redriven from: the top-level state that failed,
 * and the input it was given. AWS re-runs a failed Distributed Map's failed
 * children only; locally the whole Map runs again, and Download Batch skips
 * every file that already has a verified result, so the same files are
 * downloaded again: those without one.
 */
export interface RedrivePoint {
  readonly stateName: string;
  readonly input: unknown;
}

export interface InvocationInfo {
  readonly stateName: string;
  readonly functionName: string;
  /** 1 for the first invocation of this function in the execution. */
  readonly invocation: number;
  readonly input: unknown;
}

export interface SimulatedKill {
  readonly afterMs: number;
  /**
   * What Step Functions reports: `States.Timeout` past TimeoutSeconds; a
   * Lambda timeout shows as `Sandbox.Timedout` or `Lambda.Unknown`.
   * @default 'States.Timeout'
   */
  readonly error?: string;
}

export interface LocalRunResult {
  readonly status: 'SUCCEEDED' | 'FAILED' | 'ABORTED';
  /** A failed run: where a redrive would start. */
  readonly redrivePoint?: RedrivePoint;
  readonly executionName: string;
  readonly output?: unknown;
  readonly error?: string;
  readonly cause?: string;
  readonly events: readonly EventLog[];
  /** Task invocations per function name. */
  readonly invocations: Readonly<Record<string, number>>;
  /** Invocations killed by `killInvocation` or a `TimeoutSeconds`. */
  readonly killed: readonly Omit<InvocationInfo, 'input'>[];
  /**
   * Every execution of the run in order: one, unless the export continued in
   * new executions (history budget). `executionName`, status, output and
   * redrivePoint above are the last one's; events, invocations and killed
   * cover them all.
   */
  readonly executions: readonly LocalExecutionSummary[];
  /** The last execution's input: a continuation's carries the export it continues. */
  readonly lastInput: unknown;
  /**
   * The export's name: its first execution's, which names its work area,
   * lock and receipt in every execution it continues in.
   */
  readonly exportName: string;
}

/**
 * Runs state-machines/bulk-export.asl.json with the real handlers, in
 * process. See asl-adapter.ts for the only two things it changes. It returns
 * once every invocation it started has settled (a failed Map leaves siblings
 * running, as on AWS), so the bucket is at rest when the caller looks.
 */
/** A fresh execution name for a local run: known before the run, so a log file can carry it. */
export function localExecutionName(sourceId: string): string {
  return `${sourceId}-local-${randomUUID().slice(0, 8)}`;
}

export async function runExportLocally(options: LocalRunOptions): Promise<LocalRunResult> {
  const executions: LocalExecutionSummary[] = [];
  const events: EventLog[] = [];
  const invocations: Record<string, number> = {};
  const killed: Omit<InvocationInfo, 'input'>[] = [];
  let current: LocalRunOptions = options;
  for (;;) {
    const started: ContinuationStart[] = [];
    const run = await runOneExecution(current, started);
    executions.push({
      executionName: run.executionName,
      status: run.status,
      historyEvents: countHistoryEvents(run.events, run.sdkTasks),
    });
    events.push(...run.events);
    for (const [name, count] of Object.entries(run.invocations)) {
      invocations[name] = (invocations[name] ?? 0) + count;
    }
    killed.push(...run.killed);
    const next = started.at(-1);
    // On AWS the execution that handed over has succeeded; the one it started goes on with the export.
    if (run.status !== 'SUCCEEDED' || !next || options.signal?.aborted) {
      const { sdkTasks: _sdk, ...result } = run;
      return {
        ...result,
        exportName: executions[0]!.executionName,
        events,
        invocations,
        killed,
        executions,
        lastInput: current.input,
      };
    }
    // A fresh execution of the same definition: from the top, under the name it was given.
    const { redrive: _redrive, executionName: _name, ...rest } = current;
    current = {
      ...rest,
      executionName: next.name,
      input: next.input,
    };
  }
}

/** A StartExecution the workflow asked for (an export continuing in a new execution). */
interface ContinuationStart {
  readonly name: string;
  readonly input: unknown;
}

/** One execution of a chain (an export that continued in new executions has several). */
export interface LocalExecutionSummary {
  readonly executionName: string;
  readonly status: LocalRunResult['status'];
  /** What AWS would have written into this execution's history (scripts/local/history-events.ts). */
  readonly historyEvents: HistoryEventCounts;
}

async function runOneExecution(
  options: LocalRunOptions,
  continuations: ContinuationStart[],
): Promise<
  Omit<LocalRunResult, 'executions' | 'lastInput' | 'exportName'> & { readonly sdkTasks: ReadonlySet<string> }
> {
  const raw = JSON.parse(await readFile(options.definitionPath ?? DEFINITION_PATH, 'utf8')) as {
    StartAt: string;
    States: Record<string, unknown>;
  };
  if (options.redrive) {
    if (!(options.redrive.stateName in raw.States)) {
      throw new Error(
        `cannot redrive from "${options.redrive.stateName}": the definition has no such top-level state`,
      );
    }
    // The definition as written is validated; the redrive's copy only starts elsewhere, which
    // leaves the states before it unreachable, and the validator refuses that.
    new StateMachine(withLocalTaskTimeouts(adaptDefinitionForLocalRun(raw).definition) as never, {
      validationOptions: { checkArn: false },
    });
    raw.StartAt = options.redrive.stateName;
  }
  const { definition, taskFunctions } = adaptDefinitionForLocalRun(raw);
  const sourceId = (options.input as { sourceId?: unknown } | null)?.sourceId;
  const executionName =
    options.executionName ?? localExecutionName(typeof sourceId === 'string' ? sourceId : 'export');

  const invocations: Record<string, number> = {};
  const killed: Omit<InvocationInfo, 'input'>[] = [];
  const sdkTasks = new Set(
    [...taskFunctions].filter(([, name]) => name === LOCAL_START_EXECUTION_FUNCTION).map(([state]) => state),
  );
  const inFlight = new Set<Promise<void>>();
  const runningScopes = new Set<InvocationScope>();
  const timeouts = taskTimeouts(definition);
  const runtime = fenceRuntime(options.runtime);
  const handlers: Record<string, (input: unknown) => Promise<unknown>> = {};
  const built = new Map<string, (event: unknown, context: InvocationContext) => Promise<unknown>>();
  for (const [stateName, functionName] of taskFunctions) {
    let handler = built.get(functionName);
    if (!handler) {
      handler =
        functionName === LOCAL_ITEM_READER_FUNCTION
          ? itemReader(runtime)
          : functionName === LOCAL_START_EXECUTION_FUNCTION
            ? startExecution(continuations)
            : buildTask(functionName, runtime);
      built.set(functionName, handler);
    }
    const invoke = handler;
    handlers[stateName] = async (input) => {
      const invocation = (invocations[functionName] ?? 0) + 1;
      invocations[functionName] = invocation;
      // A round trip through JSON, as Lambda does: no Dates or undefined sneak between states.
      const event = JSON.parse(JSON.stringify(input)) as unknown;
      await options.beforeInvocation?.({ stateName, functionName, invocation, input: event });
      const started = Date.now();
      const timeout =
        typeof options.invocationTimeoutMs === 'function'
          ? options.invocationTimeoutMs(functionName)
          : (options.invocationTimeoutMs ?? 15 * 60_000);
      const context: InvocationContext = {
        awsRequestId: randomUUID(),
        getRemainingTimeInMillis: () => Math.max(0, timeout - (Date.now() - started)),
      };
      const scope = new InvocationScope(`${stateName} (${functionName} invocation ${invocation})`);
      if (options.signal?.aborted)
        throw Object.assign(new Error('the execution was stopped'), { name: 'States.Aborted' });
      const running = runInScope(scope, () => invoke(event, context));
      runningScopes.add(scope);
      const settled = running.then(
        () => undefined,
        () => undefined,
      );
      inFlight.add(settled);
      void settled.then(() => {
        inFlight.delete(settled);
        runningScopes.delete(scope);
      });

      const plan = options.killInvocation?.({ stateName, functionName, invocation, input: event });
      const stateTimeoutMs = timeouts.get(stateName);
      const kill =
        stateTimeoutMs !== undefined && (plan === undefined || stateTimeoutMs < plan.afterMs)
          ? { afterMs: stateTimeoutMs, error: 'States.Timeout' }
          : plan;
      const result = (value: unknown) => JSON.parse(JSON.stringify(value ?? null)) as unknown;
      if (kill === undefined) return running.then(result);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          scope.kill(`killed after ${kill.afterMs} ms`);
          killed.push({ stateName, functionName, invocation });
          const seconds = (kill.afterMs / 1000).toFixed(2);
          reject(
            Object.assign(new Error(`Task timed out after ${seconds} seconds (${stateName}, simulated)`), {
              name: kill.error ?? 'States.Timeout',
            }),
          );
        }, kill.afterMs);
        running.then(
          (value) => {
            clearTimeout(timer);
            resolve(result(value));
          },
          (error: unknown) => {
            clearTimeout(timer);
            reject(error);
          },
        );
      });
    };
  }

  const overrides: Record<string, unknown> = { taskResourceLocalHandlers: handlers };
  if (options.waitOverrideMs !== undefined) {
    overrides.waitTimeOverrides = Object.fromEntries(
      waitStateNames(definition).map((name) => [name, options.waitOverrideMs]),
    );
  }
  if (options.retryOverrideMs !== undefined) {
    overrides.retryIntervalOverrides = Object.fromEntries(
      retryingStateNames(definition).map((name) => [name, options.retryOverrideMs]),
    );
  }
  const machine = new StateMachine(withLocalTaskTimeouts(definition) as never, {
    validationOptions: options.redrive ? { noValidate: true } : { checkArn: false },
  });
  const startTime = new Date().toISOString();
  const execution = machine.run((options.redrive ? options.redrive.input : options.input) as never, {
    overrides: overrides as never,
    context: {
      Execution: {
        Id: `arn:aws:states:local:000000000000:execution:bulk-export:${executionName}`,
        Name: executionName,
        Input: options.input,
        StartTime: startTime,
        RoleArn: 'arn:aws:iam::000000000000:role/local',
      },
      StateMachine: { Id: 'arn:aws:states:local:000000000000:stateMachine:bulk-export', Name: 'bulk-export' },
    } as never,
  });

  const events: EventLog[] = [];
  const collecting = (async () => {
    for await (const logged of execution.eventLogs) {
      const event = logged as unknown as EventLog;
      events.push(event);
      options.onEvent?.(event);
    }
  })();
  const atRest = async () => {
    while (inFlight.size > 0) await Promise.all(inFlight);
  };
  let aborted = false;
  const stop = () => {
    aborted = true;
    execution.abort();
    for (const scope of runningScopes) scope.kill('the execution was stopped');
  };
  if (options.signal?.aborted) stop();
  else options.signal?.addEventListener('abort', stop, { once: true });
  try {
    const output = await execution.result;
    await collecting;
    await atRest();
    return { status: 'SUCCEEDED', executionName, output, events, invocations, killed, sdkTasks };
  } catch (error) {
    await collecting.catch(() => undefined);
    await atRest();
    options.signal?.removeEventListener('abort', stop);
    if (aborted) {
      return {
        status: 'ABORTED',
        executionName,
        error: 'States.Aborted',
        cause: 'stopped locally (Ctrl-C, a signal, or npm run cancel)',
        events,
        invocations,
        killed,
        sdkTasks,
      };
    }
    const failure = error as { name?: string; message?: string; cause?: unknown };
    const redrivePoint = findRedrivePoint(events, raw.States);
    const failed = [...events].reverse().find((event) => event.type === 'ExecutionFailed') as
      | { Error?: string; Cause?: string }
      | undefined;
    return {
      status: 'FAILED',
      executionName,
      error: failed?.Error ?? failure.name ?? 'Error',
      cause: failed?.Cause ?? failure.message ?? String(error),
      ...(redrivePoint ? { redrivePoint } : {}),
      events,
      invocations,
      killed,
      sdkTasks,
    };
  }
}

/**
 * The top-level state that failed last, and the input it was entered with.
 * A Map bridged with an `[ItemReader]` Task is entered through that Task:
 * its input is the Map's input as AWS records it.
 */
function findRedrivePoint(
  events: readonly EventLog[],
  topLevel: Record<string, unknown>,
): RedrivePoint | undefined {
  const failed = [...events]
    .reverse()
    .find(
      (event) =>
        event.type === 'StateFailed' &&
        event.state?.name !== undefined &&
        stateOf(event.state.name, topLevel),
    );
  if (!failed?.state) return undefined;
  const stateName = stateOf(failed.state.name, topLevel)!;
  const lastEntered = (name: string) =>
    [...events].reverse().find((event) => event.type === 'StateEntered' && event.state?.name === name);
  const entered = lastEntered(`${stateName} [ItemReader]`) ?? lastEntered(stateName);
  return entered?.state ? { stateName, input: entered.state.input } : undefined;
}

function stateOf(name: string, topLevel: Record<string, unknown>): string | undefined {
  const base = name.endsWith(' [ItemReader]') ? name.slice(0, -' [ItemReader]'.length) : name;
  return base in topLevel ? base : undefined;
}

function buildTask(functionName: string, runtime: Runtime) {
  const factory = TASK_HANDLER_FACTORIES[functionName];
  if (!factory) throw new Error(`the definition calls function ${functionName}, which has no handler`);
  return factory(runtime) as (event: unknown, context: InvocationContext) => Promise<unknown>;
}

/**
 * What StartExecution answers; the runner starts the execution once this one
 * has ended (locally one execution runs at a time, and the one that hands
 * over ends right after). The same name twice is AWS's idempotent start.
 */
function startExecution(started: ContinuationStart[]) {
  return async (event: unknown) => {
    const { Name, Input } = (event ?? {}) as { Name?: unknown; Input?: unknown };
    if (typeof Name !== 'string' || Name.length === 0 || Name.length > 80) {
      throw Object.assign(new Error(`StartExecution: Name must be 1 to 80 characters, got ${String(Name)}`), {
        name: 'StepFunctions.InvalidNameException',
      });
    }
    const input = typeof Input === 'string' ? (JSON.parse(Input) as unknown) : Input;
    if (!started.some((start) => start.name === Name)) started.push({ name: Name, input });
    return {
      ExecutionArn: `arn:aws:states:local:000000000000:execution:bulk-export:${Name}`,
      StartDate: new Date().toISOString(),
    };
  };
}

/** What Step Functions' ItemReader does for a JSON array in S3. */
function itemReader(runtime: Runtime) {
  return async (event: unknown) => {
    const { Bucket, Key, ItemBatcher } = event as {
      Bucket?: string;
      Key?: string;
      ItemBatcher?: ItemBatcherSettings;
    };
    if (Bucket !== runtime.store.bucket || !Key) {
      throw Object.assign(new Error(`ItemReader can only read the export bucket; got ${Bucket}/${Key}`), {
        name: 'States.ItemReaderFailed',
      });
    }
    const items = await runtime.store.getJson<unknown>(Key);
    if (!Array.isArray(items)) {
      throw Object.assign(new Error(`ItemReader: s3://${Bucket}/${Key} is not a JSON array`), {
        name: 'States.ItemReaderFailed',
      });
    }
    return ItemBatcher ? batchItems(items, ItemBatcher) : items;
  };
}
