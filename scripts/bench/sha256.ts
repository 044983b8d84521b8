/**
 * Throughput of the resumable pure-TS SHA-256 against node:crypto (native, SHA-NI where present).
 * `npx tsx scripts/bench/sha256.ts [--size-mb 256]` (MB = 10^6 bytes)
 */
import { createHash, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Sha256 } from '../../lambdas/core/sha256.js';

const { values } = parseArgs({ options: { 'size-mb': { type: 'string', default: '256' } } });
const sizeMb = Number(values['size-mb']);
const chunk = randomBytes(64 * 1024 + 13);
const chunks = Math.ceil((sizeMb * 1e6) / chunk.length);

function measure(name: string, run: () => string): void {
  run(); // warm up the JIT
  const started = process.hrtime.bigint();
  const hex = run();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const mb = (chunks * chunk.length) / 1e6;
  process.stdout.write(
    `${JSON.stringify({ scenario: name, mb: Math.round(mb), seconds: +seconds.toFixed(3), mbPerSec: Math.round(mb / seconds), hex: hex.slice(0, 16) })}\n`,
  );
}

measure('sha256-pure-ts', () => {
  const hash = new Sha256();
  for (let i = 0; i < chunks; i++) hash.update(chunk);
  return hash.digestHex();
});
measure('sha256-node-crypto', () => {
  const hash = createHash('sha256');
  for (let i = 0; i < chunks; i++) hash.update(chunk);
  return hash.digest('hex');
});
