/**
 * A Standard execution stops at 25,000 history events, and each poll cycle
 * (Wait, Mint Token, Poll Status, Choice) adds 14 of them: polling every 5 s
 * reaches the limit in about 2.5 hours, although an Epic export may take
 * days. An export therefore counts, as a safe upper bound, the events its
 * execution has used, and before the budget is spent it continues in a new
 * execution that carries its state (see state-machines/README.md,
 * "Continuation"). The same count bounds each chunk's child execution.
 *
 * Pure: numbers in, numbers out.
 */

/** What AWS allows one Standard execution (Step Functions quotas: "Maximum execution history size"). */
export const AWS_HISTORY_EVENT_LIMIT = 25_000;

/**
 * Where an execution hands over by default. The 10,000 events between this
 * and AWS's limit absorb what the estimate does not count: Lambda retries of
 * Mint Token and Poll Status (3 events each: failed, scheduled, started) and
 * the states after polling (downloads, Finalize, completion: about 60).
 */
export const DEFAULT_HISTORY_EVENT_BUDGET = 15_000;

/** Task state: entered, scheduled, started, succeeded, exited. */
const TASK_EVENTS = 5;
/** Wait, Choice and Pass states: entered, exited. */
const FLOW_EVENTS = 2;

/** Wait For Export, Mint Token For Status, Poll Export Status, Is Export Complete? */
export const EVENTS_PER_POLL_CYCLE = FLOW_EVENTS + TASK_EVENTS + TASK_EVENTS + FLOW_EVENTS;

/**
 * allowPartialManifests: a poll that listed new files runs Download Partial Files before the next
 * Wait. A Distributed Map's children are executions of their own; the parent's history has the
 * Map's entered, MapRunStarted, MapRunSucceeded (or Failed) and exited, counted with a margin.
 */
export const EVENTS_PER_PARTIAL_DOWNLOAD = 6;

/**
 * Everything an execution does before its first poll, as an upper bound:
 * started, Prepare Export, Is It Chunked?, Start Kick-Off, one kick-off cycle
 * per attempt (a Wait and Mint, Kick Off, Choice), Start Polling; a chunk
 * child: the same shape without Prepare. A continuation restores its state
 * with one Pass instead of kicking off, which costs less.
 */
export function eventsBeforePolling(kickOffAttempts: number): number {
  const setUp = 1 + TASK_EVENTS + FLOW_EVENTS + FLOW_EVENTS;
  const kickOffCycle = FLOW_EVENTS + TASK_EVENTS + TASK_EVENTS + FLOW_EVENTS;
  return setUp + kickOffCycle * Math.max(1, kickOffAttempts) + FLOW_EVENTS;
}

/**
 * The history an execution will have used once the poll now answered is
 * through its Choice: the previous poll's count (or the set-up's, on the
 * first poll) plus one cycle.
 */
export function historyAfterPoll(previous: number | undefined, kickOffAttempts: number): number {
  return (previous ?? eventsBeforePolling(kickOffAttempts)) + EVENTS_PER_POLL_CYCLE;
}

/**
 * True when one more poll cycle would pass the budget: the execution hands
 * over now, while the states that end an execution still fit.
 */
export function shouldContinueAsNew(historyEvents: number, budget: number): boolean {
  return historyEvents + EVENTS_PER_POLL_CYCLE > budget;
}

/** Longest Step Functions execution name. */
const MAX_EXECUTION_NAME = 80;

/**
 * The name of an export's `number`th continuation: deterministic, so a
 * StartExecution retried after a lost answer finds the execution it already
 * started (same name and input: AWS answers with it) instead of starting a
 * second. The export keeps its first execution's name everywhere else (work
 * area, lock, receipt); only the Step Functions execution is renamed.
 */
export function continuationExecutionName(exportName: string, number: number): string {
  if (!Number.isInteger(number) || number < 1) {
    throw new RangeError(`a continuation is numbered from 1, got ${number}`);
  }
  const suffix = `-cont-${number}`;
  return `${exportName.slice(0, MAX_EXECUTION_NAME - suffix.length)}${suffix}`;
}

/**
 * A job that has run for hours will not finish in the next 5 s: the wait
 * grows with the job's age (up to the source's ceiling), so a job that the
 * server finishes at any time is noticed at most this fraction of its age
 * late. The IG lets a client poll less often than Retry-After asks (it is a
 * lower bound that clients SHOULD honour, and exponential backoff is
 * recommended); a week-long Epic export then polls ~2,200 times instead of
 * ~121,000.
 */
export const POLL_LATENESS_FRACTION = 0.02;

/** The wait the server asked for (clamped already), stretched by the job's age. */
export function politeWaitSeconds(
  waitSeconds: number,
  jobAgeSeconds: number,
  ceilingSeconds: number,
): number {
  const byAge = Math.floor(Math.max(0, jobAgeSeconds) * POLL_LATENESS_FRACTION);
  return Math.max(waitSeconds, Math.min(Math.max(waitSeconds, ceilingSeconds), byAge));
}
