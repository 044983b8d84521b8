/**
 * A Bulk Data `deleted` file (the export manifest's `deleted[]`,
 * https://hl7.org/fhir/uv/bulkdata/export.html#response---complete-status): each line is a Bundle of type
 * transaction whose entries have `request.method` DELETE and `request.url` `Type/id`, one per resource
 * deleted since `_since`. Loaded as the `deleted` table (DELETED_TABLE), whose rows the `latest` views drop.
 */
import { PipelineError } from '../errors.js';
import type { ColumnSchema, Row } from './view-definition/types.js';

/** The `deleted` table's columns. */
export const DELETED_COLUMNS: readonly ColumnSchema[] = Object.freeze([
  { name: 'resource_type', type: 'code', inferred: false, collection: false },
  { name: 'id', type: 'id', inferred: false, collection: false },
]);

/**
 * A line of a `deleted` file that is not such a Bundle. Names the file and line and what was expected,
 * never the line's content.
 */
export class InvalidDeletedFileError extends PipelineError {
  readonly code = 'ERR_INVALID_DELETED_FILE';
}

/**
 * `Type/id`, relative as the IG has it; an absolute URL ending in `Type/id` too (some servers write their
 * base first). FHIR's id: 1–64 of letters, digits, `-` and `.`.
 */
const DELETED_URL = /(?:^|\/)([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9\-.]{1,64})$/;

/** The rows of one line (1-based `line` of `fileKey`, for the error). */
export function deletedRowsOfLine(text: string, fileKey: string, line: number): Row[] {
  const fail = (what: string): never => {
    throw new InvalidDeletedFileError(
      `the deleted file ${fileKey}, line ${line}: ${what} (expected a Bundle whose entries have request.method DELETE and request.url Type/id)`,
    );
  };
  let bundle: unknown;
  try {
    bundle = JSON.parse(text);
  } catch {
    return fail('not valid JSON');
  }
  if (!isObject(bundle) || bundle.resourceType !== 'Bundle') return fail('not a Bundle');
  const entries = bundle.entry;
  if (!Array.isArray(entries)) return fail('a Bundle without entry[]');
  const rows: Row[] = [];
  for (const [i, entry] of entries.entries()) {
    const request = isObject(entry) ? entry.request : undefined;
    if (!isObject(request)) return fail(`entry[${i}] has no request`);
    if (request.method !== 'DELETE') return fail(`entry[${i}].request.method is not DELETE`);
    const match = typeof request.url === 'string' ? DELETED_URL.exec(request.url) : null;
    if (!match) return fail(`entry[${i}].request.url is not Type/id`);
    rows.push({ resource_type: match[1] as string, id: match[2] as string });
  }
  return rows;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
