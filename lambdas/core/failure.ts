import { oneLine } from './operation-outcome.js';

/**
 * What failed, from a Catch's `{ Error, Cause }`: the Cause is the Lambda
 * error as JSON (`errorType`, `errorMessage`) on AWS, and may be a plain
 * message elsewhere.
 */
export function describeFailure(failure: { Error?: string; Cause?: string } | undefined): {
  error: string;
  message: string;
} {
  const error = failure?.Error ?? 'UnknownError';
  const cause = failure?.Cause ?? '';
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: unknown; errorType?: unknown };
    if (typeof parsed.errorMessage === 'string')
      return { error, message: oneLine(`${error}: ${parsed.errorMessage}`, 800) };
  } catch {
    // not JSON: a plain message
  }
  return { error, message: oneLine(cause ? `${error}: ${cause}` : error, 800) };
}
