import type { ProgressEvent } from '../../lambdas/runtime.js';
import type { EventLog } from './runner.js';

/**
 * Shows a local export as it runs: one redrawn status line on a terminal,
 * plain lines otherwise (CI logs, pipes). Only counts and phases are shown,
 * never resource content or tokens.
 */
export interface ProgressPrinter {
  onProgress(event: ProgressEvent): void;
  onExecutionEvent(event: EventLog): void;
  finish(): void;
}

export function createProgressPrinter(
  stream: NodeJS.WriteStream = process.stderr,
  now: () => number = Date.now,
): ProgressPrinter {
  const tty = stream.isTTY === true;
  const started = now();
  let phase = 'starting';
  let detail = '';
  let filesTotal = 0;
  let filesDone = 0;
  let resources = 0;
  let bytes = 0;
  let lastDraw = 0;

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
      if (event.type === 'StateEntered' && event.state?.type === 'Wait') {
        phase = 'waiting';
        draw(true);
      }
      if (event.type === 'StateRetried' && event.state) say(`[${elapsed()}] retrying ${event.state.name}`);
    },
    finish() {
      if (tty) stream.write('\r\x1b[2K');
    },
  };
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
