import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAccessTokenProvider } from '../../lambdas/adapters/access-token-provider.js';
import { createKmsSigner } from '../../lambdas/adapters/kms-signer.js';
import { createLocalSignerFromJwk } from '../../lambdas/adapters/local-signer.js';
import { clearSmartConfigurationCache } from '../../lambdas/adapters/token-endpoint.js';
import type { ClientAssertionSigner } from '../../lambdas/core/auth/client-assertion.js';
import { buildJwks, type PublishedJwk } from '../../lambdas/core/auth/jwk.js';
import { buildScope } from '../../lambdas/core/auth/scopes.js';
import { type Sandbox, startSandbox } from '../../scripts/sandbox/index.js';
import { KmsStandIn } from '../support/kms-stand-in.js';
import { generatePrivateJwk } from '../support/test-keys.js';

/**
 * Our token client against the sandbox's real SMART Backend Services token
 * endpoint, over HTTP: the sandbox shares no code with lambdas/, so agreement
 * here is agreement with an independent reading of the spec.
 */

type SignerWithJwk = ClientAssertionSigner & { readonly publicJwk: PublishedJwk };

const kms = new KmsStandIn();
const SIGNERS: Array<[string, () => Promise<SignerWithJwk>]> = [
  ['a local ES384 JWK', async () => createLocalSignerFromJwk(generatePrivateJwk('ES384'))],
  ['a local RS384 JWK', async () => createLocalSignerFromJwk(generatePrivateJwk('RS384'))],
  [
    'a KMS ECC_NIST_P384 key (ES384)',
    () =>
      createKmsSigner({
        kms,
        keyId: kms.createKey({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' }).KeyId,
      }),
  ],
  [
    'a KMS RSA_2048 key (RS384)',
    () =>
      createKmsSigner({ kms, keyId: kms.createKey({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' }).KeyId }),
  ],
];

let sandbox: Sandbox;
beforeAll(async () => {
  sandbox = await startSandbox({ port: 0, patientCount: 5 });
});
afterAll(async () => {
  await sandbox?.close();
});
beforeEach(() => clearSmartConfigurationCache());

function provider(
  signer: ClientAssertionSigner,
  clientId: string,
  scope = buildScope({ resourceTypes: ['Patient', 'Observation'] }),
) {
  return createAccessTokenProvider({
    signer,
    clientId,
    scope,
    fhirBaseUrl: sandbox.baseUrl,
    allowInsecureHttp: true,
    maxAttempts: 2,
    baseDelayMs: 10,
  });
}

describe('minting against the sandbox token endpoint', () => {
  it.each(SIGNERS)('mints a token with %s, discovered through smart-configuration', async (_, makeSigner) => {
    // Prepare
    const signer = await makeSigner();
    const { clientId } = await sandbox.registerClient({ jwks: buildJwks([signer.publicJwk]) as never });
    const before = Date.now();
    // Act
    const token = await provider(signer, clientId).getAccessToken();
    // Assess
    expect(token.accessToken.length).toBeGreaterThan(10);
    expect(token.requestedScope).toBe('system/Patient.rs system/Observation.rs');
    expect(token.expiresAt.getTime()).toBeGreaterThanOrEqual(before + 299_000);
    expect(token.expiresAt.getTime()).toBeLessThanOrEqual(Date.now() + 300_000);
    const kickoff = await fetch(`${sandbox.baseUrl}/$export?_type=Patient`, {
      headers: {
        authorization: `Bearer ${token.accessToken}`,
        accept: 'application/fhir+json',
        prefer: 'respond-async',
      },
    });
    await kickoff.body?.cancel();
    expect(kickoff.status).toBe(202);
  });

  it('accepts v1 scopes for a client registered with v2 ones', async () => {
    const signer = createLocalSignerFromJwk(generatePrivateJwk('ES384'));
    const { clientId } = await sandbox.registerClient({
      jwks: buildJwks([signer.publicJwk]) as never,
      scope: 'system/*.rs',
    });
    const token = await provider(
      signer,
      clientId,
      buildScope({ resourceTypes: ['Patient'], syntax: 'v1' }),
    ).getAccessToken();
    expect(token.requestedScope).toBe('system/Patient.read');
  });

  it('surfaces an unregistered kid as a TokenRequestError', async () => {
    const registered = createLocalSignerFromJwk(generatePrivateJwk('ES384'));
    const unregistered = createLocalSignerFromJwk(generatePrivateJwk('ES384'));
    const { clientId } = await sandbox.registerClient({ jwks: buildJwks([registered.publicJwk]) as never });
    await expect(provider(unregistered, clientId).getAccessToken()).rejects.toMatchObject({
      name: 'TokenRequestError',
      code: 'ERR_TOKEN_REQUEST',
      details: { status: 401, error: 'invalid_client' },
      message: expect.stringContaining(`kid ${JSON.stringify(unregistered.kid)}`),
    });
  });

  it('surfaces a wrong client id as a TokenRequestError', async () => {
    const signer = createLocalSignerFromJwk(generatePrivateJwk('RS384'));
    await sandbox.registerClient({ jwks: buildJwks([signer.publicJwk]) as never });
    await expect(provider(signer, 'not-a-registered-client').getAccessToken()).rejects.toMatchObject({
      name: 'TokenRequestError',
      details: { status: 401, error: 'invalid_client' },
      message: expect.stringContaining('unknown client "not-a-registered-client"'),
    });
  });

  it('surfaces an unregistered scope as a TokenRequestError without retrying', async () => {
    const signer = createLocalSignerFromJwk(generatePrivateJwk('ES384'));
    const { clientId } = await sandbox.registerClient({
      jwks: buildJwks([signer.publicJwk]) as never,
      scope: 'system/Patient.rs',
    });
    sandbox.clearRequestLog();
    await expect(provider(signer, clientId, 'system/Observation.rs').getAccessToken()).rejects.toMatchObject({
      name: 'TokenRequestError',
      details: { status: 400, error: 'invalid_scope' },
    });
    expect(
      sandbox.requestLog
        .filter((entry) => entry.path === '/auth/token')
        .map((entry) => `${entry.method} ${entry.status}`),
    ).toStrictEqual(['POST 400']);
  });

  it('keeps a KMS key rotation working: a JWKS with the old and the new key accepts both', async () => {
    const old = await SIGNERS[2]![1]();
    const next = await SIGNERS[3]![1]();
    const { clientId } = await sandbox.registerClient({
      jwks: buildJwks([old.publicJwk, next.publicJwk]) as never,
    });
    expect((await provider(old, clientId).getAccessToken()).accessToken).not.toBe(
      (await provider(next, clientId).getAccessToken()).accessToken,
    );
  });
});
