import { randomUUID } from 'node:crypto';
import { type ClientAssertionSigner, createClientAssertion } from '../core/auth/client-assertion.js';
import { type AuthMethod, ClientSecretValue } from '../core/auth/client-config.js';
import { decideRefresh } from '../core/auth/refresh.js';
import { scopesNotGranted } from '../core/auth/scopes.js';
import type { AccessToken } from '../core/auth/token-response.js';
import { ConfigurationError } from '../errors.js';
import {
  assertTokenUrl,
  discoverSmartConfiguration,
  type HttpDependencies,
  type RetryOptions,
  requestAccessToken,
  resolveTokenUrl,
} from './token-endpoint.js';

/**
 * One source's access tokens. Keep one provider per source per container:
 * it holds a still-fresh token in memory and shares a single in-flight mint
 * between concurrent callers, so asking for a token before every poll and
 * every file costs nothing and never floods the EHR's token endpoint.
 */

export interface AccessTokenProviderOptions extends HttpDependencies, RetryOptions {
  /** private_key_jwt: signs each client assertion. Exactly one of `signer` and `basicAuthSecret`. */
  readonly signer?: ClientAssertionSigner;
  /** client_secret_basic (CMS BCDA): the secret sent with the client id in a Basic header. */
  readonly basicAuthSecret?: ClientSecretValue;
  readonly clientId: string;
  /** The scope string to request (see core/auth/scopes.ts). */
  readonly scope: string;
  readonly fhirBaseUrl: string;
  /** Explicit token endpoint; otherwise discovered from `[fhirBaseUrl]/.well-known/smart-configuration`. */
  readonly tokenUrl?: string;
  /** Local mode only: allow http:// on loopback hosts. @default false */
  readonly allowInsecureHttp?: boolean;
  /** Makes each assertion's `jti`. @default crypto.randomUUID */
  readonly randomId?: () => string;
  /** @default 240 (see DEFAULT_ASSERTION_LIFETIME_SECONDS) */
  readonly assertionLifetimeSeconds?: number;
  /** Assumed lifetime when the server omits `expires_in`. @default 300 */
  readonly defaultExpiresInSeconds?: number;
  /** Default for `getAccessToken`. @default 300 */
  readonly minValiditySeconds?: number;
}

export interface GetAccessTokenOptions {
  /** Validity the token must still have when used. @default the provider's minValiditySeconds */
  readonly minValiditySeconds?: number;
  /** How far ahead the token will be used (e.g. after a Wait). @default 0 */
  readonly secondsUntilUse?: number;
  /** Ignore the cached token: the FHIR server answered 401 with it. Joins a mint already in flight. */
  readonly forceRefresh?: boolean;
}

export interface ProvidedAccessToken {
  readonly accessToken: string;
  readonly expiresAt: Date;
  /** The scope the server granted (the requested one when it did not say). */
  readonly scope: string;
  readonly requestedScope: string;
  /** False when the token came from this provider's memory. */
  readonly minted: boolean;
}

export interface AccessTokenProvider {
  getAccessToken(options?: GetAccessTokenOptions): Promise<ProvidedAccessToken>;
}

const KNOWN_OPTIONS = new Set([
  'signer',
  'basicAuthSecret',
  'clientId',
  'scope',
  'fhirBaseUrl',
  'tokenUrl',
  'allowInsecureHttp',
  'randomId',
  'assertionLifetimeSeconds',
  'defaultExpiresInSeconds',
  'minValiditySeconds',
  'fetch',
  'sleep',
  'random',
  'now',
  'signal',
  'logger',
  'maxAttempts',
  'baseDelayMs',
  'maxDelayMs',
  'timeoutMs',
]);

function validate(options: AccessTokenProviderOptions): void {
  const unknown = Object.keys(options).filter((key) => !KNOWN_OPTIONS.has(key));
  if (unknown.length > 0)
    throw new ConfigurationError(`unknown access token provider option(s): ${unknown.join(', ')}`);
  if ((options.signer === undefined) === (options.basicAuthSecret === undefined)) {
    throw new ConfigurationError(
      'give exactly one client credential: signer (private_key_jwt) or basicAuthSecret (client_secret_basic)',
    );
  }
  if (options.signer !== undefined && typeof options.signer.sign !== 'function') {
    throw new ConfigurationError('signer must be a ClientAssertionSigner');
  }
  if (options.basicAuthSecret !== undefined && !(options.basicAuthSecret instanceof ClientSecretValue)) {
    throw new ConfigurationError(
      'basicAuthSecret must be a ClientSecretValue (it keeps the secret out of logs)',
    );
  }
  if (typeof options.clientId !== 'string' || options.clientId.trim() === '') {
    throw new ConfigurationError('clientId must be a non-empty string');
  }
  if (typeof options.scope !== 'string' || options.scope.trim() === '') {
    throw new ConfigurationError('scope must be a non-empty string');
  }
  // URLs are checked up front, so a bad one fails at cold start rather than at the first mint.
  const allowInsecureHttp = options.allowInsecureHttp ?? false;
  assertTokenUrl(options.fhirBaseUrl, allowInsecureHttp, 'fhirBaseUrl');
  if (options.tokenUrl !== undefined) assertTokenUrl(options.tokenUrl, allowInsecureHttp);
}

export function createAccessTokenProvider(options: AccessTokenProviderOptions): AccessTokenProvider {
  validate(options);
  const { signer, basicAuthSecret, clientId, scope, logger } = options;
  const authMethod: AuthMethod = signer ? 'private_key_jwt' : 'client_secret_basic';
  const now = options.now ?? (() => new Date());
  const randomId = options.randomId ?? randomUUID;
  const allowInsecureHttp = options.allowInsecureHttp ?? false;
  let tokenUrl: Promise<string> | undefined;
  let cached: AccessToken | undefined;
  let inFlight: Promise<AccessToken> | undefined;

  const getTokenUrl = (): Promise<string> => {
    tokenUrl ??= (async () => {
      if (options.tokenUrl !== undefined) return resolveTokenUrl({ ...options, allowInsecureHttp });
      const configuration = await discoverSmartConfiguration({ ...options, allowInsecureHttp });
      // Refused before any request: a token endpoint that does not take our method answers only invalid_client.
      if (configuration.authMethods && !configuration.authMethods.includes(authMethod)) {
        throw new ConfigurationError(
          `this source authenticates with auth ${authMethod}, but ${options.fhirBaseUrl}/.well-known/smart-configuration ` +
            `lists token_endpoint_auth_methods_supported ${configuration.authMethods.join(', ') || '(none)'}; ` +
            `set the source's auth to one of those (with its credential)`,
        );
      }
      if (
        signer &&
        configuration.signingAlgorithms &&
        !configuration.signingAlgorithms.includes(signer.alg)
      ) {
        logger?.warn('the server does not list our signing algorithm; the token request may be refused', {
          url: configuration.tokenEndpoint,
          alg: signer.alg,
          supported: configuration.signingAlgorithms,
        });
      }
      return configuration.tokenEndpoint;
    })();
    // A failed discovery is retried on the next call rather than remembered.
    tokenUrl.catch(() => {
      tokenUrl = undefined;
    });
    return tokenUrl;
  };

  const mint = async (): Promise<AccessToken> => {
    const url = await getTokenUrl();
    const request = { ...options, tokenUrl: url, scope, allowInsecureHttp, now };
    const token = await requestAccessToken(
      signer
        ? {
            ...request,
            createClientAssertion: () =>
              createClientAssertion(signer, {
                clientId,
                tokenUrl: url,
                now: now(),
                jti: randomId(),
                ...(options.assertionLifetimeSeconds === undefined
                  ? {}
                  : { lifetimeSeconds: options.assertionLifetimeSeconds }),
              }),
          }
        : { ...request, clientSecretBasic: { clientId, clientSecret: basicAuthSecret! } },
    );
    const notGranted = scopesNotGranted(token.requestedScope, token.grantedScope);
    // Attribute names containing "token" are redacted by the logger, hence `url`.
    logger?.info('minted access token', {
      url,
      authMethod,
      ...(signer ? { kid: signer.kid, alg: signer.alg } : {}),
      expiresInSeconds: token.expiresInSeconds,
      grantedScope: token.grantedScope,
      attempts: token.attempts,
    });
    if (notGranted.length > 0) {
      logger?.warn('the server granted fewer scopes than requested', { url, notGranted });
    }
    return token;
  };

  const provided = (token: AccessToken, minted: boolean): ProvidedAccessToken => ({
    accessToken: token.accessToken,
    expiresAt: token.expiresAt,
    scope: token.grantedScope,
    requestedScope: token.requestedScope,
    minted,
  });

  return {
    async getAccessToken(request = {}) {
      if (inFlight) return provided(await inFlight, true);
      const decision = decideRefresh({
        token: cached,
        now: now(),
        secondsUntilUse: request.secondsUntilUse ?? 0,
        minValiditySeconds: request.minValiditySeconds ?? options.minValiditySeconds,
        forceRefresh: request.forceRefresh ?? false,
      });
      if (!decision.refresh && cached) return provided(cached, false);
      // A token the FHIR server refused is worthless even if the new mint fails.
      if (request.forceRefresh) cached = undefined;
      const pending = mint();
      inFlight = pending;
      try {
        cached = await pending;
        return provided(cached, true);
      } finally {
        inFlight = undefined;
      }
    },
  };
}
