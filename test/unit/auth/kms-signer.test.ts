import { KMSServiceException } from '@aws-sdk/client-kms';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { getKmsJwks } from '../../../lambdas/adapters/kms-public-keys.js';
import { createKmsSigner } from '../../../lambdas/adapters/kms-signer.js';
import { createClientAssertion } from '../../../lambdas/core/auth/client-assertion.js';
import { KmsStandIn } from '../../support/kms-stand-in.js';

const NOW = new Date('2026-03-01T12:00:00Z');
const TOKEN_URL = 'https://ehr.example.org/token';

describe('createKmsSigner', () => {
  it.each([
    ['ES384', 'ECC_NIST_P384', 'ECDSA_SHA_384'],
    ['RS384', 'RSA_2048', 'RSASSA_PKCS1_V1_5_SHA_384'],
    ['RS384', 'RSA_4096', 'RSASSA_PKCS1_V1_5_SHA_384'],
  ] as const)(
    'signs %s assertions with a %s key that jose verifies against the KMS-derived JWKS',
    async (alg, keySpec, signingAlgorithm) => {
      // Prepare
      const kms = new KmsStandIn();
      const { KeyId, Arn } = kms.createKey({ KeySpec: keySpec, KeyUsage: 'SIGN_VERIFY' });
      const signer = await createKmsSigner({ kms, keyId: KeyId });
      // Act
      const jwt = await createClientAssertion(signer, {
        clientId: 'c1',
        tokenUrl: TOKEN_URL,
        now: NOW,
        jti: 'j1',
      });
      // Assess
      const jwks = await getKmsJwks(kms, [KeyId]);
      const { protectedHeader, payload } = await jwtVerify(jwt, createLocalJWKSet(jwks as never), {
        currentDate: NOW,
        audience: TOKEN_URL,
        algorithms: [alg],
      });
      expect(protectedHeader).toStrictEqual({ alg, kid: signer.kid, typ: 'JWT' });
      expect(payload.iss).toBe('c1');
      const [signCall] = kms.callsOf('Sign');
      expect(signCall!.input).toStrictEqual({
        KeyId: Arn,
        Message: new Uint8Array(Buffer.from(jwt.split('.').slice(0, 2).join('.'), 'ascii')),
        MessageType: 'RAW',
        SigningAlgorithm: signingAlgorithm,
      });
    },
  );

  it('calls GetPublicKey once per key and container, however many signers and signatures', async () => {
    const kms = new KmsStandIn();
    const { KeyId } = kms.createKey({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' });
    for (let i = 0; i < 3; i += 1) {
      const signer = await createKmsSigner({ kms, keyId: KeyId });
      await createClientAssertion(signer, { clientId: 'c1', tokenUrl: TOKEN_URL, now: NOW, jti: `j${i}` });
    }
    expect(kms.callsOf('GetPublicKey')).toHaveLength(1);
    expect(kms.callsOf('Sign')).toHaveLength(3);
  });

  it('signs with the ARN behind an alias, so the kid and the signature always match', async () => {
    const kms = new KmsStandIn();
    const { KeyId, Arn } = kms.createKey({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' });
    kms.createAlias('alias/fhir-export-signing', KeyId);
    const signer = await createKmsSigner({ kms, keyId: 'alias/fhir-export-signing', alg: 'ES384' });
    await signer.sign(new Uint8Array([1]));
    expect(signer.keyArn).toBe(Arn);
    expect(kms.callsOf('Sign')[0]!.input.KeyId).toBe(Arn);
  });

  it('fails with a ConfigurationError naming the key when it does not exist', async () => {
    const kms = new KmsStandIn();
    await expect(createKmsSigner({ kms, keyId: 'alias/nope' })).rejects.toMatchObject({
      name: 'ConfigurationError',
      message: expect.stringMatching(/^KMS GetPublicKey with key alias\/nope failed: NotFoundException: /),
    });
  });

  it.each([
    [
      'a symmetric key',
      { KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT' },
      /failed: UnsupportedOperationException/,
    ],
    [
      'a P-256 key',
      { KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' },
      /has KeySpec ECC_NIST_P256; use ECC_NIST_P384 \(ES384\) or RSA_2048\/3072\/4096 \(RS384\)$/,
    ],
  ] as const)('refuses %s', async (_, spec, message) => {
    const kms = new KmsStandIn();
    const { KeyId } = kms.createKey(spec);
    await expect(createKmsSigner({ kms, keyId: KeyId })).rejects.toMatchObject({
      code: 'ERR_CONFIGURATION',
      message: expect.stringMatching(message),
    });
  });

  it('refuses an alg that the key spec cannot produce', async () => {
    const kms = new KmsStandIn();
    const { KeyId } = kms.createKey({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' });
    await expect(createKmsSigner({ kms, keyId: KeyId, alg: 'ES384' })).rejects.toThrow(
      `KMS key ${KeyId} has KeySpec RSA_2048, which signs RS384, not ES384`,
    );
  });

  it('turns throttling into a TransientServerError the state machine retries', async () => {
    const kms = new KmsStandIn();
    const { KeyId } = kms.createKey({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' });
    const signer = await createKmsSigner({ kms, keyId: KeyId });
    kms.failNext(
      'Sign',
      new KMSServiceException({
        name: 'ThrottlingException',
        $fault: 'client',
        $metadata: {},
        message: 'Rate exceeded',
      }),
    );
    await expect(signer.sign(new Uint8Array([1]))).rejects.toMatchObject({
      name: 'TransientServerError',
      message: `KMS Sign with key ${KeyId} failed: ThrottlingException: Rate exceeded`,
    });
  });

  it('refuses a signing input over 4096 bytes before calling KMS', async () => {
    const kms = new KmsStandIn();
    const { KeyId } = kms.createKey({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' });
    const signer = await createKmsSigner({ kms, keyId: KeyId });
    await expect(signer.sign(new Uint8Array(4097))).rejects.toThrow(
      'signing input is 4097 bytes; KMS signs at most 4096 bytes in RAW mode',
    );
    expect(kms.callsOf('Sign')).toHaveLength(0);
  });

  it('rejects a malformed DER signature from KMS with a SigningError', async () => {
    const kms = new KmsStandIn();
    const { KeyId } = kms.createKey({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' });
    const signer = await createKmsSigner({ kms, keyId: KeyId });
    const broken = {
      send: async (command: unknown) => ({
        ...((await kms.send(command)) as object),
        Signature: new Uint8Array([0x30, 0x01, 0x02]),
      }),
    };
    const brokenSigner = await createKmsSigner({ kms: broken, keyId: KeyId });
    await expect(brokenSigner.sign(new Uint8Array([1]))).rejects.toMatchObject({
      name: 'SigningError',
      message: 'ECDSA signature is not valid DER: too short',
    });
    expect(await signer.sign(new Uint8Array([1]))).toHaveLength(96);
  });
});
