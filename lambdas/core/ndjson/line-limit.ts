/**
 * The longest NDJSON line a source accepts, and the memory Download File
 * needs for it: defined here once, read by the config parser, the
 * downloader and the CDK construct, so the limit and the Lambda agree.
 *
 * A line is held whole while it is checked and cut into a part, so its cost
 * grows with its length. Measured with `npm run bench -- --scenario
 * long-lines` (docs/performance.md), 600 MiB files: peak RSS ~190 MB with
 * short lines, 275–287 MB with 15 MiB lines and 450–454 MB with 60 MiB lines,
 * i.e. 4 to 6 bytes per byte of the longest line (the line as received, the
 * line joined, its part, and up to `partConcurrency` such parts in flight).
 */

const MIB = 1024 * 1024;

/** 64 MiB: a DocumentReference or Binary with an inline attachment of ~45 MB (base64) fits. */
export const DEFAULT_MAX_LINE_BYTES = 64 * MIB;
export const MIN_MAX_LINE_BYTES = 1024;
export const MAX_MAX_LINE_BYTES = 256 * MIB;

/** Memory Download File has for everything but its longest line (measured ~190 MB), with room. */
const BASE_MEMORY_MB = 256;
/** Bytes of memory per byte of the longest line (measured 4 to 6). */
const MEMORY_PER_LINE_BYTE = 6;
/** Download File's memory when every line limit is at most the default (1,024 MB > 256 + 6 × 64 MiB). */
export const DOWNLOAD_FILE_MIN_MEMORY_MB = 1024;

/** The Lambda memory (MB, a multiple of 64) Download File needs for lines up to `maxLineBytes`. */
export function downloadFileMemoryMb(maxLineBytes: number): number {
  const needed = BASE_MEMORY_MB + (MEMORY_PER_LINE_BYTE * maxLineBytes) / 1e6;
  return Math.max(DOWNLOAD_FILE_MIN_MEMORY_MB, Math.ceil(needed / 64) * 64);
}
