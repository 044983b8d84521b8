import type { InvocationContext } from '../middleware.js';
import type { Runtime } from '../runtime.js';
import { createCheckFilesHandler } from './check-files.js';
import { createCleanUpHandler } from './clean-up.js';
import { createCleanUpEndedExportHandler } from './clean-up-ended-export.js';
import { createCompleteExportHandler } from './complete-export.js';
import { createDownloadFileHandler } from './download-file.js';
import { createFinalizeExportHandler } from './finalize-export.js';
import { createKickOffHandler } from './kick-off.js';
import { createLoadWarehouseFilesHandler } from './load-warehouse-files.js';
import { createMergeChunksHandler } from './merge-chunks.js';
import { createMintTokenHandler } from './mint-token.js';
import { createPlanChunksHandler } from './plan-chunks.js';
import { createPlanLoadHandler } from './plan-load.js';
import { createPlanValidationHandler } from './plan-validation.js';
import { createPollStatusHandler } from './poll-status.js';
import { createPrepareExportHandler } from './prepare-export.js';
import { createValidateFileHandler } from './validate-file.js';
import { createVerifyFilesHandler } from './verify-files.js';
import { createWriteLoadMarkerHandler } from './write-load-marker.js';
import { createWriteValidationReportHandler } from './write-validation-report.js';

/**
 * Task handlers by the function name the ASL uses (`${NameFunctionArn}`).
 * CDK creates one Lambda per entry from its file; the local runner calls
 * these factories directly with a local runtime.
 */
export const TASK_HANDLER_FACTORIES: Record<
  string,
  // biome-ignore lint/suspicious/noExplicitAny: events differ per handler; each factory types its own
  (runtime: Runtime) => (event: any, context: InvocationContext) => Promise<unknown>
> = {
  PrepareExport: createPrepareExportHandler,
  MintToken: createMintTokenHandler,
  KickOff: createKickOffHandler,
  PollStatus: createPollStatusHandler,
  PlanChunks: createPlanChunksHandler,
  MergeChunks: createMergeChunksHandler,
  DownloadFile: createDownloadFileHandler,
  CheckFiles: createCheckFilesHandler,
  VerifyFiles: createVerifyFilesHandler,
  FinalizeExport: createFinalizeExportHandler,
  CompleteExport: createCompleteExportHandler,
  CleanUp: createCleanUpHandler,
  CleanUpEndedExport: createCleanUpEndedExportHandler,
  PlanValidation: createPlanValidationHandler,
  ValidateFile: createValidateFileHandler,
  WriteValidationReport: createWriteValidationReportHandler,
  // The warehouse load (issue 18, load-warehouse.asl.json).
  PlanLoad: createPlanLoadHandler,
  LoadWarehouseFiles: createLoadWarehouseFilesHandler,
  WriteLoadMarker: createWriteLoadMarkerHandler,
};
