import { Readable } from 'node:stream';
import { createGunzip, type Gunzip } from 'node:zlib';
import type { Dispatcher } from 'undici';
import { assertTokenMayGoTo, FILE_NEEDING_TOKEN, type TokenAudience } from '../core/origins.js';
import { parseRetryAfter } from '../core/retry-after.js';
import { checkFetchableUrl } from '../core/urls.js';
import { USER_AGENT } from '../core/user-agent.js';
import {
  AccessTokenRejectedError,
  ConfigurationError,
  FileDownloadError,
  FileLinkExpiredError,
  InvalidManifestError,
  PipelineError,
  TransientServerError,
} from '../errors.js';
import { sharedHttpAgent } from './http-agent.js';

/**
 * Opens one bulk data file (a manifest `output`, `error` or `deleted` URL)
 * for streaming. This adapter only speaks HTTP: it decides which headers to
 * send, follows redirects safely, decodes gzip, and turns statuses into the
 * pipeline's errors. Reading, checking and storing the body is the caller's.
 */

/**
 * The most a gzip body may decode to per compressed byte, the compressed size
 * being counted as at least 1 MiB (so every body may decode to 100 MiB, and
 * small files are never judged). FHIR NDJSON compresses about 5–20×, the
 * sandbox's synthetic data up to 27×; a gzip bomb of blank lines about 1,000×.
 */
export const DEFAULT_MAX_GZIP_EXPANSION = 100;
const GZIP_EXPANSION_MIN_BASE_BYTES = 1024 * 1024;

export interface FileRequest {
  readonly url: string;
  /** The manifest's `requiresAccessToken`: the bearer token is sent iff this is true (IG). */
  readonly requiresAccessToken: boolean;
  readonly accessToken?: string;
  /**
   * Where the token may go (the FHIR base URL's origin and the source's trustedOrigins):
   * required with requiresAccessToken, and a file elsewhere is refused rather than handed the token.
   */
  readonly tokenAudience?: TokenAudience;
  /** Allow plain http to loopback hosts (local mode only). */
  readonly allowInsecureHttp?: boolean;
  /**
   * Ask for the rest of the file from this decoded byte offset, but only if it is still this
   * version: `validator` is a strong ETag or a strong Last-Modified date, sent as If-Range.
   */
  readonly resumeFrom?: { readonly offset: number; readonly validator: string };
  /** Ask for gzip on a fresh GET. @default true */
  readonly acceptGzip?: boolean;
  /** @default 5 */
  readonly maxRedirects?: number;
  /** Bytes undici buffers per read. @default 256 KiB */
  readonly highWaterMark?: number;
  /**
   * The most a gzip body may decode to per compressed byte (see DEFAULT_MAX_GZIP_EXPANSION);
   * beyond it the download fails for good with FileDownloadError. @default 100
   */
  readonly maxGzipExpansion?: number;
}

export interface FileResponse {
  /**
   * 200: the whole file. 206: the rest of it from `rangeStart`. 416: the
   * requested offset is at or past the end (`totalBytes` says where the end is).
   */
  readonly status: 200 | 206 | 416;
  /** The decoded body (gunzipped when the server used gzip). Empty for 416. */
  readonly body: AsyncIterable<Buffer>;
  readonly contentEncoding: 'gzip' | 'identity';
  /** The validator to resume with: a strong ETag, or undefined when the server gave none (or a weak one). */
  readonly strongEtag: string | undefined;
  /** The server advertised `Accept-Ranges: bytes`. */
  readonly acceptsRanges: boolean;
  /** Last-Modified as sent, for comparing versions exactly. */
  readonly lastModified: string | undefined;
  /**
   * Last-Modified, when it is a strong validator: at least a second older than the response's
   * Date (RFC 9110 §8.8.2.2), so no second change can hide behind the same date.
   */
  readonly strongLastModified: string | undefined;
  /** First byte of a 206 body; 0 otherwise. */
  readonly rangeStart: number;
  /** Full size of the identity representation, when Content-Range told us. */
  readonly totalBytes: number | undefined;
  /** Content-Length of the body as sent (compressed, for gzip); undefined when the server streamed it without one. */
  readonly contentLength: number | undefined;
  /**
   * Bytes of the body as sent that were decoded so far, for gzip; undefined
   * for identity, where they are the decoded bytes the reader counted.
   */
  encodedBytesRead(): number | undefined;
  /** Redirects followed to get here. */
  readonly redirects: number;
  /** Stops the download and frees the connection; call it when you stop reading early. */
  cancel(): void;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const RETRY_AFTER_FLOOR_SECONDS = 1;
const RETRY_AFTER_CEILING_SECONDS = 120;

/** 404s that may be transient (CMS answers 404 for a while after a job completes). */
const mayBeTransient = new WeakSet<Error>();

/** True for the 404 flavour of FileLinkExpiredError, which is worth a few retries before giving up. */
export function isPossiblyTransientNotFound(error: unknown): boolean {
  return error instanceof Error && mayBeTransient.has(error);
}

/** A URL for messages and logs: presigned URLs carry signatures in the query, so it is dropped. */
export function describeUrl(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/**
 * GETs a file, following up to `maxRedirects` redirects by hand so that the
 * `Authorization` header is dropped as soon as a hop leaves the origin the
 * token was issued for (Oracle Health redirects to presigned S3 URLs, which
 * must not see our token, and S3 rejects requests that carry two kinds of
 * credentials).
 */
export async function openFile(
  request: FileRequest,
  deps: { readonly dispatcher?: Dispatcher; readonly now: () => Date },
): Promise<FileResponse> {
  const dispatcher = deps.dispatcher ?? sharedHttpAgent();
  const allowInsecureHttp = request.allowInsecureHttp ?? false;
  const maxRedirects = request.maxRedirects ?? 5;
  const maxGzipExpansion = request.maxGzipExpansion ?? DEFAULT_MAX_GZIP_EXPANSION;
  if (!(Number.isFinite(maxGzipExpansion) && maxGzipExpansion >= 1)) {
    throw new ConfigurationError(
      `maxGzipExpansion must be a number of at least 1 (decoded bytes per compressed byte), got ${String(maxGzipExpansion)}`,
    );
  }
  if (request.requiresAccessToken && !request.accessToken) {
    throw new ConfigurationError('The manifest requires an access token for its files, but none was given');
  }
  const first = checkFetchableUrl(request.url, allowInsecureHttp);
  if (!first.ok) throw new InvalidManifestError(`File URL ${first.reason}`);
  if (request.requiresAccessToken) {
    if (!request.tokenAudience) {
      throw new ConfigurationError(
        'The manifest requires an access token for its files, but no tokenAudience says where it may go',
      );
    }
    assertTokenMayGoTo(first.url, request.tokenAudience, FILE_NEEDING_TOKEN);
  }

  const tokenOrigin = first.url.origin;
  let url = first.url;
  let sendToken = request.requiresAccessToken;
  for (let redirects = 0; ; redirects++) {
    if (url.origin !== tokenOrigin) sendToken = false;
    const headers: Record<string, string> = { accept: 'application/fhir+ndjson', 'user-agent': USER_AGENT };
    if (request.resumeFrom) {
      // Byte offsets are offsets into the decoded file, so ask for it undecoded.
      headers['accept-encoding'] = 'identity';
      headers.range = `bytes=${request.resumeFrom.offset}-`;
      headers['if-range'] = request.resumeFrom.validator;
    } else {
      headers['accept-encoding'] = request.acceptGzip === false ? 'identity' : 'gzip';
    }
    if (sendToken) headers.authorization = `Bearer ${request.accessToken}`;

    let response: Dispatcher.ResponseData;
    try {
      response = await dispatcher.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        headers,
        highWaterMark: request.highWaterMark ?? 256 * 1024,
      });
    } catch (error) {
      throw new TransientServerError(`GET ${describeUrl(url)} failed: ${networkReason(error)}`, undefined, {
        cause: error,
      });
    }

    const status = response.statusCode;
    if (REDIRECT_STATUSES.has(status)) {
      const location = header(response.headers, 'location');
      await discard(response);
      if (location === undefined) {
        throw new FileDownloadError(`GET ${describeUrl(url)} answered ${status} without a Location`);
      }
      if (redirects >= maxRedirects) {
        throw new FileDownloadError(
          `GET ${describeUrl(first.url)} redirected more than ${maxRedirects} times`,
        );
      }
      let next: URL;
      try {
        next = new URL(location, url);
      } catch (error) {
        throw new FileDownloadError(`GET ${describeUrl(url)} redirected to an unparseable Location`, {
          cause: error,
        });
      }
      const checked = checkFetchableUrl(next.href, allowInsecureHttp);
      if (!checked.ok) {
        throw new FileDownloadError(
          `GET ${describeUrl(url)} redirected to ${next.protocol}//${next.host}, which ${checked.reason}`,
        );
      }
      url = checked.url;
      continue;
    }

    if (status === 200 || status === 206) {
      return success(response, status, url, redirects, request, maxGzipExpansion);
    }
    if (status === 416 && request.resumeFrom) {
      await discard(response);
      return {
        status: 416,
        body: Readable.from([]),
        contentEncoding: 'identity',
        strongEtag: strongEtagOf(response.headers),
        acceptsRanges: true,
        ...lastModifiedOf(response.headers),
        rangeStart: 0,
        totalBytes: parseUnsatisfiedRange(header(response.headers, 'content-range')),
        contentLength: 0,
        encodedBytesRead: () => undefined,
        redirects,
        cancel() {},
      };
    }
    await discard(response);
    throw statusError(status, url, response.headers, deps.now());
  }
}

function success(
  response: Dispatcher.ResponseData,
  status: 200 | 206,
  url: URL,
  redirects: number,
  request: FileRequest,
  maxGzipExpansion: number,
): FileResponse {
  const encoding = (header(response.headers, 'content-encoding') ?? 'identity').trim().toLowerCase();
  if (encoding !== 'identity' && encoding !== 'gzip' && encoding !== 'x-gzip') {
    response.body.destroy();
    throw new FileDownloadError(
      `GET ${describeUrl(url)} answered with unsupported Content-Encoding ${encoding}`,
    );
  }
  const gzip = encoding !== 'identity';
  let rangeStart = 0;
  let totalBytes: number | undefined;
  if (status === 206) {
    const range = parseContentRange(header(response.headers, 'content-range'));
    if (range === undefined || !request.resumeFrom) {
      response.body.destroy();
      throw new FileDownloadError(
        `GET ${describeUrl(url)} answered 206 with ${range === undefined ? 'an unusable Content-Range' : 'a range nobody asked for'}`,
      );
    }
    rangeStart = range.start;
    totalBytes = range.total;
  }
  let body: AsyncIterable<Buffer> = response.body;
  let gunzip: Gunzip | undefined;
  if (gzip) {
    // 256 KiB, like undici's reads: 64 KiB chunks cost 15-20% more CPU per MB in scripts/bench
    // (per-chunk work in the framer and sinks, and four times the garbage).
    const decoder = createGunzip({ chunkSize: 256 * 1024 });
    gunzip = decoder;
    // Not pipeline(): on a socket error or an idle timeout it destroys the gunzip stream, and
    // with it what zlib had already decoded, so a cut lost the lines just before it (and
    // whether any got through was a matter of timing). Ending zlib's input instead lets it hand
    // over all it can decode; it then fails on the truncated stream, and the reader is told
    // the network's reason, not zlib's.
    let networkError: Error | undefined;
    response.body.on('error', (error: Error) => {
      networkError ??= error;
      if (!decoder.destroyed) decoder.end();
    });
    response.body.pipe(decoder);
    body = decoded(decoder, () => networkError, {
      maxGzipExpansion,
      what: `GET ${describeUrl(url)}`,
      stop: () => response.body.destroy(),
    });
  }
  const declaredLength = header(response.headers, 'content-length');
  const contentLength =
    declaredLength !== undefined && /^\d+$/.test(declaredLength.trim()) ? Number(declaredLength) : undefined;
  return {
    status,
    body,
    contentEncoding: gzip ? 'gzip' : 'identity',
    strongEtag: strongEtagOf(response.headers),
    acceptsRanges: (header(response.headers, 'accept-ranges') ?? '').toLowerCase().includes('bytes'),
    ...lastModifiedOf(response.headers),
    rangeStart,
    totalBytes,
    contentLength: Number.isSafeInteger(contentLength) ? contentLength : undefined,
    encodedBytesRead: () => gunzip?.bytesWritten,
    redirects,
    cancel() {
      // Destroying an unfinished undici body emits an AbortError; we asked for it, so nobody must hear it.
      const ignore = () => {};
      gunzip?.on('error', ignore);
      response.body.on('error', ignore);
      gunzip?.destroy();
      response.body.destroy();
    },
  };
}

/**
 * The gunzipped body; a failed connection surfaces after everything decodable, with its own
 * reason. A body that decodes to far more than FHIR NDJSON ever does is stopped: a few
 * megabytes of gzip can hold gigabytes of blank lines, each one work for the framer.
 */
async function* decoded(
  decoder: Gunzip,
  networkError: () => Error | undefined,
  limit: { readonly maxGzipExpansion: number; readonly what: string; readonly stop: () => void },
): AsyncGenerator<Buffer> {
  let decodedBytes = 0;
  let tooLarge: FileDownloadError | undefined;
  try {
    for await (const chunk of decoder) {
      decodedBytes += (chunk as Buffer).length;
      // bytesWritten: the compressed bytes zlib has consumed, including those behind this chunk.
      const compressedBytes = decoder.bytesWritten;
      const allowed = limit.maxGzipExpansion * Math.max(compressedBytes, GZIP_EXPANSION_MIN_BASE_BYTES);
      if (decodedBytes > allowed) {
        tooLarge = new FileDownloadError(
          `${limit.what}: the gzip body decoded to ${decodedBytes} bytes from ${compressedBytes} compressed ` +
            `(${(decodedBytes / compressedBytes).toFixed(0)}×), over the limit of ${limit.maxGzipExpansion}× ` +
            `(maxGzipExpansion; at least ${limit.maxGzipExpansion * GZIP_EXPANSION_MIN_BASE_BYTES} bytes always pass): ` +
            'a gzip bomb, or data far more repetitive than FHIR NDJSON',
        );
        break;
      }
      yield chunk as Buffer;
    }
  } catch (error) {
    throw networkError() ?? error;
  }
  if (tooLarge) {
    limit.stop();
    throw tooLarge;
  }
  // zlib ended cleanly, yet the connection failed: a cut exactly between two gzip members
  // would look complete. Report it; a resume from the last line finds out (416 if nothing is left).
  const cut = networkError();
  if (cut) throw cut;
}

/** Maps a non-success status to the pipeline's error, as the state machine must treat it. */
export function statusError(
  status: number,
  url: URL,
  headers: Record<string, string | string[] | undefined>,
  now: Date,
): Error {
  const what = `GET ${describeUrl(url)} answered ${status}`;
  if (status === 401) return new AccessTokenRejectedError(what);
  if (status === 410) return new FileLinkExpiredError(`${what}: the file link has expired`);
  if (status === 404) {
    const error = new FileLinkExpiredError(`${what}: the file is not (or no longer) there`);
    mayBeTransient.add(error);
    return error;
  }
  if (status === 429 || status >= 500) {
    return new TransientServerError(what, clampedRetryAfter(header(headers, 'retry-after'), now));
  }
  return new FileDownloadError(what);
}

/** Retry-After (seconds or HTTP-date) clamped to [1, 120] s: a file download waits inside one Lambda. */
export function clampedRetryAfter(value: string | undefined, now: Date): number | undefined {
  const seconds = parseRetryAfter(value, now);
  if (seconds === undefined) return undefined;
  return Math.min(RETRY_AFTER_CEILING_SECONDS, Math.max(RETRY_AFTER_FLOOR_SECONDS, seconds));
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function strongEtagOf(headers: Record<string, string | string[] | undefined>): string | undefined {
  const etag = header(headers, 'etag')?.trim();
  // If-Range needs a strong validator (RFC 9110 §13.1.5); a weak one cannot resume.
  if (etag === undefined || etag === '' || etag.startsWith('W/')) return undefined;
  return etag;
}

function lastModifiedOf(
  headers: Record<string, string | string[] | undefined>,
): Pick<FileResponse, 'lastModified' | 'strongLastModified'> {
  const lastModified = header(headers, 'last-modified')?.trim() || undefined;
  const modifiedAt = lastModified === undefined ? Number.NaN : Date.parse(lastModified);
  const sentAt = Date.parse(header(headers, 'date') ?? '');
  const strong = Number.isFinite(modifiedAt) && Number.isFinite(sentAt) && sentAt - modifiedAt >= 1000;
  return { lastModified, strongLastModified: strong ? lastModified : undefined };
}

/** `bytes 100-199/200` or `bytes 100-199/*`. */
function parseContentRange(
  value: string | undefined,
): { start: number; total: number | undefined } | undefined {
  const match = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(value ?? '');
  if (!match) return undefined;
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) return undefined;
  return { start, total: match[3] === '*' ? undefined : Number(match[3]) };
}

/** `bytes *\/200` on a 416. */
function parseUnsatisfiedRange(value: string | undefined): number | undefined {
  const match = /^\s*bytes\s+\*\/(\d+)\s*$/i.exec(value ?? '');
  return match ? Number(match[1]) : undefined;
}

async function discard(response: Dispatcher.ResponseData): Promise<void> {
  // Read a small body to keep the connection reusable; give up on a large one.
  try {
    await response.body.dump({ limit: 64 * 1024 });
  } catch {
    // The connection is closed instead; nothing of ours is lost.
  }
}

function networkReason(error: unknown): string {
  // Ours already say what happened (the HTTP agent's timeouts name their limit).
  if (error instanceof PipelineError) return error.message;
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  return typeof code === 'string' ? `${code} (${message})` : message;
}
