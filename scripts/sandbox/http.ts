/** Small node:http helpers shared by the sandbox's handlers. */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';

export const FHIR_JSON = 'application/fhir+json';
export const FHIR_NDJSON = 'application/fhir+ndjson';

export type IssueSeverity = 'fatal' | 'error' | 'warning' | 'information';

export interface OperationOutcomeIssue {
  readonly severity: IssueSeverity;
  readonly code: string;
  readonly diagnostics: string;
}

export interface OperationOutcome {
  readonly resourceType: 'OperationOutcome';
  readonly issue: readonly OperationOutcomeIssue[];
}

export function operationOutcome(...issues: OperationOutcomeIssue[]): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: issues };
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: OutgoingHttpHeaders = {},
  contentType = 'application/json',
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': `${contentType}; charset=utf-8`,
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/** An error (or informational) answer with an OperationOutcome body, as the IG requires for every 4xx/5xx. */
export function sendOutcome(
  res: ServerResponse,
  status: number,
  code: string,
  diagnostics: string,
  headers: OutgoingHttpHeaders = {},
  severity: IssueSeverity = status >= 400 ? 'error' : 'information',
): void {
  sendJson(res, status, operationOutcome({ severity, code, diagnostics }), headers, FHIR_JSON);
}

export function sendText(
  res: ServerResponse,
  status: number,
  text: string,
  headers: OutgoingHttpHeaders = {},
): void {
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError';
}

export async function readBody(req: IncomingMessage, limitBytes = 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limitBytes) throw new BodyTooLargeError(`request body over ${limitBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** The bearer token, or undefined when there is no `Authorization: Bearer` header. */
export function bearerToken(req: IncomingMessage): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return match?.[1];
}

/** Lower-cased `Prefer` preferences, e.g. `respond-async`, `handling=lenient` (RFC 7240). */
export function preferences(req: IncomingMessage): Set<string> {
  const raw = req.headers.prefer;
  const values = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
  const result = new Set<string>();
  for (const value of values) {
    for (const item of value.split(',')) {
      const pref = item
        .split(';')[0]!
        .trim()
        .toLowerCase()
        .replace(/\s*=\s*/, '=')
        .replace(/"/g, '');
      if (pref) result.add(pref);
    }
  }
  return result;
}

/** Media types in an Accept header with q > 0, parameters dropped, lower-cased. */
export function acceptedMediaTypes(header: string | undefined): string[] {
  if (header === undefined) return [];
  return header
    .split(',')
    .map((part) => {
      const [type, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
      const q = params.find((p) => p.startsWith('q='));
      return q && Number(q.slice(2)) === 0 ? '' : (type ?? '');
    })
    .filter((t) => t !== '');
}

/** Content codings accepted with q > 0 (`gzip`, `br`...), lower-cased. */
export function acceptsGzip(header: string | undefined): boolean {
  return acceptedMediaTypes(header).some((coding) => coding === 'gzip' || coding === 'x-gzip');
}

export function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

/** Sleeps without keeping the process alive. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
