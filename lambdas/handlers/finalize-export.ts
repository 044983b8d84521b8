import type { Runtime } from '../runtime.js';
import { type FinalizeExportEvent, finalizeExport } from '../services/finalize-export.js';
import type { FinalizeResult } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';

export type { FinalizeExportEvent, FinalizeResult };

/** Verify, publish, receipt, then marker (services/finalize-export.ts); what follows is Complete Export's. */
export function createFinalizeExportHandler(runtime: Runtime) {
  return (event: FinalizeExportEvent): Promise<FinalizeResult> => finalizeExport(runtime, event);
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('FinalizeExport', createFinalizeExportHandler);
