import { ConfigurationError, SigningError } from '../../errors.js';

/**
 * The SMART Backend Services client assertion (a JWT signed with the client's
 * private key, RFC 7523). Building the header and claims is pure; signing is
 * delegated to a `ClientAssertionSigner`, whose key may live in AWS KMS and
 * never be seen by this process.
 */

export type AssertionAlgorithm = 'RS384' | 'ES384';
export const ASSERTION_ALGORITHMS: readonly AssertionAlgorithm[] = ['RS384', 'ES384'];

/** Anything that can sign a JWS signing input: a local JWK, or a KMS key. */
export interface ClientAssertionSigner {
  readonly alg: AssertionAlgorithm;
  /** The `kid` the EHR finds in our registered JWKS. */
  readonly kid: string;
  /** Returns the JWS signature bytes (for ES384 the 96-byte `r‖s`, not DER). */
  sign(signingInput: Uint8Array): Promise<Uint8Array>;
}

export interface ClientAssertionHeader {
  readonly alg: AssertionAlgorithm;
  readonly kid: string;
  readonly typ: 'JWT';
}

export interface ClientAssertionClaims {
  readonly iss: string;
  readonly sub: string;
  readonly aud: string;
  readonly exp: number;
  readonly iat: number;
  readonly jti: string;
}

export interface ClientAssertionInput {
  readonly clientId: string;
  /** The token endpoint URL, used verbatim as `aud`: servers compare it as a string. */
  readonly tokenUrl: string;
  readonly now: Date;
  /** Unique per assertion; servers reject a replayed `jti` within the assertion's lifetime. */
  readonly jti: string;
  /** Seconds from `now` to `exp`. @default 240 */
  readonly lifetimeSeconds?: number;
}

/**
 * SMART Backend Services: `exp` SHALL be no more than five minutes in the
 * future. We use four, so an EHR whose clock runs up to 60 s behind ours still
 * sees an `exp` within its five-minute limit instead of rejecting it.
 */
export const DEFAULT_ASSERTION_LIFETIME_SECONDS = 240;
export const MAX_ASSERTION_LIFETIME_SECONDS = 300;

/** Epic rejects a `jti` longer than 151 characters; no server needs more than a UUID. */
export const MAX_JTI_LENGTH = 151;

/** KMS `Sign` with `MessageType: RAW` accepts at most 4096 bytes. */
export const MAX_SIGNING_INPUT_BYTES = 4096;

export function buildClientAssertionHeader(signer: { alg: string; kid: string }): ClientAssertionHeader {
  if (!ASSERTION_ALGORITHMS.includes(signer.alg as AssertionAlgorithm)) {
    throw new ConfigurationError(
      `client assertion alg must be one of ${ASSERTION_ALGORITHMS.join(', ')} (got ${JSON.stringify(String(signer.alg).slice(0, 20))})`,
    );
  }
  if (typeof signer.kid !== 'string' || signer.kid.trim() === '') {
    throw new ConfigurationError('client assertion kid must be a non-empty string');
  }
  return { alg: signer.alg as AssertionAlgorithm, kid: signer.kid, typ: 'JWT' };
}

export function buildClientAssertionClaims(input: ClientAssertionInput): ClientAssertionClaims {
  const { clientId, tokenUrl, now, jti } = input;
  if (typeof clientId !== 'string' || clientId.trim() === '') {
    throw new ConfigurationError('clientId must be a non-empty string');
  }
  if (clientId !== clientId.trim()) {
    throw new ConfigurationError('clientId must not start or end with whitespace');
  }
  if (typeof tokenUrl !== 'string' || !URL.canParse(tokenUrl)) {
    throw new ConfigurationError('tokenUrl must be an absolute URL (it becomes the assertion aud)');
  }
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) {
    throw new ConfigurationError('now must be a valid Date');
  }
  if (typeof jti !== 'string' || jti.trim() === '') {
    throw new ConfigurationError('jti must be a non-empty string');
  }
  if (jti.length > MAX_JTI_LENGTH) {
    throw new ConfigurationError(`jti must be at most ${MAX_JTI_LENGTH} characters (got ${jti.length})`);
  }
  const lifetime = input.lifetimeSeconds ?? DEFAULT_ASSERTION_LIFETIME_SECONDS;
  if (!Number.isInteger(lifetime) || lifetime < 1 || lifetime > MAX_ASSERTION_LIFETIME_SECONDS) {
    throw new ConfigurationError(
      `lifetimeSeconds must be an integer from 1 to ${MAX_ASSERTION_LIFETIME_SECONDS} (got ${String(lifetime)})`,
    );
  }
  const iat = Math.floor(now.getTime() / 1000);
  return { iss: clientId, sub: clientId, aud: tokenUrl, exp: iat + lifetime, iat, jti };
}

export function base64url(bytes: Uint8Array | string): string {
  return Buffer.from(typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes).toString('base64url');
}

/** The exact bytes a JWS signature covers: `b64u(header).b64u(payload)`. */
export function jwsSigningInput(header: ClientAssertionHeader, claims: ClientAssertionClaims): string {
  return `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
}

/** Signature lengths a verifier will accept; a wrong one means the signer is broken, not the EHR. */
function checkSignatureLength(alg: AssertionAlgorithm, signature: Uint8Array): void {
  const ok = alg === 'ES384' ? signature.length === 96 : signature.length >= 256 && signature.length <= 512;
  if (!ok) {
    throw new SigningError(
      `the ${alg} signer returned a ${signature.length}-byte signature; expected ${alg === 'ES384' ? '96 bytes (r‖s)' : '256-512 bytes'}`,
    );
  }
}

/** Builds and signs a client assertion: `b64u(header).b64u(payload).b64u(signature)`. */
export async function createClientAssertion(
  signer: ClientAssertionSigner,
  input: ClientAssertionInput,
): Promise<string> {
  const header = buildClientAssertionHeader(signer);
  const claims = buildClientAssertionClaims(input);
  const signingInput = jwsSigningInput(header, claims);
  const bytes = Buffer.from(signingInput, 'ascii');
  if (bytes.length > MAX_SIGNING_INPUT_BYTES) {
    throw new ConfigurationError(
      `the client assertion's signing input is ${bytes.length} bytes; at most ${MAX_SIGNING_INPUT_BYTES} can be signed (is clientId or the token URL unusually long?)`,
    );
  }
  const signature = await signer.sign(new Uint8Array(bytes));
  checkSignatureLength(signer.alg, signature);
  return `${signingInput}.${base64url(signature)}`;
}
