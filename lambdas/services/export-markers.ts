/**
 * What the downstream stages (validation, warehouse load) read first: the marker their S3 event names, and
 * the receipt's file index it leads to. One reader for both, so they agree on how a key from an event is
 * decoded and how the index is streamed.
 */
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { ReceiptFile } from '../core/receipt.js';
import { StorageError } from '../errors.js';
import type { Runtime } from '../runtime.js';

/** `_SUCCESS.json` (and `_PARTIAL.json`): what the export wrote last. */
export interface CompletionMarker {
  readonly sourceId: string;
  readonly transactionTime: string;
  readonly receiptKey: string;
  readonly complete: boolean;
}

/**
 * The object key as S3 names it. S3's event notifications URL-encode keys (`export%3D…`, a space as
 * `+`); EventBridge's documented examples do not. Both are accepted: the encoded form is decoded
 * when the key as given has no object.
 */
export function markerKeyCandidates(key: string): string[] {
  if (!/%[0-9A-Fa-f]{2}|\+/.test(key)) return [key];
  try {
    return [key, decodeURIComponent(key.replace(/\+/g, ' '))];
  } catch {
    return [key];
  }
}

/** The JSON at the event's key, as given or decoded, with the key it was found at. */
export async function readMarkerJson<T>(
  runtime: Runtime,
  key: string,
): Promise<{ readonly key: string; readonly value: T } | undefined> {
  for (const candidate of markerKeyCandidates(key)) {
    const value = await runtime.store.getJson<T>(candidate);
    if (value) return { key: candidate, value };
  }
  return undefined;
}

/** The object's body from `offset`, or undefined when there is no such object. */
export async function openObject(runtime: Runtime, key: string, offset = 0): Promise<Readable | undefined> {
  try {
    const response = await runtime.s3.send(
      new GetObjectCommand({
        Bucket: runtime.store.bucket,
        Key: key,
        ...(offset > 0 ? { Range: `bytes=${offset}-` } : {}),
      }),
    );
    return response.Body as Readable;
  } catch (error) {
    const { name, $metadata } = error as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (name === 'NoSuchKey' || $metadata?.httpStatusCode === 404) return undefined;
    throw new StorageError(`S3 GetObject of ${key} failed: ${name ?? 'error'}`, { cause: error });
  }
}

/** The file index line by line (it can list 200,000 files); `missing` is the stage's own error for no index. */
export async function* readFileIndex(
  runtime: Runtime,
  key: string,
  missing: (message: string) => Error,
): AsyncGenerator<ReceiptFile> {
  const body = await openObject(runtime, key);
  if (!body) throw missing(`the receipt's file index ${key} is missing`);
  const lines = createInterface({ input: body, crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of lines) {
    if (line.trim() !== '') yield JSON.parse(line) as ReceiptFile;
  }
}
