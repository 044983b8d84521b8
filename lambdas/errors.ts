/**
 * Every error the pipeline raises on purpose. The `name` of each class is a
 * public API: the state machine's `ErrorEquals` matches on it, so renaming one
 * is a breaking change to `state-machines/bulk-export.asl.json`.
 *
 * Messages must never contain an access token, a client assertion, key
 * material or resource content: they end up in execution history and logs.
 */
export abstract class PipelineError extends Error {
  /** Stable machine-readable code, for tests and for people grepping logs. */
  abstract readonly code: string;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = this.constructor.name;
  }
}

/** Input or configuration that can never work as given; retrying is pointless. */
export class ConfigurationError extends PipelineError {
  readonly code = 'ERR_CONFIGURATION';
}

/** An execution input (schedule or backfill) that does not validate. */
export class InvalidExecutionInputError extends PipelineError {
  readonly code = 'ERR_INVALID_EXECUTION_INPUT';
}

/** The authorization server refused us (OAuth error body) or answered nonsense. */
export class TokenRequestError extends PipelineError {
  readonly code = 'ERR_TOKEN_REQUEST';
  constructor(
    message: string,
    readonly details: { status?: number; error?: string; errorDescription?: string } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A failure worth retrying later: network, 5xx, 429, transient OperationOutcome. */
export class TransientServerError extends PipelineError {
  readonly code = 'ERR_TRANSIENT_SERVER';
  constructor(
    message: string,
    /** Seconds the server asked us to wait, already clamped; undefined when it gave none. */
    readonly retryAfterSeconds?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The server rejected the request for good (4xx with OperationOutcome, 500 job failure). */
export class ExportRequestRejectedError extends PipelineError {
  readonly code = 'ERR_EXPORT_REJECTED';
}

/**
 * A status, manifest or kick-off response larger than we read (a status body
 * is a manifest, not data). Not transient: asking again fetches the same body.
 */
export class ResponseTooLargeError extends PipelineError {
  readonly code = 'ERR_RESPONSE_TOO_LARGE';
}

/** The status URL answered 404/410 after a successful kick-off: the job expired or was cancelled. */
export class ExportJobGoneError extends PipelineError {
  readonly code = 'ERR_EXPORT_JOB_GONE';
}

/** A 401 from the FHIR server: the caller should re-mint once and retry. */
export class AccessTokenRejectedError extends PipelineError {
  readonly code = 'ERR_ACCESS_TOKEN_REJECTED';
}

/** The completion manifest does not follow the IG (missing fields, bad URLs, wrong types). */
export class InvalidManifestError extends PipelineError {
  readonly code = 'ERR_INVALID_MANIFEST';
}

/** A file's content broke the NDJSON contract (not JSON, wrong resourceType, line too long). */
export class InvalidNdjsonError extends PipelineError {
  readonly code = 'ERR_INVALID_NDJSON';
}

/** What landed does not match what the server said it sent (line count, bytes, hash). */
export class VerificationError extends PipelineError {
  readonly code = 'ERR_VERIFICATION';
}

/**
 * The manifest's error[] reports files the server could not produce (fatal or
 * error OperationOutcome issues) and the source's serverFileErrors is "fail":
 * the message names the server's reasons, short and without URLs.
 */
export class ServerFileError extends PipelineError {
  readonly code = 'ERR_SERVER_FILE';
}

/** Writing to S3 failed; never swallowed, because a lost upload is lost data. */
export class StorageError extends PipelineError {
  readonly code = 'ERR_STORAGE';
}

/** Another export for the same source holds the lock. */
export class ExportAlreadyRunningError extends PipelineError {
  readonly code = 'ERR_EXPORT_ALREADY_RUNNING';
}

/**
 * Both folders an export may land in (`export=<transactionTime>/` and the one
 * that names the execution) belong to other executions: two executions of one
 * name write the same bucket. Never written twice, so refused.
 */
export class ExportFolderTakenError extends PipelineError {
  readonly code = 'ERR_EXPORT_FOLDER_TAKEN';
}

/** A sealed token failed to open: tampered with, wrong context, or wrong key. */
export class SealedTokenError extends PipelineError {
  readonly code = 'ERR_SEALED_TOKEN';
}

/** The export ran past the source's overall deadline. */
export class ExportDeadlineExceededError extends PipelineError {
  readonly code = 'ERR_EXPORT_DEADLINE_EXCEEDED';
}

/** The signing key could not produce a usable client assertion signature (malformed DER, wrong length). */
export class SigningError extends PipelineError {
  readonly code = 'ERR_SIGNING';
}

/**
 * A manifest file link is gone: 410, or a 404 that outlasted the retries
 * (CMS answers 404 transiently for a while). Re-reading the manifest from the
 * status URL may yield fresh links.
 */
export class FileLinkExpiredError extends PipelineError {
  readonly code = 'ERR_FILE_LINK_EXPIRED';
}

/** A file download failed for good: an unexpected status, a bad redirect, or no way to resume. */
export class FileDownloadError extends PipelineError {
  readonly code = 'ERR_FILE_DOWNLOAD';
}

/**
 * The export no longer holds its source lock, or is being stopped (cancelled,
 * failed, taken over): a download stops without landing anything.
 */
export class ExportStoppedError extends PipelineError {
  readonly code = 'ERR_EXPORT_STOPPED';
}

/** A resume was asked for an export that cannot be resumed (links expired, given up, taken over). */
export class ExportNotResumableError extends PipelineError {
  readonly code = 'ERR_EXPORT_NOT_RESUMABLE';
}

/**
 * The validation stage (issue 17) was started on something that is not a
 * complete export: not a `_SUCCESS.json` key, another bucket, no marker or
 * receipt there. Retrying cannot help.
 */
export class ValidationInputError extends PipelineError {
  readonly code = 'ERR_VALIDATION_INPUT';
}

/**
 * A validation that cannot be reported as finished: a data file without its
 * partial summary, a line that is not JSON, counts that differ from the
 * receipt's. No `_VALIDATED.json` is written.
 */
export class ValidationIncompleteError extends PipelineError {
  readonly code = 'ERR_VALIDATION_INCOMPLETE';
}
