/**
 * How many events AWS would write into the execution history for a local
 * run, from the local runner's event log: what the 25,000-event limit of a
 * Standard execution applies to (lambdas/core/history-budget.ts). The model
 * is AWS's history as it appears in GetExecutionHistory:
 *
 * - the execution: ExecutionStarted and ExecutionSucceeded/Failed/Aborted;
 * - a Lambda Task: TaskStateEntered, LambdaFunctionScheduled, …Started,
 *   …Succeeded, TaskStateExited (5); an SDK integration (StartExecution) has
 *   TaskScheduled, TaskStarted, TaskSubmitted, TaskSucceeded (6);
 * - each retry: the failure, then Scheduled and Started again (3);
 * - Pass, Choice, Wait, Succeed, Fail: entered and exited (2);
 * - a Distributed Map in its parent: MapStateEntered, MapRunStarted,
 *   MapRunSucceeded, MapStateExited (4); each child is an execution with a
 *   history of its own.
 *
 * The local `[ItemReader]` bridge Task is not a state on AWS and counts nothing.
 */
import type { EventLog } from './runner.js';

const isLocalBridge = (name: string) => name.endsWith(' [ItemReader]');

export interface HistoryEventCounts {
  /** The execution itself. */
  readonly execution: number;
  /** The largest Distributed Map child's history (a chunk that polled longest), 0 without children. */
  readonly largestChild: number;
  readonly children: number;
}

/**
 * `sdkTasks`: the Task states that call an AWS API rather than a Lambda
 * (locally bridged to a stand-in; see asl-adapter.ts).
 */
export function countHistoryEvents(
  events: readonly EventLog[],
  sdkTasks: ReadonlySet<string> = new Set(),
): HistoryEventCounts {
  let execution = 2;
  const children = new Map<string, number>();
  // The Map each child belongs to: inner state names are unique to their Map's processor.
  let currentMap = '';
  for (const event of events) {
    if (event.type === 'MapIterationStarted') {
      const parent = (event as { parentState?: { name?: string } }).parentState?.name ?? '';
      currentMap = parent;
      const key = `${parent}\n${String(event.index)}`;
      // ExecutionStarted and ExecutionSucceeded of the child execution.
      if (!children.has(key)) children.set(key, 2);
      continue;
    }
    const state = event.state;
    if (!state || isLocalBridge(state.name)) continue;
    const cost =
      eventCost(event.type, state.type) + (event.type === 'StateEntered' && sdkTasks.has(state.name) ? 1 : 0);
    if (cost === 0) continue;
    if (typeof event.index === 'number') {
      const key = `${currentMap}\n${String(event.index)}`;
      children.set(key, (children.get(key) ?? 2) + cost);
    } else {
      execution += cost;
    }
  }
  return {
    execution,
    largestChild: Math.max(0, ...children.values()),
    children: children.size,
  };
}

function eventCost(eventType: string, stateType: string): number {
  if (eventType === 'StateRetried') return 3;
  if (eventType === 'StateFailed') return 1;
  if (eventType !== 'StateEntered') return 0;
  if (stateType === 'Task') return 5;
  if (stateType === 'Map') return 4;
  return 2;
}
