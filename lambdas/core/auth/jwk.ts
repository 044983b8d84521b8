import { createHash } from 'node:crypto';
import { ConfigurationError, SigningError } from '../../errors.js';
import type { AssertionAlgorithm } from './client-assertion.js';

/**
 * Public keys as EHRs see them (JWK / JWKS, RFC 7517), and the one format
 * conversion KMS forces on us: its ECDSA signatures are DER, JWS wants `r‖s`.
 */

export interface PublicEcJwk {
  readonly kty: 'EC';
  readonly crv: 'P-384';
  readonly x: string;
  readonly y: string;
}
export interface PublicRsaJwk {
  readonly kty: 'RSA';
  readonly n: string;
  readonly e: string;
}
export type PublicJwk = PublicEcJwk | PublicRsaJwk;

/** A JWK as published in the JWKS an EHR fetches. */
export type PublishedJwk = PublicJwk & {
  readonly kid: string;
  readonly alg: AssertionAlgorithm;
  readonly use: 'sig';
};

export interface Jwks {
  readonly keys: readonly PublishedJwk[];
}

const B64U = /^[A-Za-z0-9_-]+$/;
/** Members that make a JWK private (RFC 7518 §6.2.2, §6.3.2): they must never be published. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

function b64uMember(jwk: Record<string, unknown>, member: string, kty: string): string {
  const value = jwk[member];
  if (typeof value !== 'string' || !B64U.test(value)) {
    throw new ConfigurationError(`${kty} JWK member ${member} must be a base64url string`);
  }
  return value;
}

/** The public part of an EC P-384 or RSA JWK; every other member (private ones included) is dropped. */
export function toPublicJwk(jwk: unknown): PublicJwk {
  if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) {
    throw new ConfigurationError('JWK must be a JSON object');
  }
  const fields = jwk as Record<string, unknown>;
  if (fields.kty === 'EC') {
    if (fields.crv !== 'P-384') {
      throw new ConfigurationError(
        'EC JWK crv must be P-384 (ES384 is the only EC algorithm SMART Backend Services names)',
      );
    }
    return { kty: 'EC', crv: 'P-384', x: b64uMember(fields, 'x', 'EC'), y: b64uMember(fields, 'y', 'EC') };
  }
  if (fields.kty === 'RSA') {
    return { kty: 'RSA', n: b64uMember(fields, 'n', 'RSA'), e: b64uMember(fields, 'e', 'RSA') };
  }
  throw new ConfigurationError('JWK kty must be EC or RSA');
}

/**
 * RFC 7638 thumbprint: SHA-256 over the required members in lexicographic
 * order with no whitespace. Used as `kid` so the same key always gets the same
 * id, wherever the JWKS is rebuilt from.
 */
export function jwkThumbprint(jwk: unknown): string {
  const key = toPublicJwk(jwk);
  const canonical =
    key.kty === 'EC'
      ? JSON.stringify({ crv: key.crv, kty: key.kty, x: key.x, y: key.y })
      : JSON.stringify({ e: key.e, kty: key.kty, n: key.n });
  return createHash('sha256').update(canonical, 'utf8').digest('base64url');
}

export function algForPublicJwk(jwk: PublicJwk): AssertionAlgorithm {
  return jwk.kty === 'EC' ? 'ES384' : 'RS384';
}

/** The JWK to publish for a key: public members, `kid` (thumbprint unless given), `alg`, `use: sig`. */
export function toPublishedJwk(
  jwk: unknown,
  options: { kid?: string; alg?: AssertionAlgorithm } = {},
): PublishedJwk {
  const key = toPublicJwk(jwk);
  const expectedAlg = algForPublicJwk(key);
  if (options.alg !== undefined && options.alg !== expectedAlg) {
    throw new ConfigurationError(
      `alg ${options.alg} does not match a ${key.kty} key (expected ${expectedAlg})`,
    );
  }
  return { ...key, kid: options.kid ?? jwkThumbprint(key), alg: expectedAlg, use: 'sig' };
}

/**
 * A JWKS holding several keys, so a new key can be published before it signs
 * and an old one kept until EHRs stop caching it (rotation without downtime).
 */
export function buildJwks(keys: readonly PublishedJwk[]): Jwks {
  const seen = new Set<string>();
  const published = keys.map((key, index) => {
    for (const member of PRIVATE_MEMBERS) {
      if (member in key)
        throw new ConfigurationError(`keys[${index}] has private member ${member}; refusing to publish it`);
    }
    if (typeof key.kid !== 'string' || key.kid === '') {
      throw new ConfigurationError(`keys[${index}] has no kid; EHRs select the key by kid`);
    }
    if (seen.has(key.kid)) throw new ConfigurationError(`keys[${index}] repeats kid ${key.kid}`);
    seen.add(key.kid);
    return toPublishedJwk(key, { kid: key.kid, alg: key.alg });
  });
  return { keys: published };
}

/** P-384 scalars are 48 bytes: a JWS ES384 signature is exactly 96 bytes (RFC 7518 §3.4). */
export const ES384_COMPONENT_BYTES = 48;

function malformed(reason: string): SigningError {
  return new SigningError(`ECDSA signature is not valid DER: ${reason}`);
}

function readLength(der: Uint8Array, offset: number): { length: number; next: number } {
  const first = der[offset];
  if (first === undefined) throw malformed('truncated length');
  if (first < 0x80) return { length: first, next: offset + 1 };
  const count = first & 0x7f;
  // Two length bytes cover any ECDSA signature up to P-521; more means garbage.
  if (count === 0 || count > 2) throw malformed('unsupported length encoding');
  let length = 0;
  for (let i = 1; i <= count; i += 1) {
    const byte = der[offset + i];
    if (byte === undefined) throw malformed('truncated length');
    length = (length << 8) | byte;
  }
  return { length, next: offset + 1 + count };
}

function readInteger(
  der: Uint8Array,
  offset: number,
  size: number,
  name: 'r' | 's',
): { value: Uint8Array; next: number } {
  if (der[offset] !== 0x02) throw malformed(`${name} is not an INTEGER`);
  const { length, next } = readLength(der, offset + 1);
  if (length === 0) throw malformed(`${name} is empty`);
  const end = next + length;
  if (end > der.length) throw malformed(`${name} runs past the end`);
  let bytes = der.subarray(next, end);
  if ((bytes[0] ?? 0) & 0x80) throw malformed(`${name} is negative`);
  // DER pads with 0x00 when the high bit is set; strip all leading zeros and left-pad to `size` below.
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start += 1;
  bytes = bytes.subarray(start);
  if (bytes.length > size) throw malformed(`${name} is longer than ${size} bytes`);
  if (bytes.length === 1 && bytes[0] === 0) throw malformed(`${name} is zero`);
  const value = new Uint8Array(size);
  value.set(bytes, size - bytes.length);
  return { value, next: end };
}

/**
 * DER `SEQUENCE { INTEGER r, INTEGER s }` (what KMS `Sign` returns for ECDSA)
 * to the fixed-width `r‖s` JWS requires. r and s are minimal big-endian
 * integers in DER, so either can be shorter than 48 bytes (about 1 in 256
 * signatures) or carry a 0x00 sign byte; both are normalised here.
 */
export function derToJoseSignature(der: Uint8Array, componentBytes = ES384_COMPONENT_BYTES): Uint8Array {
  if (der.length < 8) throw malformed('too short');
  if (der[0] !== 0x30) throw malformed('does not start with a SEQUENCE');
  const { length, next } = readLength(der, 1);
  if (next + length !== der.length) throw malformed('SEQUENCE length does not match the signature length');
  const r = readInteger(der, next, componentBytes, 'r');
  const s = readInteger(der, r.next, componentBytes, 's');
  if (s.next !== der.length) throw malformed('trailing bytes after s');
  const out = new Uint8Array(componentBytes * 2);
  out.set(r.value, 0);
  out.set(s.value, componentBytes);
  return out;
}
