import { isUtf8 } from 'node:buffer';
import { InvalidNdjsonError } from '../../errors.js';
import {
  checkResourceLine,
  describeLineProblem,
  emptyIdSpan,
  expectResourceType,
  expectResourceTypes,
  type FoundType,
  type IdSpan,
  idBytes,
  type ResourceTypeExpectation,
} from './check-line.js';

/**
 * Splits a bulk data file into lines and checks each one, keeping exact
 * counts and byte positions so a transfer can stop at a line boundary and
 * carry on later (in another Lambda invocation) from a byte offset.
 *
 * The framer is push-based and synchronous: the caller owns the loop, awaits
 * its own sink between chunks (that is the backpressure), and can stop
 * between any two chunks. For a well-formed file (LF endings, no BOM, no
 * blank lines) the output is the input, as zero-copy slices of the chunks.
 */

export type InvalidLinePolicy = 'fail' | 'quarantine';

/** How far the framer has got; every count is through the last complete line. */
export interface FramerPosition {
  /** Bytes of the (decoded) file consumed through the last complete line, its newline included. */
  readonly byteOffset: number;
  /** Lines that passed, each now in the output. */
  readonly lines: number;
  /** Empty or whitespace-only lines, dropped. */
  readonly blankLines: number;
  /** Lines that failed under the quarantine policy, now in the quarantine output. */
  readonly invalidLines: number;
  /** Mixed files (`resourceTypes`): the valid lines per resourceType. */
  readonly resourceTypeCounts?: Readonly<Record<string, number>>;
}

export interface NdjsonFramerOptions {
  /** What every line's top-level `resourceType` must be (OperationOutcome for `error` files, Bundle for `deleted`). */
  readonly resourceType: string;
  /**
   * A file organized by patient holds several types: each line's resourceType must be one of these
   * (any FHIR type name when empty) and is counted in `resourceTypeCounts`. Replaces `resourceType`.
   */
  readonly resourceTypes?: readonly string[];
  /** Longest line accepted, in bytes, without its line ending. */
  readonly maxLineBytes: number;
  /** @default 'fail' */
  readonly invalidLinePolicy?: InvalidLinePolicy;
  /** Continue from here (a resumed download starts at this byte offset, which is a line boundary). */
  readonly start?: FramerPosition;
  /**
   * Called with the UTF-8 bytes of each valid line's top-level `id` string
   * (the one JSON.parse would keep), in file order, during the push that
   * completes the line. The bytes may be a view of the chunk: use them
   * before returning. Lines without a string id are not reported (an
   * OperationOutcome may have none). Without it, ids are not looked for.
   */
  readonly onResourceId?: (id: Uint8Array) => void;
}

/** What one push produced. Every slice ends with `\n`; the arrays are empty when nothing completed. */
export interface FramedLines {
  readonly valid: Uint8Array[];
  readonly validBytes: number;
  readonly invalid: Uint8Array[];
  readonly invalidBytes: number;
}

type Verdict = 0 | 1 | 2;
const IN_RUN: Verdict = 0;
const DROPPED: Verdict = 1;
const ALONE: Verdict = 2;

const NEWLINE = 0x0a;
const CR = 0x0d;
const LF_BYTES: Uint8Array = Buffer.from('\n');
/** Held as views up to this (pinning at most a few MB of socket buffers), then copied into blocks. */
const CARRY_VIEWS_MAX_BYTES = 64 * 1024;
const CARRY_BLOCK_BYTES = 1024 * 1024;
const EMPTY: FramedLines = Object.freeze({ valid: [], validBytes: 0, invalid: [], invalidBytes: 0 });

export const FRAMER_POSITION_ZERO: FramerPosition = Object.freeze({
  byteOffset: 0,
  lines: 0,
  blankLines: 0,
  invalidLines: 0,
});

export class NdjsonFramer {
  readonly #expected: ResourceTypeExpectation;
  readonly #maxLineBytes: number;
  readonly #quarantine: boolean;
  readonly #onResourceId: ((id: Uint8Array) => void) | undefined;
  readonly #idSpan: IdSpan | undefined;

  #byteOffset: number;
  #lines: number;
  #blankLines: number;
  #invalidLines: number;
  readonly #typeCounts: Map<string, number> | undefined;
  readonly #foundType: FoundType | undefined;

  /**
   * Bytes of an unfinished line, from earlier chunks: views of the chunks
   * while the line is short, then copies in blocks of our own. A view keeps
   * alive whatever it is a view of: a network read of 1.4 KB sits in a 64 KiB
   * socket buffer, so a long line held as reads cost up to 45 times its
   * length. Blocks, not one growing buffer, so a long line is copied twice
   * (in, then joined), and no outgrown buffers wait for the GC.
   */
  #carry: Uint8Array[] = [];
  /** Whether `#carry` holds our own blocks rather than views. */
  #carryCopied = false;
  /** Bytes used in the last block, once copied. */
  #carryUsed = 0;
  #carryBytes = 0;
  /** Set once the file's first line has been seen: only it may start with a BOM. */
  #pastFirstLine: boolean;
  #ended = false;
  /** Content of the last line judged ALONE. */
  #aloneStart = 0;
  #aloneEnd = 0;

  // Output of the push in progress.
  #valid: Uint8Array[] = [];
  #validBytes = 0;
  #invalid: Uint8Array[] = [];
  #invalidBytes = 0;

  constructor(options: NdjsonFramerOptions) {
    if (!Number.isSafeInteger(options.maxLineBytes) || options.maxLineBytes < 1) {
      throw new TypeError(`maxLineBytes must be a positive integer, got ${options.maxLineBytes}`);
    }
    const start = options.start ?? FRAMER_POSITION_ZERO;
    this.#expected =
      options.resourceTypes === undefined
        ? expectResourceType(options.resourceType)
        : expectResourceTypes(options.resourceTypes);
    this.#typeCounts =
      options.resourceTypes === undefined
        ? undefined
        : new Map(Object.entries(start.resourceTypeCounts ?? {}));
    this.#foundType = options.resourceTypes === undefined ? undefined : { name: '' };
    this.#maxLineBytes = options.maxLineBytes;
    this.#quarantine = (options.invalidLinePolicy ?? 'fail') === 'quarantine';
    this.#onResourceId = options.onResourceId;
    this.#idSpan = options.onResourceId ? emptyIdSpan() : undefined;
    this.#byteOffset = start.byteOffset;
    this.#lines = start.lines;
    this.#blankLines = start.blankLines;
    this.#invalidLines = start.invalidLines;
    this.#pastFirstLine = start.byteOffset > 0;
  }

  get position(): FramerPosition {
    return {
      byteOffset: this.#byteOffset,
      lines: this.#lines,
      blankLines: this.#blankLines,
      invalidLines: this.#invalidLines,
      ...(this.#typeCounts === undefined ? {} : { resourceTypeCounts: Object.fromEntries(this.#typeCounts) }),
    };
  }

  /** Bytes held for a line not finished yet (dropped if the caller resumes from {@link position}). */
  get pendingBytes(): number {
    return this.#carryBytes;
  }

  /** Frames the lines `chunk` completes. Throws InvalidNdjsonError under the `fail` policy. */
  push(chunk: Uint8Array): FramedLines {
    if (this.#ended) throw new Error('NdjsonFramer.push() after end()');
    const length = chunk.length;
    if (length === 0) return EMPTY;
    let pos = 0;
    if (this.#carryBytes > 0) {
      const newline = chunk.indexOf(NEWLINE);
      if (newline < 0) {
        this.#hold(chunk);
        return EMPTY;
      }
      this.#hold(chunk.subarray(0, newline));
      const line = this.#takeCarry();
      const verdict = this.#line(line, 0, line.length, line.length + 1, false);
      if (verdict === IN_RUN) {
        this.#emit(line);
        this.#emit(LF_BYTES);
      } else if (verdict === ALONE) {
        this.#emitAlone(line);
      }
      pos = newline + 1;
    }

    // Most lines arrive whole inside one chunk: check UTF-8 for all of them in
    // one native call, and fall back to a per-line check only if that fails.
    const lastNewline = chunk.lastIndexOf(NEWLINE);
    const utf8Checked = lastNewline > pos && isUtf8(chunk.subarray(pos, lastNewline));

    // A run of untouched valid lines is emitted as one slice of the chunk.
    let runStart = pos;
    while (pos <= lastNewline) {
      const newline = chunk.indexOf(NEWLINE, pos);
      const verdict = this.#line(chunk, pos, newline, newline + 1 - pos, utf8Checked);
      if (verdict !== IN_RUN) {
        if (pos > runStart) this.#emit(chunk.subarray(runStart, pos));
        if (verdict === ALONE) this.#emitAlone(chunk);
        runStart = newline + 1;
      }
      pos = newline + 1;
    }
    if (pos > runStart) this.#emit(chunk.subarray(runStart, pos));
    if (pos < length) this.#hold(chunk.subarray(pos));
    return this.#flush();
  }

  /** Frames a last line that has no newline. No more pushes after this. */
  end(): FramedLines {
    if (this.#ended) return EMPTY;
    this.#ended = true;
    if (this.#carryBytes === 0) return EMPTY;
    const line = this.#takeCarry();
    if (this.#line(line, 0, line.length, line.length, false) === ALONE) this.#emitAlone(line);
    return this.#flush();
  }

  /**
   * Handles the line `b[start, end)` (no `\n`), which takes `consumed` bytes
   * of the file. Returns IN_RUN when the line goes to the output unchanged,
   * DROPPED when it was blank or quarantined, and ALONE when its content
   * (`#aloneStart`–`#aloneEnd`, BOM or CR removed, or no newline) must be
   * emitted on its own, after whatever run precedes it.
   */
  #line(b: Uint8Array, start: number, end: number, consumed: number, utf8Checked: boolean): Verdict {
    const lineStart = this.#byteOffset;
    let contentStart = start;
    let contentEnd = end;
    if (!this.#pastFirstLine) {
      this.#pastFirstLine = true;
      // A UTF-8 BOM is not JSON whitespace; some servers write one anyway.
      if (end - start >= 3 && b[start] === 0xef && b[start + 1] === 0xbb && b[start + 2] === 0xbf) {
        contentStart += 3;
      }
    }
    if (contentEnd > contentStart && b[contentEnd - 1] === CR) contentEnd--;
    const touched = contentStart !== start || contentEnd !== end;

    if (contentEnd - contentStart > this.#maxLineBytes) {
      // Never quarantined: the limit is what keeps memory bounded, and a line
      // this long means a broken file or a limit set too low, not one bad resource.
      throw this.#error(lineStart, `longer than the limit of ${this.#maxLineBytes} bytes`);
    }
    if (isBlank(b, contentStart, contentEnd)) {
      this.#byteOffset += consumed;
      this.#blankLines++;
      return DROPPED;
    }
    let reason: string | undefined;
    if (!utf8Checked && !isUtf8(b.subarray(contentStart, contentEnd))) {
      reason = 'not valid UTF-8';
    } else {
      const problem = checkResourceLine(
        b,
        contentStart,
        contentEnd,
        this.#expected,
        this.#idSpan,
        this.#foundType,
      );
      if (problem !== undefined) reason = describeLineProblem(problem, this.#expected.name);
    }
    if (reason !== undefined) {
      if (!this.#quarantine) throw this.#error(lineStart, reason);
      this.#invalid.push(b.subarray(contentStart, contentEnd), LF_BYTES);
      this.#invalidBytes += contentEnd - contentStart + 1;
      this.#byteOffset += consumed;
      this.#invalidLines++;
      return DROPPED;
    }
    this.#byteOffset += consumed;
    this.#lines++;
    if (this.#typeCounts !== undefined) {
      const type = this.#foundType!.name;
      this.#typeCounts.set(type, (this.#typeCounts.get(type) ?? 0) + 1);
    }
    if (this.#idSpan !== undefined) {
      const id = idBytes(b, this.#idSpan);
      if (id !== undefined) this.#onResourceId!(id);
    }
    // A line without its newline (the file's last) or with BOM/CR removed is
    // emitted on its own, normalised to end in exactly one `\n`.
    if (touched || consumed === end - start) {
      this.#aloneStart = contentStart;
      this.#aloneEnd = contentEnd;
      return ALONE;
    }
    return IN_RUN;
  }

  #emitAlone(b: Uint8Array): void {
    this.#emit(b.subarray(this.#aloneStart, this.#aloneEnd));
    this.#emit(LF_BYTES);
  }

  #error(lineStart: number, reason: string): InvalidNdjsonError {
    const lineNumber = this.#lines + this.#blankLines + this.#invalidLines + 1;
    return new InvalidNdjsonError(
      `NDJSON line ${lineNumber} (byte offset ${lineStart}) is invalid: ${reason}`,
    );
  }

  #hold(part: Uint8Array): void {
    if (part.length === 0) return;
    // +1: the line may still turn out to end in a CR, which does not count.
    if (this.#carryBytes + part.length > this.#maxLineBytes + 1) {
      throw this.#error(this.#byteOffset, `longer than the limit of ${this.#maxLineBytes} bytes`);
    }
    if (!this.#carryCopied && this.#carryBytes + part.length <= CARRY_VIEWS_MAX_BYTES) {
      this.#carry.push(part);
      this.#carryBytes += part.length;
      return;
    }
    if (!this.#carryCopied) {
      const views = this.#carry;
      this.#carry = [];
      this.#carryCopied = true;
      for (const view of views) this.#copyIntoBlocks(view);
    }
    this.#copyIntoBlocks(part);
    this.#carryBytes += part.length;
  }

  #copyIntoBlocks(part: Uint8Array): void {
    let from = 0;
    while (from < part.length) {
      let block = this.#carry.at(-1);
      if (block === undefined || this.#carryUsed === block.length) {
        block = Buffer.allocUnsafeSlow(CARRY_BLOCK_BYTES);
        this.#carry.push(block);
        this.#carryUsed = 0;
      }
      const take = Math.min(part.length - from, block.length - this.#carryUsed);
      block.set(part.subarray(from, from + take), this.#carryUsed);
      this.#carryUsed += take;
      from += take;
    }
  }

  #takeCarry(): Uint8Array {
    const parts = this.#carry;
    if (this.#carryCopied) parts[parts.length - 1] = parts.at(-1)!.subarray(0, this.#carryUsed);
    const line = parts.length === 1 ? parts[0]! : Buffer.concat(parts, this.#carryBytes);
    this.#carry = [];
    this.#carryCopied = false;
    this.#carryUsed = 0;
    this.#carryBytes = 0;
    return line;
  }

  #emit(slice: Uint8Array): void {
    this.#valid.push(slice);
    this.#validBytes += slice.length;
  }

  #flush(): FramedLines {
    if (this.#valid.length === 0 && this.#invalid.length === 0) return EMPTY;
    const out: FramedLines = {
      valid: this.#valid,
      validBytes: this.#validBytes,
      invalid: this.#invalid,
      invalidBytes: this.#invalidBytes,
    };
    this.#valid = [];
    this.#validBytes = 0;
    this.#invalid = [];
    this.#invalidBytes = 0;
    return out;
  }
}

function isBlank(b: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = b[i];
    if (c !== 0x20 && c !== 0x09 && c !== CR) return false;
  }
  return true;
}

/**
 * Convenience for callers that do not need to stop mid-file: frames an
 * async byte source into batches of valid lines. Pulls the next chunk only
 * when the consumer asks for the next batch, so backpressure is the
 * consumer's pace.
 */
export async function* frameNdjson(
  source: AsyncIterable<Uint8Array>,
  options: NdjsonFramerOptions,
): AsyncGenerator<FramedLines, FramerPosition> {
  const framer = new NdjsonFramer(options);
  for await (const chunk of source) {
    const framed = framer.push(chunk);
    if (framed !== EMPTY) yield framed;
  }
  const last = framer.end();
  if (last !== EMPTY) yield last;
  return framer.position;
}
