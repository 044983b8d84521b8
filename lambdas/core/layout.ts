import { createHash } from 'node:crypto';
import type { FileKind } from './manifest.js';

/**
 * Where everything lands in the bucket. Data sits under Hive-style
 * partitions so Athena and Glue crawl it as-is; everything that is not data
 * starts with `_`, which Athena and Hive skip. Downstream jobs trigger on the
 * completion marker only, which is written last.
 */
export interface ExportLocation {
  readonly prefix: string;
  readonly sourceId: string;
  readonly transactionTime: string;
  /**
   * Set when another execution holds the folder of this transactionTime (a
   * server gave two exports the same one): the folder then names this
   * execution too, so no export folder is ever written by two executions.
   */
  readonly executionName?: string;
}

/**
 * Who writes an export folder: the first execution to create `_claim.json`
 * in it (a conditional PUT). Written before any data file.
 */
export interface ExportClaim {
  readonly sourceId: string;
  readonly executionName: string;
  /**
   * The execution's start time: with the name, it tells a retry or redrive of
   * this execution (same start) from a later run that reused its name (a local
   * run with a fixed name), which must not write here again.
   */
  readonly executionStartedAt: string;
  readonly transactionTime: string;
  readonly claimedAt: string;
}

/** Whether a claim is this execution's own. */
export const claimedBy = (
  claim: Pick<ExportClaim, 'executionName' | 'executionStartedAt'>,
  execution: { readonly executionName: string; readonly startedAt: string },
) => claim.executionName === execution.executionName && claim.executionStartedAt === execution.startedAt;

/** Who holds a folder, for messages. */
export const describeClaim = (claim: Pick<ExportClaim, 'executionName' | 'executionStartedAt'>) =>
  `execution ${claim.executionName} started ${claim.executionStartedAt}`;

/** `2026-11-26T12:00:00.123+01:00` → `2026-11-26T110000.123Z`: UTC, no colons (awkward in S3 tools and URLs). */
export function exportPartition(transactionTime: string): string {
  const iso = new Date(transactionTime).toISOString();
  return iso.replace(/:/g, '');
}

function normalizePrefix(prefix: string): string {
  if (prefix === '') return '';
  return prefix.endsWith('/') ? prefix : `${prefix}/`;
}

/** Execution names that are safe in a Hive partition value as they are (ours all are). */
const PARTITION_SAFE = /^[A-Za-z0-9_-]{1,80}$/;

/**
 * The `export=` partition value: the transactionTime, and after it the
 * execution when the plain one belongs to another execution
 * (`2026-11-26T110000.123Z_epic-20261126T110000Z-auto`). A name with
 * characters Hive would escape (Step Functions allows `=`, `+`, `'`, …) is
 * replaced by a hash of it.
 */
export function exportFolder(transactionTime: string, executionName?: string): string {
  const partition = exportPartition(transactionTime);
  if (executionName === undefined) return `export=${partition}`;
  const label = PARTITION_SAFE.test(executionName)
    ? executionName
    : `x${createHash('sha256').update(executionName).digest('hex').slice(0, 16)}`;
  return `export=${partition}_${label}`;
}

export function exportRoot({ prefix, sourceId, transactionTime, executionName }: ExportLocation): string {
  return `${normalizePrefix(prefix)}source=${sourceId}/${exportFolder(transactionTime, executionName)}/`;
}

/**
 * Key of the n-th file (1-based per kind and type) of an export. Files organized by patient hold
 * several types, so no `type=` partition fits them: they are numbered apart under `organizedBy=Patient/`.
 */
export function fileKey(
  location: ExportLocation,
  kind: FileKind,
  type: string,
  ordinal: number,
  organizedBy?: 'Patient',
): string {
  const part = `part-${String(ordinal).padStart(4, '0')}.ndjson`;
  const root = exportRoot(location);
  if (organizedBy !== undefined) return `${root}organizedBy=${organizedBy}/${part}`;
  if (kind === 'output') return `${root}type=${type}/${part}`;
  if (kind === 'error') return `${root}_errors/${part}`;
  return `${root}_deleted/type=${type}/${part}`;
}

/** Beside the data file, under `_quarantine/` so Athena never reads invalid lines as data. */
export function quarantineKey(dataKey: string): string {
  const renamed = dataKey.replace(/\.ndjson$/, '.quarantine.ndjson');
  const at = Math.max(renamed.lastIndexOf('/type='), renamed.lastIndexOf('/organizedBy='));
  return at < 0 ? renamed : `${renamed.slice(0, at)}/_quarantine${renamed.slice(at)}`;
}

/** Keys inside an export folder, from its root (`exportRoot`, which ends in `/`). */
export const claimKey = (root: string) => `${root}_claim.json`;
export const receiptKey = (root: string) => `${root}_receipt.json`;
/**
 * The receipt's file index beside it: one ReceiptFile per line in file-list
 * order, so a 200,000-file export's receipt stays a readable summary.
 */
export const receiptFileIndexKey = (root: string) => `${root}_receipt.files.ndjson`;
/** The object downstream ETL triggers on. */
export const completionMarkerKey = (root: string) => `${root}_SUCCESS.json`;
/**
 * The marker of an export landed without files the server reported it could
 * not produce (serverFileErrors "accept"): written instead of `_SUCCESS.json`,
 * so a reader that triggers on `_SUCCESS.json` never takes it for complete.
 */
export const partialMarkerKey = (root: string) => `${root}_PARTIAL.json`;
/** The export folder of a marker key, whichever marker it is. */
export const markerRoot = (markerKey: string) => markerKey.slice(0, markerKey.lastIndexOf('/') + 1);

/** Per-execution scratch space: manifest, file list, per-file results. Not data. */
export function workPrefix(prefix: string, sourceId: string, executionName: string): string {
  return `${normalizePrefix(prefix)}_work/source=${sourceId}/execution=${executionName}/`;
}

export const watermarkKey = (prefix: string, sourceId: string) =>
  `${normalizePrefix(prefix)}_state/source=${sourceId}/watermark.json`;

export const lockKey = (prefix: string, sourceId: string) =>
  `${normalizePrefix(prefix)}_state/source=${sourceId}/lock.json`;

/** A source's registration: its settings and which secret holds its credentials (adapters/source-registry.ts). */
export const registrationKey = (prefix: string, sourceId: string) =>
  `${registryPrefix(prefix)}${sourceId}.json`;
export const registryPrefix = (prefix: string) => `${normalizePrefix(prefix)}_registry/sources/`;

export const failureReceiptKey = (prefix: string, sourceId: string, executionName: string) =>
  `${normalizePrefix(prefix)}_failures/source=${sourceId}/${executionName}.json`;

/**
 * What an execution knows of its server job, written as soon as it knows it
 * (status URL at kick-off, manifest at completion): whoever ends the export
 * later (a clean-up after StopExecution, a run taking over a dead holder's
 * lock) reads it, since it never sees the execution's state.
 */
export const jobRecordKey = (work: string) => `${work}job.json`;
/** One object per running download (a lease), so whoever ends the export can wait for them. */
export const inFlightPrefix = (work: string) => `${work}in-flight/`;
/** The files the retry pass downloads again: those without a verified result after the first pass. */
export const retryFilesKey = (work: string) => `${work}retry-files.json`;
/** The manifest's error[] files (FileItems), written only when it lists any; their triage beside them. */
export const serverErrorFilesKey = (work: string) => `${work}server-errors/files.json`;
export const serverErrorTriageKey = (work: string) => `${work}server-errors/triage.json`;
/** The first pass's batches of files (the Download Files Map's items; see core/file-batches.ts). */
export const fileBatchesKey = (work: string) => `${work}file-batches.json`;
/**
 * allowPartialManifests: what earlier polls listed (core/partial-manifest.ts), and each partial
 * download round's batches and URL list. A round's URL list has its own key: a download container
 * caches a URL list by key, and a later round's list is longer.
 */
export const partialListingKey = (work: string) => `${work}partial/listing.json`;
export const partialBatchesKey = (work: string, round: number) =>
  `${work}partial/round-${round}.batches.json`;
export const partialUrlsKey = (work: string, round: number) => `${work}partial/round-${round}.file-urls.json`;
/** The retry pass's batches: the files without a result after the first pass. */
export const retryBatchesKey = (work: string) => `${work}retry-batches.json`;
export const resultsPrefix = (work: string) => `${work}results/`;
export const checkpointsPrefix = (work: string) => `${work}checkpoints/`;
/** Why a file's last download attempt failed, for the failure receipt (the Map keeps only that it failed). */
export const fileFailureKey = (work: string, index: number) =>
  `${work}file-failures/${String(index).padStart(6, '0')}.json`;
export const fileFailuresPrefix = (work: string) => `${work}file-failures/`;
/**
 * One verification batch's verified files and per-type subtotals, named by
 * its first file's index: Finalize Export reads them back one at a time.
 */
export const verifiedPrefix = (work: string) => `${work}verified/`;
export const verifiedBatchKey = (work: string, firstIndex: number) =>
  `${verifiedPrefix(work)}${String(firstIndex).padStart(6, '0')}.json`;
/** A file's verified download result: Check Files and Finalize read what Download File wrote. */
export const resultKey = (work: string, index: number) =>
  `${resultsPrefix(work)}${String(index).padStart(6, '0')}.json`;
/** A download's lease, named by the invocation holding it. */
export const leaseKey = (work: string, index: number, requestId: string) =>
  `${inFlightPrefix(work)}${String(index).padStart(6, '0')}.${requestId}.json`;
/** A transfer's checkpoint, named by invocation: a retry of the same input writes the same key. */
export const checkpointKey = (work: string, index: number, invocation: number) =>
  `${checkpointsPrefix(work)}${String(index).padStart(6, '0')}.${invocation}.json`;

/**
 * A chunked export's plan and per-chunk records (`chunks/`): the chunks to run
 * (the Map's items), each chunk's patient list, its server job and its
 * manifest. Patient lists and manifests stay out of the state (256 KiB).
 */
export const chunksPrefix = (work: string) => `${work}chunks/`;
export const chunkItemsKey = (work: string) => `${chunksPrefix(work)}items.json`;
const chunkName = (index: number) => String(index).padStart(5, '0');
export const chunkRecordKey = (work: string, index: number) =>
  `${chunksPrefix(work)}${chunkName(index)}.json`;
export const chunkPatientsKey = (work: string, index: number) =>
  `${chunksPrefix(work)}${chunkName(index)}.patients.json`;
export const chunkManifestKey = (work: string, index: number) =>
  `${chunksPrefix(work)}${chunkName(index)}.manifest.json`;
/**
 * A chunk whose job runs on while no execution polls it: its child ended at
 * the history budget and the export's next execution polls it again. While
 * any is here, no chunk kicks off a new job (maxConcurrentJobs counts it).
 */
export const chunksContinuingPrefix = (work: string) => `${chunksPrefix(work)}continuing/`;
export const chunkContinuingKey = (work: string, index: number) =>
  `${chunksContinuingPrefix(work)}${chunkName(index)}`;
