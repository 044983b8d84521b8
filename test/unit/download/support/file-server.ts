import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';

/**
 * A tiny, deterministic bulk data file server for tests and the benchmark.
 * It serves one body with the behaviours that matter to a downloader
 * (ranges with If-Range, gzip, redirects) and injects one fault per request,
 * in the order given, so that each test says exactly what goes wrong when.
 *
 * It shares no code with lambdas/: it must not agree with our bugs.
 */

/** A body too large to hold (the benchmark): its size, and any slice of it on demand. */
export interface BodySource {
  readonly size: number;
  slice(start: number, end: number): Buffer;
}

export function bufferSource(body: Buffer): BodySource {
  return { size: body.length, slice: (start, end) => body.subarray(start, end) };
}

/** `block` repeated `copies` times, without materialising it. */
export function repeatingSource(block: Buffer, copies: number): BodySource {
  const size = block.length * copies;
  return {
    size,
    slice(start, end) {
      const out = Buffer.allocUnsafe(end - start);
      let written = 0;
      let at = start;
      while (at < end) {
        const offset = at % block.length;
        const take = Math.min(block.length - offset, end - at);
        block.copy(out, written, offset, offset + take);
        written += take;
        at += take;
      }
      return out;
    },
  };
}

export type Fault =
  /** Send this many body bytes (after encoding), then cut the connection. */
  | { readonly kind: 'drop'; readonly afterBytes: number }
  /** Send this many body bytes, then go silent (the client's idle timeout must fire). */
  | { readonly kind: 'stall'; readonly afterBytes: number }
  /** Answer with this status (and headers) instead of the file. */
  | { readonly kind: 'status'; readonly status: number; readonly headers?: Record<string, string> }
  /** Answer 200 with the whole file even if a range was asked for. */
  | { readonly kind: 'ignore-range' }
  /** Take the request and never answer it, not even with headers (the client's headers timeout must fire). */
  | { readonly kind: 'no-answer' }
  /** Send the body this many bytes at a time, one write per interval: never silent long, always slow. */
  | { readonly kind: 'trickle'; readonly bytesPerWrite: number; readonly intervalMs: number };

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  /** What the server answered. */
  status?: number;
}

export interface FileServerOptions {
  readonly body: Buffer | BodySource;
  /** Advertise and honour `Range`. @default true */
  readonly ranges?: boolean;
  /** Strong ETag to send; `null` for none. @default a hash of the body's size */
  readonly etag?: string | null;
  /**
   * Last-Modified to send; `null` for none; `'now'` for the response's own Date (a weak
   * validator: not a second older than the response). @default a date long past (strong)
   */
  readonly lastModified?: string | null;
  /** Gzip the body when the client accepts it. @default false */
  readonly gzip?: boolean;
  /** Send Content-Length (on gzip responses too, as servers of precompressed files do); false streams without one. @default true */
  readonly contentLength?: boolean;
  /** When set, requests without `Authorization: Bearer <token>` get 401. */
  readonly token?: string;
  /** Faults for requests 1, 2, …; `undefined` entries and requests past the end are served normally. */
  readonly faults?: readonly (Fault | undefined)[];
  /** Bytes per write. @default 64 KiB */
  readonly writeBytes?: number;
}

export interface FileServer {
  /** `http://127.0.0.1:<port>` */
  readonly origin: string;
  /** The file's URL (`/files/data.ndjson`). */
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Change the ETag from now on (the file "changed"). */
  setEtag(etag: string | null): void;
  /** Extra routes: path → handler (for redirects in tests). */
  route(path: string, handler: (headers: IncomingHttpHeaders, response: ServerResponse) => void): void;
  close(): Promise<void>;
}

export async function startFileServer(options: FileServerOptions): Promise<FileServer> {
  const source = Buffer.isBuffer(options.body) ? bufferSource(options.body) : options.body;
  const writeBytes = options.writeBytes ?? 64 * 1024;
  const ranges = options.ranges ?? true;
  let etag =
    options.etag === undefined
      ? `"${createHash('sha256').update(String(source.size)).digest('hex').slice(0, 16)}"`
      : options.etag;
  // Gzip is computed once for small bodies (tests); the benchmark serves identity.
  let gzipped: Buffer | undefined;
  const requests: RecordedRequest[] = [];
  const routes = new Map<string, (headers: IncomingHttpHeaders, response: ServerResponse) => void>();
  let served = 0;

  const server: Server = createServer((request, response) => {
    const recorded: RecordedRequest = {
      method: request.method ?? '',
      url: request.url ?? '',
      headers: request.headers,
    };
    requests.push(recorded);
    response.on('finish', () => {
      recorded.status = response.statusCode;
    });
    const path = (request.url ?? '').split('?')[0]!;
    const extra = routes.get(path);
    if (extra) {
      extra(request.headers, response);
      return;
    }
    if (path !== '/files/data.ndjson') {
      response.writeHead(404).end();
      return;
    }
    const fault = options.faults?.[served];
    served++;
    if (options.token !== undefined && request.headers.authorization !== `Bearer ${options.token}`) {
      recorded.status = 401;
      response
        .writeHead(401, { 'content-type': 'application/fhir+json' })
        .end('{"resourceType":"OperationOutcome"}');
      return;
    }
    if (fault?.kind === 'no-answer') return;
    if (fault?.kind === 'status') {
      recorded.status = fault.status;
      response.writeHead(fault.status, fault.headers ?? {}).end();
      return;
    }

    const headers: Record<string, string | number> = { 'content-type': 'application/fhir+ndjson' };
    const now = new Date().toUTCString();
    const lastModified =
      options.lastModified === undefined
        ? 'Wed, 01 Jan 2025 00:00:00 GMT'
        : options.lastModified === 'now'
          ? now
          : options.lastModified;
    if (etag !== null) headers.etag = etag;
    if (lastModified !== null) headers['last-modified'] = lastModified;
    if (options.lastModified === 'now') headers.date = now;
    if (ranges) headers['accept-ranges'] = 'bytes';
    let start = 0;
    let status = 200;
    const range = /^bytes=(\d+)-$/.exec(String(request.headers.range ?? ''));
    const ifRange = request.headers['if-range'];
    if (
      ranges &&
      range &&
      fault?.kind !== 'ignore-range' &&
      (ifRange === undefined || ifRange === etag || ifRange === lastModified)
    ) {
      start = Number(range[1]);
      if (start >= source.size) {
        recorded.status = 416;
        response.writeHead(416, { ...headers, 'content-range': `bytes */${source.size}` }).end();
        return;
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${source.size - 1}/${source.size}`;
    }
    const acceptsGzip = /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''));
    let body: BodySource = source;
    if (options.gzip && acceptsGzip && status === 200) {
      gzipped ??= gzipSync(source.slice(0, source.size));
      body = bufferSource(gzipped);
      headers['content-encoding'] = 'gzip';
      // Another representation, another strong ETag (RFC 9110 §8.8.3).
      if (etag !== null) headers.etag = `${etag.slice(0, -1)}-gzip"`;
    }
    if (options.contentLength !== false) headers['content-length'] = body.size - start;
    recorded.status = status;
    response.writeHead(status, headers);
    const end =
      fault?.kind === 'drop' || fault?.kind === 'stall'
        ? Math.min(body.size, start + fault.afterBytes)
        : body.size;
    const step = fault?.kind === 'trickle' ? fault.bytesPerWrite : writeBytes;
    const pauseMs = fault?.kind === 'trickle' ? fault.intervalMs : 0;
    void stream(response, body, start, end, step, pauseMs).then(() => {
      // A moment for the client to read what it got, as when a connection dies mid-file.
      if (fault?.kind === 'drop') setTimeout(() => response.socket?.destroy(), 100);
      else if (fault?.kind === 'stall') {
        // Silence: the client's idle-read timeout must end this.
      } else response.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  return {
    origin,
    url: `${origin}/files/data.ndjson`,
    requests,
    setEtag(next) {
      etag = next;
    },
    route(path, handler) {
      routes.set(path, handler);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function stream(
  response: ServerResponse,
  body: BodySource,
  start: number,
  end: number,
  step: number,
  pauseMs: number,
) {
  for (let at = start; at < end; at += step) {
    if (at > start && pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    if (response.destroyed) return;
    const ok = response.write(body.slice(at, Math.min(end, at + step)));
    if (!ok) {
      await new Promise<void>((resolve) => {
        const done = () => {
          response.off('drain', done);
          response.off('close', done);
          resolve();
        };
        response.on('drain', done);
        response.on('close', done);
      });
    }
  }
  // Let the last write reach the socket before a fault cuts it.
  await new Promise<void>((resolve) =>
    response.writableNeedDrain ? response.once('drain', resolve) : resolve(),
  );
}
