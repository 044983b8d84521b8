import { workPrefix } from '../core/layout.js';
import type { Runtime } from '../runtime.js';
import { type EndedExportFailure, errorCategory } from './error-category.js';
import { type ExportSucceeded, sourceDimension } from './metrics.js';

export interface FailedExport extends EndedExportFailure {
  readonly sourceId: string | undefined;
  readonly executionName: string;
}

/** Written once per failed export: whoever finds it there counts nothing. */
export const failureCountedKey = (prefix: string, sourceId: string, executionName: string) =>
  `${workPrefix(prefix, sourceId, executionName)}failure-counted.json`;

/**
 * Counts a failed export in `ExportsFailed`, once per execution however
 * many times it is ended: the workflow's Catch and the clean-up of the
 * ended execution may both end one export (a lock release that failed, a
 * retried clean-up), a resumable failure is ended again when it fails after
 * its resume or a later run takes it over. The first to create the marker
 * (a conditional PUT) counts. Never throws: a metric is not worth a failed
 * clean-up; when S3 cannot tell, the failure is counted (an alarm on
 * failures had rather see one twice than miss it).
 */
export async function countExportFailure(
  runtime: Pick<Runtime, 'store' | 'prefix' | 'metrics' | 'logger' | 'now'>,
  failure: FailedExport,
): Promise<void> {
  const category = errorCategory(failure);
  const sourceId = sourceDimension(failure.sourceId);
  const first =
    sourceId === 'unknown' ||
    (await isFirstCount(runtime, failureCountedKey(runtime.prefix, sourceId, failure.executionName), {
      error: failure.error,
      category,
    }));
  if (first) runtime.metrics.exportFailed({ sourceId, category });
}

/** Written once per completed export: Complete Export retried by Step Functions counts nothing again. */
export const successCountedKey = (prefix: string, sourceId: string, executionName: string) =>
  `${workPrefix(prefix, sourceId, executionName)}success-counted.json`;

/** Counts a completed export in `ExportsSucceeded` and its totals once per execution, as failures are. */
export async function countExportSuccess(
  runtime: Pick<Runtime, 'store' | 'prefix' | 'metrics' | 'logger' | 'now'>,
  success: ExportSucceeded & { readonly executionName: string },
): Promise<void> {
  const { executionName, ...event } = success;
  const key = successCountedKey(runtime.prefix, success.sourceId, executionName);
  if (await isFirstCount(runtime, key, { resources: event.resources }))
    runtime.metrics.exportSucceeded(event);
}

/**
 * Whether this call is the first to count the event: the first to create the
 * marker (a conditional PUT). When S3 cannot tell, it counts (an alarm had
 * rather see an event twice than miss it).
 */
async function isFirstCount(
  runtime: Pick<Runtime, 'store' | 'logger' | 'now'>,
  key: string,
  detail: Record<string, unknown>,
): Promise<boolean> {
  try {
    await runtime.store.putJson(
      key,
      { ...detail, countedAt: runtime.now().toISOString() },
      { ifNoneMatch: true },
    );
    return true;
  } catch (error) {
    const counted = await runtime.store.getJson(key).catch(() => undefined);
    if (counted !== undefined) return false;
    runtime.logger.warn('could not tell whether the export was counted; counting it', {
      key,
      error: (error as Error).name,
    });
    return true;
  }
}
