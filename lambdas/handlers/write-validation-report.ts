import type { Runtime } from '../runtime.js';
import { loadExportValidator } from '../validation/load-validator.js';
import {
  type WriteValidationReportEvent,
  type WriteValidationReportResult,
  writeValidationReport,
} from '../validation/stage.js';
import type { ResourceValidator } from '../validation/types.js';
import { awsTaskEntry } from './aws-entry.js';

/** Write Validation Report: merges the files' counts, writes the summary, then `_VALIDATED.json`, then the event. */
export function createWriteValidationReportHandler(
  runtime: Runtime,
  loadValidator: () => ResourceValidator = loadExportValidator,
) {
  return (event: WriteValidationReportEvent): Promise<WriteValidationReportResult> =>
    writeValidationReport(runtime, loadValidator(), event);
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('WriteValidationReport', createWriteValidationReportHandler);
