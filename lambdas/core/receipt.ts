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
  /**
   * A data file the server's error[] reports as failed (serverFileErrors
   * "accept"): resources its count promised that it did not deliver
   * (`serverCount` − `lines` − `invalidLines`; absent without a count), and
   * the server's reasons (severity, code, diagnostics cut short).
   */
  readonly missing?: number;
  readonly serverErrors?: readonly string[];
  /** Organized by patient (`organizeOutputBy`): `type` is the organizing type, `resourceTypeCounts` what the lines were. */
  readonly organizedBy?: 'Patient';
  /** A file organized by patient: its lines per resourceType, the blocks' `Parameters` headers included. */
  readonly resourceTypeCounts?: Readonly<Record<string, number>>;
}

/**
 * The `Parameters` resource that heads each patient's block in a file organized by patient (IG 2.0,
 * "Bulk Data Output File Organization"): a header, not exported data, so counted apart.
 */
export const BLOCK_HEADER_TYPE = 'Parameters';

/** Files organized by one type: how many, their blocks (headers), resources and bytes. */
export interface OrganizedTotals extends TypeTotals {
  blocks: number;
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

/**
 * Exports of at most this many files keep their files inline on the receipt
 * too (`files`); every receipt has the file index. Readers should read the
 * index: 200,000 inline entries would make a ~60 MB receipt nobody can read.
 */
export const RECEIPT_INLINE_FILES_MAX = 1000;

/** The receipt's file index: `_receipt.files.ndjson`, one ReceiptFile per line in file-list order. */
export interface ReceiptFileIndex {
  readonly key: string;
  /** Lines in the index: every file of the export. */
  readonly files: number;
  /** Hex sha256 of the index object's bytes. */
  readonly sha256: string;
}

/**
 * What the server's error[] reported, on the receipt and the marker of an
 * export landed under serverFileErrors "accept" (and of any export whose
 * error[] held issues of any severity). Per-file detail is on the file
 * index (`missing`, `serverErrors`); `files` lists the first of them.
 */
export interface ReceiptServerFileErrors {
  readonly policy: 'fail' | 'accept';
  /** Issues in the error[] files by severity; `other`: no recognised severity (counted as failing). */
  readonly issues: Readonly<Record<'fatal' | 'error' | 'warning' | 'information' | 'other', number>>;
  /** Failing issues (fatal, error, other): what makes the export partial. */
  readonly failures: number;
  /** Data files the failures cover that came short of their count, or that a failure names. */
  readonly files: number;
  /** Resources the counts of those files promised and they did not deliver. */
  readonly missingResources: number;
  /** The first files, with what they were to hold, what landed, and the server's reasons. */
  readonly firstFiles: readonly {
    readonly key: string;
    readonly type: string;
    readonly expected?: number;
    readonly delivered: number;
    readonly missing?: number;
    readonly reasons: readonly string[];
  }[];
  /** Failing reasons that name a type or no file at all (the server's words, cut short, no URL). */
  readonly byType: Readonly<Record<string, readonly string[]>>;
  readonly exportWide: readonly string[];
  /** An error[] file was larger than the triage reads (4 MiB); issues past it were not counted. */
  readonly truncated?: boolean;
}

export interface Receipt {
  /** 2: the files moved to `fileIndex`; `files` only for small exports. */
  readonly receiptVersion: 2;
  /** `partial`: landed under serverFileErrors "accept" although the server reported failed files. */
  readonly status: 'succeeded' | 'partial';
  /** False exactly when `status` is `partial`: the marker is then `_PARTIAL.json`, never `_SUCCESS.json`. */
  readonly complete: boolean;
  /** What the manifest's error[] reported; absent when it listed no files. */
  readonly serverFileErrors?: ReceiptServerFileErrors;
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
  /**
   * Files organized by patient, per organizing type; their resources are also in `byType` by the
   * lines' own types (files: those holding the type; bytes: 0, since a file's bytes are not split by type).
   */
  readonly organizedBy?: Readonly<Record<string, OrganizedTotals>>;
  readonly errors: { readonly files: number; readonly lines: number };
  readonly deleted: { readonly files: number; readonly lines: number };
  readonly invalidLinesQuarantined: number;
  /** Every file, inline: only for exports of at most RECEIPT_INLINE_FILES_MAX files; read `fileIndex`. */
  readonly files?: readonly ReceiptFile[];
  readonly fileIndex: ReceiptFileIndex;
  /** Files the server listed more than once; each is in the file index once and counted once. */
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

/** What the receipt sums over files; verification batches each carry theirs, Finalize adds them up. */
export interface FileSummary {
  readonly byType: Record<string, TypeTotals>;
  /** Present only when some file was organized by patient. */
  organizedBy?: Record<string, OrganizedTotals>;
  readonly totals: TypeTotals;
  readonly errors: { files: number; lines: number };
  readonly deleted: { files: number; lines: number };
  invalidLinesQuarantined: number;
}

export const emptySummary = (): FileSummary => ({
  byType: {},
  totals: { files: 0, resources: 0, bytes: 0 },
  errors: { files: 0, lines: 0 },
  deleted: { files: 0, lines: 0 },
  invalidLinesQuarantined: 0,
});

export function summarizeFiles(files: readonly ReceiptFile[]): FileSummary {
  const summary = emptySummary();
  for (const file of files) addFile(summary, file);
  return summary;
}

function addFile(summary: FileSummary, file: ReceiptFile) {
  summary.invalidLinesQuarantined += file.invalidLines;
  if (file.kind === 'error') {
    summary.errors.files += 1;
    summary.errors.lines += file.lines;
    return;
  }
  if (file.kind === 'deleted') {
    summary.deleted.files += 1;
    summary.deleted.lines += file.lines;
    return;
  }
  if (file.organizedBy !== undefined) {
    addOrganizedFile(summary, file, file.organizedBy);
    return;
  }
  addTotals(summary.byType, file.type, { files: 1, resources: file.lines, bytes: file.bytes });
  addTotals(summary, 'totals', { files: 1, resources: file.lines, bytes: file.bytes });
}

/** A file of several types: each type's resources under its own name; its bytes only under the organizing type. */
function addOrganizedFile(summary: FileSummary, file: ReceiptFile, organizedBy: string) {
  const counts = file.resourceTypeCounts ?? {};
  const blocks = counts[BLOCK_HEADER_TYPE] ?? 0;
  for (const [type, resources] of Object.entries(counts)) {
    if (type !== BLOCK_HEADER_TYPE) addTotals(summary.byType, type, { files: 1, resources, bytes: 0 });
  }
  addOrganized(summary, organizedBy, {
    files: 1,
    resources: file.lines - blocks,
    bytes: file.bytes,
    blocks,
  });
  addTotals(summary, 'totals', { files: 1, resources: file.lines - blocks, bytes: file.bytes });
}

function addOrganized(summary: FileSummary, by: string, add: OrganizedTotals) {
  summary.organizedBy ??= {};
  const entry = summary.organizedBy[by] ?? { files: 0, resources: 0, bytes: 0, blocks: 0 };
  summary.organizedBy[by] = entry;
  entry.files += add.files;
  entry.resources += add.resources;
  entry.bytes += add.bytes;
  entry.blocks += add.blocks;
}

function addTotals<K extends string>(into: Partial<Record<K, TypeTotals>>, key: K, add: TypeTotals) {
  const entry = into[key] ?? { files: 0, resources: 0, bytes: 0 };
  into[key] = entry;
  entry.files += add.files;
  entry.resources += add.resources;
  entry.bytes += add.bytes;
}

/** Adds one batch's subtotals into `into` (Finalize sums the verification batches). */
export function addSummary(into: FileSummary, batch: FileSummary): FileSummary {
  for (const [type, totals] of Object.entries(batch.byType)) addTotals(into.byType, type, totals);
  for (const [by, totals] of Object.entries(batch.organizedBy ?? {})) addOrganized(into, by, totals);
  addTotals(into, 'totals', batch.totals);
  into.errors.files += batch.errors.files;
  into.errors.lines += batch.errors.lines;
  into.deleted.files += batch.deleted.files;
  into.deleted.lines += batch.deleted.lines;
  into.invalidLinesQuarantined += batch.invalidLinesQuarantined;
  return into;
}
