import type { FileKind } from './manifest.js';

/**
 * The run receipt: what landed, checked against what the server said.
 * Written before the completion marker, so a marker always points at a
 * receipt that describes a verified export.
 */
export interface ReceiptFile {
  readonly kind: FileKind;
  readonly type: string;
  readonly key: string;
  readonly bytes: number;
  readonly lines: number;
  readonly sha256: string;
  readonly serverCount?: number;
  readonly invalidLines: number;
  readonly quarantineKey?: string;
}

/** A file the manifest listed more than once: it landed once, at `key`. */
export interface DuplicateListing {
  readonly kind: FileKind;
  readonly type: string;
  readonly key: string;
  readonly timesListed: number;
}

/** One chunk of a chunked export, as the receipt lists it. */
export interface ReceiptChunk {
  readonly index: number;
  readonly kind: 'patients' | 'time';
  /** How many patients it asked for (`kind: patients`); the list itself is in the work area. */
  readonly patients?: number;
  readonly since?: string;
  readonly until?: string;
  readonly transactionTime: string;
  readonly files: number;
  /** Kick-offs it took: more than 1 when a failed job was replaced. */
  readonly attempts: number;
  /** The attempts that failed, and why (an error name). */
  readonly failures?: readonly { readonly attempt: number; readonly error: string; readonly at: string }[];
}

/** A chunked export: how it was split, why, and each chunk. */
export interface ReceiptChunking {
  readonly by: 'patients' | 'time';
  /** `planned`: asked for; `timeout`: the export in one piece passed chunkOnTimeout and was DELETEd. */
  readonly reason: 'planned' | 'timeout';
  readonly chunks: readonly ReceiptChunk[];
}

/**
 * Resources that landed more than once (by resourceType/id): in a chunked
 * export, a Practitioner or Organization shared by patients of two chunks is
 * in both chunks' files. Every copy is kept; downstream keeps one per
 * resourceType/id (docs/layout.md).
 */
export interface ReceiptDuplicateResources {
  /** Distinct resourceType/id that landed more than once. */
  readonly resources: number;
  /** Lines beyond the first copy of each: landed lines minus this = distinct resources. */
  readonly extraCopies: number;
  readonly byType: Readonly<Record<string, { readonly resources: number; readonly extraCopies: number }>>;
}

export interface TypeTotals {
  files: number;
  resources: number;
  bytes: number;
}

export interface Receipt {
  readonly receiptVersion: 1;
  readonly status: 'succeeded';
  readonly sourceId: string;
  readonly executionName: string;
  readonly transactionTime: string;
  readonly request: {
    readonly since?: string;
    readonly until?: string;
    readonly types: readonly string[];
    readonly level: string;
    readonly groupId?: string;
  };
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly totals: { readonly files: number; readonly resources: number; readonly bytes: number };
  readonly byType: Readonly<Record<string, TypeTotals>>;
  readonly errors: { readonly files: number; readonly lines: number };
  readonly deleted: { readonly files: number; readonly lines: number };
  readonly invalidLinesQuarantined: number;
  readonly files: readonly ReceiptFile[];
  /** Files the server listed more than once; each is in `files` once and counted once. */
  readonly filesListedMoreThanOnce: readonly DuplicateListing[];
  readonly serverJobDeleted: boolean;
  readonly watermark: { readonly advanced: boolean; readonly reason: string };
  /** Set by Complete Export, after the marker: when it ran and what it could not do. */
  readonly completedAt?: string;
  readonly warnings?: readonly string[];
  /** A chunked export's chunks; absent for an export in one piece. */
  readonly chunking?: ReceiptChunking;
  /** A chunked export's resources that landed more than once; absent for an export in one piece. */
  readonly duplicateResources?: ReceiptDuplicateResources;
  /** This execution failed before and was resumed (redriven) to success. */
  readonly resumedAfter?: { readonly error: string; readonly failedAt: string };
  /**
   * The executions the export continued in, in order, after its first
   * (`executionName`): each took over when the one before had spent its
   * history budget. Absent when it ran in one.
   */
  readonly continuedIn?: readonly string[];
}

export function summarizeFiles(files: readonly ReceiptFile[]) {
  const byType: Record<string, TypeTotals> = {};
  const totals = { files: 0, resources: 0, bytes: 0 };
  const errors = { files: 0, lines: 0 };
  const deleted = { files: 0, lines: 0 };
  let invalidLinesQuarantined = 0;
  for (const file of files) {
    invalidLinesQuarantined += file.invalidLines;
    if (file.kind === 'error') {
      errors.files += 1;
      errors.lines += file.lines;
      continue;
    }
    if (file.kind === 'deleted') {
      deleted.files += 1;
      deleted.lines += file.lines;
      continue;
    }
    const entry = byType[file.type] ?? { files: 0, resources: 0, bytes: 0 };
    byType[file.type] = entry;
    entry.files += 1;
    entry.resources += file.lines;
    entry.bytes += file.bytes;
    totals.files += 1;
    totals.resources += file.lines;
    totals.bytes += file.bytes;
  }
  return { byType, totals, errors, deleted, invalidLinesQuarantined };
}
