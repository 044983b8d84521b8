import type { ErrorCategory } from './metrics.js';

/** How an export ended, as its clean-up knows it. */
export interface EndedExportFailure {
  /** The failing error's name: the Catch's `Error`, or an ended execution's error. */
  readonly error: string;
  /**
   * How it ended: endExport's outcome (`failed`, `cancelled`, `timed-out`,
   * `superseded`) or the execution's status (`FAILED`, `ABORTED`, `TIMED_OUT`).
   */
  readonly outcome?: string;
  /** Whether the server had accepted the kick-off (a status URL is known). */
  readonly kickedOff?: boolean;
}

/**
 * Error names (lambdas/errors.ts, Step Functions' `States.*`, Lambda's own)
 * by category. The server refusing or failing is told apart by whether the
 * kick-off had been accepted (see `errorCategory`).
 */
const BY_ERROR_NAME: Readonly<Record<string, ErrorCategory | 'server'>> = {
  TokenRequestError: 'auth',
  AccessTokenRejectedError: 'auth',
  SigningError: 'auth',
  SealedTokenError: 'auth',
  ExportRequestRejectedError: 'server',
  TransientServerError: 'server',
  ExportJobGoneError: 'server-job-failed',
  ServerFileError: 'server-job-failed',
  ExportDeadlineExceededError: 'timeout',
  'States.Timeout': 'timeout',
  'States.HeartbeatTimeout': 'timeout',
  // A Lambda invocation that ran out of time (the local runner's stand-in for one).
  'Sandbox.Timedout': 'timeout',
  InvocationKilledError: 'timeout',
  FileDownloadError: 'file-download',
  FileLinkExpiredError: 'file-download',
  // The Map's files failed; why, per file, is on the failure receipt.
  'States.ExceedToleratedFailureThreshold': 'file-download',
  InvalidExecutionInputError: 'validation',
  InvalidManifestError: 'validation',
  InvalidNdjsonError: 'validation',
  VerificationError: 'validation',
  ResponseTooLargeError: 'validation',
  // The US Core validation stage's (issue 17): never an export's failure, but filed where a reader looks.
  ValidationInputError: 'validation',
  ValidationIncompleteError: 'validation',
  StorageError: 'storage',
  ExportFolderTakenError: 'storage',
  'States.ItemReaderFailed': 'storage',
  'States.ResultWriterFailed': 'storage',
  ConfigurationError: 'configuration',
  ExportCancelled: 'cancelled',
  ExportStoppedError: 'cancelled',
};

/** The `ErrorCategory` dimension of a failed export's `ExportsFailed`. */
export function errorCategory(failure: EndedExportFailure): ErrorCategory {
  if (failure.outcome === 'cancelled' || failure.outcome === 'ABORTED') return 'cancelled';
  if (failure.outcome === 'timed-out' || failure.outcome === 'TIMED_OUT') return 'timeout';
  const category = Object.hasOwn(BY_ERROR_NAME, failure.error) ? BY_ERROR_NAME[failure.error] : undefined;
  if (category === 'server') return failure.kickedOff ? 'server-job-failed' : 'kick-off-refused';
  return category ?? 'other';
}
