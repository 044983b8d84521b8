import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalSigner, createLocalSignerFromJwk } from '../../../lambdas/adapters/local-signer.js';
import { createClientAssertion } from '../../../lambdas/core/auth/client-assertion.js';
import { buildJwks } from '../../../lambdas/core/auth/jwk.js';
import { generatePrivateJwk } from '../../support/test-keys.js';

const NOW = new Date('2026-03-01T12:00:00Z');
const TOKEN_URL = 'https://ehr.example.org/token';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'local-signer-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('createLocalSigner', () => {
  it.each(['ES384', 'RS384'] as const)(
    'signs %s assertions that jose verifies against the public JWKS',
    async (alg) => {
      // Prepare
      const jwk = generatePrivateJwk(alg);
      const signer = createLocalSignerFromJwk(jwk);
      // Act
      const jwt = await createClientAssertion(signer, {
        clientId: 'c1',
        tokenUrl: TOKEN_URL,
        now: NOW,
        jti: 'j1',
      });
      // Assess
      const jwks = buildJwks([signer.publicJwk]);
      const { payload } = await jwtVerify(jwt, createLocalJWKSet(jwks as never), {
        currentDate: NOW,
        audience: TOKEN_URL,
      });
      expect(payload.jti).toBe('j1');
      expect(signer).toMatchObject({ alg, kid: jwk.kid });
      expect(signer.publicJwk).not.toHaveProperty('d');
    },
  );

  it('reads a private JWK from a file', async () => {
    const jwk = generatePrivateJwk('ES384');
    const file = join(dir, `${jwk.kid}.private.jwk.json`);
    await writeFile(file, JSON.stringify(jwk));
    const signer = await createLocalSigner(file);
    expect(signer.kid).toBe(jwk.kid);
    expect(await signer.sign(new Uint8Array([1, 2, 3]))).toHaveLength(96);
  });

  it('names a missing file without reading anything else', async () => {
    const file = join(dir, 'missing.json');
    await expect(createLocalSigner(file)).rejects.toMatchObject({
      code: 'ERR_CONFIGURATION',
      message: `private key file ${file} cannot be read (ENOENT)`,
    });
  });

  it('rejects a file that is not JSON', async () => {
    const file = join(dir, 'garbage.json');
    // A PEM where a JWK belongs: the likeliest mistake (a public key's header, so no key material).
    await writeFile(file, '-----BEGIN PUBLIC KEY-----\n');
    await expect(createLocalSigner(file)).rejects.toMatchObject({
      message: `private key file ${file} is not JSON; expected a private JWK`,
    });
  });

  it('names the field a file is missing', async () => {
    const { kid: _, ...jwk } = generatePrivateJwk('RS384');
    const file = join(dir, 'no-kid.json');
    await writeFile(file, JSON.stringify(jwk));
    await expect(createLocalSigner(file)).rejects.toMatchObject({
      message: `private key file ${file}: kid is required (a non-empty string: the key id registered with the EHR)`,
    });
  });

  const es = generatePrivateJwk('ES384');
  const rsa = generatePrivateJwk('RS384');
  const without = (jwk: Record<string, string>, member: string) =>
    Object.fromEntries(Object.entries(jwk).filter(([key]) => key !== member));
  const bad: Array<[string, unknown, string]> = [
    [
      'no kid',
      without(es, 'kid'),
      'privateJwk.kid is required (a non-empty string: the key id registered with the EHR)',
    ],
    ['no alg', without(es, 'alg'), 'privateJwk.alg is required (one of RS384, ES384; got undefined)'],
    ['alg RS256', { ...rsa, alg: 'RS256' }, 'privateJwk.alg is required (one of RS384, ES384; got "RS256")'],
    [
      'no d (a public JWK)',
      without(es, 'd'),
      'privateJwk.d is required (the base64url private key; is this the public JWK?)',
    ],
    [
      'alg ES384 on an RSA key',
      { ...rsa, alg: 'ES384' },
      'privateJwk.kty must be EC for alg ES384 (got "RSA")',
    ],
    ['a P-256 key', { ...es, crv: 'P-256' }, 'privateJwk.crv must be P-384 for alg ES384'],
    ['use enc', { ...es, use: 'enc' }, 'privateJwk.use must be sig when present'],
    ['not an object', 'text', 'privateJwk must be a JSON object (got a string)'],
  ];
  it.each(bad)('rejects a JWK with %s, naming the field', (_, jwk, message) => {
    expect(() => createLocalSignerFromJwk(jwk)).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIGURATION', message }),
    );
  });

  it.each([
    ['a d that is not a P-384 scalar', { ...es, d: 'AAAA' }],
    ['a d from another key', { ...es, d: generatePrivateJwk('ES384').d }],
    [
      'RSA private members from another key',
      (() => {
        const { d, p, q, dp, dq, qi } = generatePrivateJwk('RS384');
        return { ...rsa, d: d!, p: p!, q: q!, dp: dp!, dq: dq!, qi: qi! };
      })(),
    ],
  ])('rejects %s without echoing key material', (_, jwk) => {
    try {
      createLocalSignerFromJwk(jwk);
      expect.unreachable();
    } catch (error) {
      expect(error).toMatchObject({
        code: 'ERR_CONFIGURATION',
        message: expect.stringMatching(/^privateJwk(: d does not belong| is not a usable private key)/),
      });
      expect((error as Error).message).not.toContain(jwk.d);
      expect((error as Error).message).not.toContain('kty' in jwk && jwk.kty === 'EC' ? es.x : rsa.n);
    }
  });

  it('rejects an RSA key under 2048 bits', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const jwk = { ...(privateKey.export({ format: 'jwk' }) as object), kid: 'small', alg: 'RS384' };
    expect(() => createLocalSignerFromJwk(jwk)).toThrow(
      'privateJwk is an RSA key of 1024 bits; at least 2048 are required',
    );
  });
});
