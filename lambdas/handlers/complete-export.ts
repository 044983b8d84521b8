import { failureReceiptKey, markerRoot } from '../core/layout.js';
import { oneLine } from '../core/operation-outcome.js';
import type { Receipt } from '../core/receipt.js';
import { countExportSuccess } from '../observability/export-outcomes.js';
import { type Runtime, sealContext } from '../runtime.js';
import { chunkStatusUrls, readChunkRecords } from '../services/chunk-records.js';
import { removePrefixForGood, stagingPrefix } from '../services/publish-export.js';
import { releaseSourceLock } from '../services/source-lock.js';
import { advanceWatermark } from '../services/watermark.js';
import type { ExportContext, FinalizeResult } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';

export interface CompleteExportEvent {
  readonly export: ExportContext;
  /** Null for a chunked export: each chunk's job is on its record. */
  readonly statusUrl: string | null;
  readonly result: FinalizeResult;
  /** Minted just before this task; null when minting failed (the job is then left to expire). */
  readonly sealedToken: string | null;
}

/** Attempts per step after the marker, the first included. */
const ATTEMPTS = 3;

/**
 * What follows the completion marker: advance the watermark, DELETE the
 * server job (the IG asks clients to; Epic allows one export per client
 * until we do), release the lock, announce success, and record on the
 * receipt what was done. The export is complete and verified whatever
 * happens here: each step is retried and then reported as a warning on the
 * receipt, never as a failed export beside a marker.
 */
export function createCompleteExportHandler(runtime: Runtime) {
  return async (event: CompleteExportEvent): Promise<FinalizeResult> => {
    const { export: context, result } = event;
    const warnings: string[] = [];
    const step = async <T>(what: string, action: () => Promise<T>): Promise<T | undefined> => {
      for (let attempt = 1; ; attempt += 1) {
        try {
          return await action();
        } catch (error) {
          if (attempt < ATTEMPTS) {
            await runtime.sleep(1000 * 2 ** (attempt - 1));
            continue;
          }
          const message = `could not ${what} (${(error as Error).name}: ${oneLine((error as Error).message, 300)})`;
          runtime.logger.warn(`after the completion marker: ${message}`, { sourceId: context.sourceId });
          warnings.push(message);
          return undefined;
        }
      }
    };

    let watermarkAdvanced = false;
    const transactionTime = result.watermarkTransactionTime;
    if (result.watermarkAdvanced && transactionTime) {
      watermarkAdvanced =
        (await step('advance the watermark', async () => {
          await advanceWatermark(runtime, context, transactionTime);
          return true;
        })) ?? false;
      if (!watermarkAdvanced) {
        warnings.push(
          'the next since=auto export starts from the previous watermark: it exports this one again (duplicates downstream can dedupe), it skips nothing',
        );
      }
    }

    // Published and verified: the staged copies are no longer needed (nor a second copy of the data).
    await step('remove the staged copies of the published files', async () => {
      const root = markerRoot(result.completionMarkerKey);
      await removePrefixForGood(runtime.s3, context.bucket, stagingPrefix(root), (prefix) =>
        runtime.store.listKeys(prefix),
      );
    });
    const serverJobDeleted = (await deleteServerJob(runtime, event, warnings)) ?? false;
    await step('release the source lock', () =>
      releaseSourceLock(runtime, context.sourceId, context.executionName),
    );
    // A resumed export succeeded: its failure receipt no longer describes it (the receipt says it was resumed).
    await step('remove the failure receipt of the resumed export', () =>
      runtime.store.delete(failureReceiptKey(runtime.prefix, context.sourceId, context.executionName)),
    );
    // A partial export has its own event: a rule on `Bulk Export Succeeded` never takes it for complete.
    const partial = result.status === 'partial';
    await step(partial ? 'publish the partial-export event' : 'publish the success event', () =>
      runtime.events.emit(partial ? 'Bulk Export Partial' : 'Bulk Export Succeeded', {
        sourceId: context.sourceId,
        executionName: context.executionName,
        status: result.status,
        complete: !partial,
        transactionTime: result.transactionTime,
        bucket: context.bucket,
        receiptKey: result.receiptKey,
        completionMarkerKey: result.completionMarkerKey,
        totals: result.totals,
      }),
    );
    await countExportSuccess(runtime, {
      sourceId: context.sourceId,
      executionName: context.executionName,
      durationSeconds: (runtime.now().getTime() - Date.parse(context.startedAt)) / 1000,
      resources: result.totals.resources,
      bytes: result.totals.bytes,
    });

    await step('record the completion on the receipt', async () => {
      const receipt = await runtime.store.getJson<Receipt>(result.receiptKey);
      if (!receipt) throw new Error(`the receipt ${result.receiptKey} is gone`);
      const completed: Receipt = {
        ...receipt,
        serverJobDeleted,
        watermark: watermarkAdvanced
          ? receipt.watermark
          : {
              advanced: false,
              reason: result.watermarkAdvanced ? 'its write failed' : receipt.watermark.reason,
            },
        completedAt: runtime.now().toISOString(),
        ...(warnings.length > 0 ? { warnings } : {}),
      };
      await runtime.store.putJson(result.receiptKey, completed);
    });
    runtime.progress?.({
      kind: 'phase',
      phase: 'finalized',
      ...(warnings.length > 0
        ? { detail: `with ${warnings.length} warning(s): ${warnings.join('; ')}` }
        : {}),
    });
    return {
      ...result,
      watermarkAdvanced,
      ...(warnings.length > 0 ? { warnings } : {}),
    };
  };

  /** True when the server answered the DELETE with success, or the job was already gone. */
  async function deleteServerJob(runtime: Runtime, event: CompleteExportEvent, warnings: string[]) {
    const { export: context } = event;
    if (!event.sealedToken) {
      warnings.push(
        'could not DELETE the server job: no access token (the server removes it when it expires)',
      );
      return false;
    }
    let accessToken: string;
    let urls: string[];
    try {
      accessToken = await runtime.sealer.open(
        event.sealedToken,
        sealContext(context.sourceId, context.executionName),
      );
      urls = event.statusUrl
        ? [event.statusUrl]
        : chunkStatusUrls(await readChunkRecords(runtime, context.workPrefix));
    } catch (error) {
      warnings.push(
        `could not DELETE the server job (${(error as Error).name}); the server removes it when it expires`,
      );
      return false;
    }
    let deleted = 0;
    for (const url of urls) {
      const which = event.statusUrl ? "the job's DELETE" : `a chunk's job's DELETE`;
      try {
        const response = await runtime.fhir.send(
          { method: 'DELETE', url, headers: { Accept: 'application/json' } },
          accessToken,
        );
        // A retried task meets the job its first attempt deleted: gone is what we asked for.
        if (
          (response.status >= 200 && response.status < 300) ||
          response.status === 404 ||
          response.status === 410
        ) {
          deleted += 1;
          continue;
        }
        warnings.push(
          `the server answered ${which} with ${response.status}; it removes the job when it expires`,
        );
      } catch (error) {
        warnings.push(
          `could not DELETE the server job (${(error as Error).name}); the server removes it when it expires`,
        );
      }
    }
    return urls.length > 0 && deleted === urls.length;
  }
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('CompleteExport', createCompleteExportHandler);
