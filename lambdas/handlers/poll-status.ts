import type { Runtime } from '../runtime.js';
import { type PollStatusEvent, pollExportStatus } from '../services/export-status.js';
import type { PollState } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';

export type { PollStatusEvent };

/** One status request (services/export-status.ts); the Wait state does the waiting. */
export function createPollStatusHandler(runtime: Runtime) {
  return (event: PollStatusEvent): Promise<PollState> => pollExportStatus(runtime, event);
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('PollStatus', createPollStatusHandler);
