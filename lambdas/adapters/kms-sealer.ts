import {
  DecryptCommand,
  type DecryptCommandOutput,
  EncryptCommand,
  type EncryptCommandOutput,
} from '@aws-sdk/client-kms';
import { SealedTokenError } from '../errors.js';
import { type KmsClientLike, kmsFailure } from './kms-public-keys.js';

/**
 * Access tokens cross Step Functions state, which anyone with console access
 * can read in the execution history; they cross it sealed. The encryption
 * context (`{ sourceId, executionId }`) is bound to the ciphertext, so a token
 * sealed for one execution or source cannot be opened for another.
 */
export interface TokenSealer {
  seal(plaintext: string, context: Record<string, string>): Promise<string>;
  open(sealed: string, context: Record<string, string>): Promise<string>;
}

export const KMS_SEAL_PREFIX = 'kms1.';

/** KMS `Encrypt` takes at most 4096 bytes of plaintext. */
const MAX_PLAINTEXT_BYTES = 4096;

/** Failures that mean "this ciphertext is not for you", as opposed to KMS being unavailable. */
const OPEN_REFUSALS = new Set(['InvalidCiphertextException', 'IncorrectKeyException']);

export function assertSealingContext(context: Record<string, string>): void {
  if (context === null || typeof context !== 'object' || Object.keys(context).length === 0) {
    throw new SealedTokenError(
      'sealing context must be a non-empty object such as { sourceId, executionId }',
    );
  }
  for (const [key, value] of Object.entries(context)) {
    if (typeof value !== 'string' || value === '') {
      throw new SealedTokenError(`sealing context ${key} must be a non-empty string`);
    }
  }
}

export interface KmsSealerOptions {
  readonly kms: KmsClientLike;
  /** A symmetric ENCRYPT_DECRYPT key (id, ARN or alias). */
  readonly keyId: string;
}

export function createKmsSealer(options: KmsSealerOptions): TokenSealer {
  const { kms, keyId } = options;
  return {
    async seal(plaintext, context) {
      assertSealingContext(context);
      const bytes = Buffer.from(plaintext, 'utf8');
      if (bytes.length > MAX_PLAINTEXT_BYTES) {
        throw new SealedTokenError(
          `cannot seal ${bytes.length} bytes with KMS Encrypt (at most ${MAX_PLAINTEXT_BYTES})`,
        );
      }
      let output: EncryptCommandOutput;
      try {
        output = (await kms.send(
          new EncryptCommand({ KeyId: keyId, Plaintext: bytes, EncryptionContext: { ...context } }),
        )) as EncryptCommandOutput;
      } catch (error) {
        throw kmsFailure(error, 'Encrypt', keyId);
      }
      if (!output.CiphertextBlob)
        throw new SealedTokenError(`KMS Encrypt with key ${keyId} returned no ciphertext`);
      return `${KMS_SEAL_PREFIX}${Buffer.from(output.CiphertextBlob).toString('base64url')}`;
    },

    async open(sealed, context) {
      assertSealingContext(context);
      if (typeof sealed !== 'string' || !sealed.startsWith(KMS_SEAL_PREFIX)) {
        throw new SealedTokenError(
          `sealed token does not start with ${KMS_SEAL_PREFIX}; was it sealed by this sealer?`,
        );
      }
      const body = sealed.slice(KMS_SEAL_PREFIX.length);
      if (!/^[A-Za-z0-9_-]+$/.test(body))
        throw new SealedTokenError('sealed token is not base64url after its prefix');
      let output: DecryptCommandOutput;
      try {
        output = (await kms.send(
          new DecryptCommand({
            CiphertextBlob: Buffer.from(body, 'base64url'),
            EncryptionContext: { ...context },
            // Naming the key makes KMS refuse a ciphertext made under any other key.
            KeyId: keyId,
          }),
        )) as DecryptCommandOutput;
      } catch (error) {
        const name = error instanceof Error ? error.name : '';
        if (OPEN_REFUSALS.has(name)) {
          throw new SealedTokenError(
            `sealed token cannot be opened with key ${keyId} and this context (${name}): tampered with, or sealed for another execution`,
            { cause: error },
          );
        }
        throw kmsFailure(error, 'Decrypt', keyId);
      }
      if (!output.Plaintext)
        throw new SealedTokenError(`KMS Decrypt with key ${keyId} returned no plaintext`);
      return Buffer.from(output.Plaintext).toString('utf8');
    },
  };
}
