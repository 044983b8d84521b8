import { SignCommand, type SignCommandOutput } from '@aws-sdk/client-kms';
import type { AssertionAlgorithm, ClientAssertionSigner } from '../core/auth/client-assertion.js';
import { MAX_SIGNING_INPUT_BYTES } from '../core/auth/client-assertion.js';
import { derToJoseSignature, type PublishedJwk } from '../core/auth/jwk.js';
import { ConfigurationError, SigningError } from '../errors.js';
import { getKmsSigningKey, type KmsClientLike, kmsFailure } from './kms-public-keys.js';

/**
 * Signs client assertions with an asymmetric KMS key, so the private key never
 * exists outside KMS. Only the token-minting function holds `kms:Sign`.
 */

export interface KmsSigner extends ClientAssertionSigner {
  readonly keyArn: string;
  readonly publicJwk: PublishedJwk;
}

export interface KmsSignerOptions {
  readonly kms: KmsClientLike;
  /** Key id, ARN or alias. */
  readonly keyId: string;
  /** Fails fast if the key's spec implies another algorithm. @default derived from the key spec */
  readonly alg?: AssertionAlgorithm;
}

/** Resolves the key's public half once (cached per container), then signs on demand. */
export async function createKmsSigner(options: KmsSignerOptions): Promise<KmsSigner> {
  const { kms, keyId } = options;
  const key = await getKmsSigningKey(kms, keyId);
  if (options.alg !== undefined && options.alg !== key.alg) {
    throw new ConfigurationError(
      `KMS key ${keyId} has KeySpec ${key.keySpec}, which signs ${key.alg}, not ${options.alg}`,
    );
  }
  return {
    alg: key.alg,
    kid: key.publicJwk.kid,
    keyArn: key.keyArn,
    publicJwk: key.publicJwk,
    async sign(signingInput) {
      if (signingInput.length > MAX_SIGNING_INPUT_BYTES) {
        throw new ConfigurationError(
          `signing input is ${signingInput.length} bytes; KMS signs at most ${MAX_SIGNING_INPUT_BYTES} bytes in RAW mode`,
        );
      }
      let output: SignCommandOutput;
      try {
        output = (await kms.send(
          new SignCommand({
            KeyId: key.keyArn,
            Message: signingInput,
            // RAW: KMS hashes with SHA-384 itself, exactly what the JWS alg means.
            MessageType: 'RAW',
            SigningAlgorithm: key.signingAlgorithm,
          }),
        )) as SignCommandOutput;
      } catch (error) {
        throw kmsFailure(error, 'Sign', keyId);
      }
      if (!output.Signature || output.Signature.length === 0) {
        throw new SigningError(`KMS Sign with key ${keyId} returned no signature`);
      }
      return key.alg === 'ES384' ? derToJoseSignature(output.Signature) : new Uint8Array(output.Signature);
    },
  };
}
