import type { RequestLogEntry } from '../../../scripts/sandbox/index.js';

/**
 * The most requests the sandbox had in progress at one instant, from each
 * entry's `startMs`..`endMs`. A request that ended exactly as another began
 * does not count as overlapping it.
 */
export function peakInProgress(entries: readonly Pick<RequestLogEntry, 'startMs' | 'endMs'>[]): number {
  const edges = entries.flatMap((entry) => [
    { at: entry.startMs, change: 1 },
    { at: entry.endMs, change: -1 },
  ]);
  // Ends before starts at the same instant.
  edges.sort((a, b) => a.at - b.at || a.change - b.change);
  let inProgress = 0;
  let peak = 0;
  for (const edge of edges) {
    inProgress += edge.change;
    peak = Math.max(peak, inProgress);
  }
  return peak;
}
