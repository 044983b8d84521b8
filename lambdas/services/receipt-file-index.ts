import { createHash } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import { putObjectBytes, S3MultipartWriter } from '../adapters/s3-multipart.js';
import type { ReceiptFile, ReceiptFileIndex } from '../core/receipt.js';

export const FILE_INDEX_CONTENT_TYPE = 'application/x-ndjson';

/**
 * Writes the receipt's file index (`_receipt.files.ndjson`) as it is read
 * from the verification batches: lines gather into parts of `partBytes` and
 * go out as a multipart upload, so Finalize holds one part (not 60 MB for
 * 200,000 files) at a time. An index smaller than one part is one PUT.
 */
export class FileIndexWriter {
  readonly #s3: S3Client;
  readonly #target: { bucket: string; key: string; sseKmsKeyId?: string };
  readonly #partBytes: number;
  readonly #hash = createHash('sha256');
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #files = 0;
  #writer: S3MultipartWriter | undefined;

  constructor(
    s3: S3Client,
    target: { bucket: string; key: string; sseKmsKeyId?: string },
    /** S3 refuses parts under 5 MiB but the last; tests may go lower (the embedded S3 does not check). */
    { partBytes = 8 * 1024 * 1024 }: { partBytes?: number } = {},
  ) {
    this.#s3 = s3;
    this.#target = target;
    this.#partBytes = partBytes;
  }

  async add(files: readonly ReceiptFile[]): Promise<void> {
    for (const file of files) {
      const line = Buffer.from(`${JSON.stringify(file)}\n`);
      this.#hash.update(line);
      this.#pending.push(line);
      this.#pendingBytes += line.length;
      this.#files += 1;
    }
    if (this.#pendingBytes >= this.#partBytes) await this.#uploadPending();
  }

  async #uploadPending(): Promise<void> {
    const body = Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#writer ??= await S3MultipartWriter.create(
      this.#s3,
      this.#target,
      {},
      { concurrency: 2, contentType: FILE_INDEX_CONTENT_TYPE },
    );
    await this.#writer.uploadPart(body);
  }

  /** Writes what is left and returns the receipt's `fileIndex`. */
  async close(): Promise<ReceiptFileIndex> {
    if (this.#writer === undefined) {
      await putObjectBytes(this.#s3, this.#target, Buffer.concat(this.#pending, this.#pendingBytes), {
        contentType: FILE_INDEX_CONTENT_TYPE,
      });
    } else {
      if (this.#pendingBytes > 0) await this.#uploadPending();
      await this.#writer.complete();
    }
    this.#pending = [];
    return { key: this.#target.key, files: this.#files, sha256: this.#hash.digest('hex') };
  }

  /** After a failure: the open upload would cost storage until the lifecycle rule reaped it. */
  async abort(): Promise<void> {
    await this.#writer?.abort().catch(() => undefined);
  }
}
