import { resultKey, resultsPrefix, retryBatchesKey, retryFilesKey } from '../core/layout.js';
import { VerificationError } from '../errors.js';
import type { Runtime } from '../runtime.js';
import { writeFileBatches } from '../services/file-batches.js';
import type { ExportContext, FileItem, ManifestSummary } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';

export interface CheckFilesEvent {
  readonly export: ExportContext;
  readonly manifest: ManifestSummary;
}

export interface CheckFilesResult {
  readonly fileCount: number;
  readonly landed: number;
  readonly missing: number;
  /** The files without a result, as a JSON array of FileItem: the retry pass's ItemReader reads it. */
  readonly retryFilesKey: string;
  /** The same files as batches (planned as for the first pass): the retry pass's ItemReader reads it. */
  readonly retryBatchesKey: string;
  readonly retryBatchCount: number;
}

/**
 * After the first download pass, which tolerates file failures: which files
 * have no download result yet. They go to the retry pass (a second Map over
 * this list, after a pause), so one file that failed its retries does not
 * fail the export, or throw away the files that did land.
 */
export function createCheckFilesHandler(runtime: Runtime) {
  return async (event: CheckFilesEvent): Promise<CheckFilesResult> => {
    const { export: context, manifest } = event;
    const items = await runtime.store.getJson<FileItem[]>(manifest.filesKey);
    if (!Array.isArray(items) || items.length !== manifest.fileCount) {
      throw new VerificationError(
        `file list ${manifest.filesKey} has ${Array.isArray(items) ? items.length : 'no'} entries, expected ${manifest.fileCount}`,
      );
    }
    const landed = new Set(await runtime.store.listKeys(resultsPrefix(context.workPrefix)));
    const missing = items.filter((item) => !landed.has(resultKey(context.workPrefix, item.index)));
    const key = retryFilesKey(context.workPrefix);
    await runtime.store.putJson(key, missing);
    const batches = await writeFileBatches(runtime, context, missing, retryBatchesKey(context.workPrefix));
    if (missing.length > 0) {
      runtime.logger.warn('files without a result after the download pass; retrying them', {
        sourceId: context.sourceId,
        missing: missing.length,
        files: missing.slice(0, 20).map((item) => `${item.index} ${item.kind} ${item.type}`),
      });
      runtime.progress?.({
        kind: 'phase',
        phase: 'retrying failed files',
        detail: `${missing.length} of ${items.length} file(s) did not land; retrying them in ${context.retryPassDelaySeconds ?? 60}s`,
      });
    }
    return {
      fileCount: items.length,
      landed: items.length - missing.length,
      missing: missing.length,
      retryFilesKey: key,
      retryBatchesKey: batches.batchesKey,
      retryBatchCount: batches.batchCount,
    };
  };
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('CheckFiles', createCheckFilesHandler);
