import type { Runtime } from '../runtime.js';
import { loadFile } from '../warehouse/load-file.js';
import {
  type FileLoader,
  type LoadFilesEvent,
  type LoadFilesResult,
  loadWarehouseFiles,
} from '../warehouse/stage.js';
import { awsTaskEntry } from './aws-entry.js';

/**
 * Load Warehouse Files: one batch of the Map, each data file read once into one Parquet part per table
 * whose view reads its types; each file's result goes to S3, not to state.
 */
export function createLoadWarehouseFilesHandler(runtime: Runtime, loader: FileLoader = loadFile) {
  return (event: LoadFilesEvent): Promise<LoadFilesResult> => loadWarehouseFiles(runtime, loader, event);
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('LoadWarehouseFiles', createLoadWarehouseFilesHandler);
