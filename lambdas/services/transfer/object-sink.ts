import type { S3Client } from '@aws-sdk/client-s3';
import {
  type CompletedPart,
  deleteObject,
  getObjectBytes,
  headObjectSize,
  putObjectBytes,
  S3MultipartWriter,
  type S3ObjectTarget,
  tagObject,
} from '../../adapters/s3-multipart.js';
import { StorageError, VerificationError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { scratchKey } from './checkpoint.js';
import { FileHash, type HashingMode, HashStateIncompatibleError, type SavedHashState } from './file-hash.js';

/**
 * The S3 side of one file: collects whole lines into parts, hashes each part
 * as it is cut (so the hash is always of exactly the bytes uploaded), and at
 * a checkpoint persists whatever it holds. Parts end where the caller's
 * batches end, which is always at a line boundary.
 *
 * Lines are copied into part-sized buffers as they arrive, and a buffer is
 * reused once S3 has its part: memory stays at (concurrency + 1) parts, and
 * neither the allocator nor the GC sees a fresh 8 MiB buffer per part (which
 * cost ~10% of the CPU of a transfer in scripts/bench).
 */

export interface ObjectSinkOptions {
  readonly s3: S3Client;
  readonly target: S3ObjectTarget;
  /** Part size for parts 1–1000; it grows by this much every 1000 parts so 10,000 parts reach ~440 GiB at 8 MiB. */
  readonly partSizeBytes: number;
  /** S3's 5 MiB minimum for all but the last part. */
  readonly minPartSizeBytes: number;
  readonly concurrency: number;
  /** Metadata fixed at creation (S3 cannot change it on a multipart upload later). */
  readonly metadata: Record<string, string>;
  readonly maxInlinePartsJsonBytes: number;
  readonly logger: Logger;
}

/** The sink's share of a checkpoint. */
export interface ObjectSinkState {
  readonly uploadId?: string;
  readonly nextPartNumber: number;
  readonly parts?: readonly CompletedPart[];
  readonly partsKey?: string;
  readonly objectBytes: number;
  readonly carryBytes: number;
  readonly carryKey?: string;
  readonly sha256State: SavedHashState;
}

export interface FinishedObject {
  readonly bytes: number;
  readonly sha256: string;
}

export class ObjectSink {
  readonly #options: ObjectSinkOptions;
  #writer: S3MultipartWriter | undefined;
  /** Upload ids this invocation created: the only ones a transient failure may abort. */
  readonly #createdHere = new Set<string>();
  #hash: FileHash;
  /** Why the checkpoint's hash could not be continued: the transfer must start the file over. */
  #staleHash: string | undefined;
  #objectBytes = 0;
  /** The part being filled, and how much of it is filled. */
  #buffer: Buffer | undefined;
  #used = 0;
  /** Buffers whose parts S3 has; reused while they are the current part size. */
  #spare: Buffer[] = [];
  /** Scratch objects a checkpoint (ours or the input's) refers to; deleted when no longer needed. */
  #carryKey: string | undefined;
  #partsKey: string | undefined;

  private constructor(options: ObjectSinkOptions, hash: FileHash) {
    this.#options = options;
    this.#hash = hash;
  }

  static async fresh(options: ObjectSinkOptions): Promise<ObjectSink> {
    return new ObjectSink(options, await FileHash.undecided());
  }

  /** Rebuilds the sink from a checkpoint: adopts the upload, restores the hash, reads the carry back. */
  static async resume(options: ObjectSinkOptions, state: ObjectSinkState): Promise<ObjectSink> {
    const { s3, target } = options;
    let hash: FileHash;
    let staleHash: string | undefined;
    try {
      hash = await FileHash.fromState(state.sha256State);
    } catch (error) {
      if (!(error instanceof HashStateIncompatibleError)) throw error;
      // Adopt the upload and scratch objects anyway, so that the restart aborts and deletes them.
      hash = await FileHash.resumable();
      staleHash = error.message;
    }
    const sink = new ObjectSink(options, hash);
    sink.#staleHash = staleHash;
    sink.#objectBytes = state.objectBytes;
    sink.#partsKey = state.partsKey;
    sink.#carryKey = state.carryKey;
    if (state.uploadId !== undefined) {
      const parts = state.parts ?? (await readPartsAside(s3, target.bucket, state, state.uploadId));
      sink.#writer = S3MultipartWriter.resume(
        s3,
        target,
        { uploadId: state.uploadId, nextPartNumber: state.nextPartNumber, parts },
        { concurrency: options.concurrency },
      );
    }
    if (state.carryBytes > 0 && state.carryKey !== undefined) {
      const carry = await getObjectBytes(s3, target.bucket, state.carryKey);
      if (carry === undefined || carry.length !== state.carryBytes) {
        throw new StorageError(
          `Checkpoint carry object s3://${target.bucket}/${state.carryKey} has ${carry === undefined ? 'disappeared' : `${carry.length} bytes`}, expected ${state.carryBytes}`,
        );
      }
      await sink.write([carry], carry.length);
    }
    return sink;
  }

  /** Bytes of the buffers the sink holds for parts to come (the one being filled and the spares). */
  get heldBufferBytes(): number {
    return (this.#buffer?.length ?? 0) + this.#spare.reduce((bytes, spare) => bytes + spare.length, 0);
  }

  get objectBytes(): number {
    return this.#objectBytes + this.#used;
  }

  /** Set when the checkpoint's hash state was written by another hash build: nothing can continue it. */
  get staleHash(): string | undefined {
    return this.#staleHash;
  }

  get hashing(): HashingMode {
    return this.#hash.mode;
  }

  /** Whether a checkpoint can carry the hash (see FileHash). */
  get canCheckpoint(): boolean {
    return this.#hash.canCheckpoint;
  }

  settleHashing(mode: 'native' | 'resumable'): void {
    this.#hash.settle(mode);
  }

  /**
   * Adds whole lines; cuts and queues a part when the batch would not fit or
   * the part is full (waiting for a free upload slot, which is the backpressure).
   */
  async write(slices: readonly Uint8Array[], bytes: number): Promise<void> {
    if (bytes === 0) return;
    if (this.#buffer !== undefined && this.#used + bytes > this.#buffer.length) {
      if (this.#used >= this.#options.minPartSizeBytes) await this.#cutPart();
      else this.#grow(this.#used + bytes);
    }
    this.#buffer ??= this.#freshBuffer(bytes);
    let at = this.#used;
    for (const slice of slices) {
      this.#buffer.set(slice, at);
      at += slice.length;
    }
    this.#used = at;
    if (this.#used >= this.#partSize()) await this.#cutPart();
  }

  /** A buffer for the next part: a spare one if it is the current part size, else a new one. */
  #freshBuffer(atLeast: number): Buffer {
    const size = this.#partSize();
    if (atLeast <= size) {
      const spare = this.#spare.pop();
      if (spare !== undefined && spare.length === size) return spare;
      return Buffer.allocUnsafeSlow(size);
    }
    // A batch bigger than a part (a giant line): a one-off buffer.
    return Buffer.allocUnsafeSlow(atLeast);
  }

  /**
   * Keeps a buffer S3 is done with for the next part, if it is a part buffer
   * of the current size and fewer than a full set are kept. A one-off buffer
   * of a giant line is let go: keeping those held every long line of a file
   * in memory at once (15 MiB lines cost 50 times their size).
   */
  #recycle(buffer: Buffer): void {
    if (buffer.length === this.#partSize() && this.#spare.length <= this.#options.concurrency) {
      this.#spare.push(buffer);
    }
  }

  /** Too little for a part yet, and the next batch does not fit: make room (rare, giant lines). */
  #grow(needed: number): void {
    const bigger = Buffer.allocUnsafeSlow(Math.max(needed, this.#buffer!.length * 2));
    this.#buffer!.copy(bigger, 0, 0, this.#used);
    this.#buffer = bigger;
  }

  #partSize(): number {
    const partNumber = this.#writer?.nextPartNumber ?? 1;
    return this.#options.partSizeBytes * (1 + Math.floor((partNumber - 1) / 1000));
  }

  async #cutPart(): Promise<void> {
    const buffer = this.#buffer;
    if (buffer === undefined || this.#used === 0) return;
    const body = buffer.subarray(0, this.#used);
    this.#hash.update(body);
    this.#objectBytes += body.length;
    this.#buffer = undefined;
    this.#used = 0;
    if (this.#writer === undefined) {
      const { s3, target, metadata, concurrency } = this.#options;
      this.#writer = await S3MultipartWriter.create(s3, target, metadata, { concurrency });
      this.#createdHere.add(this.#writer.uploadId);
    }
    await this.#writer.uploadPart(body, () => this.#recycle(buffer));
  }

  /** The bytes held for the next part (a view, not a copy). */
  #held(): Buffer {
    return this.#buffer === undefined ? Buffer.alloc(0) : this.#buffer.subarray(0, this.#used);
  }

  /**
   * Persists everything written so far and returns the sink's checkpoint:
   * a part if there is enough for one, else a carry object; then waits for
   * every part in flight. `byteOffset` names the carry object, so that an
   * older checkpoint never reads a newer carry.
   */
  async checkpoint(byteOffset: number): Promise<ObjectSinkState> {
    const { s3, target, minPartSizeBytes } = this.#options;
    const previousCarry = this.#carryKey;
    let carryKey: string | undefined;
    let carryBytes = 0;
    if (this.#used >= minPartSizeBytes) {
      await this.#cutPart();
    } else if (this.#used > 0) {
      carryKey = scratchKey(target.key, `carry-${byteOffset}`);
      carryBytes = this.#used;
      // Kept in the buffer too: this invocation may still be asked to go on.
      await putObjectBytes(s3, { ...target, key: carryKey }, this.#held(), {
        contentType: 'application/octet-stream',
      });
    }
    const progress = this.#writer ? await this.#writer.flush() : undefined;
    let parts: readonly CompletedPart[] | undefined;
    let partsKey: string | undefined;
    if (progress && progress.parts.length > 0) {
      const json = JSON.stringify(progress.parts);
      if (json.length <= this.#options.maxInlinePartsJsonBytes) {
        parts = progress.parts;
      } else {
        partsKey = scratchKey(target.key, 'parts.json');
        const document = JSON.stringify({ uploadId: progress.uploadId, parts: progress.parts });
        await putObjectBytes(s3, { ...target, key: partsKey }, Buffer.from(document), {
          contentType: 'application/json',
        });
      }
    }
    if (previousCarry !== undefined && previousCarry !== carryKey) {
      await this.#deleteScratch(previousCarry);
    }
    if (this.#partsKey !== undefined && partsKey === undefined) await this.#deleteScratch(this.#partsKey);
    this.#carryKey = carryKey;
    this.#partsKey = partsKey;
    return {
      ...(progress ? { uploadId: progress.uploadId } : {}),
      nextPartNumber: progress?.nextPartNumber ?? 1,
      ...(parts ? { parts } : {}),
      ...(partsKey ? { partsKey } : {}),
      objectBytes: this.#objectBytes,
      carryBytes,
      ...(carryKey ? { carryKey } : {}),
      sha256State: this.#hash.save(),
    };
  }

  /**
   * Lands the object: one PutObject when it never needed a multipart upload,
   * else the last part and CompleteMultipartUpload. Then checks S3's size
   * against what we sent and deletes the object if they differ.
   */
  async finish(lines: number): Promise<FinishedObject> {
    const { s3, target } = this.#options;
    let sha256: string;
    let bytes: number;
    if (this.#writer === undefined) {
      const body = this.#held();
      this.#hash.update(body);
      this.#objectBytes += body.length;
      sha256 = this.#hash.digestHex();
      bytes = this.#objectBytes;
      const facts = { sha256, lines: String(lines) };
      await putObjectBytes(s3, target, body, {
        metadata: { ...this.#options.metadata, ...facts },
        tags: facts,
      });
    } else {
      await this.#cutPart();
      sha256 = this.#hash.digestHex();
      bytes = this.#objectBytes;
      await this.#writer.complete();
      // A multipart upload's metadata is fixed at creation, before the hash
      // exists; tags can be set afterwards without copying the object.
      await tagObject(s3, target.bucket, target.key, { sha256, lines: String(lines) });
    }
    const stored = await headObjectSize(s3, target.bucket, target.key);
    if (stored !== bytes) {
      await deleteObject(s3, target.bucket, target.key);
      throw new VerificationError(
        `s3://${target.bucket}/${target.key} holds ${stored ?? 'no'} bytes after upload, expected ${bytes}; the object was deleted`,
      );
    }
    await this.deleteScratch();
    return { bytes, sha256 };
  }

  /**
   * Forgets everything and aborts the upload: the transfer starts over from
   * byte 0, hashing `undecided` again unless it must be able to checkpoint.
   */
  async reset(hashing: 'undecided' | 'resumable'): Promise<void> {
    await this.abort('all');
    this.#writer = undefined;
    this.#hash = hashing === 'undecided' ? await FileHash.undecided() : await FileHash.resumable();
    this.#staleHash = undefined;
    this.#objectBytes = 0;
    this.#buffer = undefined;
    this.#used = 0;
  }

  /**
   * Aborts the current upload: always (`all`), or only if this invocation
   * created it (`created-here`), which leaves an input checkpoint retryable
   * after a transient failure.
   *
   * Never throws: it runs while another error is on its way out, and an
   * upload we could not abort loses no data. It is logged, and the bucket's
   * AbortIncompleteMultipartUpload lifecycle rule reaps it.
   */
  async abort(which: 'all' | 'created-here'): Promise<void> {
    const writer = this.#writer;
    if (writer === undefined) return;
    if (which === 'created-here' && !this.#createdHere.has(writer.uploadId)) return;
    try {
      await writer.abort();
    } catch (error) {
      this.#options.logger.error('could not abort the multipart upload', {
        uploadId: writer.uploadId,
        error,
      });
    }
  }

  /** Deletes the carry and part-list objects this sink knows of. */
  async deleteScratch(): Promise<void> {
    if (this.#carryKey !== undefined) await this.#deleteScratch(this.#carryKey);
    if (this.#partsKey !== undefined) await this.#deleteScratch(this.#partsKey);
    this.#carryKey = undefined;
    this.#partsKey = undefined;
  }

  async #deleteScratch(key: string): Promise<void> {
    await deleteObject(this.#options.s3, this.#options.target.bucket, key);
  }
}

async function readPartsAside(
  s3: S3Client,
  bucket: string,
  state: ObjectSinkState,
  uploadId: string,
): Promise<readonly CompletedPart[]> {
  if (state.nextPartNumber === 1) return [];
  const key = state.partsKey;
  const raw = key === undefined ? undefined : await getObjectBytes(s3, bucket, key);
  let document: { uploadId?: unknown; parts?: unknown } | undefined;
  try {
    document = raw === undefined ? undefined : JSON.parse(Buffer.from(raw).toString('utf8'));
  } catch {
    document = undefined;
  }
  const parts = document?.parts;
  if (document?.uploadId !== uploadId || !Array.isArray(parts) || parts.length < state.nextPartNumber - 1) {
    throw new StorageError(
      `Checkpoint part list s3://${bucket}/${key} is missing or belongs to another upload`,
    );
  }
  // The object may already list parts of a later checkpoint; this one owns only its prefix.
  return (parts as CompletedPart[]).slice(0, state.nextPartNumber - 1);
}
