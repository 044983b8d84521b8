import type { Chunk } from '../core/chunks.js';
import { chunkItemsKey, chunkRecordKey } from '../core/layout.js';
import type { Runtime } from '../runtime.js';

/** One Map item of the chunk Map: no patient list (it is in S3), so the history stays small. */
export interface ChunkItem {
  readonly index: number;
  readonly kind: Chunk['kind'];
  /** Patients in this chunk (`kind: patients`). */
  readonly patients?: number;
  readonly since?: string;
  readonly until?: string;
}

/**
 * What is known of one chunk's server job (`_work/…/chunks/<n>.json`): the
 * chunk's own job record. Kick Off and Poll Status write it; a resumed run
 * reads it so that a chunk already exported is not asked for again, and
 * clean-up, cancel and completion read it to DELETE every job.
 */
export interface ChunkRecord extends ChunkItem {
  /** planned → running (kicked off) → complete (manifest stored); a failure is one of `failures`. */
  readonly state: 'planned' | 'running' | 'complete';
  /** The kick-off that `statusUrl` belongs to: 1 for the first. */
  readonly attempt: number;
  readonly statusUrl?: string;
  readonly kickedOffAt?: string;
  readonly lastPoll?: { readonly at: string; readonly progress?: string };
  readonly completedAt?: string;
  readonly transactionTime?: string;
  readonly requiresAccessToken?: boolean;
  readonly fileCount?: number;
  /** Until when the server keeps this chunk's files. */
  readonly linksExpireAt?: string;
  /** Earlier attempts that failed, and why: each one's job was DELETEd before the next kick-off. */
  readonly failures?: readonly { readonly attempt: number; readonly error: string; readonly at: string }[];
}

/** The plan Plan Chunks wrote: what the chunk Map reads, and how it drives the server. */
export interface ChunkPlan {
  readonly total: number;
  readonly itemsKey: string;
  readonly by: 'patients' | 'time';
  readonly maxConcurrentJobs: number;
  readonly maxAttempts: number;
  /** `planned`: the source (or input) asked for chunks; `timeout`: the export in one piece timed out. */
  readonly reason: 'planned' | 'timeout';
}

export async function readChunkRecord(
  runtime: Pick<Runtime, 'store'>,
  work: string,
  index: number,
): Promise<ChunkRecord | undefined> {
  return runtime.store.getJson<ChunkRecord>(chunkRecordKey(work, index));
}

export async function writeChunkRecord(
  runtime: Pick<Runtime, 'store'>,
  work: string,
  record: ChunkRecord,
): Promise<void> {
  await runtime.store.putJson(chunkRecordKey(work, record.index), record);
}

/** Every chunk record of an export, in chunk order; none for an export in one piece. */
export async function readChunkRecords(
  runtime: Pick<Runtime, 'store'>,
  work: string,
): Promise<ChunkRecord[]> {
  const items = await runtime.store.getJson<ChunkItem[]>(chunkItemsKey(work));
  if (!Array.isArray(items)) return [];
  const records: ChunkRecord[] = [];
  for (const item of items) {
    records.push(
      (await readChunkRecord(runtime, work, item.index)) ?? { ...item, state: 'planned', attempt: 0 },
    );
  }
  return records;
}

/** The server jobs an ending export should DELETE: every chunk kicked off and not yet DELETEd. */
export function chunkStatusUrls(records: readonly ChunkRecord[]): string[] {
  return records.flatMap((record) => (record.statusUrl ? [record.statusUrl] : []));
}
