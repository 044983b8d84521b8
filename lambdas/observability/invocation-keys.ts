/**
 * The `sourceId` and `executionId` a Task event names, for every log line of
 * its invocation. Each Task's event carries them in one of a few places:
 * the export context (most Tasks), the top level (Prepare Export, Mint
 * Token, Clean Up), the execution input (Prepare Export, Clean Up), or the
 * ended execution (Clean Up Ended Export). A source id that is not one (an
 * input that never validated) is left out rather than logged.
 */

import { isSourceId } from '../schema/source.js';
export function invocationKeys(event: unknown): { sourceId?: string; executionId?: string } {
  const at = (value: unknown, ...path: string[]): unknown => {
    let current = value;
    for (const key of path) {
      if (current === null || typeof current !== 'object') return undefined;
      current = (current as Record<string, unknown>)[key];
    }
    return current;
  };
  const first = (isWanted: (value: unknown) => value is string, ...paths: string[][]) =>
    paths.map((path) => at(event, ...path)).find(isWanted);
  const sourceId = first(
    isSourceId,
    ['export', 'sourceId'],
    ['state', 'export', 'sourceId'],
    ['sourceId'],
    ['input', 'sourceId'],
    ['ended', 'input', 'sourceId'],
  );
  const executionId = first(
    isExecutionName,
    ['export', 'executionName'],
    ['executionName'],
    ['ended', 'executionName'],
  );
  return {
    ...(sourceId === undefined ? {} : { sourceId }),
    ...(executionId === undefined ? {} : { executionId }),
  };
}

/** Step Functions allows 80 characters; ours are [A-Za-z0-9_-] (executionNameForWindow), the console's others. */
const isExecutionName = (value: unknown): value is string =>
  typeof value === 'string' && value.length > 0 && value.length <= 80 && !/[\s"\\]/.test(value);
