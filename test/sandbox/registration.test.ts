import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jwksOf, testKey } from './support/keys.js';
import { accessToken, startTestSandbox, type TestSandbox } from './support/sandbox.js';

describe('client registration over HTTP', () => {
  let t: TestSandbox;
  beforeAll(async () => {
    t = await startTestSandbox();
  });
  afterAll(() => t.sandbox.close());

  const register = (body: unknown) =>
    fetch(t.sandbox.registrationUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  it('registers a JWKS and answers 201 with a client_id that can get tokens', async () => {
    // Prepare
    const key = await testKey('RS384');
    // Act
    const response = await register({
      jwks: jwksOf(key),
      scope: 'system/Patient.read',
      faults: { file5xx: 1 },
    });
    // Assess
    expect(response.status).toBe(201);
    const body = (await response.json()) as { client_id: string; scope: string };
    expect(body.client_id).toMatch(/^client-[0-9a-f]{16}$/);
    expect(body.scope).toBe('system/Patient.read');
    const token = await accessToken(t, { clientId: body.client_id, key }, { scope: 'system/Patient.read' });
    expect(token).toMatch(/^[\w-]{43}$/);
  });

  it('registers a jwks_url that is fetched at token time, and re-fetched after a key rotation', async () => {
    // Prepare
    let keys = jwksOf(await testKey('ES384', 'first'));
    const jwksServer = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=3600' });
      res.end(JSON.stringify(keys));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    try {
      const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks`;
      const response = await register({ jwks_url: jwksUrl, client_id: 'rotating-client' });
      const { client_id: clientId } = (await response.json()) as { client_id: string };
      await accessToken(t, { clientId, key: await testKey('ES384', 'first') });
      // Act
      keys = jwksOf(await testKey('ES384', 'second'));
      const token = await accessToken(t, { clientId, key: await testKey('ES384', 'second') });
      // Assess
      expect(clientId).toBe('rotating-client');
      expect(token).toMatch(/^[\w-]{43}$/);
    } finally {
      jwksServer.close();
    }
  });

  it.each([
    ['no keys', {}, 'exactly one of jwks, jwks_url and client_secret is required'],
    [
      'both jwks and jwks_url',
      { jwks: { keys: [] }, jwks_url: 'https://a.example/jwks' },
      'exactly one of jwks, jwks_url and client_secret is required',
    ],
    ['an empty key set', { jwks: { keys: [] } }, 'jwks: the key set is empty'],
    [
      'a key without kid',
      { jwks: { keys: [{ kty: 'EC', crv: 'P-384', x: 'a', y: 'b' }] } },
      'jwks.keys[0]: a kid is required (SMART Backend Services)',
    ],
    [
      'a private key',
      { jwks: { keys: [{ kty: 'EC', kid: 'k', crv: 'P-384', x: 'a', y: 'b', d: 'secret' }] } },
      'jwks.keys[0]: private key material (d) must not be registered',
    ],
    [
      'a symmetric key',
      { jwks: { keys: [{ kty: 'oct', kid: 'k', k: 'c2VjcmV0' }] } },
      'jwks.keys[0]: kty must be RSA or EC, got "oct"',
    ],
    [
      'a non-SMART scope',
      { jwks_url: 'https://a.example/jwks', scope: 'openid' },
      'scope: "openid" is not a SMART resource scope',
    ],
    [
      'an unknown field',
      { jwks_url: 'https://a.example/jwks', redirect_uris: [] },
      'unknown registration field "redirect_uris"',
    ],
    [
      'an unknown fault',
      { jwks_url: 'https://a.example/jwks', faults: { nope: 1 } },
      /^faults: unknown fault "nope"/,
    ],
  ])('answers 400 invalid_client_metadata to %s', async (_name, body, description) => {
    const response = await register(body);
    expect(response.status).toBe(400);
    const error = (await response.json()) as { error: string; error_description: string };
    expect(error.error).toBe('invalid_client_metadata');
    expect(error.error_description).toMatch(description);
  });

  it('answers 400 to a body that is not JSON', async () => {
    const response = await fetch(t.sandbox.registrationUrl, { method: 'POST', body: 'jwks=1' });
    expect(response.status).toBe(400);
  });
});
