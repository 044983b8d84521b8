/**
 * Where the warehouse load writes (issue 18). The tables live beside the exports, under the pipeline's
 * prefix, in Hive-style partitions that Athena's partition projection and DuckDB's hive_partitioning both
 * read:
 *
 *   <prefix>warehouse/view=<table>/source=<id>/export=<token>/part-NNNN.parquet
 *
 * `<token>` is the export folder's own `export=` value (the transaction time as the export layout writes
 * it, e.g. `2026-11-26T110000.123Z`): fixed width, so it sorts as time does and a `latest` view can
 * tie-break on it. `_LOADED.json` sits in the export folder beside `_SUCCESS.json` and `_VALIDATED.json`,
 * written last.
 */

/** The table of ids the exports' `deleted` files list (Bulk Data's deleted[]): `resource_type`, `id`. */
export const DELETED_TABLE = 'deleted';

/** Under the pipeline's prefix ('' or ending in '/'). */
export const warehousePrefix = (prefix: string) => `${normalizedPrefix(prefix)}warehouse/`;

/** `source=<id>/export=<token>/` (under the prefix) → its source id and export token. */
export function exportPartition(prefix: string, root: string): { sourceId: string; exportToken: string } {
  const base = normalizedPrefix(prefix);
  const match = root.startsWith(base)
    ? /^source=([^/]+)\/export=([^/]+)\/$/.exec(root.slice(base.length))
    : null;
  if (!match) {
    throw new Error(`the export folder ${root} is not source=<id>/export=<time>/ under the prefix "${base}"`);
  }
  return { sourceId: match[1] as string, exportToken: match[2] as string };
}

/** One table's partition for one export. */
export function tablePartitionPrefix(
  prefix: string,
  table: string,
  sourceId: string,
  exportToken: string,
): string {
  return `${warehousePrefix(prefix)}view=${table}/source=${sourceId}/export=${exportToken}/`;
}

/** The NNNN-th Parquet part of a partition, 1-based, four digits at least. */
export function parquetPartKey(partition: string, part: number): string {
  if (!Number.isInteger(part) || part < 1)
    throw new Error(`a Parquet part number is an integer ≥ 1, got ${part}`);
  return `${partition}part-${String(part).padStart(4, '0')}.parquet`;
}

/** Written last, and only for a load that finished: every table's parts and rows. */
export const loadedMarkerKey = (root: string) => `${root}_LOADED.json`;

/** Scratch space of one load, under `_work/` (expired by its lifecycle rule), removed when the marker is written. */
export function loadWorkPrefix(prefix: string, root: string): string {
  const base = normalizedPrefix(prefix);
  if (!root.startsWith(base)) throw new Error(`the export folder ${root} is not under the prefix ${base}`);
  return `${base}_work/warehouse/${root.slice(base.length)}`;
}

function normalizedPrefix(prefix: string): string {
  return prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
}
