/**
 * NDJSON files as lazily generated line sequences. A file is generated once into a spool file
 * on disk (its length is the Content-Length), and served from there, as a real server serves
 * the files its export wrote. Nothing here ever holds a whole file in memory.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rm, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createGzip, constants as zlibConstants } from 'node:zlib';

export interface LineSource {
  /** Lines from 0-based line `from` to the end of the file, without their newline. */
  lines(from: number): Iterable<string>;
}

/** A file as served, spooled to disk once: Range and repeated downloads then cost no generation. */
export interface SpooledFile {
  /** Bytes in the file: every line plus its `\n`. */
  readonly length: number;
  readonly path: string;
}

/** Bytes per write when serving: large writes keep loopback throughput in the hundreds of MB/s. */
export const CHUNK_BYTES = 1024 * 1024;
const SPOOL_CHUNK_BYTES = 1024 * 1024;

export function arraySource(lines: readonly string[]): LineSource {
  return { lines: (from) => lines.slice(from) };
}

/** Replaces the line at 0-based `index` (served content only; the true content stays intact). */
export function withReplacedLine(source: LineSource, index: number, replacement: string): LineSource {
  return {
    *lines(from) {
      let i = from;
      for (const line of source.lines(from)) {
        yield i === index ? replacement : line;
        i++;
      }
    },
  };
}

/** Every line passed through `rewrite` (the nonConformant fault: part of the true content). */
export function withRewrittenLines(source: LineSource, rewrite: (line: string) => string): LineSource {
  return {
    *lines(from) {
      for (const line of source.lines(from)) yield rewrite(line);
    },
  };
}

/**
 * Generates the file once into `path` (the counting pass that gives Content-Length), writing
 * one chunk while generating the next, and yielding to the event loop between chunks so other
 * requests are served meanwhile. Memory stays at a couple of chunks whatever the file size.
 */
export async function spool(source: LineSource, path: string, signal?: AbortSignal): Promise<SpooledFile> {
  const handle = await open(path, 'w');
  let length = 0;
  try {
    let pending: Promise<unknown> = Promise.resolve();
    for (const chunk of packLines(source.lines(0)[Symbol.iterator](), SPOOL_CHUNK_BYTES)) {
      await pending;
      signal?.throwIfAborted();
      pending = handle.write(chunk);
      length += chunk.length;
    }
    await pending;
  } catch (error) {
    await handle.close();
    await rm(path, { force: true });
    throw error;
  }
  await handle.close();
  return { length, path };
}

/**
 * The spooled file compressed once into `path`, as servers that keep gzipped copies of their
 * export files do (S3 or a CDN with `Content-Encoding: gzip`): each gzip download then costs a
 * file read, not a compression pass, and carries a Content-Length.
 */
export async function gzipSpool(file: SpooledFile, path: string, signal?: AbortSignal): Promise<SpooledFile> {
  try {
    await pipeline(
      createReadStream(file.path, { highWaterMark: CHUNK_BYTES }),
      // Level 1: on loopback, compression speed matters more than ratio.
      createGzip({ level: zlibConstants.Z_BEST_SPEED, chunkSize: 128 * 1024 }),
      createWriteStream(path),
      ...(signal ? [{ signal }] : []),
    );
  } catch (error) {
    await rm(path, { force: true });
    throw error;
  }
  return { length: (await stat(path)).size, path };
}

/** Bytes `start..endInclusive` of a spooled file. */
export function spooledChunks(
  file: SpooledFile,
  start = 0,
  endInclusive = file.length - 1,
): AsyncIterable<Buffer> {
  if (file.length === 0 || start > endInclusive) return (async function* () {})();
  return createReadStream(file.path, { start, end: endInclusive, highWaterMark: CHUNK_BYTES });
}

/**
 * Packs whole lines into buffers of about `chunkBytes`, writing each line straight into the
 * buffer (joining strings first is several times slower).
 */
function* packLines(lines: Iterator<string>, chunkBytes: number, first?: string): Generator<Buffer> {
  let buffer = Buffer.allocUnsafe(chunkBytes);
  let offset = 0;
  let pending = first;
  for (;;) {
    let line: string;
    if (pending !== undefined) {
      line = pending;
      pending = undefined;
    } else {
      const next = lines.next();
      if (next.done) break;
      line = next.value;
    }
    const worst = line.length * 3 + 1;
    if (offset + worst > buffer.length) {
      if (offset > 0) {
        yield buffer.subarray(0, offset);
        buffer = Buffer.allocUnsafe(chunkBytes);
        offset = 0;
      }
      if (worst > buffer.length) {
        yield Buffer.from(`${line}\n`);
        continue;
      }
    }
    offset += buffer.write(line, offset);
    buffer[offset++] = 0x0a;
  }
  if (offset > 0) yield buffer.subarray(0, offset);
}

/** The whole file as one Buffer (for tests and small files). */
export function collect(source: LineSource): Buffer {
  return Buffer.concat([...packLines(source.lines(0)[Symbol.iterator](), CHUNK_BYTES)]);
}

/** The whole file as a stream of chunks. */
export async function* stream(source: LineSource): AsyncGenerator<Buffer> {
  yield* packLines(source.lines(0)[Symbol.iterator](), CHUNK_BYTES);
}
