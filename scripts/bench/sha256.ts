/**
 * Throughput of the resumable SHA-256 (hash-wasm, whose state a checkpoint
 * can carry) against node:crypto (OpenSSL, SHA-NI where present), in one
 * process, interleaved round by round so both see the same machine load.
 * `npx tsx scripts/bench/sha256.ts [--size-mb 256] [--rounds 3] [--chunk-kib 8192]` (MB = 10^6 bytes)
 */
import { createHash, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { createSHA256 } from 'hash-wasm';

const { values } = parseArgs({
  options: {
    'size-mb': { type: 'string', default: '256' },
    rounds: { type: 'string', default: '3' },
    'chunk-kib': { type: 'string', default: '8192' },
  },
});
const sizeMb = Number(values['size-mb']);
const rounds = Number(values.rounds);
// The sink hashes each part as it is cut: 8 MiB by default (+13, so no call ends on a block boundary).
const chunk = randomBytes(Number(values['chunk-kib']) * 1024 + 13);
const chunks = Math.ceil((sizeMb * 1e6) / chunk.length);
const mb = (chunks * chunk.length) / 1e6;

const implementations: Record<string, () => Promise<string>> = {
  'sha256-hash-wasm': async () => {
    const hash = await createSHA256();
    hash.init();
    for (let i = 0; i < chunks; i++) hash.update(chunk);
    return hash.digest('hex');
  },
  'sha256-node-crypto': async () => {
    const hash = createHash('sha256');
    for (let i = 0; i < chunks; i++) hash.update(chunk);
    return hash.digest('hex');
  },
};

for (const run of Object.values(implementations)) await run(); // warm up the JIT and the WebAssembly
for (let round = 1; round <= rounds; round++) {
  const digests = new Set<string>();
  for (const [name, run] of Object.entries(implementations)) {
    const started = process.hrtime.bigint();
    digests.add(await run());
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    process.stdout.write(
      `${JSON.stringify({ scenario: name, round, mb: Math.round(mb), seconds: +seconds.toFixed(3), msPerMb: +((seconds * 1000) / mb).toFixed(2), mbPerSec: Math.round(mb / seconds) })}\n`,
    );
  }
  if (digests.size !== 1) throw new Error(`the implementations disagree: ${[...digests].join(' ')}`);
}
