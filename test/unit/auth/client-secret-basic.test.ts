import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAccessTokenProvider } from '../../../lambdas/adapters/access-token-provider.js';
import { readClientSecret } from '../../../lambdas/adapters/client-secret.js';
import { createLocalSignerFromJwk } from '../../../lambdas/adapters/local-signer.js';
import {
  basicAuthorization,
  clearSmartConfigurationCache,
  requestAccessToken,
} from '../../../lambdas/adapters/token-endpoint.js';
import {
  ClientSecretValue,
  parseClientSecret,
  parseLocalSourceAuth,
} from '../../../lambdas/core/auth/client-config.js';
import { createLogger } from '../../../lambdas/logger.js';
import { generatePrivateJwk } from '../../support/test-keys.js';
import { startTokenServer, type TokenServer } from '../../support/token-server.js';

/**
 * client_secret_basic (RFC 6749 §2.3.1), CMS BCDA's token endpoint authentication:
 * where the secret may come from, how it is sent, and that it is never written anywhere.
 */

const SECRET = 'bcda-s3cr3t:with/odd+chars %and=more';

describe('basicAuthorization', () => {
  it('form-urlencodes id and secret before base64 (RFC 6749 §2.3.1, Appendix B)', () => {
    const header = basicAuthorization('id:with space/ü', new ClientSecretValue('p@ss:w rd+&='));
    expect(header.startsWith('Basic ')).toBe(true);
    const decoded = Buffer.from(header.slice('Basic '.length), 'base64').toString('utf8');
    // One colon separates the pair: the ones inside id and secret are encoded.
    expect(decoded).toBe('id%3Awith+space%2F%C3%BC:p%40ss%3Aw+rd%2B%26%3D');
  });

  it('leaves BCDA-style hex credentials unchanged (curl --user sends the same header)', () => {
    const id = '2462c96b-6427-4efb-aed7-118e20c2e997';
    const secret = 'e5bf53ec3a4304ab43c00155cfe1f01a';
    expect(basicAuthorization(id, new ClientSecretValue(secret))).toBe(
      `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`,
    );
  });
});

describe('ClientSecretValue', () => {
  it('shows [redacted] in JSON, strings and util.inspect', () => {
    const value = new ClientSecretValue(SECRET);
    const config = { clientId: 'c', clientSecret: { kind: 'value', value } };
    expect(JSON.stringify(config)).not.toContain('s3cr3t');
    expect(`${value}`).toBe('[redacted]');
    expect(inspect(config, { depth: 5 })).not.toContain('s3cr3t');
    expect(value.reveal()).toBe(SECRET);
  });
});

describe('parseClientSecret with auth client_secret_basic', () => {
  it('reads { clientId, clientSecret } and needs no signing key', () => {
    const parsed = parseClientSecret(JSON.stringify({ clientId: 'bcda-id', clientSecret: SECRET }), {
      authMethod: 'client_secret_basic',
    });
    expect(parsed).toMatchObject({ clientId: 'bcda-id', authMethod: 'client_secret_basic' });
    expect(parsed.authMethod === 'client_secret_basic' && parsed.clientSecret.kind).toBe('value');
    expect(JSON.stringify(parsed)).not.toContain('s3cr3t');
  });

  it.each([
    [
      'no secret',
      { clientId: 'a' },
      'client_secret_basic',
      'secret needs a client secret for auth client_secret_basic: set clientSecret',
    ],
    [
      'a signing key instead',
      { clientId: 'a', kmsKeyId: 'k' },
      'client_secret_basic',
      'secret sets kmsKeyId, a credential of auth private_key_jwt, but its auth is client_secret_basic; client_secret_basic takes clientSecret',
    ],
    [
      'a secret next to the key of a private_key_jwt source',
      { clientId: 'a', kmsKeyId: 'k', clientSecret: SECRET },
      'private_key_jwt',
      'secret sets clientSecret, a credential of auth client_secret_basic, but its auth is private_key_jwt; private_key_jwt takes kmsKeyId or privateJwk',
    ],
    [
      'a padded secret',
      { clientId: 'a', clientSecret: ` ${SECRET}` },
      'client_secret_basic',
      'secret.clientSecret must be the secret exactly as the EHR issued it: non-empty, no leading or trailing whitespace',
    ],
  ] as const)('rejects %s, naming the keys and never the value', (_, raw, authMethod, message) => {
    let thrown: unknown;
    try {
      parseClientSecret(raw, { authMethod });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ code: 'ERR_CONFIGURATION', message });
    expect(String((thrown as Error).message)).not.toContain('s3cr3t');
  });
});

describe('parseLocalSourceAuth with auth client_secret_basic', () => {
  const base = {
    id: 'bcda',
    fhirBaseUrl: 'https://sandbox.bcda.cms.gov/api/v2',
    tokenUrl: 'https://sandbox.bcda.cms.gov/auth/token',
    clientId: 'bcda-id',
    auth: 'client_secret_basic',
  };

  it('reads clientSecretEnv', () => {
    expect(parseLocalSourceAuth({ ...base, clientSecretEnv: 'BCDA_CLIENT_SECRET' })).toMatchObject({
      authMethod: 'client_secret_basic',
      clientSecret: { kind: 'env', name: 'BCDA_CLIENT_SECRET' },
    });
  });

  it('reads clientSecretFile relative to the source file', () => {
    expect(
      parseLocalSourceAuth({ ...base, clientSecretFile: 'bcda.secret' }, { baseDir: '/etc/sources' }),
    ).toMatchObject({ clientSecret: { kind: 'file', path: '/etc/sources/bcda.secret' } });
  });

  it.each([
    [
      'no secret',
      base,
      'source needs a client secret for auth client_secret_basic: set clientSecretEnv or clientSecretFile',
    ],
    [
      'both env and file',
      { ...base, clientSecretEnv: 'A', clientSecretFile: 'a.secret' },
      'source sets both clientSecretEnv and clientSecretFile; set exactly one',
    ],
    [
      'a key file',
      { ...base, clientSecretEnv: 'A', privateKeyFile: 'a.json' },
      'source sets privateKeyFile, a credential of auth private_key_jwt, but its auth is client_secret_basic; client_secret_basic takes clientSecretEnv or clientSecretFile',
    ],
    [
      'a secret env with the default auth',
      { ...base, auth: undefined, privateKeyFile: 'a.json', clientSecretEnv: 'A' },
      'source sets clientSecretEnv, a credential of auth client_secret_basic, but its auth is private_key_jwt; private_key_jwt takes privateKeyFile or kmsKeyId',
    ],
    [
      'the secret value itself',
      { ...base, clientSecret: SECRET },
      'a secret never belongs in a source file: name it with clientSecretEnv (an environment variable) or clientSecretFile (a file)',
    ],
    [
      'an environment variable name that is not one',
      { ...base, clientSecretEnv: 'not a name' },
      'source.clientSecretEnv must be an environment variable name such as BCDA_CLIENT_SECRET',
    ],
  ])('rejects %s', (_, raw, message) => {
    let thrown: unknown;
    try {
      parseLocalSourceAuth(raw);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ code: 'ERR_CONFIGURATION' });
    expect((thrown as Error).message).toContain(message);
    expect((thrown as Error).message).not.toContain('s3cr3t');
  });
});

describe('readClientSecret', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'client-secret-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads an environment variable', async () => {
    const value = await readClientSecret(
      { kind: 'env', name: 'BCDA_SECRET' },
      { env: { BCDA_SECRET: SECRET } },
    );
    expect(value.reveal()).toBe(SECRET);
  });

  it('names a missing environment variable and the source', async () => {
    await expect(
      readClientSecret({ kind: 'env', name: 'BCDA_SECRET' }, { env: {}, sourceId: 'bcda' }),
    ).rejects.toMatchObject({
      code: 'ERR_CONFIGURATION',
      message:
        'source bcda reads its client secret from the environment variable BCDA_SECRET (clientSecretEnv), which is not set or empty; export it before the run',
    });
  });

  it('reads a file, without its trailing newline', async () => {
    const file = join(dir, 'bcda.secret');
    await writeFile(file, `${SECRET}\n`);
    expect((await readClientSecret({ kind: 'file', path: file })).reveal()).toBe(SECRET);
  });

  it('names a missing file', async () => {
    const file = join(dir, 'absent.secret');
    await expect(readClientSecret({ kind: 'file', path: file }, { sourceId: 'bcda' })).rejects.toMatchObject({
      code: 'ERR_CONFIGURATION',
      message: `source bcda reads its client secret from ${file} (clientSecretFile), which cannot be read (ENOENT)`,
    });
  });

  it('refuses a file of several lines without echoing them', async () => {
    const file = join(dir, 'two.secret');
    await writeFile(file, `${SECRET}\nsomething-else\n`);
    const failure = readClientSecret({ kind: 'file', path: file });
    await expect(failure).rejects.toMatchObject({ code: 'ERR_CONFIGURATION' });
    await expect(failure).rejects.not.toThrow(/s3cr3t/);
  });
});

describe('the token request with client_secret_basic', () => {
  let server: TokenServer | undefined;
  beforeEach(() => clearSmartConfigurationCache());
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('sends the Basic header and a form without any client assertion', async () => {
    server = await startTokenServer(() => ({
      status: 200,
      // BCDA's shape: expires_in as a string, token_type lower-case.
      body: { access_token: 'tok-1', token_type: 'bearer', expires_in: '1200' },
    }));
    const token = await requestAccessToken({
      tokenUrl: server.tokenUrl,
      scope: 'system/*.read',
      allowInsecureHttp: true,
      clientSecretBasic: { clientId: 'bcda-id', clientSecret: new ClientSecretValue(SECRET) },
    });
    expect(token.expiresInSeconds).toBe(1200);
    const [request] = server.requests;
    expect(request!.headers.authorization).toBe(basicAuthorization('bcda-id', new ClientSecretValue(SECRET)));
    expect([...new URLSearchParams(request!.body).keys()]).toStrictEqual(['grant_type', 'scope']);
    expect(new URLSearchParams(request!.body).get('grant_type')).toBe('client_credentials');
  });

  it('surfaces invalid_client as a TokenRequestError and never logs or throws the secret', async () => {
    server = await startTokenServer(() => ({
      status: 401,
      body: { error: 'invalid_client', error_description: 'bad credentials' },
    }));
    const lines: string[] = [];
    const logger = createLogger({ level: 'debug', write: (line) => lines.push(line) });
    const tokens = createAccessTokenProvider({
      basicAuthSecret: new ClientSecretValue(SECRET),
      clientId: 'bcda-id',
      scope: 'system/*.read',
      fhirBaseUrl: `${server.baseUrl}/api/v2`,
      tokenUrl: server.tokenUrl,
      allowInsecureHttp: true,
      logger,
      maxAttempts: 1,
    });
    const failure = await tokens.getAccessToken().catch((error: unknown) => error);
    expect(failure).toMatchObject({
      name: 'TokenRequestError',
      details: { status: 401, error: 'invalid_client' },
    });
    const everything = `${lines.join('\n')}\n${inspect(failure, { depth: 10 })}\n${JSON.stringify(failure)}`;
    expect(everything).not.toContain('s3cr3t');
    expect(everything).not.toContain(Buffer.from(`bcda-id:${encodeURIComponent(SECRET)}`).toString('base64'));
    expect(everything).not.toContain(server.requests[0]!.headers.authorization!);
  });
});

describe('the auth mode against discovery', () => {
  let server: TokenServer | undefined;
  beforeEach(() => clearSmartConfigurationCache());
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  const discoveryListing = async (methods: readonly string[]) => {
    server = await startTokenServer((request) =>
      request.path.endsWith('/.well-known/smart-configuration')
        ? {
            status: 200,
            body: { token_endpoint: server!.tokenUrl, token_endpoint_auth_methods_supported: methods },
          }
        : { status: 200, body: { access_token: 'tok', token_type: 'bearer', expires_in: 300 } },
    );
    return server;
  };

  it('refuses client_secret_basic before any token request when the server lists only private_key_jwt', async () => {
    const { baseUrl, tokenUrl } = await discoveryListing(['private_key_jwt']);
    const tokens = createAccessTokenProvider({
      basicAuthSecret: new ClientSecretValue(SECRET),
      clientId: 'c',
      scope: 'system/*.read',
      fhirBaseUrl: `${baseUrl}/fhir`,
      allowInsecureHttp: true,
    });
    await expect(tokens.getAccessToken()).rejects.toMatchObject({
      code: 'ERR_CONFIGURATION',
      message: `this source authenticates with auth client_secret_basic, but ${baseUrl}/fhir/.well-known/smart-configuration lists token_endpoint_auth_methods_supported private_key_jwt; set the source's auth to one of those (with its credential)`,
    });
    expect(server!.requestsTo(new URL(tokenUrl).pathname)).toHaveLength(0);
  });

  it('refuses private_key_jwt when the server lists only client_secret_basic', async () => {
    const { baseUrl } = await discoveryListing(['client_secret_basic']);
    const tokens = createAccessTokenProvider({
      signer: createLocalSignerFromJwk(generatePrivateJwk('ES384')),
      clientId: 'c',
      scope: 'system/*.read',
      fhirBaseUrl: `${baseUrl}/fhir`,
      allowInsecureHttp: true,
    });
    await expect(tokens.getAccessToken()).rejects.toThrow(
      /auth private_key_jwt, but .* lists token_endpoint_auth_methods_supported client_secret_basic/,
    );
  });

  it('mints when the server lists the mode', async () => {
    const { baseUrl } = await discoveryListing(['private_key_jwt', 'client_secret_basic']);
    const tokens = createAccessTokenProvider({
      basicAuthSecret: new ClientSecretValue(SECRET),
      clientId: 'c',
      scope: 'system/*.read',
      fhirBaseUrl: `${baseUrl}/fhir`,
      allowInsecureHttp: true,
    });
    expect((await tokens.getAccessToken()).accessToken).toBe('tok');
  });

  it('refuses both credentials or neither', () => {
    const common = { clientId: 'c', scope: 's', fhirBaseUrl: 'https://ehr.example.org/fhir' };
    const message =
      'give exactly one client credential: signer (private_key_jwt) or basicAuthSecret (client_secret_basic)';
    expect(() => createAccessTokenProvider(common)).toThrow(message);
    expect(() =>
      createAccessTokenProvider({
        ...common,
        signer: createLocalSignerFromJwk(generatePrivateJwk('ES384')),
        basicAuthSecret: new ClientSecretValue(SECRET),
      }),
    ).toThrow(message);
  });
});
