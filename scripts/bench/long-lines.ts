/**
 * The `long-lines` scenario: a file of very long NDJSON lines (a Binary or a
 * DocumentReference with its attachment inline can be tens of MB on one line)
 * through transferFile, to show what a line costs in memory. One transfer per
 * line size, each in its own process so its peak RSS is its own; a file of
 * short lines of the same size is the baseline.
 *
 * The file server here writes one TCP segment (1,448 bytes) at a time, as a
 * distant server over a real network hands a client many small reads: each
 * read sits in its own 64 KiB socket buffer, so holding a long line as those
 * reads is what used to cost ~45 times the line.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createGzip } from 'node:zlib';
import type { TransferChildRunner } from './children.js';

export interface LongLinesOptions {
  readonly runner: TransferChildRunner;
  readonly s3Endpoint: string;
  readonly bucket: string;
  /** Line sizes to measure, in MiB. */
  readonly lineMib: readonly number[];
  /** Total size of each file, in MiB (rounded to whole lines). */
  readonly fileMib: number;
  /** Serve gzip (compressed on the fly) to a client that asks for it, as most EHRs do. */
  readonly gzip: boolean;
}

const MIB = 1024 * 1024;
/** One TCP segment's payload on a 1500-byte MTU: what a client reads at a time from a distant server. */
const WRITE_BYTES = 1448;

/** `count` Binary resources of `lineBytes` each (newline included), generated as they are sent. */
function longLineFile(lineBytes: number, count: number) {
  const head = (index: number) =>
    `{"resourceType":"Binary","id":"b${String(index).padStart(6, '0')}","contentType":"application/pdf","data":"`;
  const tail = '"}\n';
  // Base64 of random bytes, as an inline PDF is: it compresses only to ~75%, like real attachments.
  const fill = Buffer.from(randomBytes((3 * MIB) / 4).toString('base64'));
  return {
    size: lineBytes * count,
    *chunks(): Generator<Buffer> {
      for (let index = 0; index < count; index++) {
        const prefix = Buffer.from(head(index));
        let dataBytes = lineBytes - prefix.length - tail.length;
        yield prefix;
        while (dataBytes > 0) {
          const piece = fill.subarray(0, Math.min(fill.length, dataBytes));
          dataBytes -= piece.length;
          yield piece;
        }
        yield Buffer.from(tail);
      }
    },
  };
}

async function serve(
  lineBytes: number,
  count: number,
  gzip: boolean,
): Promise<{ url: string; server: Server }> {
  const file = longLineFile(lineBytes, count);
  const server = createServer(async (request, response) => {
    const compress = gzip && /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''));
    response.writeHead(200, {
      'content-type': 'application/fhir+ndjson',
      ...(compress ? { 'content-encoding': 'gzip' } : { 'content-length': file.size }),
    });
    // Compressed on the fly, 16 KiB per write either way.
    const sink = compress ? createGzip() : undefined;
    sink?.on('data', (chunk: Buffer) => {
      for (let at = 0; at < chunk.length; at += WRITE_BYTES)
        response.write(chunk.subarray(at, at + WRITE_BYTES));
    });
    const out = sink ?? response;
    let writes = 0;
    for (const chunk of file.chunks()) {
      for (let at = 0; at < chunk.length; at += WRITE_BYTES) {
        out.write(chunk.subarray(at, at + WRITE_BYTES));
        // One segment per turn of the event loop, so the client's reads are segment-sized.
        if (response.writableNeedDrain) await new Promise((resolve) => response.once('drain', resolve));
        else if (++writes % 4 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
    }
    if (sink) {
      sink.end();
      await new Promise((resolve) => sink.once('end', resolve));
    }
    response.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/Binary.ndjson`, server };
}

export async function runLongLines(options: LongLinesOptions): Promise<string[]> {
  const lines: string[] = [];
  let shortLinesPeakRssMb: number | undefined;
  const cases = [
    { lineMib: 0.001, label: 'short lines (1 KiB)' },
    ...options.lineMib.map((lineMib) => ({ lineMib, label: `${lineMib} MiB lines` })),
  ];
  for (const { lineMib, label } of cases) {
    const lineBytes = Math.round(lineMib * MIB);
    const count = Math.max(1, Math.round((options.fileMib * MIB) / lineBytes));
    const { url, server } = await serve(lineBytes, count, options.gzip);
    try {
      const result = await options.runner.run('transfer', {
        url,
        endpoint: options.s3Endpoint,
        bucket: options.bucket,
        key: `bench/long-lines/${lineBytes}.ndjson`,
        resourceType: 'Binary',
        // The limit a user would set for such lines: the line plus a little.
        maxLineBytes: Math.max(16 * MIB, Math.ceil(lineBytes * 1.1)),
      });
      if (result.lines !== count)
        throw new Error(`${label}: landed ${result.lines} lines, expected ${count}`);
      shortLinesPeakRssMb ??= result.peakRssMb;
      lines.push(
        JSON.stringify({
          scenario: 'long-lines',
          case: label,
          gzip: options.gzip,
          lineMiB: +(lineBytes / MIB).toFixed(3),
          lines: count,
          mb: +(result.bytes / 1e6).toFixed(1),
          seconds: +result.seconds.toFixed(2),
          peakRssMb: result.peakRssMb,
          peakHeapMb: result.peakHeapMb,
          peakArrayBuffersMb: result.peakArrayBuffersMb,
          // Memory beyond the short-line run's, per byte of the longest line: side by side in one run.
          ...(shortLinesPeakRssMb !== undefined
            ? {
                extraRssPerLineByte: +(((result.peakRssMb - shortLinesPeakRssMb) * 1e6) / lineBytes).toFixed(
                  2,
                ),
              }
            : {}),
        }),
      );
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }
  return lines;
}
