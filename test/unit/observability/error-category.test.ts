import { describe, expect, it } from 'vitest';
import * as errors from '../../../lambdas/errors.js';
import { type EndedExportFailure, errorCategory } from '../../../lambdas/observability/error-category.js';
import { ERROR_CATEGORIES, type ErrorCategory } from '../../../lambdas/observability/metrics.js';

describe('errorCategory', () => {
  it.each<[EndedExportFailure, ErrorCategory]>([
    [{ error: 'TokenRequestError' }, 'auth'],
    [{ error: 'AccessTokenRejectedError', kickedOff: true }, 'auth'],
    [{ error: 'SigningError' }, 'auth'],
    [{ error: 'SealedTokenError' }, 'auth'],
    [{ error: 'ExportRequestRejectedError', kickedOff: false }, 'kick-off-refused'],
    [{ error: 'ExportRequestRejectedError' }, 'kick-off-refused'],
    [{ error: 'TransientServerError', kickedOff: false }, 'kick-off-refused'],
    [{ error: 'ExportRequestRejectedError', kickedOff: true }, 'server-job-failed'],
    [{ error: 'TransientServerError', kickedOff: true }, 'server-job-failed'],
    [{ error: 'ExportJobGoneError', kickedOff: true }, 'server-job-failed'],
    [{ error: 'ExportDeadlineExceededError' }, 'timeout'],
    [{ error: 'States.Timeout' }, 'timeout'],
    [{ error: 'States.Timeout', outcome: 'timed-out' }, 'timeout'],
    [{ error: 'Sandbox.Timedout' }, 'timeout'],
    [{ error: 'States.Runtime', outcome: 'TIMED_OUT' }, 'timeout'],
    [{ error: 'FileDownloadError' }, 'file-download'],
    [{ error: 'FileLinkExpiredError' }, 'file-download'],
    [{ error: 'States.ExceedToleratedFailureThreshold', kickedOff: true }, 'file-download'],
    [{ error: 'InvalidExecutionInputError' }, 'validation'],
    [{ error: 'InvalidManifestError', kickedOff: true }, 'validation'],
    [{ error: 'InvalidNdjsonError' }, 'validation'],
    [{ error: 'VerificationError' }, 'validation'],
    [{ error: 'ResponseTooLargeError' }, 'validation'],
    [{ error: 'StorageError' }, 'storage'],
    [{ error: 'ExportFolderTakenError' }, 'storage'],
    [{ error: 'States.ItemReaderFailed' }, 'storage'],
    [{ error: 'ExportCancelled', outcome: 'cancelled' }, 'cancelled'],
    [{ error: 'States.Runtime', outcome: 'ABORTED' }, 'cancelled'],
    // A cancel is a cancel whatever the last error of the run was.
    [{ error: 'TokenRequestError', outcome: 'cancelled' }, 'cancelled'],
    [{ error: 'ExportStoppedError' }, 'cancelled'],
    [{ error: 'ConfigurationError' }, 'configuration'],
    [{ error: 'ExportAlreadyRunningError' }, 'other'],
    [{ error: 'ExportSuperseded', outcome: 'superseded' }, 'other'],
    [{ error: 'States.Runtime', outcome: 'FAILED' }, 'other'],
    [{ error: 'Lambda.ServiceException' }, 'other'],
    [{ error: 'UnknownError' }, 'other'],
    // Names that are properties of every object are not categories.
    [{ error: 'constructor' }, 'other'],
    [{ error: 'toString' }, 'other'],
  ])('%j → %s', (failure, category) => {
    expect(errorCategory(failure)).toBe(category);
  });

  it('files the errors the pipeline raises under every category, and only two under "other"', () => {
    const names = Object.values(errors)
      .filter((value): value is typeof errors.PipelineError => typeof value === 'function')
      .map((value) => value.name)
      .filter((name) => name !== 'PipelineError');
    const other = names.filter((name) => errorCategory({ error: name }) === 'other');
    expect(other).toEqual(['ExportAlreadyRunningError', 'ExportNotResumableError']);
    expect(new Set(names.map((name) => errorCategory({ error: name })))).toEqual(new Set(ERROR_CATEGORIES));
  });
});
