import { inspect } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createSourceAccessTokens } from '../../lambdas/adapters/source-access-tokens.js';
import { clearSmartConfigurationCache } from '../../lambdas/adapters/token-endpoint.js';
import { parseSourceSettings } from '../../lambdas/config.js';
import { parseLocalSourceAuth } from '../../lambdas/core/auth/client-config.js';
import { createLogger } from '../../lambdas/logger.js';
import { type Sandbox, startSandbox } from '../../scripts/sandbox/index.js';

/**
 * A BCDA-like client_secret_basic source, from its local source file to a token, against the
 * sandbox over real HTTP: the sandbox's Basic parsing shares no code with ours.
 */

const SECRET = 'bcda-integration-secret-7f3e9a';

let sandbox: Sandbox;
let clientId: string;
beforeAll(async () => {
  sandbox = await startSandbox({ patientCount: 5, tokenEndpointAuthMethods: ['client_secret_basic'] });
  // BCDA answers expires_in as a string ("1200").
  ({ clientId } = await sandbox.registerClient({
    clientSecret: SECRET,
    faults: { tokenExpiresInAsString: true, tokenLifetimeSeconds: 1200 },
  }));
});
afterAll(() => sandbox?.close());
beforeEach(() => clearSmartConfigurationCache());

function sourceFile(overrides: Record<string, unknown> = {}) {
  return {
    id: 'bcda',
    fhirBaseUrl: sandbox.baseUrl,
    allowInsecureHttp: true,
    auth: 'client_secret_basic',
    clientId,
    clientSecretEnv: 'BCDA_CLIENT_SECRET',
    export: { types: ['Patient'] },
    ...overrides,
  };
}

async function tokensFor(raw: Record<string, unknown>, env: NodeJS.ProcessEnv, lines: string[]) {
  const logger = createLogger({ level: 'debug', write: (line) => lines.push(line) });
  return createSourceAccessTokens(parseLocalSourceAuth(raw), parseSourceSettings(raw), { logger, env });
}

describe('client_secret_basic against the sandbox', () => {
  it('mints a token through discovery (which lists client_secret_basic) and kicks off with it', async () => {
    const lines: string[] = [];
    const tokens = await tokensFor(sourceFile(), { BCDA_CLIENT_SECRET: SECRET }, lines);
    const before = Date.now();
    const token = await tokens.getAccessToken();
    expect(token.expiresAt.getTime()).toBeGreaterThanOrEqual(before + 1_199_000);
    const kickoff = await fetch(`${sandbox.baseUrl}/$export?_type=Patient`, {
      headers: {
        authorization: `Bearer ${token.accessToken}`,
        accept: 'application/fhir+json',
        prefer: 'respond-async',
      },
    });
    await kickoff.body?.cancel();
    expect(kickoff.status).toBe(202);
    expect(lines.some((line) => line.includes('"authMethod":"client_secret_basic"'))).toBe(true);
    expect(lines.join('\n')).not.toContain(SECRET);
  });

  it('mints with an explicit tokenUrl, as for BCDA (no discovery)', async () => {
    const lines: string[] = [];
    const tokens = await tokensFor(
      sourceFile({ tokenUrl: sandbox.tokenUrl }),
      { BCDA_CLIENT_SECRET: SECRET },
      lines,
    );
    expect((await tokens.getAccessToken()).accessToken.length).toBeGreaterThan(10);
  });

  it('surfaces a wrong secret as TokenRequestError invalid_client, with the secret nowhere', async () => {
    const lines: string[] = [];
    const wrong = `${SECRET}-old`;
    const tokens = await tokensFor(sourceFile(), { BCDA_CLIENT_SECRET: wrong }, lines);
    const failure = await tokens.getAccessToken().catch((error: unknown) => error);
    expect(failure).toMatchObject({
      name: 'TokenRequestError',
      details: { status: 401, error: 'invalid_client' },
    });
    const everything = [
      ...lines,
      (failure as Error).message,
      inspect(failure, { depth: 10 }),
      JSON.stringify(failure),
    ].join('\n');
    expect(everything).not.toContain(wrong);
    expect(everything).not.toContain(SECRET);
    expect(everything).not.toContain(Buffer.from(`${clientId}:${wrong}`).toString('base64'));
  });
});
