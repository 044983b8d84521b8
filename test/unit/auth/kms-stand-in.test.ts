import {
  DecryptCommand,
  EncryptCommand,
  GetPublicKeyCommand,
  SignCommand,
  VerifyCommand,
} from '@aws-sdk/client-kms';
import { describe, expect, it } from 'vitest';
import { KmsStandIn } from '../../support/kms-stand-in.js';

/** The stand-in must fail the way KMS does, or tests against it prove nothing. */
describe('KmsStandIn behaves like KMS', () => {
  const kms = new KmsStandIn();
  const signing = kms.createKey({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' });
  const symmetric = kms.createKey();
  const message = new Uint8Array([1, 2, 3]);

  it.each([
    [
      'an unknown key id',
      new SignCommand({
        KeyId: 'b1c2',
        Message: message,
        MessageType: 'RAW',
        SigningAlgorithm: 'ECDSA_SHA_384',
      }),
      'NotFoundException',
    ],
    [
      'the wrong algorithm',
      new SignCommand({
        KeyId: signing.KeyId,
        Message: message,
        MessageType: 'RAW',
        SigningAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_384',
      }),
      'InvalidKeyUsageException',
    ],
    [
      'a message over 4096 bytes',
      new SignCommand({
        KeyId: signing.KeyId,
        Message: new Uint8Array(4097),
        MessageType: 'RAW',
        SigningAlgorithm: 'ECDSA_SHA_384',
      }),
      'ValidationException',
    ],
    [
      'signing with a symmetric key',
      new SignCommand({
        KeyId: symmetric.KeyId,
        Message: message,
        MessageType: 'RAW',
        SigningAlgorithm: 'ECDSA_SHA_384',
      }),
      'InvalidKeyUsageException',
    ],
    [
      'encrypting with a signing key',
      new EncryptCommand({ KeyId: signing.KeyId, Plaintext: message }),
      'InvalidKeyUsageException',
    ],
    [
      'GetPublicKey of a symmetric key',
      new GetPublicKeyCommand({ KeyId: symmetric.KeyId }),
      'UnsupportedOperationException',
    ],
    [
      'a bad signature',
      new VerifyCommand({
        KeyId: signing.KeyId,
        Message: message,
        MessageType: 'RAW',
        SigningAlgorithm: 'ECDSA_SHA_384',
        Signature: new Uint8Array(102),
      }),
      'KMSInvalidSignatureException',
    ],
  ])('rejects %s with %s', async (_, command, name) => {
    await expect(kms.send(command)).rejects.toMatchObject({ name });
  });

  it('signs with DER and verifies its own signatures', async () => {
    const { Signature } = (await kms.send(
      new SignCommand({
        KeyId: signing.KeyId,
        Message: message,
        MessageType: 'RAW',
        SigningAlgorithm: 'ECDSA_SHA_384',
      }),
    )) as { Signature: Uint8Array };
    expect(Signature[0]).toBe(0x30);
    const verified = await kms.send(
      new VerifyCommand({
        KeyId: signing.KeyId,
        Message: message,
        MessageType: 'RAW',
        SigningAlgorithm: 'ECDSA_SHA_384',
        Signature,
      }),
    );
    expect(verified).toMatchObject({ SignatureValid: true });
  });

  it('binds the encryption context: a different one fails with InvalidCiphertextException', async () => {
    const { CiphertextBlob } = (await kms.send(
      new EncryptCommand({ KeyId: symmetric.KeyId, Plaintext: message, EncryptionContext: { a: '1' } }),
    )) as { CiphertextBlob: Uint8Array };
    await expect(
      kms.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: { a: '2' } })),
    ).rejects.toMatchObject({
      name: 'InvalidCiphertextException',
    });
    const other = kms.createKey();
    await expect(
      kms.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: { a: '1' }, KeyId: other.KeyId })),
    ).rejects.toMatchObject({
      name: 'IncorrectKeyException',
    });
    expect(
      await kms.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: { a: '1' } })),
    ).toMatchObject({
      Plaintext: message,
      KeyId: symmetric.Arn,
    });
  });
});
