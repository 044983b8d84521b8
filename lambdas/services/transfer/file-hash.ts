import { createHash, type Hash } from 'node:crypto';
import { createSHA256, type IHasher } from 'hash-wasm';

/**
 * The SHA-256 of everything a file lands, computed one of two ways.
 *
 * `node:crypto` (OpenSSL, SHA-NI where the CPU has it) costs ~0.6 ms of CPU
 * per MB; hash-wasm's WebAssembly SHA-256 costs ~3 ms per MB. But only
 * hash-wasm can hand its state to the next invocation (`save()`/`load()`);
 * OpenSSL's cannot be exported.
 *
 * So a fresh transfer starts `undecided`, feeding both (for 200 ms), until it knows
 * enough about the response (its length and how fast it arrives) to predict
 * whether the file will finish in this invocation. Then it `settle`s on
 * `native` (expected to finish) or `resumable` (may need a checkpoint). A
 * transfer resumed from a checkpoint is `resumable` from the start. A
 * `native` transfer that must stop after all (the prediction was wrong, or a
 * 401 hands it back for a fresh token) cannot carry its hash, so it starts
 * over from byte 0 with the resumable hash: slower, never wrong.
 *
 * A saved state holds the last 0–63 bytes hashed, which are resource content:
 * it lives only in the checkpoint's S3 work object, never in the Step
 * Functions state (see checkpoint.ts).
 */
export type HashingMode = 'undecided' | 'native' | 'resumable';

/** A resumable hash's saved state, as a checkpoint document carries it. */
export interface SavedHashState {
  /** Which implementation wrote `state`: a state of another one (or of another build of it) cannot be loaded. */
  readonly implementation: typeof HASH_IMPLEMENTATION;
  /** hash-wasm's `save()`, base64: its first 4 bytes name the WebAssembly build that wrote it. */
  readonly state: string;
  /** Bytes hashed so far. */
  readonly bytes: number;
}

export const HASH_IMPLEMENTATION = 'hash-wasm/sha256';

/** Thrown when a checkpoint's hash state cannot be continued here; the transfer starts the file over. */
export class HashStateIncompatibleError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'HashStateIncompatibleError';
  }
}

export class FileHash {
  #native: Hash | undefined;
  #resumable: IHasher | undefined;
  #bytes: number;

  private constructor(native: Hash | undefined, resumable: IHasher | undefined, bytes = 0) {
    this.#native = native;
    this.#resumable = resumable;
    this.#bytes = bytes;
  }

  /** Both hashes until {@link settle} picks one. */
  static async undecided(): Promise<FileHash> {
    return new FileHash(createHash('sha256'), await freshResumable());
  }

  /** Only the resumable hash, from scratch: for a transfer that must be able to checkpoint. */
  static async resumable(): Promise<FileHash> {
    return new FileHash(undefined, await freshResumable());
  }

  /**
   * Continues the hash a checkpoint carried. A state written by another
   * implementation or another hash-wasm build (its WebAssembly changed) is
   * refused with {@link HashStateIncompatibleError}, never guessed at.
   */
  static async fromState(saved: SavedHashState): Promise<FileHash> {
    if (saved.implementation !== HASH_IMPLEMENTATION) {
      throw new HashStateIncompatibleError(
        `the checkpoint's hash state was written by "${String(saved.implementation)}", this build hashes with "${HASH_IMPLEMENTATION}"`,
      );
    }
    const hasher = await createSHA256();
    try {
      hasher.load(Buffer.from(saved.state, 'base64'));
    } catch (error) {
      throw new HashStateIncompatibleError(
        `the checkpoint's hash state cannot be loaded by this build of ${HASH_IMPLEMENTATION}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    return new FileHash(undefined, hasher, saved.bytes);
  }

  get mode(): HashingMode {
    if (this.#native && this.#resumable) return 'undecided';
    return this.#native ? 'native' : 'resumable';
  }

  /** Whether {@link save} can describe this hash to another invocation. */
  get canCheckpoint(): boolean {
    return this.#resumable !== undefined;
  }

  update(data: Uint8Array): void {
    this.#native?.update(data);
    this.#resumable?.update(data);
    this.#bytes += data.length;
  }

  /** Keeps one of the two hashes of an undecided transfer; a no-op once settled. */
  settle(mode: 'native' | 'resumable'): void {
    if (this.mode !== 'undecided') return;
    if (mode === 'native') this.#resumable = undefined;
    else this.#native = undefined;
  }

  save(): SavedHashState {
    if (!this.#resumable) {
      throw new Error('A hash computed by node:crypto cannot be saved; the transfer must start over');
    }
    return {
      implementation: HASH_IMPLEMENTATION,
      state: Buffer.from(this.#resumable.save()).toString('base64'),
      bytes: this.#bytes,
    };
  }

  digestHex(): string {
    if (this.#native) return this.#native.digest('hex');
    return this.#resumable!.digest('hex');
  }
}

async function freshResumable(): Promise<IHasher> {
  // createSHA256 compiles the WebAssembly once per container and instantiates it per call.
  const hasher = await createSHA256();
  hasher.init();
  return hasher;
}
