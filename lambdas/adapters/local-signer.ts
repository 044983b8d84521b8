import {
  createPrivateKey,
  createPublicKey,
  type JsonWebKey,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { AssertionAlgorithm, ClientAssertionSigner } from '../core/auth/client-assertion.js';
import { type PrivateJwk, validatePrivateJwk } from '../core/auth/client-config.js';
import { type PublishedJwk, toPublishedJwk } from '../core/auth/jwk.js';
import { ConfigurationError } from '../errors.js';

/**
 * Local mode's signer: a private JWK from a file (or from the secret). On AWS
 * the key lives in KMS instead (kms-signer.ts); both produce identical JWTs.
 */

export interface LocalSigner extends ClientAssertionSigner {
  /** The public half, ready to publish in a JWKS. */
  readonly publicJwk: PublishedJwk;
}

/** SP 800-131A: RSA below 2048 bits is not acceptable for signatures, and EHRs reject it. */
const MIN_RSA_BITS = 2048;

function importKey(jwk: PrivateJwk, where: string): KeyObject {
  try {
    return createPrivateKey({ key: jwk as unknown as JsonWebKey, format: 'jwk' });
  } catch (error) {
    // The crypto error text says what is wrong with the structure; it never contains key material.
    throw new ConfigurationError(`${where} is not a usable private key (${(error as Error).message})`, {
      cause: error,
    });
  }
}

/**
 * node:crypto imports a JWK whose `d` does not belong to its `x`/`y` without
 * complaint; the EHR would then reject every assertion with a bare
 * "invalid signature". One test signature here turns that into a clear error.
 */
function assertKeyPairMatches(key: KeyObject, publicJwk: PublishedJwk, where: string): void {
  const probe = Buffer.from('key pair check');
  let ok = false;
  try {
    const publicKey = createPublicKey({ key: publicJwk as unknown as JsonWebKey, format: 'jwk' });
    ok = verify('sha384', probe, publicKey, sign('sha384', probe, key));
  } catch {
    ok = false;
  }
  if (!ok)
    throw new ConfigurationError(`${where}: d does not belong to the key's public members (x/y or n/e)`);
}

export function createLocalSignerFromJwk(raw: unknown, where = 'privateJwk'): LocalSigner {
  const jwk = validatePrivateJwk(raw, where);
  const key = importKey(jwk, where);
  const details = key.asymmetricKeyDetails;
  if (jwk.alg === 'RS384' && (details?.modulusLength ?? 0) < MIN_RSA_BITS) {
    throw new ConfigurationError(
      `${where} is an RSA key of ${details?.modulusLength} bits; at least ${MIN_RSA_BITS} are required`,
    );
  }
  const alg: AssertionAlgorithm = jwk.alg;
  const publicJwk = toPublishedJwk(jwk, { kid: jwk.kid, alg });
  assertKeyPairMatches(key, publicJwk, where);
  return {
    alg,
    kid: jwk.kid,
    publicJwk,
    async sign(signingInput) {
      // ES384 in JWS is r‖s (IEEE P1363), not the DER node would produce by default.
      const signature =
        alg === 'ES384'
          ? sign('sha384', signingInput, { key, dsaEncoding: 'ieee-p1363' })
          : sign('sha384', signingInput, key);
      return new Uint8Array(signature);
    },
  };
}

/** A signer from a private JWK object, or from the path of a JSON file holding one. */
export async function createLocalSigner(source: unknown): Promise<LocalSigner> {
  if (typeof source !== 'string') return createLocalSignerFromJwk(source);
  let text: string;
  try {
    text = await readFile(source, 'utf8');
  } catch (error) {
    throw new ConfigurationError(
      `private key file ${source} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      { cause: error },
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ConfigurationError(`private key file ${source} is not JSON; expected a private JWK`);
  }
  return createLocalSignerFromJwk(parsed, `private key file ${source}`);
}
