import type { Runtime } from '../runtime.js';
import { type PlanValidationEvent, type PlanValidationResult, planValidation } from '../validation/stage.js';
import { awsTaskEntry } from './aws-entry.js';

/** Plan Validation (validate-export.asl.json): the export's data files, in batches, written to S3. */
export function createPlanValidationHandler(runtime: Runtime) {
  return (event: PlanValidationEvent): Promise<PlanValidationResult> => planValidation(runtime, event);
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('PlanValidation', createPlanValidationHandler);
