import type { Runtime } from '../runtime.js';
import { type PlanLoadEvent, type PlanLoadResult, planLoad } from '../warehouse/stage.js';
import { awsTaskEntry } from './aws-entry.js';

/** Plan Load (load-warehouse.asl.json): the export's data files as FileLoad items, in batches, written to S3. */
export function createPlanLoadHandler(runtime: Runtime) {
  return (event: PlanLoadEvent): Promise<PlanLoadResult> => planLoad(runtime, event);
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('PlanLoad', createPlanLoadHandler);
