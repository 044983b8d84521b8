import { generateKeyPairSync, sign, verify } from 'node:crypto';
import fc from 'fast-check';
import { calculateJwkThumbprint } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  buildJwks,
  derToJoseSignature,
  jwkThumbprint,
  type PublishedJwk,
  toPublicJwk,
  toPublishedJwk,
} from '../../../lambdas/core/auth/jwk.js';
import { generatePrivateJwk } from '../../support/test-keys.js';

/** RFC 7638 §3.1's example key and its published thumbprint. */
const RFC7638_KEY = {
  kty: 'RSA',
  n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
  e: 'AQAB',
  alg: 'RS256',
  kid: '2011-04-29',
};

describe('jwkThumbprint', () => {
  it('matches the RFC 7638 §3.1 example', () => {
    expect(jwkThumbprint(RFC7638_KEY)).toBe('NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
  });

  it.each(['ES384', 'RS384'] as const)(
    'agrees with jose for %s keys, private members ignored',
    async (alg) => {
      for (let i = 0; i < 5; i += 1) {
        const jwk = generatePrivateJwk(alg);
        expect(jwkThumbprint(jwk)).toBe(await calculateJwkThumbprint(jwk as never, 'sha256'));
      }
    },
  );

  it.each([
    [{ kty: 'oct', k: 'abc' }, 'JWK kty must be EC or RSA'],
    [
      { kty: 'EC', crv: 'P-256', x: 'a', y: 'b' },
      'EC JWK crv must be P-384 (ES384 is the only EC algorithm SMART Backend Services names)',
    ],
    [{ kty: 'EC', crv: 'P-384', x: 'a+b', y: 'b' }, 'EC JWK member x must be a base64url string'],
    [{ kty: 'RSA', n: 'abc' }, 'RSA JWK member e must be a base64url string'],
    ['not a jwk', 'JWK must be a JSON object'],
  ])('rejects %j', (jwk, message) => {
    expect(() => jwkThumbprint(jwk)).toThrow(expect.objectContaining({ code: 'ERR_CONFIGURATION', message }));
  });
});

describe('toPublishedJwk and buildJwks', () => {
  it('publishes only public members plus kid, alg and use', () => {
    const jwk = generatePrivateJwk('ES384');
    expect(toPublishedJwk(jwk)).toStrictEqual({
      kty: 'EC',
      crv: 'P-384',
      x: jwk.x,
      y: jwk.y,
      kid: jwkThumbprint(jwk),
      alg: 'ES384',
      use: 'sig',
    });
    const rsa = generatePrivateJwk('RS384');
    expect(toPublishedJwk(rsa, { kid: 'my-kid' })).toStrictEqual({
      kty: 'RSA',
      n: rsa.n,
      e: rsa.e,
      kid: 'my-kid',
      alg: 'RS384',
      use: 'sig',
    });
  });

  it('rejects an alg that does not fit the key', () => {
    expect(() => toPublishedJwk(generatePrivateJwk('RS384'), { alg: 'ES384' })).toThrow(
      'alg ES384 does not match a RSA key (expected RS384)',
    );
  });

  it('holds several keys for rotation', () => {
    const keys = [toPublishedJwk(generatePrivateJwk('ES384')), toPublishedJwk(generatePrivateJwk('RS384'))];
    expect(buildJwks(keys)).toStrictEqual({ keys });
  });

  it.each([
    [
      'a private member',
      (key: PublishedJwk) => ({ ...key, d: 'secret' }),
      'keys[0] has private member d; refusing to publish it',
    ],
    [
      'no kid',
      (key: PublishedJwk) => ({ ...key, kid: '' }),
      'keys[0] has no kid; EHRs select the key by kid',
    ],
  ])('refuses %s', (_, mutate, message) => {
    const key = mutate(toPublishedJwk(generatePrivateJwk('ES384'))) as PublishedJwk;
    expect(() => buildJwks([key])).toThrow(expect.objectContaining({ code: 'ERR_CONFIGURATION', message }));
  });

  it('refuses a repeated kid', () => {
    const key = toPublishedJwk(generatePrivateJwk('ES384'));
    expect(() => buildJwks([key, key])).toThrow(`keys[1] repeats kid ${key.kid}`);
  });

  it('strips unknown members through toPublicJwk', () => {
    const jwk = { ...generatePrivateJwk('RS384'), x5c: ['cert'] };
    expect(Object.keys(toPublicJwk(jwk)).sort()).toStrictEqual(['e', 'kty', 'n']);
  });
});

/** Minimal DER for an unsigned big-endian integer, the way KMS and OpenSSL encode r and s. */
function derInteger(value: Uint8Array, extraZeros = 0): number[] {
  let start = 0;
  while (start < value.length - 1 && value[start] === 0) start += 1;
  const bytes = [...value.subarray(start)];
  if ((bytes[0] ?? 0) & 0x80) bytes.unshift(0);
  for (let i = 0; i < extraZeros; i += 1) bytes.unshift(0);
  return [0x02, bytes.length, ...bytes];
}

function derSignature(r: Uint8Array, s: Uint8Array, extraZeros: [number, number] = [0, 0]): Uint8Array {
  const body = [...derInteger(r, extraZeros[0]), ...derInteger(s, extraZeros[1])];
  const length = body.length < 0x80 ? [body.length] : [0x81, body.length];
  return new Uint8Array([0x30, ...length, ...body]);
}

describe('derToJoseSignature', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });

  it('turns at least 500 real P-384 DER signatures, short and 0x00-padded ones included, into r‖s that verify', () => {
    const seen = { total: 0, short: 0, padded: 0 };
    // Natural short components are ~1 in 128 signatures: keep going until a few have been seen.
    while (seen.total < 500 || (seen.short < 2 && seen.total < 10_000)) {
      const message = Buffer.from(`signing input ${seen.total}`);
      const der = sign('sha384', message, { key: privateKey, dsaEncoding: 'der' });
      const jose = derToJoseSignature(der);
      expect(jose).toHaveLength(96);
      expect(verify('sha384', message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, jose)).toBe(true);
      const rLength = der[3]!;
      const sLength = der[5 + rLength]!;
      if (rLength < 48 || sLength < 48) seen.short += 1;
      if (rLength === 49 || sLength === 49) seen.padded += 1;
      seen.total += 1;
    }
    expect(seen.short).toBeGreaterThanOrEqual(2);
    expect(seen.padded).toBeGreaterThan(100);
  });

  it('normalises short r/s and any leading 0x00 padding (property, 2000 cases)', () => {
    const component = fc
      .tuple(fc.uint8Array({ minLength: 48, maxLength: 48 }), fc.integer({ min: 0, max: 47 }))
      .map(([bytes, zeros]) => {
        // Force leading zero bytes so short components are common, not 1-in-256.
        const forced = new Uint8Array(bytes);
        forced.fill(0, 0, zeros);
        if (forced.every((byte) => byte === 0)) forced[47] = 1;
        return forced;
      });
    fc.assert(
      fc.property(
        component,
        component,
        fc.integer({ min: 0, max: 1 }),
        fc.integer({ min: 0, max: 1 }),
        (r, s, zr, zs) => {
          const out = derToJoseSignature(derSignature(r, s, [zr, zs]));
          expect(Buffer.from(out.subarray(0, 48))).toStrictEqual(Buffer.from(r));
          expect(Buffer.from(out.subarray(48))).toStrictEqual(Buffer.from(s));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('round-trips real signatures re-encoded with forced padding and verifies them', () => {
    for (let i = 0; i < 50; i += 1) {
      const message = Buffer.from(`m${i}`);
      const p1363 = sign('sha384', message, { key: privateKey, dsaEncoding: 'ieee-p1363' });
      const der = derSignature(p1363.subarray(0, 48), p1363.subarray(48), [1, 1]);
      const out = derToJoseSignature(der);
      expect(Buffer.from(out)).toStrictEqual(p1363);
      expect(verify('sha384', message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, out)).toBe(true);
    }
  });

  it('handles r = 1 and s = 1 (the shortest possible components)', () => {
    const one = new Uint8Array(48);
    one[47] = 1;
    const out = derToJoseSignature(new Uint8Array([0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]));
    expect(Buffer.from(out)).toStrictEqual(Buffer.concat([one, one]));
  });

  it('accepts the long-form SEQUENCE length used for P-521', () => {
    const r = new Uint8Array(66).fill(0x7f);
    const der = derSignature(r, r);
    expect(der[1]).toBe(0x81);
    expect(Buffer.from(derToJoseSignature(der, 66))).toStrictEqual(Buffer.concat([r, r]));
  });

  const r48 = new Uint8Array(48).fill(0x11);
  const valid = derSignature(r48, r48);
  const malformed: Array<[string, Uint8Array, string]> = [
    ['empty', new Uint8Array(), 'too short'],
    ['not a SEQUENCE', new Uint8Array([0x31, ...valid.subarray(1)]), 'does not start with a SEQUENCE'],
    [
      'a SEQUENCE longer than the buffer',
      new Uint8Array([0x30, valid[1]! + 1, ...valid.subarray(2)]),
      'SEQUENCE length does not match the signature length',
    ],
    [
      'trailing bytes',
      new Uint8Array([...valid, 0x00]),
      'SEQUENCE length does not match the signature length',
    ],
    [
      'r not an INTEGER',
      new Uint8Array([0x30, 0x06, 0x04, 0x01, 0x01, 0x02, 0x01, 0x01]),
      'r is not an INTEGER',
    ],
    ['an empty r', new Uint8Array([0x30, 0x07, 0x02, 0x00, 0x02, 0x01, 0x01, 0x00, 0x00]), 'r is empty'],
    ['a negative r', new Uint8Array([0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01]), 'r is negative'],
    ['a zero s', new Uint8Array([0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x02, 0x00, 0x00]), 's is zero'],
    ['r longer than 48 bytes', derSignature(new Uint8Array(49).fill(0x22), r48), 'r is longer than 48 bytes'],
    [
      'r running past the end',
      new Uint8Array([0x30, 0x06, 0x02, 0x09, 0x01, 0x02, 0x01, 0x01]),
      'r runs past the end',
    ],
    ['s missing', new Uint8Array([0x30, 0x06, 0x02, 0x04, 0x01, 0x01, 0x01, 0x01]), 's is not an INTEGER'],
    [
      'trailing bytes after s',
      new Uint8Array([0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x05]),
      'trailing bytes after s',
    ],
    [
      'a three-byte length',
      new Uint8Array([0x30, 0x83, 0x00, 0x00, 0x06, 0x02, 0x01, 0x01]),
      'unsupported length encoding',
    ],
    [
      'an indefinite length',
      new Uint8Array([0x30, 0x80, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]),
      'unsupported length encoding',
    ],
  ];
  it.each(malformed)('rejects %s', (_, der, reason) => {
    expect(() => derToJoseSignature(der)).toThrow(
      expect.objectContaining({
        name: 'SigningError',
        code: 'ERR_SIGNING',
        message: `ECDSA signature is not valid DER: ${reason}`,
      }),
    );
  });
});
