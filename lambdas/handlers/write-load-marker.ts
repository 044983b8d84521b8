import type { Runtime } from '../runtime.js';
import {
  type WriteLoadMarkerEvent,
  type WriteLoadMarkerResult,
  writeLoadMarker,
} from '../warehouse/stage.js';
import { awsTaskEntry } from './aws-entry.js';

/** Write Load Marker: sums the files' results into `_LOADED.json` (written last), then the event. */
export function createWriteLoadMarkerHandler(runtime: Runtime) {
  return (event: WriteLoadMarkerEvent): Promise<WriteLoadMarkerResult> => writeLoadMarker(runtime, event);
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('WriteLoadMarker', createWriteLoadMarkerHandler);
