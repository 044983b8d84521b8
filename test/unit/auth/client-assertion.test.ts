import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { createLocalSignerFromJwk } from '../../../lambdas/adapters/local-signer.js';
import {
  buildClientAssertionClaims,
  buildClientAssertionHeader,
  type ClientAssertionInput,
  type ClientAssertionSigner,
  createClientAssertion,
  jwsSigningInput,
} from '../../../lambdas/core/auth/client-assertion.js';
import { buildJwks } from '../../../lambdas/core/auth/jwk.js';
import { generatePrivateJwk } from '../../support/test-keys.js';

const NOW = new Date('2026-03-01T12:00:00.750Z');
const NOW_SECONDS = Math.floor(NOW.getTime() / 1000);
const TOKEN_URL = 'https://fhir.example.org/oauth2/token';
const INPUT: ClientAssertionInput = {
  clientId: 'client-123',
  tokenUrl: TOKEN_URL,
  now: NOW,
  jti: '8d5c4c2e-2f0b-4c38-9a8a-0a4d7a1b2c3d',
};

describe('buildClientAssertionClaims', () => {
  it('sets iss = sub = clientId, aud = the token URL verbatim, exp 240 s ahead, iat and jti', () => {
    // Act
    const claims = buildClientAssertionClaims(INPUT);
    // Assess
    expect(claims).toStrictEqual({
      iss: 'client-123',
      sub: 'client-123',
      aud: TOKEN_URL,
      exp: NOW_SECONDS + 240,
      iat: NOW_SECONDS,
      jti: INPUT.jti,
    });
  });

  it('keeps aud byte-for-byte (no trailing slash added, no case folding)', () => {
    const tokenUrl = 'https://EHR.example.org:443/OAuth2/Token?tenant=a';
    expect(buildClientAssertionClaims({ ...INPUT, tokenUrl }).aud).toBe(tokenUrl);
  });

  it('accepts a lifetime up to the SMART maximum of 300 s', () => {
    expect(buildClientAssertionClaims({ ...INPUT, lifetimeSeconds: 300 }).exp).toBe(NOW_SECONDS + 300);
    expect(buildClientAssertionClaims({ ...INPUT, lifetimeSeconds: 1 }).exp).toBe(NOW_SECONDS + 1);
  });

  const bad: Array<[string, Partial<ClientAssertionInput> & Record<string, unknown>, string]> = [
    ['empty clientId', { clientId: '' }, 'clientId must be a non-empty string'],
    ['blank clientId', { clientId: '   ' }, 'clientId must be a non-empty string'],
    ['padded clientId', { clientId: ' abc' }, 'clientId must not start or end with whitespace'],
    [
      'relative tokenUrl',
      { tokenUrl: '/oauth2/token' },
      'tokenUrl must be an absolute URL (it becomes the assertion aud)',
    ],
    ['invalid date', { now: new Date(Number.NaN) }, 'now must be a valid Date'],
    ['empty jti', { jti: '' }, 'jti must be a non-empty string'],
    ['jti too long for Epic', { jti: 'x'.repeat(152) }, 'jti must be at most 151 characters (got 152)'],
    [
      'lifetime over 300 s',
      { lifetimeSeconds: 301 },
      'lifetimeSeconds must be an integer from 1 to 300 (got 301)',
    ],
    ['zero lifetime', { lifetimeSeconds: 0 }, 'lifetimeSeconds must be an integer from 1 to 300 (got 0)'],
    [
      'fractional lifetime',
      { lifetimeSeconds: 10.5 },
      'lifetimeSeconds must be an integer from 1 to 300 (got 10.5)',
    ],
  ];
  it.each(bad)('rejects %s', (_, override, message) => {
    expect(() => buildClientAssertionClaims({ ...INPUT, ...override } as ClientAssertionInput)).toThrow(
      expect.objectContaining({ name: 'ConfigurationError', code: 'ERR_CONFIGURATION', message }),
    );
  });
});

describe('buildClientAssertionHeader', () => {
  it.each(['RS384', 'ES384'] as const)('is exactly { alg: %s, kid, typ: JWT }', (alg) => {
    expect(buildClientAssertionHeader({ alg, kid: 'k1' })).toStrictEqual({ alg, kid: 'k1', typ: 'JWT' });
  });

  it.each([
    [{ alg: 'RS256', kid: 'k1' }, 'client assertion alg must be one of RS384, ES384 (got "RS256")'],
    [{ alg: 'none', kid: 'k1' }, 'client assertion alg must be one of RS384, ES384 (got "none")'],
    [{ alg: 'ES384', kid: '' }, 'client assertion kid must be a non-empty string'],
  ])('rejects %j', (signer, message) => {
    expect(() => buildClientAssertionHeader(signer)).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIGURATION', message }),
    );
  });
});

describe('createClientAssertion', () => {
  it.each(['ES384', 'RS384'] as const)(
    'produces a %s JWT that jose verifies against the JWKS',
    async (alg) => {
      // Prepare
      const signer = createLocalSignerFromJwk(generatePrivateJwk(alg));
      const jwks = createLocalJWKSet(buildJwks([signer.publicJwk]) as never);
      // Act
      const jwt = await createClientAssertion(signer, INPUT);
      // Assess
      const { payload, protectedHeader } = await jwtVerify(jwt, jwks, {
        algorithms: [alg],
        audience: TOKEN_URL,
        issuer: 'client-123',
        subject: 'client-123',
        currentDate: NOW,
        typ: 'JWT',
      });
      expect(protectedHeader).toStrictEqual({ alg, kid: signer.kid, typ: 'JWT' });
      expect(payload).toStrictEqual(buildClientAssertionClaims(INPUT));
    },
  );

  it('signs exactly b64u(header).b64u(payload) and appends the signature', async () => {
    // Prepare
    const seen: Uint8Array[] = [];
    const signer: ClientAssertionSigner = {
      alg: 'ES384',
      kid: 'kid-1',
      sign: async (input) => {
        seen.push(input);
        return new Uint8Array(96).fill(7);
      },
    };
    // Act
    const jwt = await createClientAssertion(signer, INPUT);
    // Assess
    const expectedInput = jwsSigningInput(
      { alg: 'ES384', kid: 'kid-1', typ: 'JWT' },
      buildClientAssertionClaims(INPUT),
    );
    expect(Buffer.from(seen[0]!).toString('ascii')).toBe(expectedInput);
    expect(jwt).toBe(`${expectedInput}.${Buffer.alloc(96, 7).toString('base64url')}`);
    expect(decodeProtectedHeader(jwt)).toStrictEqual({ alg: 'ES384', kid: 'kid-1', typ: 'JWT' });
  });

  it.each([
    ['ES384', 64, 'the ES384 signer returned a 64-byte signature; expected 96 bytes (r‖s)'],
    ['ES384', 104, 'the ES384 signer returned a 104-byte signature; expected 96 bytes (r‖s)'],
    ['RS384', 0, 'the RS384 signer returned a 0-byte signature; expected 256-512 bytes'],
  ] as const)(
    'rejects an %s signature of %i bytes (a DER signature passed through unconverted)',
    async (alg, length, message) => {
      const signer: ClientAssertionSigner = { alg, kid: 'k', sign: async () => new Uint8Array(length) };
      await expect(createClientAssertion(signer, INPUT)).rejects.toMatchObject({
        name: 'SigningError',
        code: 'ERR_SIGNING',
        message,
      });
    },
  );

  it('refuses a signing input over the 4096 bytes KMS can sign', async () => {
    const signer: ClientAssertionSigner = { alg: 'ES384', kid: 'k', sign: async () => new Uint8Array(96) };
    const tokenUrl = `https://ehr.example.org/${'a'.repeat(4000)}`;
    await expect(createClientAssertion(signer, { ...INPUT, tokenUrl })).rejects.toMatchObject({
      code: 'ERR_CONFIGURATION',
      message: expect.stringMatching(
        /^the client assertion's signing input is \d+ bytes; at most 4096 can be signed/,
      ),
    });
  });
});
