import { createHash, type Hash } from 'node:crypto';
import { Sha256, type Sha256State } from '../../core/sha256.js';

/**
 * The SHA-256 of everything a file lands, computed one of two ways.
 *
 * `node:crypto` (OpenSSL, SHA-NI where the CPU has it) costs ~0.6 ms of CPU
 * per MB; our pure-TS {@link Sha256} costs 3 to 8 ms per MB, which was the
 * largest single cost of a transfer (scripts/bench, CPU profile). But only
 * the pure-TS hash can hand its state to the next invocation in a
 * checkpoint; OpenSSL's cannot be exported.
 *
 * So a fresh transfer starts `undecided`, feeding both (for 200 ms), until it knows
 * enough about the response (its length and how fast it arrives) to predict
 * whether the file will finish in this invocation. Then it `settle`s on
 * `native` (expected to finish) or `resumable` (may need a checkpoint). A
 * transfer resumed from a checkpoint is `resumable` from the start. A
 * `native` transfer that must stop after all (the prediction was wrong, or a
 * 401 hands it back for a fresh token) cannot carry its hash, so it starts
 * over from byte 0 with the resumable hash: slower, never wrong.
 */
export type HashingMode = 'undecided' | 'native' | 'resumable';

export class FileHash {
  #native: Hash | undefined;
  #resumable: Sha256 | undefined;

  private constructor(native: Hash | undefined, resumable: Sha256 | undefined) {
    this.#native = native;
    this.#resumable = resumable;
  }

  /** Both hashes until {@link settle} picks one. */
  static undecided(): FileHash {
    return new FileHash(createHash('sha256'), new Sha256());
  }

  /** Only the resumable hash, from scratch: for a transfer that must be able to checkpoint. */
  static resumable(): FileHash {
    return new FileHash(undefined, new Sha256());
  }

  /** Continues the hash a checkpoint carried. */
  static fromState(state: Sha256State): FileHash {
    return new FileHash(undefined, Sha256.fromState(state));
  }

  get mode(): HashingMode {
    if (this.#native && this.#resumable) return 'undecided';
    return this.#native ? 'native' : 'resumable';
  }

  /** Whether {@link exportState} can describe this hash to another invocation. */
  get canCheckpoint(): boolean {
    return this.#resumable !== undefined;
  }

  update(data: Uint8Array): void {
    this.#native?.update(data);
    this.#resumable?.update(data);
  }

  /** Keeps one of the two hashes of an undecided transfer; a no-op once settled. */
  settle(mode: 'native' | 'resumable'): void {
    if (this.mode !== 'undecided') return;
    if (mode === 'native') this.#resumable = undefined;
    else this.#native = undefined;
  }

  exportState(): Sha256State {
    if (!this.#resumable) {
      throw new Error('A hash computed by node:crypto cannot be exported; the transfer must start over');
    }
    return this.#resumable.exportState();
  }

  digestHex(): string {
    if (this.#native) return this.#native.digest('hex');
    return this.#resumable!.digestHex();
  }
}
