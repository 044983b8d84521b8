import { describe, expect, it } from 'vitest';
import {
  classifyTokenHttpResponse,
  parseOAuthError,
  parseTokenResponse,
  sanitizeErrorDescription,
  type TokenResponseContext,
} from '../../../lambdas/core/auth/token-response.js';

const REQUESTED_AT = new Date('2026-03-01T12:00:00Z');
const CONTEXT: TokenResponseContext = {
  tokenUrl: 'https://ehr.example.org/token',
  requestedScope: 'system/Patient.rs system/Observation.rs',
  requestedAt: REQUESTED_AT,
};
const at = (seconds: number) => new Date(REQUESTED_AT.getTime() + seconds * 1000);

describe('parseTokenResponse', () => {
  const good: Array<
    [string, Record<string, unknown>, { expiresIn: number; defaulted: boolean; scope: string }]
  > = [
    [
      'numeric expires_in',
      { expires_in: 300 },
      { expiresIn: 300, defaulted: false, scope: CONTEXT.requestedScope },
    ],
    [
      'CMS BCDA string expires_in',
      { expires_in: '1200' },
      { expiresIn: 1200, defaulted: false, scope: CONTEXT.requestedScope },
    ],
    [
      'fractional expires_in, floored',
      { expires_in: 299.9 },
      { expiresIn: 299, defaulted: false, scope: CONTEXT.requestedScope },
    ],
    [
      'missing expires_in: SMART default 300',
      {},
      { expiresIn: 300, defaulted: true, scope: CONTEXT.requestedScope },
    ],
    [
      'null expires_in: SMART default 300',
      { expires_in: null },
      { expiresIn: 300, defaulted: true, scope: CONTEXT.requestedScope },
    ],
    [
      'narrower granted scope',
      { expires_in: 300, scope: 'system/Patient.rs' },
      { expiresIn: 300, defaulted: false, scope: 'system/Patient.rs' },
    ],
    [
      'empty scope means as requested',
      { expires_in: 300, scope: '' },
      { expiresIn: 300, defaulted: false, scope: CONTEXT.requestedScope },
    ],
  ];
  it.each(good)('accepts %s', (_, extra, expected) => {
    // Act
    const token = parseTokenResponse({ access_token: 'tok', token_type: 'bearer', ...extra }, CONTEXT);
    // Assess
    expect(token).toStrictEqual({
      accessToken: 'tok',
      tokenType: 'bearer',
      expiresInSeconds: expected.expiresIn,
      expiresInDefaulted: expected.defaulted,
      expiresAt: at(expected.expiresIn),
      obtainedAt: REQUESTED_AT,
      requestedScope: CONTEXT.requestedScope,
      grantedScope: expected.scope,
    });
  });

  it.each(['Bearer', 'BEARER', 'bearer'])(
    'accepts token_type %s (case-insensitive, RFC 6749 §7.1)',
    (tokenType) => {
      expect(
        parseTokenResponse({ access_token: 't', token_type: tokenType, expires_in: 60 }, CONTEXT).tokenType,
      ).toBe('bearer');
    },
  );

  it('honours a configured default for a missing expires_in', () => {
    const token = parseTokenResponse(
      { access_token: 't', token_type: 'bearer' },
      { ...CONTEXT, defaultExpiresInSeconds: 120 },
    );
    expect(token.expiresAt).toStrictEqual(at(120));
  });

  const PREFIX = 'token endpoint https://ehr.example.org/token answered HTTP 200 with';
  const bad: Array<[string, unknown, string]> = [
    ['an array', [], `${PREFIX} a body that is not a JSON object`],
    ['null', null, `${PREFIX} a body that is not a JSON object`],
    [
      'no access_token',
      { token_type: 'bearer', expires_in: 300 },
      `${PREFIX} no access_token (expected a non-empty string)`,
    ],
    [
      'empty access_token',
      { access_token: '', token_type: 'bearer' },
      `${PREFIX} no access_token (expected a non-empty string)`,
    ],
    [
      'numeric access_token',
      { access_token: 42, token_type: 'bearer' },
      `${PREFIX} no access_token (expected a non-empty string)`,
    ],
    [
      'no token_type',
      { access_token: 't' },
      `${PREFIX} no token_type (SMART Backend Services requires "bearer")`,
    ],
    [
      'DPoP token_type',
      { access_token: 't', token_type: 'DPoP' },
      `${PREFIX} token_type "DPoP"; only "bearer" is supported`,
    ],
    [
      'a garbage token_type',
      { access_token: 't', token_type: 'mac; secret=abc' },
      `${PREFIX} token_type an unrecognised value; only "bearer" is supported`,
    ],
    [
      'zero expires_in',
      { access_token: 't', token_type: 'bearer', expires_in: 0 },
      `${PREFIX} an expires_in that is not a positive number of seconds`,
    ],
    [
      'negative expires_in',
      { access_token: 't', token_type: 'bearer', expires_in: -5 },
      `${PREFIX} an expires_in that is not a positive number of seconds`,
    ],
    [
      'non-numeric string expires_in',
      { access_token: 't', token_type: 'bearer', expires_in: '20 minutes' },
      `${PREFIX} an expires_in that is not a positive number of seconds`,
    ],
    [
      'boolean expires_in',
      { access_token: 't', token_type: 'bearer', expires_in: true },
      `${PREFIX} an expires_in that is not a positive number of seconds`,
    ],
    [
      'non-string scope',
      { access_token: 't', token_type: 'bearer', scope: ['a'] },
      `${PREFIX} a scope that is not a string`,
    ],
  ];
  it.each(bad)('rejects %s with a TokenRequestError', (_, body, message) => {
    expect(() => parseTokenResponse(body, CONTEXT)).toThrow(
      expect.objectContaining({
        name: 'TokenRequestError',
        code: 'ERR_TOKEN_REQUEST',
        message,
        details: { status: 200 },
      }),
    );
  });

  it('never puts the access token into an error message', () => {
    const secret = 'eyJhbGciOiJSUzM4NCJ9.secret-token-value.sig';
    try {
      parseTokenResponse({ access_token: secret, token_type: 'mac' }, CONTEXT);
      expect.unreachable();
    } catch (error) {
      expect(String((error as Error).message)).not.toContain('secret-token-value');
    }
  });
});

describe('parseOAuthError and sanitizeErrorDescription', () => {
  it('reads error and error_description', () => {
    expect(parseOAuthError({ error: 'invalid_client', error_description: 'Unknown kid' })).toStrictEqual({
      error: 'invalid_client',
      errorDescription: 'Unknown kid',
    });
  });

  it.each([
    [{}],
    [{ error: 42 }],
    [{ error: '' }],
    [{ error: 'has "quotes"' }],
    ['text'],
    [null],
    [[{ error: 'x' }]],
  ])('is undefined for %j', (body) => {
    expect(parseOAuthError(body)).toBeUndefined();
  });

  it('strips an echoed client assertion and long opaque strings, and bounds the length', () => {
    const assertion = 'eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJjbGllbnQifQ.c2lnbmF0dXJl';
    expect(sanitizeErrorDescription(`bad assertion ${assertion}\n(kid k1)`)).toBe(
      'bad assertion [redacted-jwt] (kid k1)',
    );
    expect(sanitizeErrorDescription(`key ${'A'.repeat(200)} unknown`)).toBe('key [redacted] unknown');
    expect(sanitizeErrorDescription('x '.repeat(400))).toHaveLength(301);
  });
});

describe('classifyTokenHttpResponse', () => {
  const classify = (status: number, body: unknown) =>
    classifyTokenHttpResponse(
      { status, bodyText: typeof body === 'string' ? body : JSON.stringify(body) },
      CONTEXT,
    );

  it('returns the token for a 200', () => {
    const outcome = classify(200, { access_token: 'tok', token_type: 'Bearer', expires_in: '1200' });
    expect(outcome).toMatchObject({ kind: 'token', token: { accessToken: 'tok', expiresAt: at(1200) } });
  });

  it('rejects a 200 whose body is not JSON, without echoing it', () => {
    const outcome = classify(200, 'access_token=abc');
    expect(outcome).toMatchObject({
      kind: 'rejected',
      error: {
        message:
          'token endpoint https://ehr.example.org/token answered HTTP 200 with a body that is not JSON',
      },
    });
  });

  it('rejects a 200 that carries an OAuth error object instead of a token', () => {
    const outcome = classify(200, { error: 'invalid_scope', error_description: 'scope not allowed' });
    expect(outcome).toMatchObject({
      kind: 'rejected',
      error: {
        message:
          'token endpoint https://ehr.example.org/token refused the request (HTTP 200 invalid_scope: scope not allowed)',
        details: { status: 200, error: 'invalid_scope', errorDescription: 'scope not allowed' },
      },
    });
  });

  it('rejects an OAuth 400 for good, with its error and description', () => {
    const outcome = classify(400, { error: 'invalid_client', error_description: 'kid not registered' });
    expect(outcome.kind).toBe('rejected');
    expect(outcome.kind === 'rejected' && outcome.error).toMatchObject({
      name: 'TokenRequestError',
      message:
        'token endpoint https://ehr.example.org/token refused the request (HTTP 400 invalid_client: kid not registered)',
      details: { status: 400, error: 'invalid_client', errorDescription: 'kid not registered' },
    });
  });

  it.each([
    [400, '', 'HTTP 400 without an OAuth error body'],
    [400, '<html>Bad Request</html>', 'HTTP 400 without an OAuth error body'],
    [500, { error: 'server_error' }, 'HTTP 500'],
    [503, '', 'HTTP 503'],
    [429, '', 'HTTP 429'],
  ])('retries HTTP %i with body %j', (status, body, reason) => {
    expect(classify(status, body)).toMatchObject({ kind: 'retry', reason });
  });

  it.each([
    [401, { error: 'invalid_client' }, 'refused the request (HTTP 401 invalid_client)'],
    [403, '', 'answered HTTP 403 with no OAuth error body'],
    [
      302,
      '',
      'answered HTTP 302 with a redirect, which is not followed because the request carries the client assertion',
    ],
  ])('rejects HTTP %i %j without retrying', (status, body, message) => {
    expect(classify(status, body)).toMatchObject({
      kind: 'rejected',
      error: { message: expect.stringContaining(message) },
    });
  });
});
