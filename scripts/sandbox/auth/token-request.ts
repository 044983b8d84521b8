/**
 * The token endpoint's checks (SMART Backend Services, client-confidential-asymmetric):
 * the form, then the client assertion's header, key, signature and claims, then the scopes.
 */
import {
  type CompactJWSHeaderParameters,
  compactVerify,
  decodeJwt,
  decodeProtectedHeader,
  importJWK,
  type JWK,
} from 'jose';
import type { FaultPlan } from '../faults.js';
import type { ClientRegistry, RegisteredClient } from './clients.js';
import { parseScope, scopeCovers, splitScopes } from './scopes.js';

export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'invalid_scope'
  | 'unsupported_grant_type';

/** An RFC 6749 §5.2 error response. */
export class OAuthError extends Error {
  override readonly name = 'OAuthError';
  constructor(
    readonly code: OAuthErrorCode,
    readonly description: string,
  ) {
    super(`${code}: ${description}`);
  }

  /** invalid_client is 401 (RFC 6749 §5.2); everything else 400. */
  get status(): 400 | 401 {
    return this.code === 'invalid_client' ? 401 : 400;
  }
}

export const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
export const ALLOWED_ALGORITHMS = ['RS384', 'ES384'] as const;
/** SMART: an assertion's exp is at most five minutes ahead. */
export const MAX_ASSERTION_LIFETIME_SECONDS = 300;
/** Tolerated clock difference between the client and the sandbox. */
export const CLOCK_SKEW_SECONDS = 5;

/** Remembers each (iss, jti) until the assertion carrying it expires, to refuse replays. */
export class JtiReplayCache {
  readonly #seen = new Map<string, number>();

  /** False when the jti was already used by this issuer and that assertion is still valid. */
  remember(iss: string, jti: string, exp: number, nowSeconds: number): boolean {
    if (this.#seen.size > 10_000) {
      for (const [key, until] of this.#seen) if (until < nowSeconds) this.#seen.delete(key);
    }
    const key = `${iss}\n${jti}`;
    const until = this.#seen.get(key);
    if (until !== undefined && until >= nowSeconds) return false;
    this.#seen.set(key, exp + CLOCK_SKEW_SECONDS);
    return true;
  }
}

type Fetch = typeof fetch;

/** Finds the single key that may verify an assertion (SMART "Signature Verification" algorithm). */
export class KeyResolver {
  readonly #cache = new Map<string, { keys: JWK[]; until: number }>();

  constructor(
    private readonly fetchImpl: Fetch,
    private readonly nowMs: () => number,
  ) {}

  async keyFor(client: RegisteredClient, header: CompactJWSHeaderParameters): Promise<JWK> {
    if (header.jku !== undefined && header.jku !== client.jwksUrl) {
      throw new OAuthError(
        'invalid_client',
        'the jku header does not match the JWKS URL registered for this client',
      );
    }
    if (client.jwks) return pick(client.jwks.keys, header);
    const url = client.jwksUrl!;
    const cached = this.#cache.get(url);
    if (cached && cached.until > this.nowMs()) {
      try {
        return pick(cached.keys, header);
      } catch {
        // The client may have rotated its keys: fetch again before failing.
      }
    }
    return pick(await this.#fetchKeys(url), header);
  }

  async #fetchKeys(url: string): Promise<JWK[]> {
    let response: Response;
    try {
      response = await this.fetchImpl(url, {
        headers: { accept: 'application/json' },
        signal: AbortSignal.timeout(10_000),
      });
    } catch (error) {
      throw new OAuthError(
        'invalid_client',
        `could not fetch the registered JWKS URL: ${(error as Error).message}`,
      );
    }
    if (!response.ok) {
      throw new OAuthError('invalid_client', `the registered JWKS URL answered ${response.status}`);
    }
    const body = (await response.json().catch(() => undefined)) as { keys?: unknown } | undefined;
    if (!body || !Array.isArray(body.keys)) {
      throw new OAuthError('invalid_client', 'the registered JWKS URL did not return a JWK Set');
    }
    // SMART: never cache longer than the client's Cache-Control says.
    const maxAge = /max-age=(\d+)/.exec(response.headers.get('cache-control') ?? '');
    const noStore = /no-store|no-cache/.test(response.headers.get('cache-control') ?? '');
    const seconds = maxAge && !noStore ? Number(maxAge[1]) : 0;
    this.#cache.set(url, { keys: body.keys as JWK[], until: this.nowMs() + seconds * 1000 });
    return body.keys as JWK[];
  }
}

function pick(keys: readonly JWK[], header: CompactJWSHeaderParameters): JWK {
  const kty = header.alg === 'ES384' ? 'EC' : 'RSA';
  const candidates = keys.filter(
    (k) =>
      k.kid === header.kid &&
      k.kty === kty &&
      (kty !== 'EC' || k.crv === 'P-384') &&
      (k.alg === undefined || k.alg === header.alg) &&
      k.use !== 'enc',
  );
  if (candidates.length !== 1) {
    throw new OAuthError(
      'invalid_client',
      candidates.length === 0
        ? `no registered ${kty} key has kid ${JSON.stringify(header.kid)}`
        : `several registered keys have kid ${JSON.stringify(header.kid)}`,
    );
  }
  return candidates[0]!;
}

/** The client id the assertion claims to be (unverified), so that its faults can apply first. */
export function claimedClientId(form: URLSearchParams): string | undefined {
  const assertion = form.get('client_assertion');
  if (!assertion) return undefined;
  try {
    const iss = decodeJwt(assertion).iss;
    return typeof iss === 'string' ? iss : undefined;
  } catch {
    return undefined;
  }
}

export interface TokenRequestCheck {
  readonly form: URLSearchParams;
  /** The URL the request was POSTed to: the assertion's aud must be exactly this. */
  readonly tokenUrl: string;
  readonly now: Date;
  readonly clients: ClientRegistry;
  readonly keys: KeyResolver;
  readonly replay: JtiReplayCache;
}

export interface VerifiedTokenRequest {
  readonly client: RegisteredClient;
  /** The requested scopes, all covered by the client's registration. */
  readonly scopes: readonly string[];
}

/** Throws an OAuthError naming the first problem found; the order mirrors what a server can know when. */
export async function verifyTokenRequest(check: TokenRequestCheck): Promise<VerifiedTokenRequest> {
  const { form } = check;
  for (const name of new Set(form.keys())) {
    if (form.getAll(name).length > 1)
      throw new OAuthError('invalid_request', `parameter ${name} is repeated`);
  }
  const grantType = form.get('grant_type');
  if (!grantType) throw new OAuthError('invalid_request', 'grant_type is required');
  if (grantType !== 'client_credentials') {
    throw new OAuthError(
      'unsupported_grant_type',
      `grant_type ${grantType} is not supported; use client_credentials`,
    );
  }
  if (form.get('client_assertion_type') !== JWT_BEARER) {
    throw new OAuthError('invalid_request', `client_assertion_type must be ${JWT_BEARER}`);
  }
  const assertion = form.get('client_assertion');
  if (!assertion) throw new OAuthError('invalid_request', 'client_assertion is required');
  const scopeText = form.get('scope');
  if (!scopeText || splitScopes(scopeText).length === 0) {
    throw new OAuthError('invalid_request', 'scope is required (SMART Backend Services)');
  }

  let header: CompactJWSHeaderParameters;
  let unverified: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(assertion) as CompactJWSHeaderParameters;
    unverified = decodeJwt(assertion);
  } catch {
    throw new OAuthError('invalid_client', 'client_assertion is not a signed JWT');
  }
  if (!(ALLOWED_ALGORITHMS as readonly string[]).includes(String(header.alg))) {
    throw new OAuthError(
      'invalid_client',
      `alg ${JSON.stringify(header.alg)} is not allowed; use RS384 or ES384`,
    );
  }
  if (header.typ !== undefined && header.typ.toUpperCase() !== 'JWT') {
    throw new OAuthError('invalid_client', `typ ${JSON.stringify(header.typ)} is not JWT`);
  }
  if (typeof header.kid !== 'string' || header.kid === '') {
    throw new OAuthError('invalid_client', 'the assertion header has no kid');
  }
  const iss = unverified.iss;
  if (typeof iss !== 'string' || iss === '')
    throw new OAuthError('invalid_client', 'the assertion has no iss');
  const client = check.clients.get(iss);
  if (!client) throw new OAuthError('invalid_client', `unknown client ${JSON.stringify(iss)}`);
  const formClientId = form.get('client_id');
  if (formClientId !== null && formClientId !== iss) {
    throw new OAuthError('invalid_client', 'client_id does not match the assertion iss');
  }

  const jwk = await check.keys.keyFor(client, header);
  let payload: Record<string, unknown>;
  try {
    const key = await importJWK(jwk, header.alg);
    const verified = await compactVerify(assertion, key, { algorithms: [header.alg!] });
    payload = JSON.parse(new TextDecoder().decode(verified.payload)) as Record<string, unknown>;
  } catch {
    throw new OAuthError('invalid_client', 'the assertion signature does not verify with the registered key');
  }

  const nowSeconds = Math.floor(check.now.getTime() / 1000);
  if (payload.sub !== iss)
    throw new OAuthError('invalid_grant', 'the assertion sub must equal iss (the client_id)');
  const aud = payload.aud;
  const audOk = Array.isArray(aud) ? aud.includes(check.tokenUrl) : aud === check.tokenUrl;
  if (!audOk) {
    throw new OAuthError('invalid_grant', `the assertion aud must be the token URL ${check.tokenUrl}`);
  }
  const exp = payload.exp;
  if (exp === undefined) throw new OAuthError('invalid_grant', 'the assertion has no exp');
  if (typeof exp !== 'number' || !Number.isFinite(exp)) {
    throw new OAuthError('invalid_grant', 'the assertion exp is not a number');
  }
  if (exp + CLOCK_SKEW_SECONDS <= nowSeconds)
    throw new OAuthError('invalid_grant', 'the assertion has expired');
  if (exp > nowSeconds + MAX_ASSERTION_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS) {
    throw new OAuthError('invalid_grant', 'the assertion exp is more than five minutes in the future');
  }
  for (const claim of ['nbf', 'iat'] as const) {
    const value = payload[claim];
    if (value === undefined) continue;
    if (typeof value !== 'number' || value > nowSeconds + CLOCK_SKEW_SECONDS) {
      throw new OAuthError('invalid_grant', `the assertion ${claim} is in the future`);
    }
  }
  const jti = payload.jti;
  if (typeof jti !== 'string' || jti === '')
    throw new OAuthError('invalid_grant', 'the assertion has no jti');
  if (!check.replay.remember(iss, jti, exp, nowSeconds)) {
    throw new OAuthError('invalid_grant', 'the assertion jti was already used');
  }

  const requested = splitScopes(scopeText);
  for (const raw of requested) {
    const parsed = parseScope(ehrScopeForm(raw, client.faults));
    const allowed =
      client.scope.split(' ').includes(raw) || (parsed && client.scopes.some((g) => scopeCovers(g, parsed)));
    if (!allowed) {
      throw new OAuthError(
        'invalid_scope',
        `scope ${raw} is not among the scopes registered for this client`,
      );
    }
  }
  return { client, scopes: requested };
}

/**
 * A requested scope in the form this client's EHR insists on, as the standard form the
 * coverage check reads: Epic's `system/Patient.Read` becomes `system/Patient.read`; a scope in
 * any other form is refused the way such an EHR refuses it.
 */
function ehrScopeForm(raw: string, faults: FaultPlan): string {
  const resource = /^(system|patient|user)\/(\*|[A-Z][A-Za-z]*)\.(.+)$/.exec(raw);
  if (!resource) return raw;
  const action = resource[3]!;
  if (faults.capitalizedScopes) {
    if (action !== 'Read')
      throw new OAuthError(
        'invalid_scope',
        `scope ${raw} is not recognized; this server spells it ${resource[1]}/${resource[2]}.Read`,
      );
    return `${resource[1]}/${resource[2]}.read`;
  }
  if (faults.v1ScopesOnly && action !== 'read' && action !== 'write' && action !== '*')
    throw new OAuthError(
      'invalid_scope',
      `scope ${raw} is not recognized; this server grants SMART v1 scopes such as ${resource[1]}/${resource[2]}.read`,
    );
  return raw;
}
