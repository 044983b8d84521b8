import { randomBytes } from 'node:crypto';
import { CompactEncrypt, compactDecrypt } from 'jose';
import { ConfigurationError, SealedTokenError } from '../errors.js';
import { assertSealingContext, type TokenSealer } from './kms-sealer.js';

export type { TokenSealer } from './kms-sealer.js';

/**
 * Local mode's sealer: a JWE (`dir` + `A256GCM`) under a 32-byte key that
 * stays on the laptop. The context travels in the protected header, which
 * AES-GCM authenticates, and must match exactly on open: the same guarantee
 * KMS gives with an encryption context.
 */

export const LOCAL_SEAL_PREFIX = 'local1.';
const KEY_BYTES = 32;

function canonicalContext(context: Record<string, string>): string {
  return JSON.stringify(
    Object.fromEntries(Object.entries(context).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
  );
}

function keyBytes(key: Uint8Array | string): Uint8Array {
  const bytes = typeof key === 'string' ? Buffer.from(key, /[+/]/.test(key) ? 'base64' : 'base64url') : key;
  if (!(bytes instanceof Uint8Array) || bytes.length !== KEY_BYTES) {
    throw new ConfigurationError(
      `local sealing key must be ${KEY_BYTES} bytes (or their base64/base64url encoding); got ${bytes?.length ?? 0} bytes`,
    );
  }
  return new Uint8Array(bytes);
}

/** A fresh random key, base64url-encoded, for a local sealing key file or variable. */
export function generateLocalSealingKey(): string {
  return randomBytes(KEY_BYTES).toString('base64url');
}

export function createLocalSealer(options: { readonly key: Uint8Array | string }): TokenSealer {
  const key = keyBytes(options.key);
  return {
    async seal(plaintext, context) {
      assertSealingContext(context);
      const jwe = await new CompactEncrypt(new TextEncoder().encode(plaintext))
        .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', ctx: canonicalContext(context) })
        .encrypt(key);
      return `${LOCAL_SEAL_PREFIX}${jwe}`;
    },

    async open(sealed, context) {
      assertSealingContext(context);
      if (typeof sealed !== 'string' || !sealed.startsWith(LOCAL_SEAL_PREFIX)) {
        throw new SealedTokenError(
          `sealed token does not start with ${LOCAL_SEAL_PREFIX}; was it sealed by this sealer?`,
        );
      }
      let result: Awaited<ReturnType<typeof compactDecrypt>>;
      try {
        result = await compactDecrypt(sealed.slice(LOCAL_SEAL_PREFIX.length), key, {
          keyManagementAlgorithms: ['dir'],
          contentEncryptionAlgorithms: ['A256GCM'],
        });
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        throw new SealedTokenError(
          `sealed token cannot be opened with the local sealing key (${typeof code === 'string' ? code : 'invalid'}): tampered with, or sealed under another key`,
          { cause: error },
        );
      }
      if (result.protectedHeader.ctx !== canonicalContext(context)) {
        throw new SealedTokenError('sealed token was sealed for another context (source or execution)');
      }
      return new TextDecoder().decode(result.plaintext);
    },
  };
}
