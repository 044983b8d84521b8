/**
 * Where the validation stage writes, inside the export folder it validates
 * (`source=<id>/export=<…>/`, which ends in `/`). Everything starts with `_`,
 * so Athena and Glue never read the report as data; the marker is written last.
 */

/** The marker the validation is triggered by: only a complete export's (`_PARTIAL.json` is not validated). */
export const COMPLETION_MARKER_NAME = '_SUCCESS.json';

export const validationPrefix = (root: string) => `${root}_validation/`;
/** Per type and profile: checked, conformant, non-conformant, issues by rule, must-support coverage. */
export const validationSummaryKey = (root: string) => `${validationPrefix(root)}summary.json`;
/** Written last, and only for a validation that finished: `passed`, why not, and the counts. */
export const validatedMarkerKey = (root: string) => `${root}_VALIDATED.json`;

/**
 * The issues of one data part, beside its partition: `type=Patient/part-0001.ndjson` →
 * `_validation/issues/type=Patient/part-0001.ndjson` (one issues part per data part, so a
 * reader finds a resource's issues by the file it came from); a file organized by patient
 * keeps its `organizedBy=Patient/` partition.
 */
export function issuesPartKey(root: string, dataKey: string): string {
  if (!dataKey.startsWith(root)) {
    throw new Error(`the data file ${dataKey} is not in the export folder ${root}`);
  }
  return `${validationPrefix(root)}issues/${dataKey.slice(root.length)}`;
}

/**
 * Scratch space of one validation, under the pipeline's `_work/` (whose lifecycle rule expires what a
 * failed run leaves) rather than in the export folder: `_work/validation/source=<id>/export=<…>/`.
 * Removed when the report is written.
 */
export function validationWorkPrefix(prefix: string, root: string): string {
  const base = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
  if (!root.startsWith(base)) throw new Error(`the export folder ${root} is not under the prefix ${base}`);
  return `${base}_work/validation/${root.slice(base.length)}`;
}
/** What Plan Validation decided: the export, the policy, how many files. */
export const validationPlanKey = (work: string) => `${work}plan.json`;
/** The Validate Files Map's items: batches of data files. */
export const validationBatchesKey = (work: string) => `${work}batches.json`;
const sixDigits = (n: number) => String(n).padStart(6, '0');
/** One data file's counts once it is validated, named by its line in the receipt's file index. */
export const partialSummariesPrefix = (work: string) => `${work}partials/`;
export const partialSummaryKey = (work: string, fileIndex: number) =>
  `${partialSummariesPrefix(work)}${sixDigits(fileIndex)}.json`;
/** Where a batch stood when its invocation ran low on time, named by batch and invocation. */
export const validationCheckpointKey = (work: string, batch: number, invocation: number) =>
  `${work}checkpoints/${sixDigits(batch)}.${invocation}.json`;
