import { createPublicKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  getKmsJwks,
  getKmsPublicJwk,
  getKmsSigningKey,
  spkiToPublicJwk,
} from '../../../lambdas/adapters/kms-public-keys.js';
import { jwkThumbprint } from '../../../lambdas/core/auth/jwk.js';
import { KmsStandIn } from '../../support/kms-stand-in.js';

describe('KMS public keys', () => {
  it.each([
    ['ECC_NIST_P384', 'ES384', ['crv', 'x', 'y']],
    ['RSA_3072', 'RS384', ['n', 'e']],
  ] as const)(
    'publishes a %s key as an %s JWK with a thumbprint kid and use sig',
    async (keySpec, alg, members) => {
      // Prepare
      const kms = new KmsStandIn();
      const { KeyId } = kms.createKey({ KeySpec: keySpec, KeyUsage: 'SIGN_VERIFY' });
      // Act
      const jwk = await getKmsPublicJwk(kms, KeyId);
      // Assess
      expect(Object.keys(jwk).sort()).toStrictEqual(['alg', 'kid', 'kty', 'use', ...members].sort());
      expect(jwk).toMatchObject({ alg, use: 'sig', kid: jwkThumbprint(jwk) });
      expect(kms.callsOf('GetPublicKey')[0]!.input).toStrictEqual({ KeyId });
    },
  );

  it('builds one JWKS from several keys (rotation)', async () => {
    const kms = new KmsStandIn();
    const current = kms.createKey({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' });
    const next = kms.createKey({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' });
    const jwks = await getKmsJwks(kms, [current.KeyId, next.KeyId]);
    expect(jwks.keys.map((key) => key.alg)).toStrictEqual(['ES384', 'RS384']);
    expect(new Set(jwks.keys.map((key) => key.kid)).size).toBe(2);
  });

  it('reports the key ARN, spec and KMS signing algorithm', async () => {
    const kms = new KmsStandIn();
    const { KeyId, Arn } = kms.createKey({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' });
    expect(await getKmsSigningKey(kms, KeyId)).toMatchObject({
      keyArn: Arn,
      keySpec: 'RSA_2048',
      alg: 'RS384',
      signingAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_384',
    });
  });

  it('does not cache a failure: the next call asks KMS again', async () => {
    const kms = new KmsStandIn();
    await expect(getKmsSigningKey(kms, 'alias/later')).rejects.toMatchObject({ code: 'ERR_CONFIGURATION' });
    const { KeyId } = kms.createKey({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' });
    kms.createAlias('alias/later', KeyId);
    expect((await getKmsSigningKey(kms, 'alias/later')).alg).toBe('ES384');
    expect(kms.callsOf('GetPublicKey')).toHaveLength(2);
  });

  it('rejects an empty key id before calling KMS', async () => {
    const kms = new KmsStandIn();
    await expect(getKmsSigningKey(kms, ' ')).rejects.toThrow(
      'kmsKeyId must be a non-empty string (key id, ARN or alias)',
    );
    expect(kms.calls).toHaveLength(0);
  });

  it('converts SPKI DER to the same JWK node:crypto exports', () => {
    const kms = new KmsStandIn();
    const { KeyId } = kms.createKey({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' });
    return kms.send(new (require('@aws-sdk/client-kms').GetPublicKeyCommand)({ KeyId })).then((output) => {
      const der = (output as { PublicKey: Uint8Array }).PublicKey;
      const expected = createPublicKey({ key: Buffer.from(der), format: 'der', type: 'spki' }).export({
        format: 'jwk',
      });
      expect(spkiToPublicJwk(der)).toStrictEqual(expected);
    });
  });

  it('rejects garbage SPKI', () => {
    expect(() => spkiToPublicJwk(new Uint8Array([1, 2, 3]))).toThrow(/^public key is not valid SPKI DER/);
  });
});
