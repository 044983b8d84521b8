import { GetObjectCommand } from '@aws-sdk/client-s3';
import { serverErrorFilesKey, serverErrorTriageKey } from '../core/layout.js';
import {
  describeServerFileErrors,
  fileNameOf,
  type OutputFileName,
  type ServerFileErrorTriage,
  ServerFileErrorTriager,
} from '../core/server-file-errors.js';
import { ServerFileError, StorageError } from '../errors.js';
import type { Runtime } from '../runtime.js';
import type { ExportContext, FileItem, ManifestSummary } from '../state.js';

/**
 * The manifest's error[] files, read once everything landed: Verify Files
 * triages them (core/server-file-errors.ts) before anything is published, and
 * applies the source's `serverFileErrors` policy; Finalize Export puts the
 * triage on the receipt and picks the marker.
 */

/** `_work/…/server-errors/files.json`: written by landManifest when error[] lists files. */
export interface ServerErrorFiles {
  readonly errorFiles: readonly FileItem[];
  /** The output files' names (the last segment of their URLs) and keys, for the matcher. */
  readonly outputs: readonly (OutputFileName & { readonly key: string })[];
  readonly types: readonly string[];
}

/** The stored triage: the triage, and our keys of the files it names (never their URLs). */
export interface StoredTriage extends ServerFileErrorTriage {
  readonly fileKeys: Readonly<Record<string, string>>;
}

/** Bytes of an error[] file that are triaged; past them the triage says it was cut. */
export const MAX_ERROR_FILE_BYTES = 4 * 1024 * 1024;

/** Called with the file list and URLs in hand; returns the key, or undefined when error[] is empty. */
export async function recordServerErrorFiles(
  runtime: Runtime,
  context: ExportContext,
  items: readonly FileItem[],
  urls: readonly string[],
): Promise<string | undefined> {
  const errorFiles = items.filter((item) => item.kind === 'error');
  if (errorFiles.length === 0) return undefined;
  const outputs = items.flatMap((item) => {
    if (item.kind !== 'output') return [];
    const name = fileNameOf(urls[item.index] ?? '');
    return name === undefined
      ? []
      : [
          {
            index: item.index,
            type: item.type,
            name,
            key: item.key,
            ...(item.chunk === undefined ? {} : { chunk: item.chunk }),
          },
        ];
  });
  const key = serverErrorFilesKey(context.workPrefix);
  const record: ServerErrorFiles = { errorFiles, outputs, types: context.request.types };
  await runtime.store.putJson(key, record);
  return key;
}

/**
 * The triage of this export's error[] files, undefined when it has none.
 * Computed by the first verification batch that asks and stored; batches
 * that compute it at once write the same thing.
 */
export async function loadServerFileErrorTriage(
  runtime: Runtime,
  context: ExportContext,
  manifest: ManifestSummary,
): Promise<StoredTriage | undefined> {
  if (!manifest.errorFilesKey) return undefined;
  const triageKey = serverErrorTriageKey(context.workPrefix);
  const stored = await runtime.store.getJson<StoredTriage>(triageKey);
  if (stored) return stored;
  const record = await runtime.store.getJson<ServerErrorFiles>(manifest.errorFilesKey);
  if (!record) throw new StorageError(`the list of error[] files ${manifest.errorFilesKey} is missing`);
  const triager = new ServerFileErrorTriager(record.outputs, record.types);
  for (const file of record.errorFiles) {
    const { text, truncated } = await readHead(runtime, context.bucket, file.key);
    const lines = text.split('\n');
    // A cut file's last line is a piece of one: not an OperationOutcome we could read.
    if (truncated) {
      lines.pop();
      triager.markTruncated();
    }
    for (const line of lines) triager.addLine(line, file.chunk);
  }
  const triage = triager.result();
  const keyByIndex = new Map(record.outputs.map((output) => [output.index, output.key]));
  const named = new Set([
    ...Object.keys(triage.byFile),
    ...triage.failing.flatMap((issue) => (issue.files ?? []).map(String)),
  ]);
  const fileKeys = Object.fromEntries(
    [...named].flatMap((index) => {
      const key = keyByIndex.get(Number(index));
      return key ? [[index, key]] : [];
    }),
  );
  const result: StoredTriage = { ...triage, fileKeys };
  await runtime.store.putJson(triageKey, result);
  return result;
}

/** What the error names for the execution history and the failure receipt (short, no URL). */
export function serverFileErrorMessage(triage: StoredTriage): string {
  return `${describeServerFileErrors(triage, (index) => triage.fileKeys[String(index)])}; the source's serverFileErrors is "fail"; with "accept" the files the server delivered land as a partial export (_PARTIAL.json, receipt complete: false)`;
}

/** Under the default policy an export the server says is incomplete is not landed as complete. */
export function applyFailPolicy(context: ExportContext, triage: StoredTriage | undefined): void {
  if (!triage || triage.failures === 0) return;
  if ((context.serverFileErrors ?? 'fail') === 'accept') return;
  throw new ServerFileError(serverFileErrorMessage(triage));
}

async function readHead(
  runtime: Runtime,
  bucket: string,
  key: string,
): Promise<{ text: string; truncated: boolean }> {
  try {
    const response = await runtime.s3.send(
      new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=0-${MAX_ERROR_FILE_BYTES}` }),
    );
    const bytes = await response.Body!.transformToByteArray();
    const truncated = bytes.length > MAX_ERROR_FILE_BYTES;
    return {
      text: Buffer.from(bytes.subarray(0, MAX_ERROR_FILE_BYTES)).toString('utf8'),
      truncated,
    };
  } catch (error) {
    throw new StorageError(`could not read the error[] file ${key}: ${(error as Error).name}`, {
      cause: error,
    });
  }
}
