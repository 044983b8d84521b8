import { describe, expect, it } from 'vitest';
import { parseClientSecret, parseLocalSourceAuth } from '../../../lambdas/core/auth/client-config.js';
import { generatePrivateJwk } from '../../support/test-keys.js';

const JWK = generatePrivateJwk('ES384');

describe('parseClientSecret', () => {
  it('reads a KMS-backed secret with defaults', () => {
    expect(parseClientSecret('{"clientId":"abc","kmsKeyId":"alias/fhir-signing"}')).toStrictEqual({
      clientId: 'abc',
      signingKey: { kind: 'kms', keyId: 'alias/fhir-signing' },
    });
  });

  it('reads every field', () => {
    const secret = {
      clientId: 'abc',
      privateJwk: JWK,
      scope: ' system/Patient.Read system/Observation.Read ',
      tokenUrl: 'https://fhir.epic.example.org/oauth2/token',
      scopeSyntax: 'v1',
      extraScopes: ['system/Group.read'],
    };
    expect(parseClientSecret(secret)).toStrictEqual({
      clientId: 'abc',
      signingKey: { kind: 'jwk', privateJwk: JWK },
      scope: 'system/Patient.Read system/Observation.Read',
      tokenUrl: 'https://fhir.epic.example.org/oauth2/token',
      scopeSyntax: 'v1',
      extraScopes: ['system/Group.read'],
    });
  });

  const bad: Array<[string, unknown, string]> = [
    [
      'not JSON',
      '{clientId: abc}',
      'secret is not valid JSON: expected an object with clientId and kmsKeyId or privateJwk',
    ],
    ['an array', [], 'secret must be a JSON object (got an array)'],
    ['no clientId', { kmsKeyId: 'k' }, 'secret.clientId is required: a non-empty string'],
    [
      'an empty clientId',
      { clientId: '', kmsKeyId: 'k' },
      'secret.clientId must be a non-empty string (got an empty string)',
    ],
    [
      'a numeric clientId',
      { clientId: 42, kmsKeyId: 'k' },
      'secret.clientId must be a non-empty string (got number)',
    ],
    ['no signing key', { clientId: 'a' }, 'secret needs a signing key: set kmsKeyId or privateJwk'],
    [
      'both signing keys',
      { clientId: 'a', kmsKeyId: 'k', privateJwk: JWK },
      'secret sets both kmsKeyId and privateJwk; set exactly one',
    ],
    [
      'a misspelled key',
      { clientId: 'a', kmsKeyId: 'k', tokenURL: 'https://x' },
      'secret has unknown key(s) tokenURL; expected only clientId, kmsKeyId, tokenUrl, scope, scopeSyntax, extraScopes, privateJwk',
    ],
    [
      'an http tokenUrl',
      { clientId: 'a', kmsKeyId: 'k', tokenUrl: 'http://ehr.example.org/token' },
      'secret.tokenUrl uses http: on a non-loopback host; only https is allowed',
    ],
    [
      'a relative tokenUrl',
      { clientId: 'a', kmsKeyId: 'k', tokenUrl: '/token' },
      'secret.tokenUrl is not an absolute URL',
    ],
    [
      'scopeSyntax v3',
      { clientId: 'a', kmsKeyId: 'k', scopeSyntax: 'v3' },
      'secret.scopeSyntax must be one of v1, v2 (got "v3")',
    ],
    [
      'extraScopes as a string',
      { clientId: 'a', kmsKeyId: 'k', extraScopes: 'system/Group.read' },
      'secret.extraScopes must be an array of strings (got a string)',
    ],
    [
      'an extra scope with a space',
      { clientId: 'a', kmsKeyId: 'k', extraScopes: ['a b'] },
      'secret.extraScopes[0] must be a scope token without spaces',
    ],
    [
      'a privateJwk without d',
      { clientId: 'a', privateJwk: { ...JWK, d: undefined } },
      'secret.privateJwk.d is required (the base64url private key; is this the public JWK?)',
    ],
    [
      'a privateJwk without kid',
      { clientId: 'a', privateJwk: { ...JWK, kid: undefined } },
      'secret.privateJwk.kid is required (a non-empty string: the key id registered with the EHR)',
    ],
  ];
  it.each(bad)('rejects %s, naming the field', (_, raw, message) => {
    expect(() => parseClientSecret(raw)).toThrow(
      expect.objectContaining({ name: 'ConfigurationError', message }),
    );
  });

  it('never echoes a secret value in its errors', () => {
    const secret = { clientId: 'a', privateJwk: { ...JWK, alg: 'RS384' } };
    try {
      parseClientSecret(secret);
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).toBe('secret.privateJwk.kty must be RSA for alg RS384 (got "EC")');
      expect((error as Error).message).not.toContain(JWK.d);
    }
  });

  it('names the secret when given a path', () => {
    expect(() => parseClientSecret({}, { path: 'secret fhir/epic' })).toThrow(
      'secret fhir/epic.clientId is required: a non-empty string',
    );
  });
});

describe('parseLocalSourceAuth', () => {
  const base = {
    id: 'sandbox',
    fhirBaseUrl: 'http://localhost:8080/fhir/',
    allowInsecureHttp: true,
    clientId: 'c1',
  };

  it('reads the auth subset and ignores other keys', () => {
    const parsed = parseLocalSourceAuth(
      {
        ...base,
        privateKeyFile: 'keys/a.private.jwk.json',
        scope: 'system/*.rs',
        export: { types: ['Patient'] },
        maxConcurrency: 2,
      },
      { baseDir: '/etc/sources' },
    );
    expect(parsed).toStrictEqual({
      id: 'sandbox',
      fhirBaseUrl: 'http://localhost:8080/fhir',
      allowInsecureHttp: true,
      clientId: 'c1',
      scope: 'system/*.rs',
      signingKey: { kind: 'jwk-file', path: '/etc/sources/keys/a.private.jwk.json' },
    });
  });

  it('keeps an absolute key path and accepts a KMS key', () => {
    expect(
      parseLocalSourceAuth({ ...base, privateKeyFile: '/keys/a.json' }, { baseDir: '/x' }).signingKey,
    ).toStrictEqual({
      kind: 'jwk-file',
      path: '/keys/a.json',
    });
    expect(parseLocalSourceAuth({ ...base, kmsKeyId: 'alias/k' }).signingKey).toStrictEqual({
      kind: 'kms',
      keyId: 'alias/k',
    });
  });

  it.each([
    [
      'no id',
      { ...base, id: undefined, kmsKeyId: 'k' },
      'source.id is required: 1-63 lower-case letters, digits or dashes, starting with a letter or digit',
    ],
    [
      'http without opting in',
      { ...base, allowInsecureHttp: undefined, kmsKeyId: 'k' },
      'source.fhirBaseUrl uses http:, allowed only for loopback hosts with allowInsecureHttp: true',
    ],
    ['no key', base, 'source needs a signing key: set privateKeyFile or kmsKeyId'],
    [
      'both keys',
      { ...base, privateKeyFile: 'a', kmsKeyId: 'k' },
      'source sets both privateKeyFile and kmsKeyId; set exactly one',
    ],
    [
      'an http tokenUrl off loopback',
      { ...base, kmsKeyId: 'k', tokenUrl: 'http://ehr.example.org/t' },
      'source.tokenUrl uses http: on a non-loopback host; only https is allowed',
    ],
  ])('rejects %s', (_, raw, message) => {
    expect(() => parseLocalSourceAuth(raw)).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIGURATION', message }),
    );
  });
});
