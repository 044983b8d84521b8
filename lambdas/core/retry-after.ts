/**
 * How long to wait before asking a Bulk Data server again. The server's
 * `Retry-After` is untrusted input (IG: clients SHOULD honour it, but EHRs
 * have sent garbage, negative numbers and hours): absurd or malformed values
 * are clamped, never obeyed blindly, and never crash the poll loop.
 */

export interface WaitPolicy {
  /** Never poll faster than this, whatever the server says. @default 5 */
  readonly floorSeconds: number;
  /** Per-source ceiling; Oracle Health may ask for hours. @default 300 */
  readonly ceilingSeconds: number;
  /** First backoff when the server gives no Retry-After. @default 15 */
  readonly initialBackoffSeconds: number;
  /** @default 2 */
  readonly backoffRate: number;
}

export const DEFAULT_WAIT_POLICY: WaitPolicy = {
  floorSeconds: 5,
  ceilingSeconds: 300,
  initialBackoffSeconds: 15,
  backoffRate: 2,
};

/**
 * Parses a `Retry-After` header: delay-seconds or an HTTP-date (RFC 9110
 * §10.2.3). Returns the requested delay in whole seconds, or undefined when
 * the value is absent or unusable. A date in the past means "now" (0).
 */
export function parseRetryAfter(value: string | null | undefined, now: Date): number | undefined {
  if (value === undefined || value === null) return undefined;
  const trimmed = value.trim();
  if (trimmed === '') return undefined;
  if (/^\d+$/.test(trimmed)) {
    const seconds = Number(trimmed);
    return Number.isSafeInteger(seconds) ? seconds : undefined;
  }
  // Only accept things that look like an HTTP-date; Date.parse is far too lenient ("1" parses).
  if (!/^[A-Za-z]{3},\s+\d{1,2}\s+[A-Za-z]{3}\s+\d{4}\s+\d{2}:\d{2}:\d{2}\s+GMT$/.test(trimmed))
    return undefined;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now.getTime()) / 1000));
}

/**
 * Seconds the next Wait state should last: the server's request clamped to
 * [floor, ceiling], or exponential backoff from `initialBackoffSeconds` when it
 * gave none (`attempt` counts from 0). Always an integer, because the Wait
 * state's `SecondsPath` must be one.
 */
export function nextWaitSeconds(
  retryAfterSeconds: number | undefined,
  attempt: number,
  policy: WaitPolicy = DEFAULT_WAIT_POLICY,
): number {
  const ceiling = Math.max(policy.floorSeconds, Math.floor(policy.ceilingSeconds));
  const requested =
    retryAfterSeconds ??
    policy.initialBackoffSeconds * policy.backoffRate ** Math.max(0, Math.min(attempt, 30));
  if (!Number.isFinite(requested)) return ceiling;
  return Math.min(ceiling, Math.max(policy.floorSeconds, Math.ceil(requested)));
}
