import { createPublicKey, verify } from 'node:crypto';
import { KMSServiceException, ListAliasesCommand, SignCommand } from '@aws-sdk/client-kms';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createJwksHandler,
  type FunctionUrlEvent,
  handler,
  keyIdsUnderAliases,
  parseExtraKeyIds,
} from '../../infra/jwks-function/handler.js';
import { createLogger } from '../../lambdas/logger.js';
import { KmsStandIn } from '../support/kms-stand-in.js';

const get = (rawPath: string, method = 'GET'): FunctionUrlEvent => ({
  rawPath,
  requestContext: { http: { method } },
});

function setup() {
  const kms = new KmsStandIn();
  const ec = kms.createKey({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' });
  const rsa = kms.createKey({ KeySpec: 'RSA_3072', KeyUsage: 'SIGN_VERIFY' });
  const lines: string[] = [];
  const jwks = createJwksHandler({
    kms,
    keyIds: [ec.Arn, rsa.Arn],
    maxAgeSeconds: 3600,
    logger: createLogger({ write: (line) => lines.push(line) }),
  });
  return { kms, ec, rsa, jwks, lines };
}

interface Jwk {
  readonly kty: string;
  readonly kid: string;
  readonly alg: string;
  readonly [member: string]: unknown;
}

describe('JWKS function', () => {
  it('serves the public keys of every signing key, cacheable for max-age', async () => {
    const { jwks } = setup();
    const response = await jwks(get('/.well-known/jwks.json'));
    expect(response.statusCode).toBe(200);
    expect(response.headers).toEqual({
      'content-type': 'application/json',
      'cache-control': 'public, max-age=3600',
    });
    const { keys } = JSON.parse(response.body) as { keys: Jwk[] };
    expect(keys.map((key) => [key.kty, key.alg])).toEqual([
      ['EC', 'ES384'],
      ['RSA', 'RS384'],
    ]);
    for (const key of keys) {
      expect(key.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(key).not.toHaveProperty('d');
    }
  });

  it('publishes keys that verify what KMS signs (ES384 and RS384)', async () => {
    const { kms, ec, rsa, jwks } = setup();
    const { keys } = JSON.parse((await jwks(get('/'))).body) as { keys: Jwk[] };
    const message = Buffer.from('eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJjbGllbnQifQ');
    const cases = [
      [ec.Arn, 'ECDSA_SHA_384', keys[0]!, { dsaEncoding: 'der' as const }],
      [rsa.Arn, 'RSASSA_PKCS1_V1_5_SHA_384', keys[1]!, {}],
    ] as const;
    for (const [keyId, algorithm, jwk, options] of cases) {
      const signed = (await kms.send(
        new SignCommand({ KeyId: keyId, Message: message, MessageType: 'RAW', SigningAlgorithm: algorithm }),
      )) as { Signature: Uint8Array };
      const publicKey = createPublicKey({ key: { ...jwk }, format: 'jwk' });
      expect(verify('sha384', message, { key: publicKey, ...options }, signed.Signature)).toBe(true);
    }
  });

  it.each([
    ['/jwks.json', 'GET', 200],
    ['/keys', 'GET', 404],
    ['/.well-known/jwks.json', 'POST', 405],
  ])('answers %s %s with %s', async (path, method, status) => {
    const { jwks } = setup();
    const response = await jwks(get(path, method));
    expect(response.statusCode).toBe(status);
    if (status !== 200) expect(response.headers['cache-control']).toBe('no-store');
    if (status === 405) expect(response.headers.allow).toBe('GET, HEAD');
  });

  it('answers HEAD without a body', async () => {
    const { jwks } = setup();
    const response = await jwks(get('/.well-known/jwks.json', 'HEAD'));
    expect(response).toMatchObject({ statusCode: 200, body: '' });
  });

  it('answers 503, never cacheable, when KMS fails, and logs why', async () => {
    const { kms, jwks, lines } = setup();
    kms.failNext(
      'GetPublicKey',
      new KMSServiceException({
        name: 'ThrottlingException',
        $fault: 'client',
        $metadata: {},
        message: 'Rate exceeded',
      }),
    );
    const response = await jwks(get('/.well-known/jwks.json'));
    expect(response.statusCode).toBe(503);
    expect(response.headers).toMatchObject({ 'cache-control': 'no-store', 'retry-after': '30' });
    expect(JSON.parse(response.body)).toEqual({ error: 'JWKS temporarily unavailable' });
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      expect.objectContaining({
        level: 'error',
        message: 'JWKS unavailable',
        error: 'TransientServerError',
        detail: expect.stringContaining('GetPublicKey'),
      }),
    ]);
  });
});

describe('the keys the JWKS publishes', () => {
  /** ListAliases as KMS answers it: pages of `limit`, every alias of the account, ours among them. */
  const listingKms = (aliases: { AliasName: string; TargetKeyId?: string }[], limit = 2) => {
    const calls: (string | undefined)[] = [];
    return {
      calls,
      send: async (command: unknown) => {
        expect(command).toBeInstanceOf(ListAliasesCommand);
        const marker = (command as ListAliasesCommand).input.Marker;
        calls.push(marker);
        const start = marker === undefined ? 0 : Number(marker);
        const end = start + limit;
        return {
          Aliases: aliases.slice(start, end),
          Truncated: end < aliases.length,
          NextMarker: end < aliases.length ? String(end) : undefined,
        };
      },
    };
  };

  it('are the targets of the aliases under the prefix, across every page, each once', async () => {
    const kms = listingKms([
      { AliasName: 'alias/aws/s3', TargetKeyId: 'aws-managed' },
      { AliasName: 'alias/fhir-bulk-export/epic-prod', TargetKeyId: 'key-epic' },
      { AliasName: 'alias/fhir-bulk-export-other/x', TargetKeyId: 'key-other-pipeline' },
      { AliasName: 'alias/fhir-bulk-export/cerner-test', TargetKeyId: 'key-cerner' },
      { AliasName: 'alias/fhir-bulk-export/cerner-test-old-name', TargetKeyId: 'key-cerner' },
      { AliasName: 'alias/fhir-bulk-export/unassigned' },
    ]);
    expect(await keyIdsUnderAliases(kms, 'alias/fhir-bulk-export/')).toEqual(['key-epic', 'key-cerner']);
    expect(kms.calls).toEqual([undefined, '2', '4']);
  });

  it('serve a key added after the handler started, without a deploy', async () => {
    const kmsKeys = new KmsStandIn();
    const first = kmsKeys.createKey({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' });
    const current = [first.Arn];
    const jwks = createJwksHandler({
      kms: kmsKeys,
      keyIds: async () => current,
      maxAgeSeconds: 60,
      logger: createLogger({ write: () => {} }),
    });
    const count = async () => (JSON.parse((await jwks(get('/'))).body) as { keys: unknown[] }).keys.length;
    expect(await count()).toBe(1);
    current.push(kmsKeys.createKey({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' }).Arn);
    expect(await count()).toBe(2);
  });
});

describe('JWKS function entry point', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  it.each([
    [
      undefined,
      'environment variable JWKS_KEY_ALIAS_PREFIX is missing: expected the signing key alias prefix, such as alias/fhir-bulk-export/',
    ],
    [
      'fhir-bulk-export/',
      'environment variable JWKS_KEY_ALIAS_PREFIX must look like alias/<prefix>/ (starting with alias/, ending with /)',
    ],
    [
      'alias/fhir-bulk-export',
      'environment variable JWKS_KEY_ALIAS_PREFIX must look like alias/<prefix>/ (starting with alias/, ending with /)',
    ],
  ])('refuses JWKS_KEY_ALIAS_PREFIX=%s, naming the variable', async (value, message) => {
    if (value === undefined) delete process.env.JWKS_KEY_ALIAS_PREFIX;
    else process.env.JWKS_KEY_ALIAS_PREFIX = value;
    await expect(handler(get('/'))).rejects.toMatchObject({ name: 'ConfigurationError', message });
  });
});

describe('JWKS_EXTRA_KEY_IDS (brought next/previous keys of a rotation)', () => {
  it('reads comma-separated key ARNs, and nothing when unset', () => {
    const a = 'arn:aws:kms:us-east-1:123456789012:key/1111-aaaa';
    const b = 'arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/2222-bbbb';
    expect(parseExtraKeyIds(`${a}, ${b}`)).toEqual([a, b]);
    expect(parseExtraKeyIds(undefined)).toEqual([]);
    expect(parseExtraKeyIds(' ')).toEqual([]);
  });

  it('refuses anything but key ARNs, naming the variable', () => {
    expect(() => parseExtraKeyIds('alias/fhir-bulk-export/epic')).toThrow(
      'environment variable JWKS_EXTRA_KEY_IDS must be comma-separated KMS key ARNs (got "alias/fhir-bulk-export/epic")',
    );
  });

  it('publishes a current and a next key side by side, each under its own kid', async () => {
    const kms = new KmsStandIn();
    const current = kms.createKey({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' });
    const next = kms.createKey({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' });
    const jwks = createJwksHandler({
      kms,
      keyIds: async () => [current.Arn, next.Arn],
      maxAgeSeconds: 60,
      logger: createLogger({ write: () => undefined }),
    });
    const { keys } = JSON.parse((await jwks(get('/.well-known/jwks.json'))).body) as { keys: Jwk[] };
    expect(keys).toHaveLength(2);
    expect(new Set(keys.map((key) => key.kid)).size).toBe(2);
  });
});
