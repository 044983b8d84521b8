import type { S3Client } from '@aws-sdk/client-s3';
import {
  deleteObject,
  getObjectBytes,
  putObjectBytes,
  type S3ObjectTarget,
} from '../../adapters/s3-multipart.js';
import { InvalidNdjsonError, StorageError } from '../../errors.js';
import { scratchKey } from './checkpoint.js';

/**
 * Invalid lines kept aside under the `quarantine` policy, so that a few bad
 * resources do not fail a whole export and are still there to inspect.
 *
 * They are expected to be rare, so they are held in memory (capped) and
 * written as one object when the file is done. A checkpoint writes what is
 * held as a numbered segment object; the end joins the segments. The cap
 * keeps memory flat: a file that is mostly invalid is broken, not quarantined.
 */
export interface QuarantineState {
  readonly segments: number;
  readonly bytes: number;
}

export class QuarantineSink {
  readonly #s3: S3Client;
  readonly #target: S3ObjectTarget | undefined;
  readonly #maxBytes: number;
  #segments: number;
  /** Bytes in segments already written. */
  #storedBytes: number;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;

  constructor(s3: S3Client, target: S3ObjectTarget | undefined, maxBytes: number, state?: QuarantineState) {
    this.#s3 = s3;
    this.#target = target;
    this.#maxBytes = maxBytes;
    this.#segments = state?.segments ?? 0;
    this.#storedBytes = state?.bytes ?? 0;
  }

  get bytes(): number {
    return this.#storedBytes + this.#pendingBytes;
  }

  add(slices: readonly Uint8Array[], bytes: number): void {
    if (bytes === 0) return;
    if (this.#target === undefined) throw new Error('quarantined lines without a quarantine target');
    if (this.bytes + bytes > this.#maxBytes) {
      throw new InvalidNdjsonError(
        `More than ${this.#maxBytes} bytes of invalid lines: too many to quarantine, the file is treated as broken`,
      );
    }
    for (const slice of slices) this.#pending.push(slice);
    this.#pendingBytes += bytes;
  }

  async checkpoint(): Promise<QuarantineState> {
    if (this.#pendingBytes > 0 && this.#target !== undefined) {
      const segment = this.#segments + 1;
      await putObjectBytes(
        this.#s3,
        { ...this.#target, key: scratchKey(this.#target.key, `segment-${segment}`) },
        Buffer.concat(this.#pending, this.#pendingBytes),
      );
      this.#segments = segment;
      this.#storedBytes += this.#pendingBytes;
      this.#pending = [];
      this.#pendingBytes = 0;
    }
    return { segments: this.#segments, bytes: this.#storedBytes };
  }

  /** Writes the quarantine object if any line was quarantined; returns its key. */
  async finish(): Promise<string | undefined> {
    const target = this.#target;
    if (target === undefined || this.bytes === 0) return undefined;
    const parts: Uint8Array[] = [];
    for (let segment = 1; segment <= this.#segments; segment++) {
      const key = scratchKey(target.key, `segment-${segment}`);
      const bytes = await getObjectBytes(this.#s3, target.bucket, key);
      if (bytes === undefined) {
        throw new StorageError(`Quarantine segment s3://${target.bucket}/${key} has disappeared`);
      }
      parts.push(bytes);
    }
    parts.push(...this.#pending);
    const body = Buffer.concat(parts);
    if (body.length !== this.bytes) {
      throw new StorageError(
        `Quarantine segments of s3://${target.bucket}/${target.key} hold ${body.length} bytes, expected ${this.bytes}`,
      );
    }
    await putObjectBytes(this.#s3, target, body);
    await this.deleteSegments();
    return target.key;
  }

  /** Starts over (the transfer restarted from byte 0). */
  async reset(): Promise<void> {
    await this.deleteSegments();
    this.#storedBytes = 0;
    this.#pending = [];
    this.#pendingBytes = 0;
  }

  async deleteSegments(): Promise<void> {
    const target = this.#target;
    if (target === undefined) return;
    for (let segment = 1; segment <= this.#segments; segment++) {
      await deleteObject(this.#s3, target.bucket, scratchKey(target.key, `segment-${segment}`));
    }
    this.#segments = 0;
  }
}
