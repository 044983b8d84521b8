import { oneLine } from './operation-outcome.js';

/**
 * Triage of the OperationOutcomes a server lists in the completion manifest's
 * `error[]`: which of them say that data is missing, and which output files,
 * types or the whole export they are about.
 *
 * Severity decides what counts, as SMART's bulk-data-client does: `fatal` and
 * `error` issues are failures; `warning` and `information` are not (servers
 * use them for parameters they ignored under `Prefer: handling=lenient`, or
 * for notes). An issue without a recognised severity counts as a failure: the
 * IG says error[] is for errors, and a partial export must never pass as a
 * complete one because a server left a field out.
 *
 * Matching an issue to what it is about is tolerant, since the IG prescribes
 * nothing: the SMART reference server writes `Failed to export
 * 2.AllergyIntolerance.ndjson`, others name a URL or a type in `diagnostics`,
 * `details.text` or `expression`. The issue's text is cut into tokens at
 * anything but letters, digits and `._~%-` (so `/` splits a URL's path), and
 *   1. a token equal to an output file's name (the last segment of its URL)
 *      names that file (only a file of the same chunk, in a chunked export,
 *      since chunk jobs reuse names); names too short or too plain to be
 *      told from other words (under 4 characters, letters only, or digits
 *      only under 8) are never matched;
 *   2. otherwise a token, or a `.`-separated part of one, equal to an
 *      exported resource type names the type (`Failed to export
 *      3.Condition.ndjson` for a file the manifest did not list);
 *   3. otherwise the issue is about the whole export.
 */

export type IssueSeverity = 'fatal' | 'error' | 'warning' | 'information';

/** An output file as the matcher knows it: its place in the file list and the name its URL ends with. */
export interface OutputFileName {
  readonly index: number;
  readonly type: string;
  /** The last path segment of the file's URL, decoded (`2.AllergyIntolerance.ndjson`). */
  readonly name: string;
  readonly chunk?: number;
}

/** One failing issue, short and safe to store: no URL, diagnostics cut to a line. */
export interface ServerFileIssue {
  readonly severity: string;
  readonly code: string;
  /** The server's words, URLs replaced by `<url>`, at most DIAGNOSTICS_MAX characters. */
  readonly diagnostics?: string;
  /** What the issue names: output files (their indexes), else a type, else the whole export. */
  readonly files?: readonly number[];
  readonly type?: string;
}

export interface ServerFileErrorTriage {
  /** Every issue of every error[] file, by severity (`other`: no recognised severity). */
  readonly issues: Readonly<Record<IssueSeverity | 'other', number>>;
  /** Failing issues (fatal, error, other): their number, and the first MAX_KEPT_ISSUES of them. */
  readonly failures: number;
  readonly failing: readonly ServerFileIssue[];
  /** Reasons (see `reasonOf`) per output file index, per type and for the whole export; each list capped. */
  readonly byFile: Readonly<Record<string, readonly string[]>>;
  readonly byType: Readonly<Record<string, readonly string[]>>;
  readonly exportWide: readonly string[];
  /** Lines of the error[] files that were not OperationOutcomes (not JSON, another resourceType). */
  readonly unreadableLines: number;
  /** An error[] file was larger than we read; issues past the cut were not triaged. */
  readonly truncated: boolean;
}

/** Kept short: diagnostics are the server's free text and may quote what they failed on. */
export const DIAGNOSTICS_MAX = 160;
export const MAX_KEPT_ISSUES = 50;
const MAX_REASONS_PER_TARGET = 5;

const FAILING = new Set(['fatal', 'error']);
const NOT_FAILING = new Set(['warning', 'information']);
const URL_PATTERN = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi;
const TOKEN_SPLIT = /[^A-Za-z0-9._~%-]+/;

/** A failing issue as one short line for the receipt: `error exception: Failed to export 2.AllergyIntolerance.ndjson`. */
export function reasonOf(issue: ServerFileIssue): string {
  return `${issue.severity} ${issue.code}${issue.diagnostics ? `: ${issue.diagnostics}` : ''}`;
}

/** Whether a severity is a failure (fatal, error, or none we know). */
export function isFailingSeverity(severity: unknown): boolean {
  return typeof severity !== 'string' || !NOT_FAILING.has(severity);
}

/** The last path segment of a URL, decoded; undefined when it has none. */
export function fileNameOf(url: string): string | undefined {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    return undefined;
  }
  const last = path.split('/').filter(Boolean).at(-1);
  if (!last) return undefined;
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

/** Names that are words, numbers or too short would match text that is not about the file. */
function distinctive(name: string): boolean {
  if (name.length < 4 || /^[A-Za-z]+$/.test(name)) return false;
  if (/^\d+$/.test(name) && name.length < 8) return false;
  return true;
}

export class ServerFileErrorTriager {
  readonly #byName = new Map<string, OutputFileName[]>();
  readonly #types: ReadonlySet<string>;
  readonly #issues: Record<IssueSeverity | 'other', number> = {
    fatal: 0,
    error: 0,
    warning: 0,
    information: 0,
    other: 0,
  };
  #failures = 0;
  readonly #failing: ServerFileIssue[] = [];
  readonly #byFile = new Map<number, string[]>();
  readonly #byType = new Map<string, string[]>();
  readonly #exportWide: string[] = [];
  #unreadable = 0;
  #truncated = false;

  /** `types`: the exported types (the request's and the outputs'), which an issue may name instead of a file. */
  constructor(outputs: readonly OutputFileName[], types: Iterable<string>) {
    for (const output of outputs) {
      if (!distinctive(output.name)) continue;
      const list = this.#byName.get(output.name) ?? [];
      list.push(output);
      this.#byName.set(output.name, list);
    }
    this.#types = new Set([...types, ...outputs.map((output) => output.type)]);
  }

  /** One NDJSON line of an error[] file; `chunk` is the error file's chunk in a chunked export. */
  addLine(line: string, chunk?: number): void {
    if (line.trim() === '') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      this.#unreadable += 1;
      return;
    }
    const outcome = parsed as { resourceType?: unknown; issue?: unknown };
    if (outcome === null || typeof outcome !== 'object' || outcome.resourceType !== 'OperationOutcome') {
      this.#unreadable += 1;
      return;
    }
    const issues = Array.isArray(outcome.issue) ? outcome.issue : [];
    for (const issue of issues) this.#addIssue(issue, chunk);
  }

  markTruncated(): void {
    this.#truncated = true;
  }

  result(): ServerFileErrorTriage {
    const record = (map: Map<string | number, string[]>) =>
      Object.fromEntries([...map].map(([key, reasons]) => [String(key), reasons]));
    return {
      issues: { ...this.#issues },
      failures: this.#failures,
      failing: this.#failing,
      byFile: record(this.#byFile),
      byType: record(this.#byType),
      exportWide: this.#exportWide,
      unreadableLines: this.#unreadable,
      truncated: this.#truncated,
    };
  }

  #addIssue(value: unknown, chunk: number | undefined): void {
    const issue = (value !== null && typeof value === 'object' ? value : {}) as Record<string, unknown>;
    const severity = typeof issue.severity === 'string' ? issue.severity : undefined;
    if (severity && (FAILING.has(severity) || NOT_FAILING.has(severity))) {
      this.#issues[severity as IssueSeverity] += 1;
    } else {
      this.#issues.other += 1;
    }
    if (!isFailingSeverity(severity)) return;
    this.#failures += 1;

    const details = issue.details as { text?: unknown } | undefined;
    const texts = [
      issue.diagnostics,
      details && typeof details === 'object' ? details.text : undefined,
      ...(Array.isArray(issue.expression) ? issue.expression : []),
      ...(Array.isArray(issue.location) ? issue.location : []),
    ].filter((text): text is string => typeof text === 'string');
    const words = texts.join(' ');
    const tokens = words.split(TOKEN_SPLIT).filter(Boolean);
    const files = new Set<number>();
    let type: string | undefined;
    for (const token of tokens) {
      for (const output of this.#byName.get(decoded(token)) ?? []) {
        if (chunk === undefined || output.chunk === undefined || output.chunk === chunk)
          files.add(output.index);
      }
      // `2.AllergyIntolerance.ndjson` names its type too, should no output file carry that name.
      type ??= token.split('.').find((part) => this.#types.has(part));
    }
    const message = texts[0] ?? '';
    const diagnostics = message ? oneLine(message.replace(URL_PATTERN, '<url>'), DIAGNOSTICS_MAX) : '';
    const kept: ServerFileIssue = {
      severity: severity ?? 'unknown',
      code: typeof issue.code === 'string' ? oneLine(issue.code, 40) : 'unknown',
      ...(diagnostics ? { diagnostics } : {}),
      ...(files.size > 0 ? { files: [...files].sort((a, b) => a - b) } : type ? { type } : {}),
    };
    if (this.#failing.length < MAX_KEPT_ISSUES) this.#failing.push(kept);
    const reason = reasonOf(kept);
    if (files.size > 0) for (const index of files) push(this.#byFile, index, reason);
    else if (type) push(this.#byType, type, reason);
    else if (this.#exportWide.length < MAX_REASONS_PER_TARGET) this.#exportWide.push(reason);
  }
}

function decoded(token: string): string {
  if (!token.includes('%')) return token;
  try {
    return decodeURIComponent(token);
  } catch {
    return token;
  }
}

function push<K>(map: Map<K, string[]>, key: K, reason: string) {
  const list = map.get(key) ?? [];
  if (list.length < MAX_REASONS_PER_TARGET && !list.includes(reason)) list.push(reason);
  map.set(key, list);
}

/** The reasons the server gave that cover an output file: its own, its type's, the whole export's. */
export function reasonsFor(
  triage: ServerFileErrorTriage,
  file: { readonly index: number; readonly type: string },
): readonly string[] {
  return [
    ...(triage.byFile[String(file.index)] ?? []),
    ...(triage.byType[file.type] ?? []),
    ...triage.exportWide,
  ];
}

/**
 * One line naming what the server reported, for an error and the execution
 * history: counts, then the first few failing issues as severity, code and
 * what they name (our keys, never a URL). Never the diagnostics: they are the
 * server's free text about exported resources, and an error travels into Step
 * Functions state, logs and the failure receipt. They stay in S3 beside the
 * data (the receipt, the `_errors/` files).
 */
export function describeServerFileErrors(
  triage: ServerFileErrorTriage,
  keyOf: (index: number) => string | undefined,
  shown = 3,
): string {
  const { fatal, error, warning, information, other } = triage.issues;
  const counts = [
    fatal ? `${fatal} fatal` : '',
    error ? `${error} error` : '',
    other ? `${other} without a severity` : '',
  ]
    .filter(Boolean)
    .join(', ');
  const ignored = warning + information;
  const named = triage.failing.slice(0, shown).map((issue) => {
    const what = issue.files
      ? issue.files
          .slice(0, 2)
          .map((index) => `file ${index}${keyOf(index) ? ` (${keyOf(index)})` : ''}`)
          .join(', ') + (issue.files.length > 2 ? ', …' : '')
      : issue.type
        ? `type ${issue.type}`
        : 'the export';
    return `${what}: ${issue.severity} ${issue.code}`;
  });
  return oneLine(
    `the server reported ${triage.failures} failing issue(s) in the manifest's error[] (${counts}` +
      `${ignored ? `; ${ignored} warning/information issue(s) not counted` : ''})` +
      `${named.length ? `: ${named.join('; ')}` : ''}${triage.failures > named.length ? '; …' : ''}`,
    1000,
  );
}
