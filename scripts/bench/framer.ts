/**
 * Throughput of NDJSON line checking: the framer with its byte scanner,
 * against the obvious alternative of JSON.parse on every line.
 * `npx tsx scripts/bench/framer.ts [--size-mb 128]` (MB = 10^6 bytes)
 */
import { parseArgs } from 'node:util';
import { NdjsonFramer } from '../../lambdas/core/ndjson/framer.js';
import { patientNdjson } from '../../test/unit/download/support/ndjson-body.js';

const { values } = parseArgs({ options: { 'size-mb': { type: 'string', default: '128' } } });
const sizeMb = Number(values['size-mb']);
const block = patientNdjson(4000);
const copies = Math.ceil((sizeMb * 1e6) / block.length);
const CHUNK = 64 * 1024;

function emit(scenario: string, seconds: number, lines: number): void {
  const mb = (block.length * copies) / 1e6;
  const line = {
    scenario,
    mb: Math.round(mb),
    lines,
    seconds: +seconds.toFixed(3),
    mbPerSec: Math.round(mb / seconds),
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function time(run: () => number): [number, number] {
  run();
  const started = process.hrtime.bigint();
  const lines = run();
  return [Number(process.hrtime.bigint() - started) / 1e9, lines];
}

const [framerSeconds, framerLines] = time(() => {
  const framer = new NdjsonFramer({ resourceType: 'Patient', maxLineBytes: 1 << 20 });
  for (let c = 0; c < copies; c++) {
    for (let i = 0; i < block.length; i += CHUNK) framer.push(block.subarray(i, i + CHUNK));
  }
  framer.end();
  return framer.position.lines;
});
emit('framer-byte-scanner', framerSeconds, framerLines);

const [parseSeconds, parseLines] = time(() => {
  let lines = 0;
  let carry = '';
  const decoder = new TextDecoder('utf-8', { fatal: true });
  for (let c = 0; c < copies; c++) {
    for (let i = 0; i < block.length; i += CHUNK) {
      const text = carry + decoder.decode(block.subarray(i, i + CHUNK), { stream: true });
      let start = 0;
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
        const value = JSON.parse(text.slice(start, nl)) as { resourceType?: unknown };
        if (value.resourceType !== 'Patient') throw new Error('wrong type');
        lines++;
        start = nl + 1;
      }
      carry = text.slice(start);
    }
  }
  return lines;
});
emit('split-and-JSON.parse', parseSeconds, parseLines);
