import { type FileBatch, planFileBatches } from '../core/file-batches.js';
import type { Runtime } from '../runtime.js';
import type { ExportContext, FileItem } from '../state.js';

/**
 * Plans the batches of `items` with the source's `filesPerBatch` and the
 * export's concurrency, and writes them where a Map's ItemReader reads them.
 * Batches carry FileItems only (no URL): Map items show in execution history.
 */
export async function writeFileBatches(
  runtime: Runtime,
  context: ExportContext,
  items: readonly FileItem[],
  key: string,
): Promise<{ readonly batchesKey: string; readonly batchCount: number }> {
  const settings = await runtime.sources.get(context.sourceId);
  const batches: FileBatch[] = planFileBatches(items, {
    filesPerBatch: settings.filesPerBatch,
    maxConcurrency: context.maxConcurrency,
  });
  await runtime.store.putJson(key, batches);
  return { batchesKey: key, batchCount: batches.length };
}
