import { createLocalJWKSet, jwtVerify } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAccessTokenProvider } from '../../../lambdas/adapters/access-token-provider.js';
import { createKmsSigner } from '../../../lambdas/adapters/kms-signer.js';
import { createLocalSignerFromJwk, type LocalSigner } from '../../../lambdas/adapters/local-signer.js';
import { clearSmartConfigurationCache } from '../../../lambdas/adapters/token-endpoint.js';
import { buildJwks, type PublishedJwk } from '../../../lambdas/core/auth/jwk.js';
import { createLogger } from '../../../lambdas/logger.js';
import { KmsStandIn } from '../../support/kms-stand-in.js';
import { generatePrivateJwk } from '../../support/test-keys.js';
import {
  type RecordedRequest,
  type ScriptedResponse,
  startTokenServer,
  type TokenServer,
} from '../../support/token-server.js';

const START = new Date('2026-03-01T12:00:00Z');
const SCOPE = 'system/Patient.rs system/Observation.rs';

let server: TokenServer | undefined;
let clock: Date;
let issued: number;
beforeEach(() => {
  clearSmartConfigurationCache();
  clock = START;
  issued = 0;
});
afterEach(async () => {
  await server?.close();
  server = undefined;
});
const advance = (seconds: number) => {
  clock = new Date(clock.getTime() + seconds * 1000);
};

/**
 * A token endpoint that verifies the client assertion like an EHR would
 * (signature against the registered JWKS, aud, iss = sub = client id).
 */
async function startVerifyingServer(
  jwks: readonly PublishedJwk[],
  options: {
    expiresIn?: unknown;
    scope?: string;
    before?: (request: RecordedRequest) => ScriptedResponse | undefined;
  } = {},
) {
  server = await startTokenServer(async (request) => {
    if (request.path === '/fhir/.well-known/smart-configuration') {
      return {
        status: 200,
        body: {
          token_endpoint: server!.tokenUrl,
          token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
        },
      };
    }
    const early = options.before?.(request);
    if (early) return early;
    try {
      await jwtVerify(
        request.form.get('client_assertion') ?? '',
        createLocalJWKSet(buildJwks(jwks) as never),
        {
          audience: server!.tokenUrl,
          issuer: 'client-1',
          subject: 'client-1',
          currentDate: clock,
          maxTokenAge: 300,
        },
      );
    } catch (error) {
      return { status: 401, body: { error: 'invalid_client', error_description: (error as Error).message } };
    }
    issued += 1;
    return {
      status: 200,
      body: {
        access_token: `access-token-${issued}`,
        token_type: 'Bearer',
        expires_in: options.expiresIn ?? 3600,
        scope: options.scope ?? request.form.get('scope'),
      },
    };
  });
  return server;
}

function provider(
  signer: LocalSigner | Awaited<ReturnType<typeof createKmsSigner>>,
  extra: Record<string, unknown> = {},
) {
  return createAccessTokenProvider({
    signer,
    clientId: 'client-1',
    scope: SCOPE,
    fhirBaseUrl: `${server!.baseUrl}/fhir`,
    allowInsecureHttp: true,
    now: () => clock,
    sleep: async () => {},
    random: () => 0,
    ...extra,
  });
}

describe('createAccessTokenProvider', () => {
  it.each(['ES384', 'RS384'] as const)('mints with a local %s key through discovery', async (alg) => {
    const signer = createLocalSignerFromJwk(generatePrivateJwk(alg));
    await startVerifyingServer([signer.publicJwk]);
    const token = await provider(signer).getAccessToken();
    expect(token).toStrictEqual({
      accessToken: 'access-token-1',
      expiresAt: new Date(START.getTime() + 3600_000),
      scope: SCOPE,
      requestedScope: SCOPE,
      minted: true,
    });
  });

  it.each([
    ['ES384', 'ECC_NIST_P384'],
    ['RS384', 'RSA_2048'],
  ] as const)('mints with a KMS %s key', async (_, keySpec) => {
    const kms = new KmsStandIn();
    const { KeyId } = kms.createKey({ KeySpec: keySpec, KeyUsage: 'SIGN_VERIFY' });
    const signer = await createKmsSigner({ kms, keyId: KeyId });
    await startVerifyingServer([signer.publicJwk]);
    expect((await provider(signer).getAccessToken()).accessToken).toBe('access-token-1');
  });

  it('reuses a fresh token and refreshes it once under five minutes remain', async () => {
    const signer = createLocalSignerFromJwk(generatePrivateJwk('ES384'));
    await startVerifyingServer([signer.publicJwk]);
    const tokens = provider(signer);
    expect(await tokens.getAccessToken()).toMatchObject({ accessToken: 'access-token-1', minted: true });
    advance(3300);
    expect(await tokens.getAccessToken()).toMatchObject({ accessToken: 'access-token-1', minted: false });
    advance(1);
    expect(await tokens.getAccessToken()).toMatchObject({ accessToken: 'access-token-2', minted: true });
    expect(server!.requestsTo('/auth/token')).toHaveLength(2);
  });

  it('refreshes early when the token would expire before its next use', async () => {
    const signer = createLocalSignerFromJwk(generatePrivateJwk('ES384'));
    await startVerifyingServer([signer.publicJwk]);
    const tokens = provider(signer);
    await tokens.getAccessToken();
    advance(3000);
    expect((await tokens.getAccessToken({ secondsUntilUse: 200 })).minted).toBe(false);
    expect((await tokens.getAccessToken({ secondsUntilUse: 400 })).accessToken).toBe('access-token-2');
  });

  it('shares one mint between many concurrent callers: no flood', async () => {
    const signer = createLocalSignerFromJwk(generatePrivateJwk('ES384'));
    await startVerifyingServer([signer.publicJwk]);
    const tokens = provider(signer);
    const results = await Promise.all(Array.from({ length: 20 }, () => tokens.getAccessToken()));
    expect(new Set(results.map((result) => result.accessToken))).toStrictEqual(new Set(['access-token-1']));
    for (let i = 0; i < 50; i += 1) await tokens.getAccessToken();
    expect(server!.requestsTo('/auth/token')).toHaveLength(1);
    expect(server!.requestsTo('/fhir/.well-known/smart-configuration')).toHaveLength(1);
  });

  it('re-mints on forceRefresh (after a 401 from the FHIR server)', async () => {
    const signer = createLocalSignerFromJwk(generatePrivateJwk('ES384'));
    await startVerifyingServer([signer.publicJwk]);
    const tokens = provider(signer);
    await tokens.getAccessToken();
    expect((await tokens.getAccessToken({ forceRefresh: true })).accessToken).toBe('access-token-2');
  });

  it('handles CMS BCDA 20-minute tokens with a string expires_in', async () => {
    const signer = createLocalSignerFromJwk(generatePrivateJwk('RS384'));
    await startVerifyingServer([signer.publicJwk], { expiresIn: '1200' });
    const tokens = provider(signer);
    expect((await tokens.getAccessToken()).expiresAt).toStrictEqual(new Date(START.getTime() + 1_200_000));
    advance(900);
    expect((await tokens.getAccessToken()).minted).toBe(false);
    advance(1);
    expect((await tokens.getAccessToken()).minted).toBe(true);
  });

  it('does not re-mint on every call for eClinicalWorks 300 s tokens', async () => {
    const signer = createLocalSignerFromJwk(generatePrivateJwk('ES384'));
    await startVerifyingServer([signer.publicJwk], { expiresIn: 300 });
    const tokens = provider(signer);
    await tokens.getAccessToken();
    advance(100);
    expect((await tokens.getAccessToken()).minted).toBe(false);
    advance(51);
    expect((await tokens.getAccessToken()).minted).toBe(true);
  });

  it('surfaces a refused assertion as a TokenRequestError (kid not registered)', async () => {
    const signer = createLocalSignerFromJwk(generatePrivateJwk('ES384'));
    const registered = createLocalSignerFromJwk(generatePrivateJwk('ES384'));
    await startVerifyingServer([registered.publicJwk]);
    await expect(provider(signer).getAccessToken()).rejects.toMatchObject({
      name: 'TokenRequestError',
      details: { status: 401, error: 'invalid_client' },
    });
  });

  it('uses an explicit tokenUrl without discovery', async () => {
    const signer = createLocalSignerFromJwk(generatePrivateJwk('ES384'));
    await startVerifyingServer([signer.publicJwk]);
    await provider(signer, { tokenUrl: server!.tokenUrl }).getAccessToken();
    expect(server!.requests.map((request) => request.path)).toStrictEqual(['/auth/token']);
  });

  it('fails loudly on a misspelled option', () => {
    const signer = createLocalSignerFromJwk(generatePrivateJwk('ES384'));
    expect(() =>
      createAccessTokenProvider({
        signer,
        clientId: 'c',
        scope: 's',
        fhirBaseUrl: 'https://x',
        tokenURL: 'https://y',
      } as never),
    ).toThrow('unknown access token provider option(s): tokenURL');
  });

  it.each([
    [
      { fhirBaseUrl: 'http://ehr.example.org/fhir' },
      'fhirBaseUrl uses http: on a non-loopback host; only https is allowed',
    ],
    [{ fhirBaseUrl: 'fhir' }, 'fhirBaseUrl is not an absolute URL'],
    [
      { tokenUrl: 'http://127.0.0.1/token' },
      'tokenUrl uses http:, allowed only for loopback hosts with allowInsecureHttp: true',
    ],
    [{ clientId: ' ' }, 'clientId must be a non-empty string'],
    [{ scope: '' }, 'scope must be a non-empty string'],
  ])('checks %j when created', (override, message) => {
    const signer = createLocalSignerFromJwk(generatePrivateJwk('ES384'));
    expect(() =>
      createAccessTokenProvider({
        signer,
        clientId: 'c',
        scope: 's',
        fhirBaseUrl: 'https://ehr.example.org/fhir',
        ...override,
      }),
    ).toThrow(expect.objectContaining({ code: 'ERR_CONFIGURATION', message }));
  });

  it('keeps tokens, assertions and key material out of logs and errors', async () => {
    // Prepare
    const jwk = generatePrivateJwk('ES384');
    const signer = createLocalSignerFromJwk(jwk);
    const assertions: string[] = [];
    let attempt = 0;
    await startVerifyingServer([signer.publicJwk], {
      scope: 'system/Patient.rs',
      before: (request) => {
        assertions.push(request.form.get('client_assertion') ?? '');
        attempt += 1;
        // A flaky first answer, so the retry path logs too.
        return attempt === 1 ? { status: 503, body: { error: 'temporarily_unavailable' } } : undefined;
      },
    });
    const lines: string[] = [];
    const logger = createLogger({ level: 'debug', write: (line) => lines.push(line), now: () => clock });
    const tokens = provider(signer, { logger });
    // Act
    const token = await tokens.getAccessToken();
    const refused = await provider(createLocalSignerFromJwk(generatePrivateJwk('ES384')), { logger })
      .getAccessToken()
      .then(
        () => new Error('expected a rejection'),
        (error: unknown) => error as Error,
      );
    // Assess
    const output = [...lines, refused.message, JSON.stringify(refused)].join('\n');
    expect(lines.map((line) => JSON.parse(line).message)).toStrictEqual([
      'token request failed; retrying',
      'minted access token',
      'the server granted fewer scopes than requested',
    ]);
    expect(JSON.parse(lines[0]!)).toMatchObject({ url: server!.tokenUrl, attempt: 1, reason: 'HTTP 503' });
    expect(JSON.parse(lines[1]!)).toMatchObject({
      url: server!.tokenUrl,
      kid: signer.kid,
      alg: 'ES384',
      expiresInSeconds: 3600,
      attempts: 2,
    });
    expect(refused).toMatchObject({ name: 'TokenRequestError' });
    expect(assertions.length).toBeGreaterThanOrEqual(3);
    expect(output).not.toContain(token.accessToken);
    for (const assertion of assertions) {
      expect(output).not.toContain(assertion);
      expect(output).not.toContain(assertion.split('.')[2]);
    }
    expect(output).not.toContain(jwk.d);
  });
});
