import { fileURLToPath } from 'node:url';
import type { Runtime } from '../../lambdas/runtime.js';
import type { PlanLoadResult, WriteLoadMarkerResult } from '../../lambdas/warehouse/stage.js';
import type { LoadedMarker } from '../../lambdas/warehouse/types.js';
import { type LocalStageOptions, runStageLocally } from './local-validation.js';
import type { LocalRunResult } from './runner.js';

/** The load stage's state machine: what the EventBridge rule on `_VALIDATED.json` / `_SUCCESS.json` starts on AWS. */
export const LOAD_DEFINITION_PATH = fileURLToPath(
  new URL('../../state-machines/load-warehouse.asl.json', import.meta.url),
);

/** `markerKey` is the export's `_VALIDATED.json`, or its `_SUCCESS.json` when validation is off. */
export type LocalLoadOptions = LocalStageOptions;

export interface LocalLoadResult {
  readonly run: LocalRunResult;
  /** Why nothing was loaded, when Plan Load said so (the source's warehouse.enabled is false…). */
  readonly notStarted?: string;
  /** `_LOADED.json`, read back, when the load finished. */
  readonly marker?: LoadedMarker;
  readonly markerKey?: string;
}

/** Runs load-warehouse.asl.json with the real handlers on `runtime` (the export's own, after its validation). */
export async function runLoadLocally(runtime: Runtime, options: LocalLoadOptions): Promise<LocalLoadResult> {
  const run = await runStageLocally(runtime, LOAD_DEFINITION_PATH, options);
  if (run.status !== 'SUCCEEDED') return { run };
  const output = run.output as Partial<WriteLoadMarkerResult & PlanLoadResult> | undefined;
  if (output?.enabled === false) return { run, notStarted: output.reason ?? 'not started' };
  if (typeof output?.loadedMarkerKey !== 'string') return { run };
  const marker = await runtime.store.getJson<LoadedMarker>(output.loadedMarkerKey);
  return { run, markerKey: output.loadedMarkerKey, ...(marker ? { marker } : {}) };
}

/** What `npm run export` and `npm run demo` print after the load: rows per table, or why there are none. */
export function describeLoad(load: LocalLoadResult, bucket: string): string {
  const { run, marker, markerKey, notStarted } = load;
  if (run.status !== 'SUCCEEDED') {
    return `Warehouse load FAILED (no _LOADED.json): ${run.error ?? ''} ${run.cause ?? ''}`.trim();
  }
  if (notStarted) return `Warehouse load: not started (${notStarted})`;
  if (!marker || !markerKey) return 'Warehouse load: no _LOADED.json was written';
  const tables = Object.entries(marker.tables).filter(([, table]) => table.parts.length > 0);
  const width = Math.max(5, ...tables.map(([name]) => name.length));
  const lines = tables.map(
    ([name, table]) =>
      `  ${name.padEnd(width)}  ${String(table.rows).padStart(8)} rows  ${String(table.parts.length).padStart(4)} part(s)`,
  );
  return `Warehouse load (Parquet, ${marker.totals.rows} rows in ${marker.totals.parts} part(s)):\n${lines.join('\n')}\nMarker:  s3://${bucket}/${markerKey}`;
}
