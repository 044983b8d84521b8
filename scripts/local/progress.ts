import { readFileSync } from 'node:fs';
import type { ProgressEvent } from '../../lambdas/runtime.js';
import { type StateMachineDefinition, statesByName } from './asl-adapter.js';
import { DEFINITION_PATH, type EventLog } from './runner.js';

/**
 * Shows a local export as it runs: one redrawn status line on a terminal,
 * plain lines otherwise (CI logs, pipes). Only counts, phases, state names,
 * error names and waits are shown, never resource content or tokens. Every
 * wait gets a line with its length and why: a Wait state (its seconds from
 * the state's input) and a Task's Retry (its interval from the definition), so
 * a five-minute back-off never looks like a hang.
 */
export interface ProgressPrinter {
  onProgress(event: ProgressEvent): void;
  onExecutionEvent(event: EventLog): void;
  finish(): void;
}

export interface ProgressPrinterOptions {
  /** @default process.stderr */
  readonly stream?: Pick<NodeJS.WriteStream, 'write'> & {
    readonly isTTY?: boolean;
    readonly columns?: number;
  };
  /** @default Date.now */
  readonly now?: () => number;
  /** The state machine being run: where each Wait finds its seconds, each Task its Retry. @default the ASL file */
  readonly definition?: unknown;
}

type Json = Record<string, unknown>;

/** ASL's Retry defaults. */
const RETRY_DEFAULTS = { IntervalSeconds: 1, MaxAttempts: 3, BackoffRate: 2 } as const;

export function createProgressPrinter(options: ProgressPrinterOptions = {}): ProgressPrinter {
  const stream = options.stream ?? process.stderr;
  const now = options.now ?? Date.now;
  const states = statesByName(
    (options.definition ?? JSON.parse(readFileSync(DEFINITION_PATH, 'utf8'))) as StateMachineDefinition,
  );
  const tty = stream.isTTY === true;
  const started = now();
  let phase = 'starting';
  let detail = '';
  let filesTotal = 0;
  let filesDone = 0;
  let resources = 0;
  let bytes = 0;
  let lastDraw = 0;
  /** Retries used per retrier, per running state (a Map's iterations run side by side). */
  const retriesUsed = new Map<string, number[]>();

  const elapsed = () => {
    const seconds = Math.floor((now() - started) / 1000);
    return `${String(Math.floor(seconds / 60)).padStart(2, '0')}:${String(seconds % 60).padStart(2, '0')}`;
  };
  const line = () => {
    const seconds = Math.max(0.001, (now() - started) / 1000);
    const files = filesTotal > 0 ? `  files ${filesDone}/${filesTotal}` : '';
    const data =
      filesDone > 0
        ? `  ${formatCount(resources)} resources  ${formatBytes(bytes)}  ${formatCount(Math.round(resources / seconds))} res/s`
        : '';
    return `[${elapsed()}] ${phase}${detail ? ` (${detail})` : ''}${files}${data}`;
  };
  const draw = (force = false) => {
    if (!tty) return;
    const at = now();
    if (!force && at - lastDraw < 100) return;
    lastDraw = at;
    stream.write(`\r\x1b[2K${line().slice(0, (stream.columns ?? 120) - 1)}`);
  };
  const say = (text: string) => {
    if (tty) stream.write(`\r\x1b[2K${text}\n`);
    else stream.write(`${text}\n`);
    draw(true);
  };
  const waiting = (what: string, seconds: string) => {
    phase = `waiting ${seconds}`;
    detail = what;
  };

  return {
    onProgress(event) {
      if (event.kind === 'phase') {
        phase = event.phase;
        detail = event.detail ?? '';
        const match = /^(\d+) files/.exec(detail);
        if (event.phase === 'manifest received' && match) filesTotal = Number(match[1]);
        say(`[${elapsed()}] ${phase}${detail ? `: ${detail}` : ''}`);
        return;
      }
      if (event.kind === 'file-done') {
        filesDone += 1;
        resources += event.lines;
        bytes += event.bytes;
        if (!tty)
          say(
            `[${elapsed()}] file ${filesDone}/${filesTotal} landed: ${event.type}, ${formatCount(event.lines)} lines, ${formatBytes(event.bytes)}`,
          );
        else draw();
      }
    },
    onExecutionEvent(event) {
      const state = event.state;
      if (!state) return;
      const running = `${state.name}#${String(event.index ?? '')}`;
      const definition = states.get(state.name);
      if (event.type === 'StateEntered') {
        retriesUsed.delete(running);
        if (state.type !== 'Wait' || !definition) return;
        const wait = describeWait(definition, state.input);
        if (!wait) return;
        waiting(state.name, formatSeconds(wait.seconds));
        say(
          `[${elapsed()}] ${state.name}: waiting ${formatSeconds(wait.seconds)}${wait.reason ? ` (${wait.reason})` : ''}`,
        );
        return;
      }
      if (event.type === 'StateFailed' && definition) {
        const error = String(event.Error ?? 'Error');
        const retry = plannedRetry(definition, state.type, error, retriesUsed.get(running) ?? []);
        if (!retry) {
          say(`[${elapsed()}] ${state.name} failed: ${error}`);
          return;
        }
        retriesUsed.set(running, retry.used);
        const length = `${retry.jitter ? 'up to ' : ''}${formatSeconds(retry.seconds)}`;
        waiting(`to retry ${state.name}`, length);
        say(
          `[${elapsed()}] ${state.name} failed: ${error}; retry ${retry.attempt} of ${retry.of} in ${length}`,
        );
        return;
      }
      if (event.type === 'StateRetried') say(`[${elapsed()}] retrying ${state.name}`);
    },
    finish() {
      if (tty) stream.write('\r\x1b[2K');
    },
  };
}

/** How long a Wait state waits, read the way Step Functions reads it, and why (from the state it waits on). */
function describeWait(
  definition: Json,
  input: unknown,
): { readonly seconds: number; readonly reason?: string } | undefined {
  if (typeof definition.Seconds === 'number') return { seconds: definition.Seconds };
  if (typeof definition.SecondsPath !== 'string') return undefined;
  const path = definition.SecondsPath.replace(/^\$\.?/, '')
    .split('.')
    .filter(Boolean);
  const owner = path
    .slice(0, -1)
    .reduce<unknown>((value, key) => (value as Json | undefined)?.[key], input) as Json | undefined;
  const seconds = path.length === 0 ? input : owner?.[path.at(-1)!];
  if (typeof seconds !== 'number') return undefined;
  const reasons: string[] = [];
  if (typeof owner?.reason === 'string') reasons.push(owner.reason);
  if (owner?.forceTokenRefresh === true) reasons.push('access token refused; minting a fresh one');
  if (typeof owner?.consecutiveTransientErrors === 'number' && owner.consecutiveTransientErrors > 0) {
    const count = owner.consecutiveTransientErrors;
    reasons.push(`${count} failed status request${count === 1 ? '' : 's'} in a row`);
  }
  if (typeof owner?.progress === 'string') reasons.push(`server progress: ${owner.progress}`);
  return { seconds, ...(reasons.length > 0 ? { reason: reasons.join('; ') } : {}) };
}

/**
 * The Retry Step Functions will make of this error, if any: the first
 * retrier that matches (by name, States.ALL, or States.TaskFailed for a Task
 * error other than a timeout) and has attempts left.
 */
function plannedRetry(definition: Json, stateType: string, error: string, used: readonly number[]) {
  const retriers = Array.isArray(definition.Retry) ? (definition.Retry as Json[]) : [];
  for (const [index, retrier] of retriers.entries()) {
    const names = (retrier.ErrorEquals as string[] | undefined) ?? [];
    const matches = names.some(
      (name) =>
        name === error ||
        name === 'States.ALL' ||
        (name === 'States.TaskFailed' && stateType === 'Task' && error !== 'States.Timeout'),
    );
    if (!matches) continue;
    const of = (retrier.MaxAttempts as number | undefined) ?? RETRY_DEFAULTS.MaxAttempts;
    const before = used[index] ?? 0;
    if (before >= of) return undefined;
    const interval = (retrier.IntervalSeconds as number | undefined) ?? RETRY_DEFAULTS.IntervalSeconds;
    const backoff = (retrier.BackoffRate as number | undefined) ?? RETRY_DEFAULTS.BackoffRate;
    const ceiling = (retrier.MaxDelaySeconds as number | undefined) ?? Number.POSITIVE_INFINITY;
    const next = [...used];
    next[index] = before + 1;
    return {
      attempt: before + 1,
      of,
      seconds: Math.min(interval * backoff ** before, ceiling),
      jitter: retrier.JitterStrategy === 'FULL',
      used: next,
    };
  }
  return undefined;
}

/** `45 s`, `5 min`, `2 min 30 s`. */
export function formatSeconds(seconds: number): string {
  const whole = Math.round(seconds * 10) / 10;
  if (whole < 60) return `${whole} s`;
  const minutes = Math.floor(whole / 60);
  const rest = Math.round(whole - minutes * 60);
  return rest === 0 ? `${minutes} min` : `${minutes} min ${rest} s`;
}

export function formatBytes(value: number): string {
  if (value < 1024) return `${value} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let scaled = value / 1024;
  let unit = 0;
  while (scaled >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit += 1;
  }
  return `${scaled.toFixed(1)} ${units[unit]}`;
}

export function formatCount(value: number): string {
  return value.toLocaleString('en-US');
}

export interface SummaryRow {
  readonly type: string;
  readonly files: number;
  readonly resources: number;
  readonly bytes: number;
}

/** A plain-text table: per type files, resources, bytes, and a total. */
export function renderSummaryTable(rows: readonly SummaryRow[]): string {
  const sorted = [...rows].sort((a, b) => a.type.localeCompare(b.type));
  const total = sorted.reduce(
    (sum, row) => ({
      type: 'Total',
      files: sum.files + row.files,
      resources: sum.resources + row.resources,
      bytes: sum.bytes + row.bytes,
    }),
    {
      type: 'Total',
      files: 0,
      resources: 0,
      bytes: 0,
    },
  );
  const cells = [...sorted, total].map((row) => [
    row.type,
    formatCount(row.files),
    formatCount(row.resources),
    formatBytes(row.bytes),
  ]);
  const header = ['Resource type', 'Files', 'Resources', 'Bytes'];
  const widths = header.map((title, column) =>
    Math.max(title.length, ...cells.map((cell) => cell[column]!.length)),
  );
  const render = (cell: string[]) =>
    cell
      .map((value, column) =>
        column === 0 ? value.padEnd(widths[column]!) : value.padStart(widths[column]!),
      )
      .join('  ');
  const rule = widths.map((width) => '-'.repeat(width)).join('  ');
  return [render(header), rule, ...cells.slice(0, -1).map(render), rule, render(cells.at(-1)!)].join('\n');
}
