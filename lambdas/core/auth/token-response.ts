import { TokenRequestError } from '../../errors.js';

/**
 * Interpreting what a token endpoint answered. Nothing here ever copies the
 * response body into an error: a 200 body holds the access token, and some
 * servers echo the client assertion back in `error_description`.
 */

export interface AccessToken {
  readonly accessToken: string;
  readonly tokenType: 'bearer';
  /** Lifetime the server granted, in seconds (or the default when it gave none). */
  readonly expiresInSeconds: number;
  /** True when the server omitted `expires_in` and `DEFAULT_EXPIRES_IN_SECONDS` was assumed. */
  readonly expiresInDefaulted: boolean;
  /** `requestedAt + expiresInSeconds`: measured from before the request, so never later than the server's. */
  readonly expiresAt: Date;
  /** When we asked for the token; the refresh decision uses it to know the token's whole lifetime. */
  readonly obtainedAt: Date;
  readonly requestedScope: string;
  /**
   * What the server says it granted. RFC 6749 §5.1: omitted means "as requested";
   * otherwise it may be narrower (or, for some EHRs, spelled differently).
   */
  readonly grantedScope: string;
}

/**
 * SMART Backend Services requires `expires_in` and recommends at most 300 s;
 * when a server omits it we assume that maximum, so we refresh no later than
 * a conforming server would expire the token.
 */
export const DEFAULT_EXPIRES_IN_SECONDS = 300;

export interface TokenResponseContext {
  readonly requestedScope: string;
  /** When the request was sent. */
  readonly requestedAt: Date;
  readonly tokenUrl: string;
  /** @default DEFAULT_EXPIRES_IN_SECONDS */
  readonly defaultExpiresInSeconds?: number;
}

const MAX_DESCRIPTION = 300;
const JWT_LIKE = /eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*/g;
const LONG_OPAQUE = /[A-Za-z0-9_\-+/=.~]{120,}/g;

/**
 * An OAuth `error_description` is free text from the server. Keep it (it is the
 * only clue to why a registration is rejected) but strip anything that looks
 * like a JWT or an opaque credential, and bound its length.
 */
export function sanitizeErrorDescription(text: string): string {
  const cleaned = text
    .replace(JWT_LIKE, '[redacted-jwt]')
    .replace(LONG_OPAQUE, '[redacted]')
    .replace(/[\r\n\t]+/g, ' ')
    .trim();
  return cleaned.length > MAX_DESCRIPTION ? `${cleaned.slice(0, MAX_DESCRIPTION)}…` : cleaned;
}

/** An OAuth error code is an ASCII token (RFC 6749 §5.2); anything else is not echoed. */
const OAUTH_ERROR_CODE = /^[\x20-\x21\x23-\x5B\x5D-\x7E]{1,64}$/;

export interface OAuthErrorBody {
  readonly error: string;
  readonly errorDescription?: string;
}

/** The RFC 6749 §5.2 error object, if `body` is one; undefined otherwise. */
export function parseOAuthError(body: unknown): OAuthErrorBody | undefined {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return undefined;
  const { error, error_description: description } = body as Record<string, unknown>;
  if (typeof error !== 'string' || !OAUTH_ERROR_CODE.test(error)) return undefined;
  return typeof description === 'string' && description.trim() !== ''
    ? { error, errorDescription: sanitizeErrorDescription(description) }
    : { error };
}

export function oauthErrorToTokenRequestError(
  status: number,
  tokenUrl: string,
  oauth: OAuthErrorBody,
): TokenRequestError {
  const description = oauth.errorDescription ? `: ${oauth.errorDescription}` : '';
  return new TokenRequestError(
    `token endpoint ${tokenUrl} refused the request (HTTP ${status} ${oauth.error}${description})`,
    {
      status,
      error: oauth.error,
      ...(oauth.errorDescription === undefined ? {} : { errorDescription: oauth.errorDescription }),
    },
  );
}

function garbage(tokenUrl: string, status: number, what: string): TokenRequestError {
  return new TokenRequestError(`token endpoint ${tokenUrl} answered HTTP ${status} with ${what}`, { status });
}

/** Numeric `expires_in`, or a numeric string: CMS BCDA sends `"1200"`. NaN for anything else. */
function parseExpiresIn(value: unknown): number {
  if (typeof value === 'number') return Number.isFinite(value) ? value : Number.NaN;
  if (typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value)) return Number(value);
  return Number.NaN;
}

/** Validates a successful (2xx) token response body, already JSON-parsed. */
export function parseTokenResponse(body: unknown, context: TokenResponseContext, status = 200): AccessToken {
  const { tokenUrl, requestedScope, requestedAt } = context;
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw garbage(tokenUrl, status, 'a body that is not a JSON object');
  }
  const fields = body as Record<string, unknown>;
  const accessToken = fields.access_token;
  if (typeof accessToken !== 'string' || accessToken.trim() === '') {
    throw garbage(tokenUrl, status, 'no access_token (expected a non-empty string)');
  }
  const tokenType = fields.token_type;
  if (typeof tokenType !== 'string') {
    throw garbage(tokenUrl, status, 'no token_type (SMART Backend Services requires "bearer")');
  }
  if (tokenType.toLowerCase() !== 'bearer') {
    const shown = /^[A-Za-z0-9_-]{1,20}$/.test(tokenType)
      ? JSON.stringify(tokenType)
      : 'an unrecognised value';
    throw garbage(tokenUrl, status, `token_type ${shown}; only "bearer" is supported`);
  }

  const defaultExpiresIn = context.defaultExpiresInSeconds ?? DEFAULT_EXPIRES_IN_SECONDS;
  const rawExpiresIn = fields.expires_in;
  const expiresInDefaulted = rawExpiresIn === undefined || rawExpiresIn === null;
  const expiresIn = expiresInDefaulted ? defaultExpiresIn : parseExpiresIn(rawExpiresIn);
  if (Number.isNaN(expiresIn) || expiresIn <= 0) {
    throw garbage(tokenUrl, status, 'an expires_in that is not a positive number of seconds');
  }
  const expiresInSeconds = Math.floor(expiresIn);

  const scope = fields.scope;
  if (scope !== undefined && scope !== null && typeof scope !== 'string') {
    throw garbage(tokenUrl, status, 'a scope that is not a string');
  }
  const grantedScope = typeof scope === 'string' && scope.trim() !== '' ? scope.trim() : requestedScope;

  return {
    accessToken,
    tokenType: 'bearer',
    expiresInSeconds,
    expiresInDefaulted,
    expiresAt: new Date(requestedAt.getTime() + expiresInSeconds * 1000),
    obtainedAt: requestedAt,
    requestedScope,
    grantedScope,
  };
}

export type TokenHttpOutcome =
  | { readonly kind: 'token'; readonly token: AccessToken }
  /** Worth another attempt: network-level trouble, 5xx, 429, or Epic's flaky bare 400. */
  | { readonly kind: 'retry'; readonly reason: string; readonly error: Error }
  | { readonly kind: 'rejected'; readonly error: TokenRequestError };

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Classifies one token endpoint response. A 400 with an OAuth error body is a
 * real refusal (`invalid_client`, `invalid_scope`…) and retrying cannot help;
 * a 400 without one is retried because Epic's token endpoint intermittently
 * answers a bare 400 to requests that succeed a moment later.
 */
export function classifyTokenHttpResponse(
  response: { readonly status: number; readonly bodyText: string },
  context: TokenResponseContext,
): TokenHttpOutcome {
  const { status, bodyText } = response;
  const { tokenUrl } = context;
  const json = parseJson(bodyText);
  if (status >= 200 && status < 300) {
    if (json === undefined) {
      return { kind: 'rejected', error: garbage(tokenUrl, status, 'a body that is not JSON') };
    }
    // Some servers answer 200 with an OAuth error object; report it as the refusal it is.
    const refusal = parseOAuthError(json);
    if (refusal && (json as Record<string, unknown>).access_token === undefined) {
      return { kind: 'rejected', error: oauthErrorToTokenRequestError(status, tokenUrl, refusal) };
    }
    try {
      return { kind: 'token', token: parseTokenResponse(json, context, status) };
    } catch (error) {
      return { kind: 'rejected', error: error as TokenRequestError };
    }
  }
  if (status >= 300 && status < 400) {
    return {
      kind: 'rejected',
      error: garbage(
        tokenUrl,
        status,
        'a redirect, which is not followed because the request carries the client assertion',
      ),
    };
  }
  const oauth = parseOAuthError(json);
  if (status === 429 || status >= 500) {
    return {
      kind: 'retry',
      reason: `HTTP ${status}`,
      error: oauth
        ? oauthErrorToTokenRequestError(status, tokenUrl, oauth)
        : garbage(tokenUrl, status, 'an error'),
    };
  }
  if (oauth) return { kind: 'rejected', error: oauthErrorToTokenRequestError(status, tokenUrl, oauth) };
  if (status === 400) {
    return {
      kind: 'retry',
      reason: 'HTTP 400 without an OAuth error body',
      error: garbage(tokenUrl, status, 'no OAuth error body'),
    };
  }
  return { kind: 'rejected', error: garbage(tokenUrl, status, 'no OAuth error body') };
}
