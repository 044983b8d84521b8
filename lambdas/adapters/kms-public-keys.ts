import { createPublicKey } from 'node:crypto';
import { GetPublicKeyCommand, type GetPublicKeyCommandOutput } from '@aws-sdk/client-kms';
import type { AssertionAlgorithm } from '../core/auth/client-assertion.js';
import {
  buildJwks,
  type Jwks,
  type PublicJwk,
  type PublishedJwk,
  toPublicJwk,
  toPublishedJwk,
} from '../core/auth/jwk.js';
import { ConfigurationError, TransientServerError } from '../errors.js';

/**
 * The public half of our KMS signing keys, as the JWKS an EHR registers. The
 * private half never leaves KMS; `GetPublicKey` returns an SPKI DER blob that
 * node:crypto turns into a JWK.
 */

/**
 * The part of `KMSClient` we use. A real client fits; so does a test stand-in
 * that implements `send` for the commands below.
 */
export interface KmsClientLike {
  send(command: unknown): Promise<unknown>;
}

export type KmsSigningAlgorithm = 'ECDSA_SHA_384' | 'RSASSA_PKCS1_V1_5_SHA_384';

export interface KmsSigningKey {
  /** The key's ARN as KMS reports it; signing uses it so an alias moved mid-flight cannot change the key under a cached kid. */
  readonly keyArn: string;
  readonly keySpec: string;
  readonly alg: AssertionAlgorithm;
  readonly signingAlgorithm: KmsSigningAlgorithm;
  readonly publicJwk: PublishedJwk;
}

/** SMART Backend Services names ES384 and RS384; KMS key specs that can produce them. */
const KEY_SPECS: Record<string, { alg: AssertionAlgorithm; signingAlgorithm: KmsSigningAlgorithm }> = {
  ECC_NIST_P384: { alg: 'ES384', signingAlgorithm: 'ECDSA_SHA_384' },
  RSA_2048: { alg: 'RS384', signingAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_384' },
  RSA_3072: { alg: 'RS384', signingAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_384' },
  RSA_4096: { alg: 'RS384', signingAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_384' },
};

/** Client-side refusals that retrying cannot fix: a wrong key id, a disabled key, a missing grant. */
const CONFIGURATION_FAILURES = new Set([
  'NotFoundException',
  'DisabledException',
  'InvalidKeyUsageException',
  'KMSInvalidStateException',
  'AccessDeniedException',
  'AccessDeniedError',
  'UnsupportedOperationException',
  'InvalidArnException',
  'ValidationException',
  'UnrecognizedClientException',
]);

/**
 * Maps an SDK error to ours: configuration problems fail the execution at
 * once, everything else (throttling, KMS internal errors, the network) is
 * transient so the state machine's Retry takes over.
 */
export function kmsFailure(error: unknown, action: string, keyId: string): Error {
  const name = error instanceof Error ? error.name : 'Error';
  const detail = error instanceof Error ? error.message.slice(0, 200) : String(error).slice(0, 200);
  const message = `KMS ${action} with key ${keyId} failed: ${name}: ${detail}`;
  if (CONFIGURATION_FAILURES.has(name)) return new ConfigurationError(message, { cause: error });
  return new TransientServerError(message, undefined, { cause: error });
}

/** SPKI DER (what `GetPublicKey` returns) to a public JWK. */
export function spkiToPublicJwk(der: Uint8Array): PublicJwk {
  let jwk: unknown;
  try {
    jwk = createPublicKey({ key: Buffer.from(der), format: 'der', type: 'spki' }).export({ format: 'jwk' });
  } catch (error) {
    throw new ConfigurationError(`public key is not valid SPKI DER (${(error as Error).message})`, {
      cause: error,
    });
  }
  return toPublicJwk(jwk);
}

/** Turns a `GetPublicKey` answer into a signing key description, or says why the key cannot sign assertions. */
export function describeSigningKey(keyId: string, output: GetPublicKeyCommandOutput): KmsSigningKey {
  const keySpec = output.KeySpec ?? '';
  if (output.KeyUsage !== 'SIGN_VERIFY') {
    throw new ConfigurationError(
      `KMS key ${keyId} has KeyUsage ${output.KeyUsage ?? 'unknown'}; client assertions need an asymmetric SIGN_VERIFY key (ECC_NIST_P384 or RSA_2048/3072/4096)`,
    );
  }
  const spec = KEY_SPECS[keySpec];
  if (!spec) {
    throw new ConfigurationError(
      `KMS key ${keyId} has KeySpec ${keySpec || 'unknown'}; use ECC_NIST_P384 (ES384) or RSA_2048/3072/4096 (RS384)`,
    );
  }
  if (output.SigningAlgorithms && !output.SigningAlgorithms.includes(spec.signingAlgorithm)) {
    throw new ConfigurationError(`KMS key ${keyId} does not offer ${spec.signingAlgorithm}`);
  }
  if (!output.PublicKey || !output.KeyId) {
    throw new TransientServerError(`KMS GetPublicKey for key ${keyId} returned no PublicKey or KeyId`);
  }
  const publicKey = spkiToPublicJwk(output.PublicKey);
  return {
    keyArn: output.KeyId,
    keySpec,
    alg: spec.alg,
    signingAlgorithm: spec.signingAlgorithm,
    publicJwk: toPublishedJwk(publicKey, { alg: spec.alg }),
  };
}

/**
 * Public keys cached per client and key id, for the life of the container:
 * a key's public half never changes, and this keeps `GetPublicKey` off the
 * path of every token mint. Keyed per client so two regions never collide.
 */
const cache = new WeakMap<object, Map<string, Promise<KmsSigningKey>>>();

export function getKmsSigningKey(kms: KmsClientLike, keyId: string): Promise<KmsSigningKey> {
  if (typeof keyId !== 'string' || keyId.trim() === '') {
    return Promise.reject(
      new ConfigurationError('kmsKeyId must be a non-empty string (key id, ARN or alias)'),
    );
  }
  let perClient = cache.get(kms);
  if (!perClient) {
    perClient = new Map();
    cache.set(kms, perClient);
  }
  const cached = perClient.get(keyId);
  if (cached) return cached;
  const pending = (async () => {
    let output: GetPublicKeyCommandOutput;
    try {
      output = (await kms.send(new GetPublicKeyCommand({ KeyId: keyId }))) as GetPublicKeyCommandOutput;
    } catch (error) {
      throw kmsFailure(error, 'GetPublicKey', keyId);
    }
    return describeSigningKey(keyId, output);
  })();
  perClient.set(keyId, pending);
  // A failure is not cached: the next mint asks KMS again.
  pending.catch(() => perClient.delete(keyId));
  return pending;
}

export async function getKmsPublicJwk(kms: KmsClientLike, keyId: string): Promise<PublishedJwk> {
  return (await getKmsSigningKey(kms, keyId)).publicJwk;
}

/** The JWKS for several KMS keys (current and next, during rotation). */
export async function getKmsJwks(kms: KmsClientLike, keyIds: readonly string[]): Promise<Jwks> {
  const keys = await Promise.all(keyIds.map((keyId) => getKmsPublicJwk(kms, keyId)));
  return buildJwks(keys);
}
