import { hash } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import {
  deleteObject,
  getObjectBytes,
  putObjectBytes,
  type S3ObjectTarget,
} from '../../adapters/s3-multipart.js';
import { StorageError } from '../../errors.js';
import { scratchKey } from './checkpoint.js';

/**
 * The ids of the resources a transfer landed, as 8-byte hashes, so that a
 * chunked export can count the resources that landed in more than one chunk
 * without keeping (or logging) the ids themselves.
 *
 * Each id is the first 8 bytes of the SHA-256 of its UTF-8 bytes, in digest
 * order. SHA-256 rather than a faster non-cryptographic 64-bit hash: it is
 * well distributed for any input (ids are chosen by the server), so the only
 * false duplicates are true 64-bit collisions (about n²/2⁶⁵: 3 in 10,000 for
 * 100 million ids of one type), and node:crypto's one-shot hash is native.
 * It costs ~1 µs per line, paid only when ids are asked for.
 *
 * Exactness: ids are collected as lines are framed, but only the ids of
 * lines whose bytes went to the upload count (`commit`, called with the
 * position update). A stream that fails in between is continued from that
 * position, so what was collected beyond it is dropped (`rollback`).
 *
 * Across invocations the ids go to S3, not into the checkpoint: 8 bytes a
 * line is megabytes for a large file, and the checkpoint is one JSON object
 * read whole by every invocation. Each checkpoint writes the ids collected
 * since the previous one as a numbered scratch object next to the target,
 * like the quarantine's segments, so no invocation rewrites what an earlier
 * one stored, and the transfer's own clean-up (landing, failure, restart from
 * byte 0) removes them with its other scratch objects.
 */
export interface ResourceIdsState {
  /** Scratch objects written so far, numbered from 1. */
  readonly segments: number;
  /** Ids in them. */
  readonly count: number;
}

export const RESOURCE_ID_HASH_BYTES = 8;

const INITIAL_BYTES = 64 * 1024;

export class ResourceIdSink {
  readonly #s3: S3Client;
  readonly #target: S3ObjectTarget;
  #segments: number;
  #storedCount: number;
  #pending: Buffer = Buffer.allocUnsafe(INITIAL_BYTES);
  /** Bytes of `#pending` in use, and how many of them belong to landed lines. */
  #used = 0;
  #committed = 0;

  constructor(s3: S3Client, target: S3ObjectTarget, state?: ResourceIdsState) {
    this.#s3 = s3;
    this.#target = target;
    this.#segments = state?.segments ?? 0;
    this.#storedCount = state?.count ?? 0;
  }

  /** Ids of landed lines so far. */
  get count(): number {
    return this.#storedCount + this.#committed / RESOURCE_ID_HASH_BYTES;
  }

  add(id: Uint8Array): void {
    if (this.#used + RESOURCE_ID_HASH_BYTES > this.#pending.length) {
      const bigger = Buffer.allocUnsafe(this.#pending.length * 2);
      this.#pending.copy(bigger, 0, 0, this.#used);
      this.#pending = bigger;
    }
    hash('sha256', id, 'buffer').copy(this.#pending, this.#used, 0, RESOURCE_ID_HASH_BYTES);
    this.#used += RESOURCE_ID_HASH_BYTES;
  }

  /** The lines whose ids were added so far have gone to the upload. */
  commit(): void {
    this.#committed = this.#used;
  }

  /** Forgets ids added since the last commit: their lines will be read again. */
  rollback(): void {
    this.#used = this.#committed;
  }

  async checkpoint(): Promise<ResourceIdsState> {
    this.rollback();
    if (this.#committed > 0) {
      const segment = this.#segments + 1;
      await putObjectBytes(
        this.#s3,
        { ...this.#target, key: this.#segmentKey(segment) },
        this.#pending.subarray(0, this.#committed),
        { contentType: 'application/octet-stream' },
      );
      this.#segments = segment;
      this.#storedCount += this.#committed / RESOURCE_ID_HASH_BYTES;
      this.#used = 0;
      this.#committed = 0;
    }
    return { segments: this.#segments, count: this.#storedCount };
  }

  /**
   * Every landed line's id hash, in file order: 8 bytes each. Read into one
   * buffer a segment at a time, so the file's ids are held once (8 bytes a
   * line: 80 MB for a file of 10 million resources).
   */
  async finish(): Promise<Buffer> {
    this.rollback();
    const expected = this.count * RESOURCE_ID_HASH_BYTES;
    const all = Buffer.allocUnsafe(expected);
    let filled = 0;
    for (let segment = 1; segment <= this.#segments; segment++) {
      const key = this.#segmentKey(segment);
      const bytes = await getObjectBytes(this.#s3, this.#target.bucket, key);
      if (bytes === undefined) {
        throw new StorageError(`Resource id segment s3://${this.#target.bucket}/${key} has disappeared`);
      }
      if (filled + bytes.length > expected - this.#committed) break;
      all.set(bytes, filled);
      filled += bytes.length;
    }
    if (filled !== expected - this.#committed) {
      throw new StorageError(
        `Resource id segments of s3://${this.#target.bucket}/${this.#target.key} do not hold the ${this.#storedCount} ids the checkpoint counts`,
      );
    }
    this.#pending.copy(all, filled, 0, this.#committed);
    return all;
  }

  /** Starts over (the transfer restarted from byte 0). */
  async reset(): Promise<void> {
    await this.deleteSegments();
    this.#storedCount = 0;
    this.#used = 0;
    this.#committed = 0;
  }

  async deleteSegments(): Promise<void> {
    for (let segment = 1; segment <= this.#segments; segment++) {
      await deleteObject(this.#s3, this.#target.bucket, this.#segmentKey(segment));
    }
    this.#segments = 0;
  }

  #segmentKey(segment: number): string {
    return scratchKey(this.#target.key, `resource-ids-${segment}`);
  }
}
