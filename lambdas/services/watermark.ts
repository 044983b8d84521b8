import type { SourceSettings } from '../config.js';
import { watermarkKey } from '../core/layout.js';
import { checkStoredWatermark } from '../core/watermark.js';
import type { Runtime } from '../runtime.js';

/** A source's stored watermark: where the next `since: "auto"` export starts (core/watermark.ts decides moves). */
export interface Watermark {
  readonly sourceId: string;
  readonly transactionTime: string;
  readonly executionName: string;
  readonly updatedAt: string;
}

export const readWatermark = (runtime: Pick<Runtime, 'store' | 'prefix'>, sourceId: string) =>
  runtime.store.getJson<Watermark>(watermarkKey(runtime.prefix, sourceId));

/**
 * The `_since` of a `since: "auto"` export: the stored watermark, checked
 * against our clock (a watermark from the future would skip data), or none
 * for a first export.
 */
export async function sinceFromWatermark(
  runtime: Pick<Runtime, 'store' | 'prefix'>,
  settings: Pick<SourceSettings, 'id' | 'maxClockSkewSeconds'>,
  now: Date,
): Promise<string | undefined> {
  const key = watermarkKey(runtime.prefix, settings.id);
  const watermark = await runtime.store.getJson<Watermark>(key);
  if (!watermark) return undefined;
  checkStoredWatermark({
    transactionTime: watermark.transactionTime,
    where: `s3://${runtime.store.bucket}/${key}`,
    now,
    maxClockSkewSeconds: settings.maxClockSkewSeconds,
  });
  return watermark.transactionTime;
}

/** Moves the watermark to a verified export's transactionTime (Finalize decided that it may). */
export async function advanceWatermark(
  runtime: Pick<Runtime, 'store' | 'prefix' | 'now'>,
  export_: { readonly sourceId: string; readonly executionName: string },
  transactionTime: string,
): Promise<void> {
  const value: Watermark = {
    sourceId: export_.sourceId,
    transactionTime,
    executionName: export_.executionName,
    updatedAt: runtime.now().toISOString(),
  };
  await runtime.store.putJson(watermarkKey(runtime.prefix, export_.sourceId), value);
}
