import type { Bearer } from '../adapters/fhir-http.js';
import type { Runtime } from '../runtime.js';
import type { ExportContext } from '../state.js';

/**
 * The server jobs of the dead export this one took the lock from (one, or
 * one per chunk): DELETEd before this run's first kick-off, since Epic
 * refuses a second export per client while one exists. Best effort: a job
 * already gone or expired answers 404 or 410, and one left behind expires.
 */
export async function deleteSupersededJobs(
  runtime: Runtime,
  context: ExportContext,
  bearer: Bearer,
): Promise<void> {
  const superseded = context.supersedes;
  if (!superseded) return;
  const urls = [
    ...(superseded.statusUrl ? [superseded.statusUrl] : []),
    ...(superseded.chunkStatusUrls ?? []),
  ];
  for (const url of urls) {
    try {
      const response = await runtime.fhir.send(
        { method: 'DELETE', url, headers: { Accept: 'application/json' } },
        bearer,
      );
      runtime.logger.info('DELETEd the server job of the export this one superseded', {
        sourceId: context.sourceId,
        supersededExecution: superseded.executionName,
        status: response.status,
      });
    } catch (error) {
      runtime.logger.warn('could not DELETE the server job of the export this one superseded', {
        sourceId: context.sourceId,
        supersededExecution: superseded.executionName,
        error: (error as Error).name,
      });
    }
  }
}
