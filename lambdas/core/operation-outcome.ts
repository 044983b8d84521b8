/**
 * Reading OperationOutcome bodies from error responses. Servers send HTML
 * error pages, truncated JSON and megabytes of stack traces here; whatever
 * comes back, we produce a short, single-line summary and never throw.
 */
export interface OutcomeSummary {
  /** Issue codes, e.g. `transient`, `exception`, `not-supported`. */
  readonly codes: readonly string[];
  /** One line, at most ~300 characters, safe for logs and execution history. */
  readonly text: string;
}

const MAX_TEXT = 300;

export function summarizeOperationOutcome(body: string | undefined): OutcomeSummary | undefined {
  if (body === undefined || body.trim() === '') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (
    parsed === null ||
    typeof parsed !== 'object' ||
    (parsed as { resourceType?: unknown }).resourceType !== 'OperationOutcome'
  ) {
    return undefined;
  }
  const issues = Array.isArray((parsed as { issue?: unknown }).issue)
    ? ((parsed as { issue: unknown[] }).issue as unknown[])
    : [];
  const codes: string[] = [];
  const parts: string[] = [];
  for (const issue of issues.slice(0, 20)) {
    if (issue === null || typeof issue !== 'object') continue;
    const { code, severity, diagnostics, details } = issue as Record<string, unknown>;
    if (typeof code === 'string') codes.push(code);
    const detailText =
      details && typeof details === 'object' ? (details as { text?: unknown }).text : undefined;
    const message =
      typeof diagnostics === 'string' ? diagnostics : typeof detailText === 'string' ? detailText : '';
    parts.push(
      [
        typeof severity === 'string' ? severity : undefined,
        typeof code === 'string' ? code : undefined,
        message || undefined,
      ]
        .filter(Boolean)
        .join(' '),
    );
  }
  // Issues of only blanks or control characters say nothing; never hand back an empty summary.
  const text = oneLine(parts.filter(Boolean).join('; ')) || 'OperationOutcome without issues';
  return { codes, text };
}

export function oneLine(text: string, max = MAX_TEXT): string {
  const flat = text
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what we strip
    .replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  if (flat.length <= max) return flat;
  // Cut at a code point, never inside a surrogate pair (which would become U+FFFD in UTF-8).
  return `${Array.from(flat)
    .slice(0, max - 1)
    .join('')
    .slice(0, max - 1)
    .replace(/[\ud800-\udbff]$/, '')}…`;
}
