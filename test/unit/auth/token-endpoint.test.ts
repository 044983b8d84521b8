import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  backoffDelayMs,
  clearSmartConfigurationCache,
  discoverSmartConfiguration,
  requestAccessToken,
  resolveTokenUrl,
} from '../../../lambdas/adapters/token-endpoint.js';
import { createLogger } from '../../../lambdas/logger.js';
import { type ScriptedResponse, startTokenServer, type TokenServer } from '../../support/token-server.js';

const NOW = new Date('2026-03-01T12:00:00Z');
const SCOPE = 'system/Patient.rs';
const OK: ScriptedResponse = {
  status: 200,
  body: { access_token: 'at-1', token_type: 'bearer', expires_in: 300, scope: SCOPE },
};

let server: TokenServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});
beforeEach(() => clearSmartConfigurationCache());

function deps() {
  const sleeps: number[] = [];
  const logLines: string[] = [];
  let assertions = 0;
  return {
    sleeps,
    logLines,
    options: {
      allowInsecureHttp: true,
      logger: createLogger({ level: 'debug', write: (line) => logLines.push(line), now: () => NOW }),
      sleep: async (ms: number) => {
        sleeps.push(ms);
      },
      random: () => 0.5,
      now: () => NOW,
      createClientAssertion: async () => `assertion-${++assertions}`,
    },
  };
}

describe('requestAccessToken', () => {
  it('POSTs the client_credentials form exactly as SMART Backend Services specifies', async () => {
    server = await startTokenServer(() => OK);
    const { options } = deps();
    const token = await requestAccessToken({ ...options, tokenUrl: server.tokenUrl, scope: SCOPE });
    expect(token).toMatchObject({
      accessToken: 'at-1',
      expiresAt: new Date(NOW.getTime() + 300_000),
      attempts: 1,
    });
    const [request] = server.requests;
    expect(request).toMatchObject({ method: 'POST', path: '/auth/token' });
    expect(request!.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(request!.headers.accept).toBe('application/json');
    expect(Object.fromEntries(request!.form)).toStrictEqual({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: 'assertion-1',
      scope: SCOPE,
    });
  });

  it('retries a 503 and an Epic-style bare 400, then succeeds, with a fresh assertion each time', async () => {
    const script: ScriptedResponse[] = [{ status: 503 }, { status: 400, body: '' }, OK];
    server = await startTokenServer((_, index) => script[index]!);
    const { options, sleeps } = deps();
    const token = await requestAccessToken({ ...options, tokenUrl: server.tokenUrl, scope: SCOPE });
    expect(token.attempts).toBe(3);
    expect(server.requests.map((request) => request.form.get('client_assertion'))).toStrictEqual([
      'assertion-1',
      'assertion-2',
      'assertion-3',
    ]);
    // Full jitter with random() = 0.5: half of 500 ms, then half of 1000 ms.
    expect(sleeps).toStrictEqual([250, 500]);
  });

  it('retries a dropped connection', async () => {
    server = await startTokenServer((_, index) => (index === 0 ? 'destroy' : OK));
    const { options } = deps();
    expect((await requestAccessToken({ ...options, tokenUrl: server.tokenUrl, scope: SCOPE })).attempts).toBe(
      2,
    );
  });

  it('waits at least the Retry-After of a 429, capped at maxDelayMs', async () => {
    const script: ScriptedResponse[] = [
      { status: 429, headers: { 'retry-after': '3' } },
      { status: 429, headers: { 'retry-after': '120' } },
      OK,
    ];
    server = await startTokenServer((_, index) => script[index]!);
    const { options, sleeps } = deps();
    await requestAccessToken({ ...options, tokenUrl: server.tokenUrl, scope: SCOPE });
    expect(sleeps).toStrictEqual([3000, 8000]);
  });

  it('logs each 429 it waits out, at warn, with the wait and the reason, and no assertion', async () => {
    // Prepare
    const script: ScriptedResponse[] = [
      { status: 429, headers: { 'retry-after': '3' } },
      { status: 429, headers: { 'retry-after': '120' } },
      OK,
    ];
    server = await startTokenServer((_, index) => script[index]!);
    const { options, logLines } = deps();
    // Act
    await requestAccessToken({ ...options, tokenUrl: server.tokenUrl, scope: SCOPE });
    // Assess
    expect(logLines.map((line) => JSON.parse(line))).toEqual([
      {
        level: 'warn',
        time: NOW.toISOString(),
        message: 'token request failed; retrying',
        url: server.tokenUrl,
        attempt: 1,
        reason: 'HTTP 429',
        retryAfterSeconds: 3,
        waitMs: 3000,
      },
      {
        level: 'warn',
        time: NOW.toISOString(),
        message: 'token request failed; retrying',
        url: server.tokenUrl,
        attempt: 2,
        reason: 'HTTP 429',
        retryAfterSeconds: 120,
        waitMs: 8000,
      },
    ]);
    expect(logLines.join('\n')).not.toContain('assertion-');
  });

  it('does not retry an OAuth error body, and reports its error and description', async () => {
    server = await startTokenServer(() => ({
      status: 400,
      body: { error: 'invalid_client', error_description: 'Client assertion kid is not registered' },
    }));
    const { options } = deps();
    await expect(
      requestAccessToken({ ...options, tokenUrl: server.tokenUrl, scope: SCOPE }),
    ).rejects.toMatchObject({
      name: 'TokenRequestError',
      message: `token endpoint ${server.tokenUrl} refused the request (HTTP 400 invalid_client: Client assertion kid is not registered)`,
      details: {
        status: 400,
        error: 'invalid_client',
        errorDescription: 'Client assertion kid is not registered',
      },
    });
    expect(server.requests).toHaveLength(1);
  });

  it('gives up after maxAttempts of 5xx with a TransientServerError naming the last failure', async () => {
    server = await startTokenServer(() => ({ status: 502, body: 'Bad Gateway' }));
    const { options } = deps();
    await expect(
      requestAccessToken({ ...options, tokenUrl: server.tokenUrl, scope: SCOPE }),
    ).rejects.toMatchObject({
      name: 'TransientServerError',
      message: `token endpoint ${server.tokenUrl} failed after 4 attempts (last: HTTP 502)`,
    });
    expect(server.requests).toHaveLength(4);
  });

  it('gives up on repeated bare 400s with a TokenRequestError: no longer a flake', async () => {
    server = await startTokenServer(() => ({ status: 400 }));
    const { options } = deps();
    await expect(
      requestAccessToken({ ...options, tokenUrl: server.tokenUrl, scope: SCOPE, maxAttempts: 2 }),
    ).rejects.toMatchObject({
      name: 'TokenRequestError',
      message: `token endpoint ${server.tokenUrl} failed after 2 attempts (last: HTTP 400 without an OAuth error body)`,
      details: { status: 400 },
    });
  });

  it('never puts the assertion or the token into an error', async () => {
    server = await startTokenServer(() => ({
      status: 401,
      body: {
        error: 'invalid_client',
        error_description: 'bad assertion eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJhIn0.c2ln',
      },
    }));
    const { options } = deps();
    const error = await requestAccessToken({
      ...options,
      createClientAssertion: async () => 'eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJhIn0.c2ln',
      tokenUrl: server.tokenUrl,
      scope: SCOPE,
    }).then(
      () => new Error('expected a rejection'),
      (caught: unknown) => caught as Error,
    );
    expect(error.message).toBe(
      `token endpoint ${server.tokenUrl} refused the request (HTTP 401 invalid_client: bad assertion [redacted-jwt])`,
    );
  });

  it('times out a hung attempt and retries it', async () => {
    server = await startTokenServer(async (_, index) => {
      if (index === 0) await new Promise((resolve) => setTimeout(resolve, 500));
      return OK;
    });
    const { options } = deps();
    const token = await requestAccessToken({
      ...options,
      tokenUrl: server.tokenUrl,
      scope: SCOPE,
      timeoutMs: 100,
    });
    expect(token.attempts).toBe(2);
  });

  it.each([
    [
      'https required',
      'http://ehr.example.org/token',
      true,
      'tokenUrl uses http: on a non-loopback host; only https is allowed',
    ],
    [
      'loopback http needs opting in',
      'http://127.0.0.1:1/token',
      false,
      'tokenUrl uses http:, allowed only for loopback hosts with allowInsecureHttp: true',
    ],
    [
      'no credentials in the URL',
      'https://user:pw@ehr.example.org/token',
      false,
      'tokenUrl must not carry credentials',
    ],
  ])('refuses a token URL: %s', async (_, tokenUrl, allowInsecureHttp, message) => {
    const { options } = deps();
    await expect(
      requestAccessToken({ ...options, allowInsecureHttp, tokenUrl, scope: SCOPE }),
    ).rejects.toMatchObject({
      name: 'ConfigurationError',
      message,
    });
  });
});

describe('discovery', () => {
  it('reads token_endpoint from .well-known/smart-configuration once per base URL', async () => {
    server = await startTokenServer(() => ({
      status: 200,
      body: {
        token_endpoint: `${server!.tokenUrl}`,
        token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
      },
    }));
    const { options } = deps();
    const first = await resolveTokenUrl({ ...options, fhirBaseUrl: `${server.baseUrl}/fhir/` });
    const second = await resolveTokenUrl({ ...options, fhirBaseUrl: `${server.baseUrl}/fhir` });
    expect(first).toBe(server.tokenUrl);
    expect(second).toBe(server.tokenUrl);
    expect(
      server.requests.map((request) => `${request.method} ${request.path} ${request.headers.accept}`),
    ).toStrictEqual(['GET /fhir/.well-known/smart-configuration application/json']);
    expect(
      await discoverSmartConfiguration({ ...options, fhirBaseUrl: `${server.baseUrl}/fhir` }),
    ).toStrictEqual({
      tokenEndpoint: server.tokenUrl,
      signingAlgorithms: ['RS384', 'ES384'],
    });
  });

  it('lets an explicit tokenUrl win without any discovery request', async () => {
    server = await startTokenServer(() => ({ status: 500 }));
    const { options } = deps();
    const url = await resolveTokenUrl({
      ...options,
      fhirBaseUrl: server.baseUrl,
      tokenUrl: 'https://override.example.org/t',
    });
    expect(url).toBe('https://override.example.org/t');
    expect(server.requests).toHaveLength(0);
  });

  it('retries a 503 during discovery and does not cache failures', async () => {
    let healthy = false;
    server = await startTokenServer(() =>
      healthy ? { status: 200, body: { token_endpoint: 'https://ehr.example.org/t' } } : { status: 503 },
    );
    const { options } = deps();
    await expect(
      resolveTokenUrl({ ...options, fhirBaseUrl: server.baseUrl, maxAttempts: 2 }),
    ).rejects.toMatchObject({
      name: 'TransientServerError',
      message: `${server.baseUrl}/.well-known/smart-configuration did not answer after 2 attempts (last: HTTP 503)`,
    });
    healthy = true;
    expect(await resolveTokenUrl({ ...options, fhirBaseUrl: server.baseUrl })).toBe(
      'https://ehr.example.org/t',
    );
  });

  it('waits out a 429 during discovery for its Retry-After, and logs it at warn', async () => {
    // Prepare
    const script: ScriptedResponse[] = [
      { status: 429, headers: { 'retry-after': '2' } },
      { status: 200, body: { token_endpoint: 'https://ehr.example.org/t' } },
    ];
    server = await startTokenServer((_, index) => script[index]!);
    const { options, sleeps, logLines } = deps();
    // Act
    const url = await resolveTokenUrl({ ...options, fhirBaseUrl: server.baseUrl });
    // Assess
    expect(url).toBe('https://ehr.example.org/t');
    expect(sleeps).toStrictEqual([2000]);
    expect(logLines.map((line) => JSON.parse(line))).toEqual([
      {
        level: 'warn',
        time: NOW.toISOString(),
        message: 'SMART discovery failed; retrying',
        url: `${server.baseUrl}/.well-known/smart-configuration`,
        attempt: 1,
        reason: 'HTTP 429',
        retryAfterSeconds: 2,
        waitMs: 2000,
      },
    ]);
  });

  it.each([
    ['/fhir', 'its path is /fhir'],
    ['', 'it has no path'],
  ])(
    'on a 404 names both likely mistakes: a base URL missing its path, or no discovery (base path %j)',
    async (path, pathNote) => {
      // Prepare
      server = await startTokenServer(() => ({ status: 404, body: 'Not Found' }));
      const origin = new URL(server.baseUrl).origin;
      const { options } = deps();
      // Act + Assess
      await expect(resolveTokenUrl({ ...options, fhirBaseUrl: `${origin}${path}` })).rejects.toMatchObject({
        name: 'ConfigurationError',
        message:
          `${origin}${path}/.well-known/smart-configuration answered HTTP 404. Either fhirBaseUrl is not the server's FHIR base URL ` +
          `(the one whose /metadata answers, usually with a path such as /fhir/r4; ${pathNote}), or the server does not offer SMART discovery: ` +
          'then set tokenUrl for this source',
      });
    },
  );

  it.each([
    [
      { status: 403, body: 'Forbidden' },
      (base: string) =>
        `${base}/.well-known/smart-configuration answered HTTP 403; the server may not support SMART discovery: set tokenUrl for this source`,
    ],
    [
      { status: 200, body: '<html>' },
      (base: string) =>
        `${base}/.well-known/smart-configuration did not return JSON; set tokenUrl for this source`,
    ],
    [
      { status: 200, body: { issuer: 'x' } },
      (base: string) =>
        `${base}/.well-known/smart-configuration has no token_endpoint; set tokenUrl for this source`,
    ],
    [
      { status: 200, body: { token_endpoint: 'http://evil.example.org/token' } },
      (base: string) =>
        `${base}/.well-known/smart-configuration token_endpoint uses http: on a non-loopback host; only https is allowed`,
    ],
  ] as const)('fails clearly on %j', async (answer, message) => {
    server = await startTokenServer(() => answer as ScriptedResponse);
    const { options } = deps();
    await expect(resolveTokenUrl({ ...options, fhirBaseUrl: server.baseUrl })).rejects.toMatchObject({
      name: 'ConfigurationError',
      message: message(server.baseUrl),
    });
  });
});

describe('backoffDelayMs', () => {
  it('is full jitter over a doubling, capped ceiling', () => {
    const options = { baseDelayMs: 500, maxDelayMs: 8000 };
    expect([0, 1, 2, 3, 4, 5].map((retry) => backoffDelayMs(retry, options, () => 0.999999))).toStrictEqual([
      499, 999, 1999, 3999, 7999, 7999,
    ]);
    expect(backoffDelayMs(3, options, () => 0)).toBe(0);
  });
});
