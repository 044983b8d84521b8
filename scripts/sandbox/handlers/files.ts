/**
 * Output file requests, on the main origin (bearer token when the manifest says so, gzip,
 * Range) and on the second origin (an S3-like host: presigned URLs, no Authorization header
 * allowed, Range, no gzip).
 */
import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { createGzip, constants as zlibConstants } from 'node:zlib';
import type { Routed, SandboxState } from '../context.js';
import { type SpooledFile, spooledChunks } from '../export/file-source.js';
import type { ExportFile, ExportJob } from '../export/jobs.js';
import { publishedPages } from '../export/partial-manifests.js';
import { targetsFile } from '../faults.js';
import { acceptsGzip, FHIR_NDJSON, httpDate, sendOutcome, sendText, sleep } from '../http.js';

/** The job and file a file URL names, when the job's files can be served. */
function lookup(
  state: SandboxState,
  jobId: string,
  name: string,
): { job: ExportJob; file: ExportFile } | undefined {
  const job = state.jobs.get(jobId);
  if (!job) return undefined;
  const now = state.nowMs();
  const jobState = job.state(now);
  const file = job.file(name);
  if (!file) return undefined;
  if (jobState === 'complete') return { job, file };
  // A running job serves the files its partial manifests list (IG: only files "available for retrieval").
  if (
    job.init.allowPartialManifests &&
    (jobState === 'in-progress' || jobState === 'failed') &&
    publishedPages(job, now, state.options.partialManifestPageSize).some((page) =>
      [...page.output, ...page.error].includes(file),
    )
  ) {
    return { job, file };
  }
  return undefined;
}

/** A file broken by the test (Sandbox.breakFiles): 403 until repaired. True when it is broken. */
function brokenFile(state: SandboxState, routed: Routed, file: ExportFile): boolean {
  if (![...state.brokenFiles].some((matches) => matches(file))) return false;
  routed.info.fault = 'brokenFile';
  sendOutcome(
    routed.res,
    403,
    'forbidden',
    'Injected fault (brokenFile): this file cannot be served for now',
  );
  return true;
}

/** Count faults answered instead of the file (first n GETs of each file). True when one fired. */
function statusFault(state: SandboxState, routed: Routed, job: ExportJob, file: ExportFile): boolean {
  const { res, info } = routed;
  const faults = job.init.faults;
  const retryAfter = { 'retry-after': String(state.options.retryAfterSeconds) };
  if (file.faults.take('file401', faults.file401)) {
    info.fault = 'file401';
    sendOutcome(res, 401, 'login', 'Injected fault (file401): the access token was not accepted', {
      'www-authenticate': 'Bearer realm="fhir-sandbox", error="invalid_token"',
    });
    return true;
  }
  if (file.faults.take('file404', faults.file404)) {
    info.fault = 'file404';
    sendOutcome(res, 404, 'not-found', 'Injected fault (file404): file not found (yet)');
    return true;
  }
  if (file.faults.take('file429', faults.file429)) {
    info.fault = 'file429';
    sendOutcome(res, 429, 'throttled', 'Injected fault (file429): too many requests', retryAfter);
    return true;
  }
  if (file.faults.take('file5xx', faults.file5xx)) {
    info.fault = 'file5xx';
    sendText(res, 503, 'Service Unavailable', retryAfter);
    return true;
  }
  return false;
}

export async function handleMainFile(
  state: SandboxState,
  routed: Routed,
  jobId: string,
  name: string,
): Promise<void> {
  const { req, res, info } = routed;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendOutcome(res, 405, 'not-supported', `${req.method} is not supported on a file`, {
      allow: 'GET, HEAD',
    });
    return;
  }
  const found = lookup(state, jobId, name);
  if (!found) {
    sendOutcome(res, 404, 'not-found', 'no such file (the export may have been deleted or may have expired)');
    return;
  }
  const { job, file } = found;
  info.clientId = job.clientId;
  if (brokenFile(state, routed, file)) return;
  const linkLifetimeMs = job.init.faults.fileLinkLifetimeMs ?? state.options.fileLinkLifetimeMs;
  if (linkLifetimeMs !== undefined) {
    const path = `/files/${job.id}/${encodeURIComponent(name)}`;
    const check = state.signer.checkExpiringLink(path, new URLSearchParams(routed.query), state.nowMs());
    if (check === 'expired') {
      info.fault = job.init.faults.fileLinkLifetimeMs !== undefined ? 'fileLinkLifetimeMs' : undefined;
      sendOutcome(res, 410, 'expired', 'this file link has expired; read the manifest again for fresh links');
      return;
    }
    if (check !== 'valid') {
      sendOutcome(res, 403, 'forbidden', 'this file link is not signed');
      return;
    }
  }
  if (job.init.requiresAccessToken) {
    const grant = state.authenticate(routed);
    if (!grant) return;
    if (grant.clientId !== job.clientId) {
      sendOutcome(res, 403, 'forbidden', 'this export belongs to another client');
      return;
    }
    if (!state.coversJob(grant, job)) {
      sendOutcome(res, 403, 'forbidden', "the access token's scopes do not cover every exported type");
      return;
    }
  }
  if (req.method === 'GET' && statusFault(state, routed, job, file)) return;
  if (job.init.faults.redirectFiles) {
    // Oracle Health: the file lives in S3; the FHIR server answers with a presigned URL.
    info.fault = 'redirectFiles';
    const path = `/files/${job.id}/${encodeURIComponent(name)}`;
    const location = state.signer.presign(
      state.secondOrigin,
      path,
      state.nowMs(),
      state.options.presignedLinkSeconds,
    );
    res.writeHead(307, { location, 'cache-control': 'no-store', 'content-length': 0 });
    res.end();
    return;
  }
  await serveBody(state, routed, job, file, true);
}

function s3Error(res: ServerResponse, status: number, code: string, message: string): void {
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(xml) });
  res.end(xml);
}

export async function handleSecondOriginFile(
  state: SandboxState,
  routed: Routed,
  jobId: string,
  name: string,
): Promise<void> {
  const { req, res, info } = routed;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    s3Error(res, 405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
    return;
  }
  if (req.headers.authorization !== undefined) {
    // What S3 says to a presigned URL that also carries an Authorization header.
    s3Error(
      res,
      400,
      'InvalidArgument',
      'Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified',
    );
    return;
  }
  const path = `/files/${encodeURIComponent(jobId)}/${encodeURIComponent(name)}`;
  const check = state.signer.checkPresigned(path, new URLSearchParams(routed.query), state.nowMs());
  if (check === 'missing') {
    s3Error(res, 403, 'AccessDenied', 'Access Denied');
    return;
  }
  if (check === 'bad-signature') {
    s3Error(
      res,
      403,
      'SignatureDoesNotMatch',
      'The request signature we calculated does not match the signature you provided.',
    );
    return;
  }
  if (check === 'expired') {
    s3Error(res, 403, 'AccessDenied', 'Request has expired');
    return;
  }
  const found = lookup(state, jobId, name);
  if (!found) {
    s3Error(res, 404, 'NoSuchKey', 'The specified key does not exist.');
    return;
  }
  const { job, file } = found;
  info.clientId = job.clientId;
  if (brokenFile(state, routed, file)) return;
  // Files listed on this origin meet their count faults here; redirected ones met them on the main origin.
  if (req.method === 'GET' && job.init.faults.filesFromSecondOrigin && statusFault(state, routed, job, file))
    return;
  await serveBody(state, routed, job, file, false);
}

type ByteRange = { readonly start: number; readonly end: number };

/** RFC 9110 single byte range; undefined means "ignore the header" (invalid or several ranges). */
function parseRange(header: string, length: number): ByteRange | 'unsatisfiable' | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return undefined;
  const [, first, last] = match;
  if (first === '') {
    if (last === '') return undefined;
    const suffix = Number(last);
    if (suffix === 0 || length === 0) return 'unsatisfiable';
    return { start: Math.max(0, length - suffix), end: length - 1 };
  }
  const start = Number(first);
  if (last !== '' && Number(last) < start) return undefined;
  if (start >= length) return 'unsatisfiable';
  return { start, end: last === '' ? length - 1 : Math.min(Number(last), length - 1) };
}

async function serveBody(
  state: SandboxState,
  routed: Routed,
  job: ExportJob,
  file: ExportFile,
  mayGzip: boolean,
): Promise<void> {
  const { req, res, info } = routed;
  const layout = await state.spooled(job, file);
  if (res.destroyed) return;
  const etag = `"${job.id}.${file.name}"`;
  const headers: Record<string, string | number> = {
    'content-type': FHIR_NDJSON,
    'accept-ranges': 'bytes',
    'last-modified': httpDate(Date.parse(job.transactionTime)),
    'cache-control': 'private, no-store',
  };
  if (mayGzip) headers.vary = 'Accept-Encoding';

  const rangeHeader = req.headers.range;
  const ifRange = req.headers['if-range'];
  let range: ByteRange | undefined;
  // If-Range names the version by its strong ETag or by its Last-Modified date (RFC 9110 §13.1.5).
  const sameVersion = ifRange === undefined || ifRange === etag || ifRange === headers['last-modified'];
  if (rangeHeader !== undefined && sameVersion) {
    const parsed = parseRange(rangeHeader, layout.length);
    if (parsed === 'unsatisfiable') {
      res.writeHead(416, {
        ...headers,
        etag,
        'content-range': `bytes */${layout.length}`,
        'content-length': 0,
      });
      res.end();
      return;
    }
    range = parsed;
  }
  // A client resuming with Range gets identity bytes it can count, even if it also accepts gzip.
  const gzip = mayGzip && rangeHeader === undefined && acceptsGzip(req.headers['accept-encoding']);
  const compressed = gzip ? state.gzippedIfReady(job, file, req.method ?? 'GET') : undefined;

  if (range) {
    res.writeHead(206, {
      ...headers,
      etag,
      'content-range': `bytes ${range.start}-${range.end}/${layout.length}`,
      'content-length': range.end - range.start + 1,
    });
  } else if (gzip) {
    res.writeHead(200, {
      ...headers,
      etag: `"${job.id}.${file.name}.gz"`,
      'content-encoding': 'gzip',
      // Compressed on the fly (the copy is not made yet), the length is unknown: chunked.
      ...(compressed ? { 'content-length': compressed.length } : {}),
    });
  } else {
    res.writeHead(200, { ...headers, etag, 'content-length': layout.length });
  }
  if (req.method === 'HEAD') {
    res.end();
    return;
  }

  const faults = job.init.faults;
  const drop = faults.dropAfterBytes;
  const dropAfter =
    drop && targetsFile(drop, file.outputIndex) && file.faults.take('dropAfterBytes', drop.times ?? 1)
      ? drop.bytes
      : undefined;
  const slow =
    faults.slowFile && targetsFile(faults.slowFile, file.outputIndex) ? faults.slowFile : undefined;
  if (slow) info.fault = 'slowFile';
  else if (file.servedSource !== file.source) info.fault = 'malformedLine';

  const chunks = bodyChunks(layout, range, gzip, compressed);
  await pump(res, chunks, {
    ...(dropAfter !== undefined ? { dropAfter, onDrop: () => (info.fault = 'dropAfterBytes') } : {}),
    ...(slow && 'bytesPerSecond' in slow ? { bytesPerSecond: slow.bytesPerSecond } : {}),
    ...(slow && 'stallAfterBytes' in slow
      ? { stall: { after: slow.stallAfterBytes, ms: slow.stallMs } }
      : {}),
  });
}

async function* bodyChunks(
  layout: SpooledFile,
  range: ByteRange | undefined,
  gzip: boolean,
  compressed: SpooledFile | undefined,
): AsyncGenerator<Buffer> {
  if (compressed) {
    yield* spooledChunks(compressed);
    return;
  }
  const identity = spooledChunks(layout, range?.start ?? 0, range?.end ?? layout.length - 1);
  if (!gzip) {
    yield* identity;
    return;
  }
  const input = Readable.from(identity, { objectMode: false, highWaterMark: 1024 * 1024 });
  // Level 1: on loopback, compression speed matters more than ratio.
  const gz = createGzip({ level: zlibConstants.Z_BEST_SPEED, chunkSize: 128 * 1024 });
  input.pipe(gz);
  try {
    for await (const chunk of gz) yield chunk as Buffer;
  } finally {
    input.destroy();
    gz.destroy();
  }
}

interface PumpPlan {
  /** Destroy the socket once this many body bytes were sent. */
  readonly dropAfter?: number;
  readonly onDrop?: () => void;
  readonly bytesPerSecond?: number;
  readonly stall?: { readonly after: number; readonly ms: number };
}

function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Writes chunks with backpressure, applying the body faults; stops quietly if the client goes away. */
async function pump(res: ServerResponse, chunks: AsyncGenerator<Buffer>, plan: PumpPlan): Promise<void> {
  let sent = 0;
  let stalled = false;
  const started = performance.now();
  try {
    for await (const chunk of chunks) {
      let rest = chunk;
      while (rest.length > 0) {
        if (res.destroyed) return;
        if (plan.dropAfter !== undefined && sent >= plan.dropAfter) {
          // dropAfter 0: cut right after the headers (without this, no byte is ever due and the loop spins).
          plan.onDrop?.();
          res.destroy();
          return;
        }
        let size = rest.length;
        if (plan.bytesPerSecond !== undefined)
          size = Math.min(size, Math.max(1, Math.ceil(plan.bytesPerSecond / 20)));
        if (plan.dropAfter !== undefined) size = Math.min(size, plan.dropAfter - sent);
        if (plan.stall && !stalled && plan.stall.after > sent) size = Math.min(size, plan.stall.after - sent);
        if (size > 0) {
          const piece = rest.subarray(0, size);
          rest = rest.subarray(size);
          sent += size;
          if (plan.dropAfter !== undefined && sent >= plan.dropAfter) {
            // Cut only once these bytes have reached the socket, so the client gets exactly dropAfter bytes.
            await new Promise<void>((resolve) => {
              res.once('close', resolve);
              res.write(piece, () => resolve());
            });
            plan.onDrop?.();
            res.destroy();
            return;
          }
          if (!res.write(piece)) await drainOrClose(res);
        }
        if (plan.stall && !stalled && sent >= plan.stall.after) {
          stalled = true;
          await sleep(plan.stall.ms);
        }
        if (plan.bytesPerSecond !== undefined) {
          const due = (sent / plan.bytesPerSecond) * 1000 - (performance.now() - started);
          if (due > 0) await sleep(due);
        }
      }
    }
    res.end();
  } finally {
    await chunks.return(undefined);
  }
}
