import type { ContinuationRequest } from './core/continuation.js';
import type { ExportRequest } from './core/kickoff.js';
import type { FileKind } from './core/manifest.js';
import type { Receipt } from './core/receipt.js';

/**
 * The shapes that travel in the state machine's JSON between Task states.
 * They are small by design (256 KiB limit): manifests, file lists and
 * per-file results live in S3 under `workPrefix`.
 */
export interface ExportContext {
  readonly sourceId: string;
  readonly executionName: string;
  readonly bucket: string;
  readonly workPrefix: string;
  readonly request: ExportRequest;
  /** Where `since` came from: the stored watermark, the input, or none (full export). */
  readonly sinceFrom: 'watermark' | 'input' | 'none';
  /** True when a success may move the watermark: no `until`, the source's default scope. */
  readonly advancesWatermark: boolean;
  readonly startedAt: string;
  readonly deadline: string;
  readonly maxConcurrency: number;
  /** The pause before the retry pass (the source's retryPassDelaySeconds). */
  readonly retryPassDelaySeconds?: number;
  /** The source's serverFileErrors; absent (executions started before it) means "fail". */
  readonly serverFileErrors?: 'fail' | 'accept';
  /**
   * A dead export whose lock this one took over: Kick Off DELETEs its server
   * job first (Epic allows one export per client).
   */
  readonly supersedes?: {
    readonly executionName: string;
    readonly statusUrl?: string;
    /** A chunked export superseded: a job per chunk. */
    readonly chunkStatusUrls?: readonly string[];
  };
  /** A chunked export: the cohort goes to the server as several jobs (see lambdas/core/chunks.ts). */
  readonly chunking?: ChunkingContext;
  /**
   * An export in one piece that turns into chunks when it has not completed
   * this long after the execution started: its job is DELETEd and the cohort re-planned.
   */
  readonly chunkOnTimeout?: { readonly afterSeconds: number; readonly chunking: ChunkingContext };
  /**
   * The export continues in a new execution (history budget): the how-manieth.
   * The export keeps its first execution's name; this one's is
   * `<name>-cont-<number>`.
   */
  readonly continuation?: { readonly number: number };
}

/** How a chunked export splits its cohort, and how hard it drives the server. */
export interface ChunkingContext {
  readonly by: 'patients' | 'time';
  /** Patients per chunk (`by: patients`). */
  readonly size?: number;
  /** The length of each `_since`/`_until` window, such as `30d` (`by: time`). */
  readonly window?: string;
  /** `s3://bucket/key` of the patient references, one per line; else the Group's members. */
  readonly patientsFrom?: string;
  /** Server jobs running at once (Epic: 1). */
  readonly maxConcurrentJobs: number;
  /** Kick-offs per chunk before the export fails: a failed chunk is retried alone. */
  readonly maxAttempts: number;
}

export interface SealedToken {
  readonly sealedToken: string;
  readonly expiresAt: string;
}

/** Kick Off's answer: accepted with a status URL, or a refusal to wait out. */
export interface KickOffState {
  /**
   * `complete`: a chunk whose export a previous run already has (a resumed chunked export).
   * `continue`: a chunk that waits for the export's next execution (history budget).
   */
  readonly outcome: 'accepted' | 'retry' | 'complete' | 'continue';
  readonly attempt: number;
  readonly waitSeconds: number;
  readonly forceTokenRefresh: boolean;
  readonly statusUrl?: string;
  readonly reason?: string;
}

/** A verified export with its receipt and marker (Finalize), and what Complete Export did after them. */
export interface FinalizeResult {
  /** `partial`: landed under serverFileErrors "accept"; the marker is `_PARTIAL.json`. */
  readonly status: 'succeeded' | 'partial';
  readonly sourceId: string;
  readonly transactionTime: string;
  readonly receiptKey: string;
  readonly completionMarkerKey: string;
  readonly totals: Receipt['totals'];
  readonly watermarkAdvanced: boolean;
  readonly watermarkTransactionTime?: string;
  /** What could not be done after the marker: the export succeeded all the same. */
  readonly warnings?: readonly string[];
}

export interface PollState {
  /**
   * `rechunk`: the export in one piece passed its chunkOnTimeout; its job is DELETEd, the cohort goes as chunks.
   * `continue`: the execution's history budget is nearly spent; the job goes on, polled by a new execution
   * (`continuation`), or for a chunk by the export's next execution.
   */
  readonly outcome: 'in-progress' | 'complete' | 'rechunk' | 'continue' | 'partial';
  readonly attempt: number;
  readonly consecutiveTransientErrors: number;
  readonly waitSeconds: number;
  readonly forceTokenRefresh: boolean;
  readonly progress?: string;
  readonly manifest?: ManifestSummary;
  /** History events this execution has used, an upper bound (core/history-budget.ts). */
  readonly historyEvents?: number;
  /** Kick-off attempts before polling started (the set-up's share of the history). */
  readonly kickOffAttempts?: number;
  /**
   * `partial` (allowPartialManifests): the job still runs and its status listed files not listed
   * before; Download Partial Files lands them, then polling goes on.
   */
  readonly partial?: PartialDownload;
  /** `continue` of an export in one piece: the execution that takes over. */
  readonly continuation?: ContinuationRequest;
}

/** One round of files listed while the job runs: the Download Partial Files Map's items and URLs. */
export interface PartialDownload {
  readonly round: number;
  readonly batchesKey: string;
  readonly batchCount: number;
  readonly urlsKey: string;
  readonly requiresAccessToken: boolean;
  /** Files listed so far, and how many of them this round lands. */
  readonly listed: number;
  readonly newFiles: number;
}

export interface ManifestSummary {
  readonly transactionTime: string;
  readonly requiresAccessToken: boolean;
  /** JSON array of FileItem in the bucket: the Distributed Map's ItemReader reads it. */
  readonly filesKey: string;
  /** File URLs by index, read by the downloader only (they may be presigned: credentials). */
  readonly urlsKey: string;
  /** The full manifest as received (all pages merged). */
  readonly manifestKey: string;
  readonly fileCount: number;
  /** JSON array of FileBatch in the bucket: the Download Files Map's items (a child per batch). */
  readonly batchesKey: string;
  readonly batchCount: number;
  /** The folder this execution claimed; receipt and marker go there too. */
  readonly exportRoot: string;
  /** Files the manifest listed more than once (each lands once), for the receipt; absent when none. */
  readonly duplicateFilesKey?: string;
  /** The manifest's error[] files and the output files' names (services/server-file-errors.ts); absent when error[] is empty. */
  readonly errorFilesKey?: string;
}

/** One Map item. No URL: presigned URLs are credentials and Map inputs show in execution history. */
export interface FileItem {
  readonly index: number;
  readonly kind: FileKind;
  readonly type: string;
  readonly resourceType: string;
  readonly key: string;
  readonly count?: number;
  /** Organized by patient (`organizeOutputBy`): lines of the request's types, in patient blocks. */
  readonly organizedBy?: 'Patient';
  /** Chunked exports: the chunk whose manifest listed the file, and its index in that manifest. */
  readonly chunk?: number;
  readonly chunkFileIndex?: number;
  /** Chunked exports: the chunk's own `requiresAccessToken` (chunks may differ). */
  readonly requiresAccessToken?: boolean;
}

export interface FileResult {
  readonly index: number;
  readonly kind: FileKind;
  readonly type: string;
  readonly key: string;
  readonly bytes: number;
  readonly lines: number;
  readonly blankLines: number;
  readonly invalidLines: number;
  readonly sha256: string;
  readonly serverCount?: number;
  readonly quarantineKey?: string;
  readonly invocations: number;
  /** Chunked exports: the file's chunk, and where the ids of its resources are (for duplicate counting). */
  readonly chunk?: number;
  readonly resourceIdsKey?: string;
  /** A file organized by patient: its valid lines per resourceType (headers under `Parameters`). */
  readonly resourceTypeCounts?: Readonly<Record<string, number>>;
}
