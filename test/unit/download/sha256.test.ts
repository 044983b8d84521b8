import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Sha256, type Sha256State } from '../../../lambdas/core/sha256.js';

const nodeHex = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/** Splits `data` at the given (sorted, deduplicated) cut points. */
function split(data: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((cut) => cut % (data.length + 1)))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const point of points) {
    pieces.push(data.subarray(from, point));
    from = point;
  }
  pieces.push(data.subarray(from));
  return pieces;
}

describe('Sha256', () => {
  it.each([
    ['', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    [
      'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq',
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    ],
  ])('hashes the FIPS 180-4 example %j', (text, expected) => {
    // Prepare
    const hash = new Sha256();
    // Act
    const hex = hash.update(Buffer.from(text)).digestHex();
    // Assess
    expect(hex).toBe(expected);
  });

  it('hashes a million "a"s fed in odd-sized pieces', () => {
    // Prepare
    const data = Buffer.alloc(1_000_000, 'a');
    const hash = new Sha256();
    // Act
    for (let i = 0; i < data.length; i += 999) hash.update(data.subarray(i, i + 999));
    // Assess
    expect(hash.digestHex()).toBe('cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0');
  });

  it('agrees with node:crypto for any input split at any chunk boundaries', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 700 }), fc.array(fc.nat(), { maxLength: 12 }), (data, cuts) => {
        // Prepare
        const hash = new Sha256();
        // Act
        for (const piece of split(data, cuts)) hash.update(piece);
        // Assess
        expect(hash.digestHex()).toBe(nodeHex(data));
      }),
      { numRuns: 400 },
    );
  });

  it('continues from a state exported mid-way and sent through JSON', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 600 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.nat(),
        (data, cuts, exportAt) => {
          // Prepare
          const pieces = split(data, cuts);
          const handOver = exportAt % (pieces.length + 1);
          let hash = new Sha256();
          // Act
          for (const [i, piece] of pieces.entries()) {
            if (i === handOver) {
              const state = JSON.parse(JSON.stringify(hash.exportState())) as Sha256State;
              hash = Sha256.fromState(state);
            }
            hash.update(piece);
          }
          // Assess
          expect(hash.digestHex()).toBe(nodeHex(data));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('exports a small state: hex words, a byte count and at most 63 buffered bytes', () => {
    // Prepare
    const hash = new Sha256().update(Buffer.alloc(64 * 3 + 63, 7));
    // Act
    const state = hash.exportState();
    // Assess
    expect(state).toMatchObject({ v: 1, n: 255 });
    expect(state.h).toMatch(/^[0-9a-f]{64}$/);
    expect(Buffer.from(state.tail, 'base64')).toHaveLength(63);
    expect(JSON.stringify(state).length).toBeLessThan(250);
  });

  it.each([
    ['not an object', null, 'Not a SHA-256 state exported by Sha256.exportState()'],
    [
      'another version',
      { v: 2, h: '0'.repeat(64), n: 0, tail: '' },
      'Not a SHA-256 state exported by Sha256.exportState()',
    ],
    [
      'short words',
      { v: 1, h: '0'.repeat(63), n: 0, tail: '' },
      'Not a SHA-256 state exported by Sha256.exportState()',
    ],
    [
      'negative count',
      { v: 1, h: '0'.repeat(64), n: -1, tail: '' },
      'Not a SHA-256 state exported by Sha256.exportState()',
    ],
    [
      'a tail that does not match the count',
      { v: 1, h: '0'.repeat(64), n: 3, tail: '' },
      'SHA-256 state is inconsistent: buffered bytes do not match the byte count',
    ],
  ])('refuses to resume from %s', (_name, state, message) => {
    // Act
    const resume = () => Sha256.fromState(state as unknown as Sha256State);
    // Assess
    expect(resume).toThrow(new TypeError(message));
  });

  it('cannot be updated after the digest', () => {
    // Prepare
    const hash = new Sha256();
    hash.digest();
    // Act
    const update = () => hash.update(Buffer.from('x'));
    // Assess
    expect(update).toThrow('SHA-256 already finished');
  });
});
