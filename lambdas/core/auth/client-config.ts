import { isAbsolute, join } from 'node:path';
import { ConfigurationError } from '../../errors.js';
import { parseWith } from '../../schema/fields.js';
import { ClientSecretSchema, SourceFileSchema } from '../../schema/source.js';
import { checkFetchableUrl } from '../urls.js';
import { asObject, describe } from '../validate.js';
import { ASSERTION_ALGORITHMS, type AssertionAlgorithm } from './client-assertion.js';
import type { ScopeSyntax } from './scopes.js';

/**
 * The client credentials of one source. On AWS they live in a Secrets Manager
 * secret (JSON), read only by the token-minting function; locally in the
 * source file. Messages name the bad key and what was expected, and never
 * echo a value: everything here is, or sits next to, a secret.
 */

export type SigningKeySource =
  /** An asymmetric KMS key (id, ARN or alias) that signs and never leaves KMS. */
  | { readonly kind: 'kms'; readonly keyId: string }
  /** A private JWK held in the secret itself. */
  | { readonly kind: 'jwk'; readonly privateJwk: PrivateJwk }
  /** A private JWK file on disk (local mode). */
  | { readonly kind: 'jwk-file'; readonly path: string };

export interface AuthClientConfig {
  readonly clientId: string;
  readonly signingKey: SigningKeySource;
  /** A complete scope string that replaces the computed one (Epic: `system/Patient.Read`). */
  readonly scope?: string;
  /** Token endpoint override; otherwise discovered from `.well-known/smart-configuration`. */
  readonly tokenUrl?: string;
  /** A secret's own scope syntax, winning over the source's `scopeSyntax` setting. */
  readonly scopeSyntax?: ScopeSyntax;
  /** A secret's own extra scopes, added to the source's `extraScopes` setting. */
  readonly extraScopes?: readonly string[];
}

export interface LocalSourceAuth extends AuthClientConfig {
  readonly id: string;
  readonly fhirBaseUrl: string;
  readonly allowInsecureHttp: boolean;
}

export interface PrivateJwk {
  readonly kty: 'EC' | 'RSA';
  readonly kid: string;
  readonly alg: AssertionAlgorithm;
  readonly d: string;
  readonly [member: string]: unknown;
}

const B64U = /^[A-Za-z0-9_-]+$/;

/**
 * The members a private JWK needs to sign a client assertion. `kid` and `alg`
 * are required rather than derived: the kid must match what the EHR
 * registered, and an explicit alg stops an RSA key being used as ES384.
 */
export function validatePrivateJwk(raw: unknown, path = 'privateJwk'): PrivateJwk {
  const jwk = asObject(raw, path);
  // A file name reads better as "keys/a.json: kid …" than "keys/a.json.kid …".
  const member = (name: string) => (path.includes(' ') ? `${path}: ${name}` : `${path}.${name}`);
  const kid = jwk.kid;
  if (typeof kid !== 'string' || kid.trim() === '') {
    throw new ConfigurationError(
      `${member('kid')} is required (a non-empty string: the key id registered with the EHR)`,
    );
  }
  const alg = jwk.alg;
  if (typeof alg !== 'string' || !ASSERTION_ALGORITHMS.includes(alg as AssertionAlgorithm)) {
    const got = typeof alg === 'string' && alg.length <= 10 ? JSON.stringify(alg) : describe(alg);
    throw new ConfigurationError(
      `${member('alg')} is required (one of ${ASSERTION_ALGORITHMS.join(', ')}; got ${got})`,
    );
  }
  if (typeof jwk.d !== 'string' || !B64U.test(jwk.d)) {
    throw new ConfigurationError(
      `${member('d')} is required (the base64url private key; is this the public JWK?)`,
    );
  }
  const expectedKty = alg === 'ES384' ? 'EC' : 'RSA';
  if (jwk.kty !== expectedKty) {
    const got =
      typeof jwk.kty === 'string' && jwk.kty.length <= 10 ? JSON.stringify(jwk.kty) : describe(jwk.kty);
    throw new ConfigurationError(`${member('kty')} must be ${expectedKty} for alg ${alg} (got ${got})`);
  }
  if (alg === 'ES384' && jwk.crv !== 'P-384') {
    throw new ConfigurationError(`${member('crv')} must be P-384 for alg ES384`);
  }
  if (jwk.use !== undefined && jwk.use !== 'sig') {
    throw new ConfigurationError(`${member('use')} must be sig when present`);
  }
  return jwk as unknown as PrivateJwk;
}

/**
 * The Secrets Manager secret of a source: `{ clientId, kmsKeyId | privateJwk,
 * scope?, tokenUrl?, scopeSyntax?, extraScopes? }`. Unknown keys are rejected
 * so a misspelled `tokenURL` fails loudly instead of being silently ignored.
 */
export function parseClientSecret(
  raw: unknown,
  options: { readonly path?: string; readonly allowInsecureHttp?: boolean } = {},
): AuthClientConfig {
  const path = options.path ?? 'secret';
  let value = raw;
  if (typeof raw === 'string') {
    try {
      value = JSON.parse(raw);
    } catch {
      throw new ConfigurationError(
        `${path} is not valid JSON: expected an object with clientId and kmsKeyId or privateJwk`,
      );
    }
  }
  const secret = parseWith(ClientSecretSchema, value, path);
  const signingKey: SigningKeySource =
    oneSigningKey(secret, ['kmsKeyId', 'privateJwk'], path) === 'kmsKeyId'
      ? { kind: 'kms', keyId: secret.kmsKeyId! }
      : { kind: 'jwk', privateJwk: validatePrivateJwk(secret.privateJwk, `${path}.privateJwk`) };
  return { ...commonAuth(secret, path, options.allowInsecureHttp ?? false), signingKey };
}

/**
 * The auth part of a local source file, read with the file's own schema
 * (lambdas/schema/source.ts); `privateKeyFile` is resolved against `baseDir`
 * (the source file's directory) when relative.
 */
export function parseLocalSourceAuth(
  raw: unknown,
  options: { readonly path?: string; readonly baseDir?: string } = {},
): LocalSourceAuth {
  const path = options.path ?? 'source';
  const source = parseWith(SourceFileSchema, raw, path);
  let signingKey: SigningKeySource;
  if (oneSigningKey(source, ['privateKeyFile', 'kmsKeyId'], path) === 'kmsKeyId') {
    signingKey = { kind: 'kms', keyId: source.kmsKeyId! };
  } else {
    const file = source.privateKeyFile!;
    signingKey = {
      kind: 'jwk-file',
      path: isAbsolute(file) || options.baseDir === undefined ? file : join(options.baseDir, file),
    };
  }
  return {
    id: source.id,
    fhirBaseUrl: source.fhirBaseUrl.replace(/\/+$/, ''),
    allowInsecureHttp: source.allowInsecureHttp,
    // The scope settings (scopeSyntax, extraScopes) are the source's settings, read with them.
    ...commonAuth(
      { clientId: source.clientId, scope: source.scope, tokenUrl: source.tokenUrl },
      path,
      source.allowInsecureHttp,
    ),
    signingKey,
  };
}

type AuthFields = {
  readonly clientId?: string | undefined;
  readonly scope?: string | undefined;
  readonly tokenUrl?: string | undefined;
  readonly scopeSyntax?: ScopeSyntax | undefined;
  readonly extraScopes?: readonly string[] | undefined;
};

function commonAuth(
  fields: AuthFields,
  path: string,
  allowInsecureHttp: boolean,
): Omit<AuthClientConfig, 'signingKey'> {
  const { clientId, scope, tokenUrl } = fields;
  if (clientId === undefined)
    throw new ConfigurationError(`${path}.clientId is required: a non-empty string`);
  if (clientId !== clientId.trim())
    throw new ConfigurationError(`${path}.clientId must not start or end with whitespace`);
  if (tokenUrl !== undefined) {
    const check = checkFetchableUrl(tokenUrl, allowInsecureHttp);
    if (!check.ok) throw new ConfigurationError(`${path}.tokenUrl ${check.reason}`);
  }
  return {
    clientId,
    ...(scope === undefined ? {} : { scope: scope.trim() }),
    ...(tokenUrl === undefined ? {} : { tokenUrl }),
    ...(fields.scopeSyntax === undefined ? {} : { scopeSyntax: fields.scopeSyntax }),
    ...(fields.extraScopes === undefined ? {} : { extraScopes: fields.extraScopes }),
  };
}

function oneSigningKey<K extends string>(
  object: Partial<Record<K, unknown>>,
  keys: readonly [K, K],
  path: string,
): K {
  const present = keys.filter((key) => object[key] !== undefined);
  if (present.length === 1) return present[0]!;
  throw new ConfigurationError(
    present.length === 0
      ? `${path} needs a signing key: set ${keys[0]} or ${keys[1]}`
      : `${path} sets both ${keys[0]} and ${keys[1]}; set exactly one`,
  );
}
