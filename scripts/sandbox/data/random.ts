/**
 * Stateless seeded randomness. Every value is a pure function of (seed, salt, a, b), so any
 * resource can be generated on its own, in any process, without generating the ones before it:
 * export files are slices, and a slice must not cost the whole prefix.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;
const TWO_POW_32 = 4294967296;

function absorb(h: number, k: number): number {
  let m = Math.imul(k, C1);
  m = (m << 15) | (m >>> 17);
  m = Math.imul(m, C2);
  const x = h ^ m;
  return (Math.imul((x << 13) | (x >>> 19), 5) + 0xe6546b64) | 0;
}

function avalanche(h: number): number {
  let x = h ^ (h >>> 16);
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** 32 well-mixed bits (MurmurHash3's rounds) for one (seed, salt, a, b) key. */
export function hash32(seed: number, salt: number, a: number, b: number): number {
  return avalanche(absorb(absorb(absorb(seed | 0, salt), a), b) ^ 16);
}

/** A hash as a fraction in [0, 1). */
export function toUnit(hash: number): number {
  return hash / TWO_POW_32;
}

/**
 * A tiny sequential generator (mulberry32) for the many cosmetic values of one resource,
 * reset from that resource's key before each use so it never carries state across resources.
 */
export class Stream {
  private state = 0;

  reset(state: number): this {
    this.state = state | 0;
    return this;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / TWO_POW_32;
  }

  /** Uniform integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Uniform integer in [min, max]. */
  between(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
}

/** A chooser of an index by weight: maps a uniform fraction to an index of `weights`. */
export function weightedChoice(weights: readonly number[]): (fraction: number) => number {
  let total = 0;
  for (const w of weights) total += w;
  const bounds = new Float64Array(weights.length);
  let running = 0;
  for (let i = 0; i < weights.length; i++) {
    running += weights[i]!;
    bounds[i] = running / total;
  }
  bounds[weights.length - 1] = 1;
  return (fraction) => {
    let i = 0;
    while (fraction >= bounds[i]!) i++;
    return i;
  };
}
