import { workPrefix } from '../core/layout.js';
import type { Runtime } from '../runtime.js';
import { type EndedExportFailure, errorCategory } from './error-category.js';
import { sourceDimension } from './metrics.js';

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
  if (sourceId !== 'unknown') {
    const key = failureCountedKey(runtime.prefix, sourceId, failure.executionName);
    try {
      await runtime.store.putJson(
        key,
        { error: failure.error, category, countedAt: runtime.now().toISOString() },
        { ifNoneMatch: true },
      );
    } catch (error) {
      const counted = await runtime.store.getJson(key).catch(() => undefined);
      if (counted !== undefined) return;
      runtime.logger.warn('could not tell whether the failed export was counted; counting it', {
        sourceId,
        executionName: failure.executionName,
        error: (error as Error).name,
      });
    }
  }
  runtime.metrics.exportFailed({ sourceId, category });
}
