/** Client registration and the SMART Backend Services token endpoint. */
import { RegistrationError, registrationFromBody } from '../auth/clients.js';
import { claimedClientId, OAuthError, verifyTokenRequest } from '../auth/token-request.js';
import type { Routed, SandboxState } from '../context.js';
import { FaultPlanError, mergeFaultPlans } from '../faults.js';
import { BodyTooLargeError, readBody, sendJson } from '../http.js';

const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' };

function oauthError(routed: Routed, error: OAuthError): void {
  sendJson(routed.res, error.status, { error: error.code, error_description: error.description }, NO_STORE);
}

/** `POST /register` with `{jwks | jwks_url | client_secret, scope?, faults?, client_id?}` → 201 `{client_id, ...}`. */
export async function handleRegister(state: SandboxState, routed: Routed): Promise<void> {
  const { req, res } = routed;
  if (req.method !== 'POST') {
    sendJson(res, 405, { error: 'invalid_request', error_description: 'use POST' }, { allow: 'POST' });
    return;
  }
  let body: unknown;
  try {
    body = JSON.parse((await readBody(req)).toString('utf8'));
  } catch (error) {
    const description = error instanceof BodyTooLargeError ? error.message : 'the body must be JSON';
    sendJson(res, 400, { error: 'invalid_client_metadata', error_description: description });
    return;
  }
  try {
    const client = state.register(registrationFromBody(body));
    routed.info.clientId = client.clientId;
    sendJson(res, 201, {
      client_id: client.clientId,
      scope: client.scope,
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: client.clientSecret ? 'client_secret_basic' : 'private_key_jwt',
      ...(client.clientSecret ? {} : client.jwksUrl ? { jwks_uri: client.jwksUrl } : { jwks: client.jwks }),
    });
  } catch (error) {
    if (error instanceof RegistrationError || error instanceof FaultPlanError) {
      sendJson(res, 400, { error: 'invalid_client_metadata', error_description: error.message });
      return;
    }
    throw error;
  }
}

/** `POST [token URL]`: client_credentials with a private_key_jwt client assertion or client_secret_basic. */
export async function handleToken(state: SandboxState, routed: Routed): Promise<void> {
  const { req, res, info } = routed;
  if (req.method !== 'POST') {
    sendJson(
      res,
      405,
      { error: 'invalid_request', error_description: 'use POST' },
      { allow: 'POST', ...NO_STORE },
    );
    return;
  }
  const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (contentType !== 'application/x-www-form-urlencoded') {
    oauthError(
      routed,
      new OAuthError('invalid_request', 'the body must be application/x-www-form-urlencoded'),
    );
    return;
  }
  let form: URLSearchParams;
  try {
    form = new URLSearchParams((await readBody(req)).toString('utf8'));
  } catch (error) {
    oauthError(routed, new OAuthError('invalid_request', (error as Error).message));
    return;
  }

  const authorization = req.headers.authorization;
  const claimed = claimedClientId(form, authorization);
  const client = claimed === undefined ? undefined : state.clients.get(claimed);
  if (client) info.clientId = client.clientId;
  const faults = mergeFaultPlans(client?.faults, routed.faults);
  if (state.counterFor(claimed ?? '', routed.faultKey).take('token400', faults.token400)) {
    // Epic's token endpoint sometimes answers a bare 400: no OAuth error body at all.
    info.fault = 'token400';
    res.writeHead(400, { 'content-length': 0, ...NO_STORE });
    res.end();
    return;
  }

  try {
    const verified = await verifyTokenRequest({
      form,
      ...(authorization === undefined ? {} : { authorization }),
      authMethods: state.options.tokenEndpointAuthMethods,
      tokenUrl: `${state.mainOrigin}${routed.prefix}/auth/token`,
      now: state.options.now(),
      clients: state.clients,
      keys: state.keys,
      replay: state.replay,
    });
    // Leak tests search for every credential a client presented: its assertion or its secret.
    state.tokens.remember(
      verified.client.clientId,
      form.get('client_assertion') ?? verified.client.clientSecret ?? '',
    );
    const lifetime = faults.tokenLifetimeSeconds ?? state.options.accessTokenLifetimeSeconds;
    const { token: accessToken, grant } = state.tokens.issue(
      verified.client.clientId,
      verified.scopes,
      lifetime,
      state.nowMs(),
    );
    info.issuedToken = grant.serial;
    if (faults.tokenLifetimeSeconds !== undefined) info.fault = 'tokenLifetimeSeconds';
    sendJson(
      res,
      200,
      {
        access_token: accessToken,
        token_type: 'bearer',
        expires_in: faults.tokenExpiresInAsString ? String(lifetime) : lifetime,
        scope: verified.scopes.join(' '),
      },
      NO_STORE,
    );
  } catch (error) {
    if (error instanceof OAuthError) {
      oauthError(routed, error);
      return;
    }
    throw error;
  }
}
