import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Sandbox, startSandbox } from '../../scripts/sandbox/index.js';
import { resolveOptions } from '../../scripts/sandbox/options.js';

/**
 * The sandbox's client_secret_basic clients, as CMS BCDA authenticates them: a Basic header
 * (RFC 6749 §2.3.1), `invalid_client` for anything wrong, no signed assertion.
 */

const SECRET = 'bcda-sandbox-secret-0123456789abcdef';

const basic = (id: string, secret: string) =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

async function token(
  sandbox: Sandbox,
  headers: Record<string, string>,
  body = 'grant_type=client_credentials',
) {
  const response = await fetch(sandbox.tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', ...headers },
    body,
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe('client_secret_basic clients (tokenEndpointAuthMethods includes client_secret_basic)', () => {
  let sandbox: Sandbox;
  let clientId: string;
  beforeAll(async () => {
    sandbox = await startSandbox({ patientCount: 5, tokenEndpointAuthMethods: ['client_secret_basic'] });
    ({ clientId } = await sandbox.registerClient({
      clientSecret: SECRET,
      faults: { tokenExpiresInAsString: true },
    }));
  });
  afterAll(() => sandbox.close());

  it('lists only client_secret_basic in discovery', async () => {
    const configuration = (await (
      await fetch(`${sandbox.baseUrl}/.well-known/smart-configuration`)
    ).json()) as {
      token_endpoint_auth_methods_supported: string[];
    };
    expect(configuration.token_endpoint_auth_methods_supported).toStrictEqual(['client_secret_basic']);
  });

  it('issues a BCDA-shaped token for the right secret without a scope, granting the registered scopes', async () => {
    const answer = await token(sandbox, { authorization: basic(clientId, SECRET) });
    expect(answer).toStrictEqual({
      status: 200,
      body: {
        access_token: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
        token_type: 'bearer',
        expires_in: '300',
        scope: 'system/*.rs',
      },
    });
    const kickoff = await fetch(`${sandbox.baseUrl}/$export?_type=Patient`, {
      headers: {
        authorization: `Bearer ${answer.body.access_token as string}`,
        accept: 'application/fhir+json',
        prefer: 'respond-async',
      },
    });
    await kickoff.body?.cancel();
    expect(kickoff.status).toBe(202);
  });

  it.each([
    ['a wrong secret', () => basic(clientId, `${SECRET}x`)],
    ['an unknown client', () => basic('nobody', SECRET)],
    ['a malformed header', () => 'Basic !!!'],
  ])('answers %s with 401 invalid_client', async (_, header) => {
    const answer = await token(sandbox, { authorization: header() });
    expect(answer).toStrictEqual({
      status: 401,
      body: { error: 'invalid_client', error_description: expect.any(String) },
    });
    expect(JSON.stringify(answer.body)).not.toContain(SECRET);
  });

  it('refuses Basic together with a client assertion (one method per request)', async () => {
    const answer = await token(
      sandbox,
      { authorization: basic(clientId, SECRET) },
      'grant_type=client_credentials&client_assertion=x&client_assertion_type=y',
    );
    expect(answer.status).toBe(400);
    expect(answer.body.error).toBe('invalid_request');
  });

  it('refuses a signed-assertion request when only client_secret_basic is enabled', async () => {
    const answer = await token(
      sandbox,
      {},
      'grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c&scope=system%2F*.rs',
    );
    expect(answer).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
  });
});

describe('the default sandbox', () => {
  let sandbox: Sandbox;
  beforeAll(async () => {
    sandbox = await startSandbox({ patientCount: 5 });
  });
  afterAll(() => sandbox.close());

  it('still lists only private_key_jwt and refuses Basic, even for a client registered with a secret', async () => {
    const { clientId } = await sandbox.registerClient({ clientSecret: SECRET });
    const configuration = (await (
      await fetch(`${sandbox.baseUrl}/.well-known/smart-configuration`)
    ).json()) as {
      token_endpoint_auth_methods_supported: string[];
    };
    expect(configuration.token_endpoint_auth_methods_supported).toStrictEqual(['private_key_jwt']);
    const answer = await token(sandbox, { authorization: basic(clientId, SECRET) });
    expect(answer).toMatchObject({
      status: 401,
      body: { error: 'invalid_client', error_description: 'this server does not accept client_secret_basic' },
    });
  });

  it('registers a secret client over POST /register and refuses two credentials', async () => {
    const register = (body: object) =>
      fetch(`${sandbox.baseUrl.replace(/\/fhir$/, '')}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const created = await register({ client_secret: SECRET, client_id: 'bcda-1' });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({
      client_id: 'bcda-1',
      token_endpoint_auth_method: 'client_secret_basic',
    });
    const both = await register({ client_secret: SECRET, jwks_url: 'https://keys.example.org/jwks' });
    expect(both.status).toBe(400);
    expect(await both.json()).toMatchObject({
      error_description: 'exactly one of jwks, jwks_url and client_secret is required',
    });
  });

  it('validates the tokenEndpointAuthMethods option', () => {
    expect(() => resolveOptions({ tokenEndpointAuthMethods: [] })).toThrow(
      'sandbox option tokenEndpointAuthMethods: expected a non-empty list of private_key_jwt, client_secret_basic',
    );
    expect(() => resolveOptions({ tokenEndpointAuthMethods: ['client_secret_post' as never] })).toThrow(
      /tokenEndpointAuthMethods/,
    );
  });
});
