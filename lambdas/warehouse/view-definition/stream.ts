/**
 * A view over an NDJSON byte stream: lines are framed as they arrive (the pipeline's framer, which keeps no
 * more than the current line), each parsed, viewed and dropped, so memory stays flat whatever the file's size.
 */
import { NdjsonFramer } from '../../core/ndjson/framer.js';
import { ViewDefinitionError } from './errors.js';
import type { CompiledView } from './runner.js';
import type { Row } from './types.js';

export interface NdjsonViewOptions {
  /** Longest line accepted, in bytes (the source's maxLineBytes). */
  readonly maxLineBytes: number;
}

/**
 * The rows of every resource in the stream, in file order. A file organized by patient holds several types:
 * lines of other types than the view's give no rows. A line that is not a resource fails the stream, with its
 * line number; so does a resource the view cannot give rows for (see CompiledView.rowsOf).
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
  let line = 0;
  const rowsOfLine = function* (bytes: Uint8Array): Generator<Row> {
    line++;
    let resource: unknown;
    try {
      resource = JSON.parse(decoder.decode(bytes));
    } catch {
      throw new ViewDefinitionError(`View ${view.label}: line ${line} is not JSON (the framer passed it)`);
    }
    try {
      yield* view.rowsOf(resource);
    } catch (e) {
      if (e instanceof ViewDefinitionError) {
        throw new ViewDefinitionError(`${e.message} (line ${line})`);
      }
      throw e;
    }
  };
  for await (const chunk of source) {
    for (const bytes of framer.push(chunk).valid) yield* rowsOfLine(bytes);
  }
  for (const bytes of framer.end().valid) yield* rowsOfLine(bytes);
}
