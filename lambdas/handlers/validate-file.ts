import type { InvocationContext } from '../middleware.js';
import type { Runtime } from '../runtime.js';
import { loadExportValidator } from '../validation/load-validator.js';
import { type BatchProgress, type ValidateBatchEvent, validateBatch } from '../validation/stage.js';
import type { ResourceValidator } from '../validation/types.js';
import { awsTaskEntry } from './aws-entry.js';

/**
 * Validate Batch: streams a batch's data files through the US Core validator, one line at a
 * time, and checkpoints (byte offset and partial counts in S3) when the invocation runs low on time.
 */
export function createValidateFileHandler(
  runtime: Runtime,
  loadValidator: () => ResourceValidator = loadExportValidator,
) {
  return (event: ValidateBatchEvent, context: InvocationContext): Promise<BatchProgress> =>
    validateBatch(runtime, loadValidator(), event, context);
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('ValidateFile', createValidateFileHandler);
