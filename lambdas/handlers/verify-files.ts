import type { Runtime } from '../runtime.js';
import { type FileBatchEvent, type FileBatchResult, runFileBatch } from '../services/verify-files.js';
import { awsTaskEntry } from './aws-entry.js';

export type { FileBatchEvent, FileBatchResult };

/** One batch of Verify Files or Publish Files (services/verify-files.ts); Finalize Export adds them up. */
export function createVerifyFilesHandler(runtime: Runtime) {
  return (event: FileBatchEvent): Promise<FileBatchResult> => runFileBatch(runtime, event);
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('VerifyFiles', createVerifyFilesHandler);
