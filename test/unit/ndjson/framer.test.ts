import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type FramerPosition,
  frameNdjson,
  NdjsonFramer,
  type NdjsonFramerOptions,
} from '../../../lambdas/core/ndjson/framer.js';
import { InvalidNdjsonError } from '../../../lambdas/errors.js';

const P = '{"resourceType":"Patient","id":"1"}';
const Q = '{"resourceType":"Patient","id":"2","name":[{"family":"Müller"}]}';
const BOM = '\uFEFF';

interface Framed {
  readonly output: string;
  readonly quarantine: string;
  readonly position: FramerPosition;
}

function frameBytes(
  input: Buffer,
  chunkSizes: readonly number[],
  options: Partial<NdjsonFramerOptions> = {},
): Framed {
  const framer = new NdjsonFramer({ resourceType: 'Patient', maxLineBytes: 1024, ...options });
  const valid: Uint8Array[] = [];
  const invalid: Uint8Array[] = [];
  let at = 0;
  for (let i = 0; at < input.length; i++) {
    const size = Math.max(1, chunkSizes.length > 0 ? chunkSizes[i % chunkSizes.length]! : input.length);
    const framed = framer.push(input.subarray(at, at + size));
    valid.push(...framed.valid);
    invalid.push(...framed.invalid);
    at += size;
  }
  const last = framer.end();
  valid.push(...last.valid);
  invalid.push(...last.invalid);
  return {
    output: Buffer.concat(valid).toString('utf8'),
    quarantine: Buffer.concat(invalid).toString('utf8'),
    position: framer.position,
  };
}

const frame = (
  input: string,
  options: Partial<NdjsonFramerOptions> = {},
  chunkSizes: readonly number[] = [],
) => frameBytes(Buffer.from(input, 'utf8'), chunkSizes, options);

describe('NdjsonFramer', () => {
  it.each<[string, string, string, Omit<FramerPosition, 'byteOffset'>]>([
    ['well-formed LF lines', `${P}\n${Q}\n`, `${P}\n${Q}\n`, { lines: 2, blankLines: 0, invalidLines: 0 }],
    ['CRLF line endings', `${P}\r\n${Q}\r\n`, `${P}\n${Q}\n`, { lines: 2, blankLines: 0, invalidLines: 0 }],
    [
      'a UTF-8 BOM at the start',
      `${BOM}${P}\n${Q}\n`,
      `${P}\n${Q}\n`,
      { lines: 2, blankLines: 0, invalidLines: 0 },
    ],
    [
      'a last line without newline',
      `${P}\n${Q}`,
      `${P}\n${Q}\n`,
      { lines: 2, blankLines: 0, invalidLines: 0 },
    ],
    [
      'a last line with CR but no LF',
      `${P}\n${Q}\r`,
      `${P}\n${Q}\n`,
      { lines: 2, blankLines: 0, invalidLines: 0 },
    ],
    [
      'blank and whitespace-only lines',
      `\n${P}\n\n \t\n\r\n${Q}\n\n`,
      `${P}\n${Q}\n`,
      { lines: 2, blankLines: 5, invalidLines: 0 },
    ],
    ['an empty file', '', '', { lines: 0, blankLines: 0, invalidLines: 0 }],
    ['only a BOM', BOM, '', { lines: 0, blankLines: 1, invalidLines: 0 }],
    [
      'BOM, CRLF and no final newline together',
      `${BOM}${P}\r\n${Q}\r`,
      `${P}\n${Q}\n`,
      { lines: 2, blankLines: 0, invalidLines: 0 },
    ],
  ])('normalises %s', (_name, input, expected, counts) => {
    // Act
    const { output, position } = frame(input);
    // Assess
    expect(output).toBe(expected);
    expect(position).toEqual({ ...counts, byteOffset: Buffer.byteLength(input) });
  });

  it.each<[string, string, Partial<NdjsonFramerOptions>, string]>([
    [
      'a line longer than the limit',
      `${P}\n${'{"resourceType":"Patient","x":"'}${'y'.repeat(100)}"}\n`,
      { maxLineBytes: 64 },
      'NDJSON line 2 (byte offset 36) is invalid: longer than the limit of 64 bytes',
    ],
    [
      'a line longer than the limit, with no newline in sight',
      `${P}\n${'x'.repeat(5000)}`,
      { maxLineBytes: 64 },
      'NDJSON line 2 (byte offset 36) is invalid: longer than the limit of 64 bytes',
    ],
    [
      'invalid UTF-8',
      `${P}\n{"resourceType":"Patient","name":"\xff"}\n`,
      {},
      'NDJSON line 2 (byte offset 36) is invalid: not valid UTF-8',
    ],
    [
      'invalid JSON',
      `${P}\n\n{"resourceType":"Patient",\n`,
      {},
      'NDJSON line 3 (byte offset 37) is invalid: not valid JSON (the line ends inside a value)',
    ],
    [
      'a wrong resourceType',
      `${P}\n{"resourceType":"Observation"}\n`,
      {},
      'NDJSON line 2 (byte offset 36) is invalid: resourceType is Observation, expected Patient',
    ],
    [
      'an error file line that is not an OperationOutcome',
      `${P}\n`,
      { resourceType: 'OperationOutcome' },
      'NDJSON line 1 (byte offset 0) is invalid: resourceType is Patient, expected OperationOutcome',
    ],
    [
      'a bad last line without newline',
      `${P}\r\n[1,2]`,
      {},
      'NDJSON line 2 (byte offset 37) is invalid: a JSON array, not an object',
    ],
  ])('fails on %s, naming line and offset but no content', (_name, input, options, message) => {
    // Prepare
    const bytes =
      Buffer.from(input, 'latin1').toString('latin1') === input && input.includes('\xff')
        ? Buffer.from(input, 'latin1')
        : Buffer.from(input, 'utf8');
    for (const chunkSizes of [[], [1], [7, 3]]) {
      // Act
      const run = () => frameBytes(bytes, chunkSizes, options);
      // Assess
      expect(run).toThrow(InvalidNdjsonError);
      expect(run).toThrow(message);
      try {
        run();
      } catch (error) {
        expect((error as InvalidNdjsonError).code).toBe('ERR_INVALID_NDJSON');
        expect((error as Error).message).toBe(message);
      }
    }
  });

  it('quarantines invalid lines instead of failing, and counts them', () => {
    // Prepare
    const bad1 = '{"resourceType":"Observation"}';
    const bad2 = '{"resourceType":"Patient"';
    const input = `${P}\r\n${bad1}\r\n\n${Q}\n${bad2}`;
    // Act
    const { output, quarantine, position } = frame(input, { invalidLinePolicy: 'quarantine' }, [5]);
    // Assess
    expect(output).toBe(`${P}\n${Q}\n`);
    expect(quarantine).toBe(`${bad1}\n${bad2}\n`);
    expect(position).toEqual({
      byteOffset: Buffer.byteLength(input),
      lines: 2,
      blankLines: 1,
      invalidLines: 2,
    });
  });

  it('still fails on an over-long line under the quarantine policy', () => {
    // Act
    const run = () => frame(`${'x'.repeat(100)}\n`, { invalidLinePolicy: 'quarantine', maxLineBytes: 10 });
    // Assess
    expect(run).toThrow('NDJSON line 1 (byte offset 0) is invalid: longer than the limit of 10 bytes');
  });

  it('passes a well-formed chunk through as one slice of the same memory', () => {
    // Prepare
    const chunk = Buffer.from(`${P}\n${Q}\n${P}\n`);
    const framer = new NdjsonFramer({ resourceType: 'Patient', maxLineBytes: 1024 });
    // Act
    const framed = framer.push(chunk);
    // Assess
    expect(framed.valid).toHaveLength(1);
    expect(framed.valid[0]!.buffer).toBe(chunk.buffer);
    expect(framed.validBytes).toBe(chunk.length);
  });

  it('continues line numbers and offsets from a start position, and does not look for a BOM there', () => {
    // Prepare
    const start = { byteOffset: 1000, lines: 10, blankLines: 2, invalidLines: 1 };
    const framer = new NdjsonFramer({ resourceType: 'Patient', maxLineBytes: 1024, start });
    framer.push(Buffer.from(`${P}\n`));
    // Act
    const run = () => framer.push(Buffer.from(`${BOM}${P}\n`));
    // Assess
    expect(run).toThrow(
      'NDJSON line 15 (byte offset 1036) is invalid: not valid JSON (unexpected byte at column 1)',
    );
  });

  it('reports the position of the last complete line, not of a pending partial one', () => {
    // Prepare
    const framer = new NdjsonFramer({ resourceType: 'Patient', maxLineBytes: 1024 });
    // Act
    framer.push(Buffer.from(`${P}\n${Q.slice(0, 10)}`));
    // Assess
    expect(framer.position).toEqual({ byteOffset: P.length + 1, lines: 1, blankLines: 0, invalidLines: 0 });
    expect(framer.pendingBytes).toBe(10);
  });

  it('frames the same way however the input is chunked', () => {
    const line = fc.constantFrom(P, Q, '', ' ', `${Q}\r`, `{"resourceType":"Observation"}`);
    fc.assert(
      fc.property(
        fc.array(line, { maxLength: 20 }),
        fc.boolean(),
        fc.boolean(),
        fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 8 }),
        (lines, bom, finalNewline, chunkSizes) => {
          // Prepare
          const input = `${bom ? BOM : ''}${lines.join('\n')}${finalNewline && lines.length > 0 ? '\n' : ''}`;
          const options = { invalidLinePolicy: 'quarantine' as const };
          // Act
          const whole = frame(input, options);
          const chunked = frame(input, options, chunkSizes);
          // Assess
          expect(chunked).toEqual(whole);
          expect(whole.position.byteOffset).toBe(Buffer.byteLength(input));
        },
      ),
      { numRuns: 400 },
    );
  });

  it('reports the top-level id of each valid line, in order, however the input is chunked', () => {
    // Prepare
    const lines = [
      `${BOM}{"resourceType":"Patient","id":"a"}`,
      '{"resourceType":"Observation","id":"quarantined"}',
      '   ',
      '{"resourceType":"Patient","contained":[{"id":"nested"}]}\r',
      '{"resourceType":"Patient","id":"b","meta":{"id":"m"}}\r',
      '{"resourceType":"Patient","id":"c\\u00fc"}',
    ];
    const input = Buffer.from(lines.join('\n'), 'utf8');
    for (const chunkSizes of [[], [1], [3, 7], [17]]) {
      const ids: string[] = [];
      // Act
      const framed = frameBytes(input, chunkSizes, {
        invalidLinePolicy: 'quarantine',
        onResourceId: (id) => ids.push(Buffer.from(id).toString('utf8')),
      });
      // Assess
      expect(ids).toEqual(['a', 'b', 'cü']);
      expect(framed.position.lines).toBe(4);
    }
  });

  it('frames an async source in batches with frameNdjson', async () => {
    // Prepare
    async function* source() {
      yield Buffer.from(`${P}\n${Q.slice(0, 5)}`);
      yield Buffer.from(`${Q.slice(5)}\n${P}`);
    }
    const batches: string[] = [];
    // Act
    const frames = frameNdjson(source(), { resourceType: 'Patient', maxLineBytes: 1024 });
    let next = await frames.next();
    while (!next.done) {
      batches.push(Buffer.concat(next.value.valid).toString());
      next = await frames.next();
    }
    // Assess
    expect(batches).toEqual([`${P}\n`, `${Q}\n`, `${P}\n`]);
    expect(next.value).toEqual({
      byteOffset: P.length * 2 + Buffer.byteLength(Q) + 2,
      lines: 3,
      blankLines: 0,
      invalidLines: 0,
    });
  });
});

describe('NdjsonFramer memory', () => {
  it('holds a long line as its own copy, not as views that keep whole network buffers alive', () => {
    // Prepare: a 2 MB line arriving as 2,000 reads of 1 KB, each a view of its own 64 KiB
    // buffer, as socket reads are. Held as views, the line would keep 128 MiB alive.
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const line = Buffer.from(`{"resourceType":"Binary","data":"${'A'.repeat(2_000 * 1024 - 36)}"}`);
    const framer = new NdjsonFramer({ resourceType: 'Binary', maxLineBytes: 4 * 1024 * 1024 });
    gc();
    gc();
    const before = process.memoryUsage().arrayBuffers;
    // Act
    for (let at = 0; at < line.length; at += 1024) {
      const read = Buffer.alloc(64 * 1024);
      line.copy(read, 0, at, at + 1024);
      framer.push(read.subarray(0, Math.min(1024, line.length - at)));
    }
    // Twice: the first collection finds the reads, the second sees their memory freed.
    gc();
    gc();
    const held = process.memoryUsage().arrayBuffers - before;
    const framed = framer.push(Buffer.from('\n'));
    // Assess: about the line itself (2 MB in 1 MiB blocks), not 128 MiB.
    expect(framer.pendingBytes).toBe(0);
    expect(held).toBeLessThan(8 * 1024 * 1024);
    expect(Buffer.concat(framed.valid).equals(Buffer.concat([line, Buffer.from('\n')]))).toBe(true);
  });
});
