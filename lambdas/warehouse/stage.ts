import { markerRoot } from '../core/layout.js';
import { BLOCK_HEADER_TYPE, type Receipt, type ReceiptFile } from '../core/receipt.js';
import { ConfigurationError, PipelineError } from '../errors.js';
import type { Runtime } from '../runtime.js';
import { type CompletionMarker, readFileIndex, readMarkerJson } from '../services/export-markers.js';
import { COMPLETION_MARKER_NAME } from '../validation/layout.js';
import type { ValidatedMarker } from '../validation/stage.js';
import {
  DELETED_TABLE,
  exportPartition,
  loadedMarkerKey,
  loadWorkPrefix,
  parquetPartKey,
  tablePartitionPrefix,
} from './layout.js';
import type { FileLoad, FileLoaded, LoadedMarker, TablePartLoaded } from './types.js';
import type { CompiledView } from './view-definition/index.js';
import { viewsFor } from './views.js';

/**
 * The load stage (state-machines/load-warehouse.asl.json), the downstream consumer of a validated export:
 * Plan Load reads the marker it was started by, the receipt's file index (streamed) and the source's views,
 * and writes the Map's items (batches of FileLoad) to S3; Load Warehouse Files turns each data file into one
 * Parquet part per table that reads its types; Write Load Marker sums the files' results into `_LOADED.json`,
 * written last, and announces it. State only ever holds keys and counts.
 */

/** The marker a validation writes last: the load's trigger when the source's validation is on. */
export const VALIDATED_MARKER_NAME = '_VALIDATED.json';

/** Small files share a batch (one child, one invocation); a large one goes alone. */
const FILES_PER_BATCH = 20;
const BATCH_BYTES = 128 * 1024 * 1024;

/** The load was started with something that can never be loaded: retrying is pointless. */
export class LoadInputError extends PipelineError {
  readonly code = 'ERR_LOAD_INPUT';
}

/** The source's validation gate did not pass the export: it is not loaded. */
export class ValidationNotPassedError extends PipelineError {
  readonly code = 'ERR_VALIDATION_NOT_PASSED';
}

/** Files of the plan were not loaded, or their results disagree with it: no `_LOADED.json`. */
export class LoadIncompleteError extends PipelineError {
  readonly code = 'ERR_LOAD_INCOMPLETE';
}

/** What every task of one load is given: where the export is, where its scratch space is. */
export interface LoadTarget {
  readonly bucket: string;
  /** The export folder (`…/source=<id>/export=<…>/`). */
  readonly root: string;
  readonly workPrefix: string;
}

/** One item of the Load Files Map: a batch's files are in S3 (`batchKey`), never in state. */
export interface LoadBatchItem {
  readonly batch: number;
  readonly batchKey: string;
  readonly files: number;
}

/** `_work/warehouse/…/batches/<batch>.json`. */
export interface LoadBatch {
  readonly batch: number;
  readonly files: readonly FileLoad[];
}

/** `_work/warehouse/…/plan.json`: what Plan Load decided, read by the Map's children and the marker. */
export interface LoadPlan {
  readonly sourceId: string;
  readonly exportToken: string;
  readonly root: string;
  readonly completionMarkerKey: string;
  readonly validatedMarkerKey?: string;
  readonly receiptKey: string;
  /** The source's own views as registered when the load was planned: every child compiles the same ones. */
  readonly sourceViews: readonly unknown[];
  /** Every table of the load, in view order (`deleted` last, when the export has deleted files). */
  readonly tables: readonly { readonly table: string; readonly resource: string }[];
  readonly files: number;
  readonly batches: number;
}

export interface PlanLoadEvent {
  /** The bucket and key of the `_VALIDATED.json` or `_SUCCESS.json` the EventBridge event names. */
  readonly bucket: string;
  readonly key: string;
}

export type PlanLoadResult =
  | {
      readonly enabled: true;
      readonly load: LoadTarget;
      readonly itemsKey: string;
      readonly files: number;
      readonly batches: number;
    }
  | { readonly enabled: false; readonly sourceId: string; readonly reason: string };

/** The plan, the Map's items, the batches and the files' results, under the load's work prefix. */
export const loadPlanKey = (work: string) => `${work}plan.json`;
export const loadItemsKey = (work: string) => `${work}items.json`;
const sixDigits = (n: number) => String(n).padStart(6, '0');
export const loadBatchKey = (work: string, batch: number) => `${work}batches/${sixDigits(batch)}.json`;
export const loadedPartialsPrefix = (work: string) => `${work}loaded/`;
/** One data file's result, named by its line in the receipt's file index. */
export const loadedPartialKey = (work: string, fileIndex: number) =>
  `${loadedPartialsPrefix(work)}${sixDigits(fileIndex)}.json`;

export async function planLoad(runtime: Runtime, event: PlanLoadEvent): Promise<PlanLoadResult> {
  const { bucket, key } = event;
  if (typeof bucket !== 'string' || typeof key !== 'string') {
    throw new LoadInputError(
      "the load input must name the bucket and key of an export's _VALIDATED.json or _SUCCESS.json",
    );
  }
  if (bucket !== runtime.store.bucket) {
    throw new LoadInputError(
      `the marker is in bucket ${bucket}; this pipeline loads exports in ${runtime.store.bucket} only`,
    );
  }
  const byValidation = key.endsWith(`/${VALIDATED_MARKER_NAME}`);
  if (!byValidation && !key.endsWith(`/${COMPLETION_MARKER_NAME}`)) {
    throw new LoadInputError(
      `${key} is not a marker the load starts from: expected a key ending in /${VALIDATED_MARKER_NAME} or /${COMPLETION_MARKER_NAME} (a partial export's _PARTIAL.json is never loaded)`,
    );
  }

  let completionKey: string;
  let validatedKey: string | undefined;
  if (byValidation) {
    const found = await readMarkerJson<ValidatedMarker>(runtime, key);
    if (!found) throw new LoadInputError(`no validation marker at s3://${bucket}/${key}`);
    const validated = found.value;
    if (typeof validated.passed !== 'boolean' || typeof validated.completionMarkerKey !== 'string') {
      throw new LoadInputError(
        `s3://${bucket}/${found.key} is not a validation marker: no passed or completionMarkerKey`,
      );
    }
    if (!validated.passed) {
      throw new ValidationNotPassedError(
        `the export ${markerRoot(found.key)} did not pass its validation gate (${validated.reason ?? `${validated.conformantPercent}% conformant`}): it is not loaded; change the source's validation policy or fix the data, then validate again`,
      );
    }
    validatedKey = found.key;
    completionKey = validated.completionMarkerKey;
  } else {
    completionKey = key;
  }
  const completion = await readMarkerJson<CompletionMarker>(runtime, completionKey);
  if (!completion) {
    throw new LoadInputError(
      `no completion marker at s3://${bucket}/${completionKey}: the export did not finish there`,
    );
  }
  completionKey = completion.key;
  const marker = completion.value;
  if (typeof marker.receiptKey !== 'string' || typeof marker.sourceId !== 'string') {
    throw new LoadInputError(
      `s3://${bucket}/${completionKey} is not a completion marker: it names no receipt or source`,
    );
  }
  const root = markerRoot(completionKey);
  const { sourceId, exportToken } = exportPartition(runtime.prefix, root);
  const settings = await sourceSettings(runtime, sourceId);
  if (!settings.warehouse.enabled) {
    return { enabled: false, sourceId, reason: "the source's warehouse.enabled is false" };
  }
  // On AWS one rule starts the load on both markers: the one a source's settings do not name is ignored.
  if (!byValidation && settings.validation.enabled) {
    return {
      enabled: false,
      sourceId,
      reason: `the source's validation is on: the load starts from ${VALIDATED_MARKER_NAME}`,
    };
  }
  const receipt = await runtime.store.getJson<Receipt>(marker.receiptKey);
  if (!receipt?.fileIndex) {
    throw new LoadInputError(
      `the marker's receipt ${marker.receiptKey} is missing or has no file index (receiptVersion 2 expected)`,
    );
  }
  if (!receipt.complete) {
    throw new LoadInputError(`the receipt ${marker.receiptKey} is of a partial export: it is never loaded`);
  }

  const sourceViews = settings.warehouse.views ?? [];
  const views = viewsFor(sourceViews);
  const tablesOf = tablesByResourceType(views);
  const partitionOf = (table: string) => tablePartitionPrefix(runtime.prefix, table, sourceId, exportToken);
  const parts = new Map<string, number>();
  const nextPart = (table: string) => {
    const part = (parts.get(table) ?? 0) + 1;
    parts.set(table, part);
    return { table, partKey: parquetPartKey(partitionOf(table), part) };
  };

  const files: FileLoad[] = [];
  const bytesOf: number[] = [];
  let fileIndex = 0;
  for await (const entry of readFileIndex(
    runtime,
    receipt.fileIndex.key,
    (message) => new LoadInputError(message),
  )) {
    const index = fileIndex++;
    if (entry.lines === 0) continue;
    if (entry.kind === 'deleted') {
      files.push({
        dataKey: entry.key,
        kind: 'deleted',
        fileIndex: index,
        resourceTypes: [entry.type],
        targets: [nextPart(DELETED_TABLE)],
      });
      bytesOf.push(entry.bytes);
      continue;
    }
    if (entry.kind !== 'output') continue;
    const resourceTypes = resourceTypesOf(entry);
    const tables = [...new Set(resourceTypes.flatMap((type) => tablesOf.get(type) ?? []))];
    // Tables in view order, so a file organized by patient numbers its parts the same way every run.
    const ordered = [...views.keys()].filter((table) => tables.includes(table));
    if (ordered.length === 0) continue;
    files.push({
      dataKey: entry.key,
      kind: 'output',
      fileIndex: index,
      resourceTypes,
      targets: ordered.map(nextPart),
    });
    bytesOf.push(entry.bytes);
  }

  const workPrefix = loadWorkPrefix(runtime.prefix, root);
  // A re-run starts clean: no marker of an earlier load, no part a failed load left, no earlier results.
  await runtime.store.delete(loadedMarkerKey(root));
  for (const key of await runtime.store.listKeys(workPrefix)) await runtime.store.delete(key);
  for (const table of parts.keys()) {
    for (const key of await runtime.store.listKeys(partitionOf(table))) await runtime.store.delete(key);
  }

  const batches = batchFiles(files, bytesOf);
  const items: LoadBatchItem[] = [];
  for (const batch of batches) {
    const batchKey = loadBatchKey(workPrefix, batch.batch);
    await runtime.store.putJson(batchKey, batch);
    items.push({ batch: batch.batch, batchKey, files: batch.files.length });
  }
  const tables = [...views].map(([table, view]) => ({ table, resource: view.view.resource as string }));
  if (parts.has(DELETED_TABLE)) tables.push({ table: DELETED_TABLE, resource: 'Bundle' });
  const plan: LoadPlan = {
    sourceId,
    exportToken,
    root,
    completionMarkerKey: completionKey,
    ...(validatedKey ? { validatedMarkerKey: validatedKey } : {}),
    receiptKey: marker.receiptKey,
    sourceViews,
    tables,
    files: files.length,
    batches: batches.length,
  };
  await runtime.store.putJson(loadPlanKey(workPrefix), plan);
  await runtime.store.putJson(loadItemsKey(workPrefix), items);
  runtime.progress?.({ kind: 'phase', phase: 'loading', detail: `${files.length} file(s)` });
  return {
    enabled: true,
    load: { bucket, root, workPrefix },
    itemsKey: loadItemsKey(workPrefix),
    files: files.length,
    batches: batches.length,
  };
}

/** The source's settings, or the defaults for an export whose source was since removed. */
async function sourceSettings(runtime: Runtime, sourceId: string) {
  try {
    const settings = await runtime.sources.get(sourceId);
    return { warehouse: settings.warehouse, validation: settings.validation };
  } catch (error) {
    if (!(error instanceof ConfigurationError)) throw error;
    runtime.logger.warn('the source is not registered: loading with the default views', { sourceId });
    return { warehouse: { enabled: true, views: undefined }, validation: { enabled: true } };
  }
}

function tablesByResourceType(views: ReadonlyMap<string, CompiledView>): Map<string, string[]> {
  const byType = new Map<string, string[]>();
  for (const [table, view] of views) {
    const type = view.view.resource as string;
    byType.set(type, [...(byType.get(type) ?? []), table]);
  }
  return byType;
}

/** A file organized by patient holds several types (its blocks' Parameters headers are not data). */
function resourceTypesOf(entry: ReceiptFile): string[] {
  if (!entry.resourceTypeCounts) return [entry.type];
  return Object.keys(entry.resourceTypeCounts)
    .filter((type) => type !== BLOCK_HEADER_TYPE)
    .sort();
}

/** In file-index order: consecutive small files together, a file of BATCH_BYTES or more alone. */
export function batchFiles(files: readonly FileLoad[], bytesOf: readonly number[]): LoadBatch[] {
  const batches: LoadBatch[] = [];
  let current: FileLoad[] = [];
  let bytes = 0;
  const close = () => {
    if (current.length > 0) batches.push({ batch: batches.length, files: current });
    current = [];
    bytes = 0;
  };
  files.forEach((file, i) => {
    const size = bytesOf[i] ?? 0;
    if (current.length >= FILES_PER_BATCH || (current.length > 0 && bytes + size > BATCH_BYTES)) close();
    current.push(file);
    bytes += size;
  });
  close();
  return batches;
}

// ---------------------------------------------------------------------------------------------
// Load Warehouse Files

export interface LoadFilesEvent {
  readonly load: LoadTarget;
  readonly item: LoadBatchItem;
}

export interface LoadFilesResult {
  readonly batch: number;
  readonly files: number;
  readonly rows: number;
}

/** How one data file becomes its Parquet parts (lambdas/warehouse/load-file.ts). */
export type FileLoader = (
  runtime: Runtime,
  item: FileLoad,
  views: ReadonlyMap<string, CompiledView>,
) => Promise<FileLoaded>;

export async function loadWarehouseFiles(
  runtime: Runtime,
  loadFile: FileLoader,
  event: LoadFilesEvent,
): Promise<LoadFilesResult> {
  const { load, item } = event;
  const plan = await runtime.store.getJson<LoadPlan>(loadPlanKey(load.workPrefix));
  if (!plan) throw new LoadIncompleteError(`the load plan of ${load.root} is missing`);
  const batch = await runtime.store.getJson<LoadBatch>(item.batchKey);
  if (!batch || batch.batch !== item.batch) {
    throw new LoadIncompleteError(
      `the batch ${item.batchKey} of the load of ${load.root} is missing or not batch ${item.batch}`,
    );
  }
  const views = viewsFor(plan.sourceViews);
  let rows = 0;
  for (const file of batch.files) {
    const partialKey = loadedPartialKey(load.workPrefix, file.fileIndex);
    // A retried invocation skips files it finished: their result is written after their parts.
    const done = await runtime.store.getJson<FileLoaded>(partialKey);
    if (done?.dataKey === file.dataKey) {
      rows += sumRows(done.parts);
      continue;
    }
    const loaded = await loadFile(runtime, file, views);
    await runtime.store.putJson(partialKey, loaded);
    rows += sumRows(loaded.parts);
  }
  return { batch: batch.batch, files: batch.files.length, rows };
}

const sumRows = (parts: readonly TablePartLoaded[]) => parts.reduce((sum, part) => sum + part.rows, 0);

// ---------------------------------------------------------------------------------------------
// Write Load Marker

export interface WriteLoadMarkerEvent {
  readonly load: LoadTarget;
}

export interface WriteLoadMarkerResult {
  readonly loadedMarkerKey: string;
  readonly totals: LoadedMarker['totals'];
}

export async function writeLoadMarker(
  runtime: Runtime,
  event: WriteLoadMarkerEvent,
): Promise<WriteLoadMarkerResult> {
  const { root, workPrefix, bucket } = event.load;
  const markerKey = loadedMarkerKey(root);
  const plan = await runtime.store.getJson<LoadPlan>(loadPlanKey(workPrefix));
  if (!plan) {
    // A retry of an invocation that had finished (and removed the work objects) before it could answer.
    const done = await runtime.store.getJson<LoadedMarker>(markerKey);
    if (done) return { loadedMarkerKey: markerKey, totals: done.totals };
    throw new LoadIncompleteError(`the load plan of ${root} is missing`);
  }
  const partsByTable = new Map<string, TablePartLoaded[]>(plan.tables.map(({ table }) => [table, []]));
  let files = 0;
  for (const key of await runtime.store.listKeys(loadedPartialsPrefix(workPrefix))) {
    const loaded = await runtime.store.getJson<FileLoaded>(key);
    if (!loaded) throw new LoadIncompleteError(`the file result ${key} is missing`);
    files += 1;
    for (const part of loaded.parts) {
      const parts = partsByTable.get(part.table);
      if (!parts) {
        throw new LoadIncompleteError(
          `${loaded.dataKey} was loaded into table ${part.table}, which the plan does not have`,
        );
      }
      parts.push(part);
    }
  }
  if (files !== plan.files) {
    throw new LoadIncompleteError(
      `${files} of the ${plan.files} data files of ${root} were loaded; no _LOADED.json is written for an unfinished load`,
    );
  }
  const tables: Record<string, LoadedMarker['tables'][string]> = {};
  let parts = 0;
  let rows = 0;
  let bytes = 0;
  for (const { table, resource } of plan.tables) {
    const tableParts = (partsByTable.get(table) ?? []).sort((a, b) => a.partKey.localeCompare(b.partKey));
    const tableRows = sumRows(tableParts);
    tables[table] = { resource, rows: tableRows, parts: tableParts };
    parts += tableParts.length;
    rows += tableRows;
    bytes += tableParts.reduce((sum, part) => sum + part.bytes, 0);
  }
  const totals = { files, parts, rows, bytes };
  const marker: LoadedMarker = {
    loadedVersion: 1,
    sourceId: plan.sourceId,
    exportToken: plan.exportToken,
    root,
    ...(plan.validatedMarkerKey ? { validatedMarkerKey: plan.validatedMarkerKey } : {}),
    tables,
    totals,
  };
  // Sorted keys and no timestamps: a re-run of the same export writes the same bytes.
  await runtime.store.putJson(markerKey, sortedKeys(marker));
  await runtime.events.emit('Bulk Export Loaded', {
    sourceId: plan.sourceId,
    exportToken: plan.exportToken,
    bucket,
    root,
    loadedMarkerKey: markerKey,
    totals,
  });
  for (const key of await runtime.store.listKeys(workPrefix)) await runtime.store.delete(key);
  runtime.progress?.({ kind: 'phase', phase: 'loaded', detail: `${rows} row(s) in ${parts} part(s)` });
  return { loadedMarkerKey: markerKey, totals };
}

/** The same value with every object's keys in code-point order (arrays keep theirs). */
export function sortedKeys<T>(value: T): T {
  if (Array.isArray(value)) return value.map(sortedKeys) as T;
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((key) => [key, sortedKeys((value as Record<string, unknown>)[key])]),
  ) as T;
}
