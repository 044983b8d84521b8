/**
 * A view over an NDJSON byte stream: lines are framed as they arrive (the pipeline's framer, which keeps no
 * more than the current line), each parsed, viewed and dropped, so memory stays flat whatever the file's size.
 */
import { NdjsonFramer } from '../../core/ndjson/framer.js';
import { ViewDefinitionError } from './errors.js';
import type { CompiledView } from './runner.js';
import type { Row } from './types.js';

const NEWLINE = 0x0a;

export interface NdjsonViewOptions {
  /** Longest line accepted, in bytes (the source's maxLineBytes). */
  readonly maxLineBytes: number;
}

/**
 * The rows of every resource in the stream, in file order. A file organized by patient holds several types:
 * lines of other types than the view's give no rows. A line that is not a resource fails the stream (the
 * framer's InvalidNdjsonError, with its byte offset); so does a resource the view cannot give rows for (see CompiledView.rowsOf).
 */
export async function* rowsOfNdjson(
  view: CompiledView,
  source: AsyncIterable<Uint8Array>,
  options: NdjsonViewOptions,
): AsyncGenerator<Row, void, undefined> {
  const framer = new NdjsonFramer({
    resourceType: view.view.resource,
    resourceTypes: [],
    maxLineBytes: options.maxLineBytes,
  });
  const decoder = new TextDecoder();
  /** Counts resources, not the file's lines: the framer drops blank lines before we see them. */
  let line = 0;
  const rowsOfLine = function* (bytes: Uint8Array): Generator<Row> {
    line++;
    let resource: unknown;
    try {
      resource = JSON.parse(decoder.decode(bytes));
    } catch {
      throw new ViewDefinitionError(`View ${view.label}: resource ${line} of the file is not valid JSON`);
    }
    try {
      yield* view.rowsOf(resource);
    } catch (e) {
      if (e instanceof ViewDefinitionError) {
        throw new ViewDefinitionError(`${e.message} (resource ${line} of the file)`);
      }
      throw e;
    }
  };
  // The framer's output is the file's valid lines as byte pieces (zero-copy slices of the chunks): a piece may
  // hold many lines, or part of one (a line that spanned chunks comes as the line, then its newline).
  let partial: Uint8Array[] = [];
  const rowsOfPieces = function* (pieces: readonly Uint8Array[]): Generator<Row> {
    for (const piece of pieces) {
      let start = 0;
      for (let end = piece.indexOf(NEWLINE); end !== -1; end = piece.indexOf(NEWLINE, start)) {
        const tail = piece.subarray(start, end);
        if (partial.length === 0) {
          yield* rowsOfLine(tail);
        } else {
          partial.push(tail);
          const whole = Buffer.concat(partial);
          partial = [];
          yield* rowsOfLine(whole);
        }
        start = end + 1;
      }
      if (start < piece.length) partial.push(piece.subarray(start));
    }
  };
  for await (const chunk of source) yield* rowsOfPieces(framer.push(chunk).valid);
  yield* rowsOfPieces(framer.end().valid);
}
