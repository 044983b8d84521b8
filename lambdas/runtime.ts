import type { S3Client } from '@aws-sdk/client-s3';
import type { Dispatcher } from 'undici';
import type { FhirHttp } from './adapters/fhir-http.js';
import type { JsonStore } from './adapters/s3-store.js';
import type { SourceRegistry } from './adapters/source-registry.js';
import type { Logger } from './logger.js';
import type { ExportMetrics } from './observability/metrics.js';
import type { ExecutionLiveness } from './services/source-lock.js';
import type { TransferSettings } from './services/transfer-file.js';

/**
 * Everything a handler needs from the outside world. On AWS it is built once
 * per container from the environment (lambdas/runtime-aws.ts); locally the
 * runner builds it around the embedded S3 server and local keys. Handlers
 * never read process.env or create clients themselves.
 */
export interface Runtime {
  readonly now: () => Date;
  readonly sleep: (ms: number) => Promise<void>;
  readonly random: () => number;
  readonly logger: Logger;
  /** Outcome metrics (EMF on AWS, recorded locally): lambdas/observability/metrics.ts. */
  readonly metrics: ExportMetrics;
  /** The export bucket. */
  readonly s3: S3Client;
  readonly store: JsonStore;
  /** Key prefix inside the bucket (may be empty). */
  readonly prefix: string;
  /** SSE-KMS key for data objects, on AWS. */
  readonly sseKmsKeyId?: string;
  /** Every source's settings, read from the registry in the bucket (adapters/source-registry.ts). */
  readonly sources: SourceRegistry;
  readonly sealer: TokenSealer;
  readonly fhir: FhirHttp;
  /** Keep-alive pool for data files. */
  readonly fileDispatcher?: Dispatcher;
  /**
   * Tuning of the streaming file transfer. Local runs use it to exercise
   * multipart uploads and checkpoints with small files (the embedded S3 does
   * not enforce S3's 5 MiB part minimum). @default the transfer's defaults
   */
  readonly transfer?: {
    readonly settings?: Partial<TransferSettings>;
    readonly partSizeBytes?: number;
  };
  readonly events: EventSink;
  /**
   * Download File's line ceiling (`MAX_LINE_BYTES`): its memory is sized for
   * lines this long, so a source allowing longer ones is refused rather than
   * left to run out of memory. Absent locally (no memory limit to protect).
   */
  readonly maxLineBytes?: number;
  /** Only the token minter has one: only it may sign client assertions. */
  readonly accessTokens?: (sourceId: string) => Promise<AccessTokenSource>;
  /** Local mode: progress for the terminal. */
  readonly progress?: (event: ProgressEvent) => void;
  /** Tells whether a lock holder's execution still runs (DescribeExecution on AWS). */
  readonly executions?: ExecutionLiveness;
  /** A local run: the process that holds its locks, so a later run can tell whether it is alive. */
  readonly localProcess?: { readonly pid: number; readonly host: string };
  /**
   * History events an execution may use before it continues in a new one
   * (core/history-budget.ts). @default DEFAULT_HISTORY_EVENT_BUDGET; tests set
   * a small one to cross it.
   */
  readonly historyEventBudget?: number;
  /**
   * The validation stage's tuning (issue 17, lambdas/validation/stage.ts): tests force a
   * checkpoint with a few lines per invocation and small issue parts. @default VALIDATION_DEFAULTS
   */
  readonly validation?: {
    /** Checkpoint when this little time is left in the invocation. */
    readonly safetyMarginMs?: number;
    /** Checkpoint after this many lines in one invocation (tests). */
    readonly linesPerInvocation?: number;
    /** Issue lines gathered before a multipart part goes out (S3's minimum is 5 MiB but the last). */
    readonly issuePartBytes?: number;
  };
}

export interface TokenSealer {
  seal(plaintext: string, context: Record<string, string>): Promise<string>;
  open(sealed: string, context: Record<string, string>): Promise<string>;
}

export interface AccessTokenSource {
  getAccessToken(options?: { minValiditySeconds?: number; forceRefresh?: boolean }): Promise<{
    accessToken: string;
    expiresAt: Date;
    scope?: string;
  }>;
}

export interface EventSink {
  /** Emits a domain event (EventBridge on AWS). Never carries PHI or tokens. */
  emit(detailType: string, detail: Record<string, unknown>): Promise<void>;
}

export type ProgressEvent =
  | { kind: 'phase'; phase: string; detail?: string }
  | { kind: 'file-progress'; index: number; type: string; bytes: number; lines: number }
  | { kind: 'file-done'; index: number; type: string; bytes: number; lines: number };

/** The encryption context a sealed token is bound to: it opens only in the same execution for the same source. */
export const sealContext = (sourceId: string, executionName: string) => ({
  sourceId,
  executionId: executionName,
});
