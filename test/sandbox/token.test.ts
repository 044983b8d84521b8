import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forgedAssertion, jwksOf, signAssertion, testKey } from './support/keys.js';
import {
  accessToken,
  kickOff,
  registerTestClient,
  requestToken,
  startTestSandbox,
  type TestClient,
  type TestSandbox,
} from './support/sandbox.js';

describe('token endpoint (SMART Backend Services)', () => {
  let t: TestSandbox;
  let client: TestClient;
  beforeAll(async () => {
    t = await startTestSandbox();
    client = await registerTestClient(t.sandbox, { alg: 'ES384', scope: 'system/*.rs' });
  });
  afterAll(() => t.sandbox.close());

  it.each(['RS384', 'ES384'] as const)(
    'issues an opaque bearer token for a valid %s assertion',
    async (alg) => {
      // Prepare
      const rsClient = await registerTestClient(t.sandbox, { alg });
      // Act
      const response = await requestToken(t, rsClient, {
        scope: 'system/Patient.rs system/Observation.read',
      });
      // Assess
      expect(response.status).toBe(200);
      expect(response.headers.get('cache-control')).toBe('no-store');
      const body = (await response.json()) as Record<string, unknown>;
      expect(body).toEqual({
        access_token: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
        token_type: 'bearer',
        expires_in: 300,
        scope: 'system/Patient.rs system/Observation.read',
      });
    },
  );

  it('fetches the JWKS from a registered jwks_url, honouring a jku header that matches it', async () => {
    // Prepare: the sandbox's own second listener can't serve JWKS, so serve it from a tiny server.
    const key = await testKey('RS384', 'remote-key');
    const { createServer } = await import('node:http');
    let fetches = 0;
    const jwksServer = createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(jwksOf(key)));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as { port: number }).port}/jwks.json`;
    const { clientId } = await t.sandbox.registerClient({ jwksUrl });
    try {
      const assertion = await signAssertion({
        key,
        clientId,
        tokenUrl: t.sandbox.tokenUrl,
        now: t.clock.now(),
        header: { jku: jwksUrl },
      });
      // Act
      const response = await requestToken(t, { clientId, key }, { assertion });
      // Assess
      expect(response.status).toBe(200);
      expect(fetches).toBe(1);
    } finally {
      jwksServer.close();
    }
  });

  type Case = {
    name: string;
    claims?: Record<string, unknown>;
    header?: Record<string, unknown>;
    assertion?: (ctx: { clientId: string; tokenUrl: string; now: number }) => Promise<string> | string;
    status: number;
    error: string;
    description: RegExp;
  };
  const cases: Case[] = [
    {
      name: 'wrong aud',
      claims: { aud: 'https://elsewhere.example/token' },
      status: 400,
      error: 'invalid_grant',
      description: /aud must be the token URL/,
    },
    {
      name: 'exp too far ahead',
      claims: { exp: 'FAR' },
      status: 400,
      error: 'invalid_grant',
      description: /more than five minutes/,
    },
    {
      name: 'missing exp',
      claims: { exp: undefined },
      status: 400,
      error: 'invalid_grant',
      description: /no exp/,
    },
    { name: 'expired', claims: { exp: 'PAST' }, status: 400, error: 'invalid_grant', description: /expired/ },
    {
      name: 'missing jti',
      claims: { jti: undefined },
      status: 400,
      error: 'invalid_grant',
      description: /no jti/,
    },
    {
      name: 'iss differs from sub',
      claims: { sub: 'someone-else' },
      status: 400,
      error: 'invalid_grant',
      description: /sub must equal iss/,
    },
    {
      name: 'unknown client',
      claims: { iss: 'nobody', sub: 'nobody' },
      status: 401,
      error: 'invalid_client',
      description: /unknown client "nobody"/,
    },
    {
      name: 'unknown kid',
      header: { kid: 'not-registered' },
      status: 401,
      error: 'invalid_client',
      description: /no registered EC key has kid "not-registered"/,
    },
    {
      name: 'jku not registered',
      header: { jku: 'https://attacker.example/jwks.json' },
      status: 401,
      error: 'invalid_client',
      description: /jku header does not match/,
    },
    {
      name: 'bad signature',
      assertion: async ({ clientId, tokenUrl, now }) => {
        const other = await testKey('ES384', 'other-key');
        // Signed by another key that claims the registered kid.
        return signAssertion({ key: { ...other, kid: 'es384-key' }, clientId, tokenUrl, now: new Date(now) });
      },
      status: 401,
      error: 'invalid_client',
      description: /signature does not verify/,
    },
    {
      name: 'alg none',
      assertion: ({ clientId, tokenUrl, now }) =>
        forgedAssertion(
          { alg: 'none', typ: 'JWT', kid: 'es384-key' },
          {
            iss: clientId,
            sub: clientId,
            aud: tokenUrl,
            exp: Math.floor(now / 1000) + 60,
            jti: randomUUID(),
          },
        ),
      status: 401,
      error: 'invalid_client',
      description: /alg "none" is not allowed/,
    },
    {
      name: 'HS256',
      assertion: ({ clientId, tokenUrl, now }) =>
        forgedAssertion(
          { alg: 'HS256', typ: 'JWT', kid: 'es384-key' },
          {
            iss: clientId,
            sub: clientId,
            aud: tokenUrl,
            exp: Math.floor(now / 1000) + 60,
            jti: randomUUID(),
          },
          'c2lnbmF0dXJl',
        ),
      status: 401,
      error: 'invalid_client',
      description: /alg "HS256" is not allowed/,
    },
    {
      name: 'not a JWT',
      assertion: () => 'not-a-jwt',
      status: 401,
      error: 'invalid_client',
      description: /not a signed JWT/,
    },
  ];

  it.each(cases)('rejects an assertion with $name: $status $error', async (c) => {
    // Prepare
    const now = t.clock.now().getTime();
    const nowSeconds = Math.floor(now / 1000);
    const claims = { ...c.claims };
    if (claims.exp === 'FAR') claims.exp = nowSeconds + 600;
    if (claims.exp === 'PAST') claims.exp = nowSeconds - 60;
    const assertion = c.assertion
      ? await c.assertion({ clientId: client.clientId, tokenUrl: t.sandbox.tokenUrl, now })
      : await signAssertion({
          key: client.key,
          clientId: client.clientId,
          tokenUrl: t.sandbox.tokenUrl,
          now: t.clock.now(),
          claims,
          ...(c.header ? { header: c.header } : {}),
        });
    // Act
    const response = await requestToken(t, client, { assertion });
    // Assess
    expect(response.status).toBe(c.status);
    const body = (await response.json()) as { error: string; error_description: string };
    expect(body.error).toBe(c.error);
    expect(body.error_description).toMatch(c.description);
  });

  it('accepts an exp exactly five minutes ahead', async () => {
    const assertion = await signAssertion({
      key: client.key,
      clientId: client.clientId,
      tokenUrl: t.sandbox.tokenUrl,
      now: t.clock.now(),
      claims: { exp: Math.floor(t.clock.now().getTime() / 1000) + 300 },
    });
    expect((await requestToken(t, client, { assertion })).status).toBe(200);
  });

  it('rejects a replayed jti while the first assertion is still valid', async () => {
    // Prepare
    const assertion = await signAssertion({
      key: client.key,
      clientId: client.clientId,
      tokenUrl: t.sandbox.tokenUrl,
      now: t.clock.now(),
    });
    const first = await requestToken(t, client, { assertion });
    // Act
    const replay = await requestToken(t, client, { assertion });
    // Assess
    expect(first.status).toBe(200);
    expect(replay.status).toBe(400);
    expect(await replay.json()).toEqual({
      error: 'invalid_grant',
      error_description: 'the assertion jti was already used',
    });
  });

  it.each([
    ['a scope the client was not registered for', 'system/*.cruds', 400, 'invalid_scope'],
    ['a malformed scope', 'launch/patient', 400, 'invalid_scope'],
  ])('rejects %s', async (_name, scope, status, error) => {
    const response = await requestToken(t, client, { scope });
    expect(response.status).toBe(status);
    expect(((await response.json()) as { error: string }).error).toBe(error);
  });

  it('grants v1 scopes to a client registered with the v2 equivalent', async () => {
    const response = await requestToken(t, client, { scope: 'system/*.read' });
    expect(response.status).toBe(200);
    expect(((await response.json()) as { scope: string }).scope).toBe('system/*.read');
  });

  const formCases: [string, Record<string, string | undefined>, string][] = [
    ['no grant_type', { grant_type: undefined }, 'invalid_request'],
    ['grant_type authorization_code', { grant_type: 'authorization_code' }, 'unsupported_grant_type'],
    ['a wrong client_assertion_type', { client_assertion_type: 'urn:example:other' }, 'invalid_request'],
    ['no client_assertion', { client_assertion: undefined }, 'invalid_request'],
    ['no scope', { scope: undefined }, 'invalid_request'],
  ];
  it.each(formCases)('answers 400 to a form with %s', async (_name, overrides, error) => {
    // Prepare
    const assertion = await signAssertion({
      key: client.key,
      clientId: client.clientId,
      tokenUrl: t.sandbox.tokenUrl,
      now: t.clock.now(),
    });
    const fields: Record<string, string | undefined> = {
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
      scope: 'system/*.rs',
      ...overrides,
    };
    const form = new URLSearchParams(
      Object.entries(fields).filter((e): e is [string, string] => e[1] !== undefined),
    );
    // Act
    const response = await fetch(t.sandbox.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form,
    });
    // Assess
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toBe(error);
  });

  it('answers 400 invalid_request to a JSON body', async () => {
    const response = await fetch(t.sandbox.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toBe('invalid_request');
  });

  it('refuses an expired access token with 401 invalid_token', async () => {
    // Prepare
    const token = await accessToken(t, client);
    t.clock.advance(301_000);
    // Act
    const response = await kickOff(`${t.sandbox.baseUrl}/Patient/$export`, token);
    // Assess
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toContain('error="invalid_token"');
    expect(await response.json()).toEqual({
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'login', diagnostics: 'the access token expired' }],
    });
  });
});
