import { setTimeout as delay } from 'node:timers/promises';
import type { ClientSecretValue } from '../core/auth/client-config.js';
import {
  type AccessToken,
  classifyTokenHttpResponse,
  DEFAULT_EXPIRES_IN_SECONDS,
} from '../core/auth/token-response.js';
import { parseRetryAfter } from '../core/retry-after.js';
import { checkFetchableUrl } from '../core/urls.js';
import { USER_AGENT } from '../core/user-agent.js';
import { ConfigurationError, TokenRequestError, TransientServerError } from '../errors.js';
import type { Logger } from '../logger.js';

/**
 * The only code that talks to an authorization server: discovery of the token
 * endpoint and the `client_credentials` POST. Bodies are never logged or put
 * into errors; the request holds the client assertion or the client secret,
 * the response the access token.
 */

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface RetryOptions {
  /** Attempts in all, the first included (3 retries). @default 4 */
  readonly maxAttempts?: number;
  /** First backoff ceiling; doubles per attempt. @default 500 */
  readonly baseDelayMs?: number;
  /** @default 8000 */
  readonly maxDelayMs?: number;
  /** Per attempt. @default 10000 */
  readonly timeoutMs?: number;
}

export interface HttpDependencies {
  /** @default globalThis.fetch */
  readonly fetch?: FetchLike;
  /** @default node:timers/promises setTimeout */
  readonly sleep?: (ms: number) => Promise<void>;
  /** @default Math.random */
  readonly random?: () => number;
  /** @default () => new Date() */
  readonly now?: () => Date;
  /** Aborting stops at once, between or during attempts (e.g. the Lambda is about to time out). */
  readonly signal?: AbortSignal;
  readonly logger?: Logger;
}

const RETRY_DEFAULTS = { maxAttempts: 4, baseDelayMs: 500, maxDelayMs: 8000, timeoutMs: 10_000 } as const;

function retrySettings(options: RetryOptions): Required<RetryOptions> {
  const settings: Required<RetryOptions> = {
    maxAttempts: options.maxAttempts ?? RETRY_DEFAULTS.maxAttempts,
    baseDelayMs: options.baseDelayMs ?? RETRY_DEFAULTS.baseDelayMs,
    maxDelayMs: options.maxDelayMs ?? RETRY_DEFAULTS.maxDelayMs,
    timeoutMs: options.timeoutMs ?? RETRY_DEFAULTS.timeoutMs,
  };
  if (!Number.isInteger(settings.maxAttempts) || settings.maxAttempts < 1 || settings.maxAttempts > 10) {
    throw new ConfigurationError(
      `maxAttempts must be an integer from 1 to 10 (got ${String(settings.maxAttempts)})`,
    );
  }
  for (const key of ['baseDelayMs', 'maxDelayMs', 'timeoutMs'] as const) {
    if (!Number.isFinite(settings[key]) || settings[key] < 0) {
      throw new ConfigurationError(`${key} must be a non-negative number (got ${String(settings[key])})`);
    }
  }
  return settings;
}

/**
 * "Full jitter" (random in [0, min(cap, base·2^n))): spreads the retries of
 * many concurrent minters so they do not hit a struggling endpoint in lockstep.
 */
export function backoffDelayMs(
  retry: number,
  options: { baseDelayMs: number; maxDelayMs: number },
  random: () => number,
): number {
  const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** Math.min(retry, 30));
  return Math.floor(Math.min(1, Math.max(0, random())) * ceiling);
}

function defaultFetch(): FetchLike {
  return (input, init) => globalThis.fetch(input, init);
}

function attemptSignal(timeoutMs: number, outer: AbortSignal | undefined): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs);
  return outer ? AbortSignal.any([outer, timeout]) : timeout;
}

function describeNetworkError(error: unknown): string {
  if (!(error instanceof Error)) return 'network error';
  if (error.name === 'TimeoutError') return 'timed out';
  const cause = (error as { cause?: { code?: unknown } }).cause;
  return typeof cause?.code === 'string' ? `network error ${cause.code}` : `network error (${error.name})`;
}

/** Token URL policy: https only; plain http just for loopback hosts in explicit local mode. */
export function assertTokenUrl(url: string, allowInsecureHttp: boolean, what = 'tokenUrl'): string {
  const check = checkFetchableUrl(url, allowInsecureHttp);
  if (!check.ok) throw new ConfigurationError(`${what} ${check.reason}`);
  return url;
}

// ---------------------------------------------------------------- discovery

export interface SmartConfiguration {
  readonly tokenEndpoint: string;
  /** `token_endpoint_auth_signing_alg_values_supported`, when the server lists it. */
  readonly signingAlgorithms?: readonly string[];
  /** `token_endpoint_auth_methods_supported`, when the server lists it. */
  readonly authMethods?: readonly string[];
}

function optionalStringList(value: unknown): string[] | undefined {
  return Array.isArray(value) && value.every((item) => typeof item === 'string') ? value : undefined;
}

/** Validates `.well-known/smart-configuration` (SMART App Launch §"SMART configuration"). */
export function parseSmartConfiguration(
  body: unknown,
  where: string,
  allowInsecureHttp: boolean,
): SmartConfiguration {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ConfigurationError(`${where} is not a JSON object; set tokenUrl for this source`);
  }
  const fields = body as Record<string, unknown>;
  if (typeof fields.token_endpoint !== 'string' || fields.token_endpoint === '') {
    throw new ConfigurationError(`${where} has no token_endpoint; set tokenUrl for this source`);
  }
  const tokenEndpoint = assertTokenUrl(fields.token_endpoint, allowInsecureHttp, `${where} token_endpoint`);
  const signingAlgorithms = optionalStringList(fields.token_endpoint_auth_signing_alg_values_supported);
  const authMethods = optionalStringList(fields.token_endpoint_auth_methods_supported);
  return {
    tokenEndpoint,
    ...(signingAlgorithms ? { signingAlgorithms } : {}),
    ...(authMethods ? { authMethods } : {}),
  };
}

/**
 * Discovered configurations, per container and base URL: a token endpoint
 * does not move between two mints, and re-discovering on every cold path
 * would double the requests to the EHR. Failures are not cached.
 */
const discovered = new Map<string, Promise<SmartConfiguration>>();

/** Forgets every discovered configuration (tests, or after a 404 from a cached endpoint). */
export function clearSmartConfigurationCache(): void {
  discovered.clear();
}

export interface DiscoveryOptions extends HttpDependencies, RetryOptions {
  readonly fhirBaseUrl: string;
  /** @default false */
  readonly allowInsecureHttp?: boolean;
}

export function discoverSmartConfiguration(options: DiscoveryOptions): Promise<SmartConfiguration> {
  const allowInsecureHttp = options.allowInsecureHttp ?? false;
  const base = assertTokenUrl(options.fhirBaseUrl, allowInsecureHttp, 'fhirBaseUrl').replace(/\/+$/, '');
  const cached = discovered.get(base);
  if (cached) return cached;
  const pending = fetchSmartConfiguration(base, options, allowInsecureHttp);
  discovered.set(base, pending);
  pending.catch(() => discovered.delete(base));
  return pending;
}

async function fetchSmartConfiguration(
  base: string,
  options: DiscoveryOptions,
  allowInsecureHttp: boolean,
): Promise<SmartConfiguration> {
  const url = `${base}/.well-known/smart-configuration`;
  const settings = retrySettings(options);
  const fetch = options.fetch ?? defaultFetch();
  const sleep = options.sleep ?? ((ms: number) => delay(ms, undefined, { signal: options.signal }));
  const random = options.random ?? Math.random;
  const now = options.now ?? (() => new Date());
  let lastFailure = '';
  let retryAfterMs: number | undefined;
  for (let attempt = 1; attempt <= settings.maxAttempts; attempt += 1) {
    if (attempt > 1) {
      const wait = retryWaitMs(attempt, settings, random, retryAfterMs);
      options.logger?.warn('SMART discovery failed; retrying', {
        url,
        attempt: attempt - 1,
        reason: lastFailure,
        ...(retryAfterMs === undefined ? {} : { retryAfterSeconds: retryAfterMs / 1000 }),
        waitMs: wait,
      });
      await sleep(wait);
    }
    options.signal?.throwIfAborted();
    retryAfterMs = undefined;
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'GET',
        headers: { accept: 'application/json', 'user-agent': USER_AGENT },
        redirect: 'follow',
        signal: attemptSignal(settings.timeoutMs, options.signal),
      });
    } catch (error) {
      options.signal?.throwIfAborted();
      lastFailure = describeNetworkError(error);
      continue;
    }
    if (response.status === 429 || response.status >= 500) {
      await response.body?.cancel();
      lastFailure = `HTTP ${response.status}`;
      const retryAfter = parseRetryAfter(response.headers.get('retry-after'), now());
      if (retryAfter !== undefined) retryAfterMs = retryAfter * 1000;
      continue;
    }
    if (response.status === 404) {
      await response.body?.cancel();
      throw new ConfigurationError(discoveryNotFound(url, base));
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new ConfigurationError(
        `${url} answered HTTP ${response.status}; the server may not support SMART discovery: set tokenUrl for this source`,
      );
    }
    let body: unknown;
    try {
      body = JSON.parse(await response.text());
    } catch {
      throw new ConfigurationError(`${url} did not return JSON; set tokenUrl for this source`);
    }
    return parseSmartConfiguration(body, url, allowInsecureHttp);
  }
  throw new TransientServerError(
    `${url} did not answer after ${settings.maxAttempts} attempts (last: ${lastFailure})`,
  );
}

/**
 * A 404 has two likely causes, and the more common one is ours: a base URL
 * cut short (`https://ehr.example.org` for `https://ehr.example.org/fhir/r4`)
 * asks for discovery where there is none. Naming only `tokenUrl` sent people
 * past the real mistake.
 */
function discoveryNotFound(url: string, base: string): string {
  const path = new URL(base).pathname.replace(/\/+$/, '');
  const basePath = path === '' ? 'it has no path' : `its path is ${path}`;
  return (
    `${url} answered HTTP 404. Either fhirBaseUrl is not the server's FHIR base URL (the one whose /metadata answers, ` +
    `usually with a path such as /fhir/r4; ${basePath}), or the server does not offer SMART discovery: then set tokenUrl for this source`
  );
}

/** Full-jitter backoff, stretched to the server's Retry-After (capped at maxDelayMs) when it sent one. */
function retryWaitMs(
  attempt: number,
  settings: Required<RetryOptions>,
  random: () => number,
  retryAfterMs: number | undefined,
): number {
  const backoff = backoffDelayMs(attempt - 2, settings, random);
  return Math.max(backoff, Math.min(retryAfterMs ?? 0, settings.maxDelayMs));
}

export interface ResolveTokenUrlOptions extends DiscoveryOptions {
  /** An explicit token endpoint; wins over discovery. */
  readonly tokenUrl?: string;
}

export async function resolveTokenUrl(options: ResolveTokenUrlOptions): Promise<string> {
  const allowInsecureHttp = options.allowInsecureHttp ?? false;
  if (options.tokenUrl !== undefined) return assertTokenUrl(options.tokenUrl, allowInsecureHttp);
  return (await discoverSmartConfiguration(options)).tokenEndpoint;
}

// ------------------------------------------------------------ token request

interface TokenRequestBase extends HttpDependencies, RetryOptions {
  readonly tokenUrl: string;
  readonly scope: string;
  /** @default false */
  readonly allowInsecureHttp?: boolean;
  /** @default DEFAULT_EXPIRES_IN_SECONDS */
  readonly defaultExpiresInSeconds?: number;
}

/** How the client proves who it is: exactly one of a signed assertion or a Basic header. */
export type TokenRequestOptions = TokenRequestBase &
  (
    | {
        /**
         * private_key_jwt: makes a fresh client assertion for each attempt. Reusing one would
         * replay its `jti`, which the server may have recorded before failing, and a slow
         * retry could outlive its `exp`.
         */
        readonly createClientAssertion: () => Promise<string>;
        readonly clientSecretBasic?: never;
      }
    | {
        /** client_secret_basic (RFC 6749 §2.3.1): sent in the Authorization header, never in the body. */
        readonly clientSecretBasic: { readonly clientId: string; readonly clientSecret: ClientSecretValue };
        readonly createClientAssertion?: never;
      }
  );

/** RFC 6749 Appendix B: form-urlencoding, so a `:` in a client id cannot split the pair. */
function formUrlEncode(value: string): string {
  return new URLSearchParams([['', value]]).toString().slice(1);
}

/** `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1). */
export function basicAuthorization(clientId: string, clientSecret: ClientSecretValue): string {
  const pair = `${formUrlEncode(clientId)}:${formUrlEncode(clientSecret.reveal())}`;
  return `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
}

export interface MintedToken extends AccessToken {
  readonly attempts: number;
}

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/**
 * POSTs the `client_credentials` grant (SMART Backend Services §"Request an
 * access token"), with bounded retries on network errors, 5xx, 429 and bare
 * 400s. A 400 with an OAuth error body is final.
 */
export async function requestAccessToken(options: TokenRequestOptions): Promise<MintedToken> {
  const tokenUrl = assertTokenUrl(options.tokenUrl, options.allowInsecureHttp ?? false);
  const settings = retrySettings(options);
  const fetch = options.fetch ?? defaultFetch();
  const sleep = options.sleep ?? ((ms: number) => delay(ms, undefined, { signal: options.signal }));
  const random = options.random ?? Math.random;
  const now = options.now ?? (() => new Date());
  const { logger } = options;
  let lastError: Error | undefined;
  let lastReason = '';
  let retryAfterMs: number | undefined;

  for (let attempt = 1; attempt <= settings.maxAttempts; attempt += 1) {
    if (attempt > 1) {
      const wait = retryWaitMs(attempt, settings, random, retryAfterMs);
      // Attribute names containing "token" are redacted by the logger, hence `url`.
      logger?.warn('token request failed; retrying', {
        url: tokenUrl,
        attempt: attempt - 1,
        reason: lastReason,
        ...(retryAfterMs === undefined ? {} : { retryAfterSeconds: retryAfterMs / 1000 }),
        waitMs: wait,
      });
      await sleep(wait);
    }
    options.signal?.throwIfAborted();
    retryAfterMs = undefined;

    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
      'user-agent': USER_AGENT,
    };
    if (options.clientSecretBasic) {
      const { clientId, clientSecret } = options.clientSecretBasic;
      headers.authorization = basicAuthorization(clientId, clientSecret);
    } else {
      form.set('client_assertion_type', ASSERTION_TYPE);
      form.set('client_assertion', await options.createClientAssertion());
    }
    form.set('scope', options.scope);
    const requestedAt = now();
    let response: Response;
    try {
      response = await fetch(tokenUrl, {
        method: 'POST',
        headers,
        body: form.toString(),
        // A redirect would carry the credentials to wherever it points; token endpoints have no reason to redirect.
        redirect: 'manual',
        signal: attemptSignal(settings.timeoutMs, options.signal),
      });
    } catch (error) {
      options.signal?.throwIfAborted();
      lastReason = describeNetworkError(error);
      lastError = new TransientServerError(`token endpoint ${tokenUrl}: ${lastReason}`, undefined, {
        cause: error,
      });
      continue;
    }

    const bodyText = await response.text();
    const outcome = classifyTokenHttpResponse(
      { status: response.status, bodyText },
      {
        tokenUrl,
        requestedScope: options.scope,
        requestedAt,
        ...(options.defaultExpiresInSeconds === undefined
          ? {}
          : { defaultExpiresInSeconds: options.defaultExpiresInSeconds }),
      },
    );
    if (outcome.kind === 'token') {
      if (outcome.token.expiresInDefaulted) {
        logger?.warn('token response had no expires_in; assuming the SMART maximum', {
          url: tokenUrl,
          assumedSeconds: options.defaultExpiresInSeconds ?? DEFAULT_EXPIRES_IN_SECONDS,
        });
      }
      return { ...outcome.token, attempts: attempt };
    }
    if (outcome.kind === 'rejected') throw outcome.error;
    lastReason = outcome.reason;
    lastError = outcome.error;
    const retryAfter = parseRetryAfter(response.headers.get('retry-after'), now());
    if (retryAfter !== undefined) retryAfterMs = retryAfter * 1000;
  }

  const message = `token endpoint ${tokenUrl} failed after ${settings.maxAttempts} attempts (last: ${lastReason})`;
  // Repeated bare 400s are no longer a flake: treat them as the refusal they probably are.
  if (lastError instanceof TokenRequestError && lastError.details.status === 400) {
    throw new TokenRequestError(message, lastError.details, { cause: lastError });
  }
  const retryAfterSeconds = retryAfterMs ? Math.ceil(retryAfterMs / 1000) : undefined;
  throw new TransientServerError(message, retryAfterSeconds, { cause: lastError });
}
