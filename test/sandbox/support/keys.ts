/** Client keys and assertions for sandbox tests, built with jose directly (never with our client code). */
import { randomUUID } from 'node:crypto';
import {
  base64url,
  exportJWK,
  type GenerateKeyPairResult,
  generateKeyPair,
  type JSONWebKeySet,
  type JWK,
  SignJWT,
} from 'jose';

export type Alg = 'RS384' | 'ES384';

export interface TestKey {
  readonly alg: Alg;
  readonly kid: string;
  readonly privateKey: GenerateKeyPairResult['privateKey'];
  readonly publicJwk: JWK;
}

const cache = new Map<string, Promise<TestKey>>();

/** One key pair per (alg, kid) per test process: RSA generation is slow. */
export function testKey(alg: Alg, kid = `${alg.toLowerCase()}-key`): Promise<TestKey> {
  const cacheKey = `${alg}/${kid}`;
  let key = cache.get(cacheKey);
  if (!key) {
    key = (async () => {
      const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: false });
      return { alg, kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg } };
    })();
    cache.set(cacheKey, key);
  }
  return key;
}

export function jwksOf(...keys: TestKey[]): JSONWebKeySet {
  return { keys: keys.map((k) => k.publicJwk) };
}

export interface AssertionInput {
  readonly key: TestKey;
  readonly clientId: string;
  readonly tokenUrl: string;
  readonly now: Date;
  /** Claims to add, replace, or remove (undefined). */
  readonly claims?: Record<string, unknown>;
  /** Header fields to add or replace. */
  readonly header?: Record<string, unknown>;
}

/** A SMART Backend Services client assertion, valid unless overridden. */
export async function signAssertion(input: AssertionInput): Promise<string> {
  const nowSeconds = Math.floor(input.now.getTime() / 1000);
  const claims: Record<string, unknown> = {
    iss: input.clientId,
    sub: input.clientId,
    aud: input.tokenUrl,
    exp: nowSeconds + 240,
    jti: randomUUID(),
    ...input.claims,
  };
  for (const [name, value] of Object.entries(claims)) if (value === undefined) delete claims[name];
  return new SignJWT(claims)
    .setProtectedHeader({ alg: input.key.alg, kid: input.key.kid, typ: 'JWT', ...input.header })
    .sign(input.key.privateKey);
}

/** A JWT with any header and a made-up signature (alg none, HS256...). */
export function forgedAssertion(
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
  signature = '',
): string {
  const encode = (value: unknown) => base64url.encode(JSON.stringify(value));
  return `${encode(header)}.${encode(claims)}.${signature}`;
}
