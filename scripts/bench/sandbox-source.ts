/**
 * Runs bulk exports against the sandbox FHIR server the way a client would
 * (register, SMART backend token, kick-off, poll) and returns manifests: the
 * file URLs for the benchmark and the sandbox download test. Deliberately
 * minimal; the real client is lambdas/.
 */
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { type FaultPlan, type Sandbox, type SandboxOptions, startSandbox } from '../sandbox/index.js';

export interface ManifestFile {
  readonly type: string;
  readonly url: string;
  readonly count?: number;
}

export interface SandboxManifest {
  readonly transactionTime: string;
  readonly requiresAccessToken: boolean;
  readonly output: readonly ManifestFile[];
  readonly error: readonly ManifestFile[];
}

export interface SandboxClient {
  readonly sandbox: Sandbox;
  readonly accessToken: string;
  /** Kicks off a system export of `types` (meeting `faults`) and waits for its manifest. */
  exportFiles(types: readonly string[], faults?: FaultPlan): Promise<SandboxManifest>;
  close(): Promise<void>;
}

export async function startSandboxClient(options: SandboxOptions = {}): Promise<SandboxClient> {
  const sandbox = await startSandbox({ jobDurationMs: 0, ...options });
  try {
    const { privateKey, publicKey } = await generateKeyPair('ES384');
    const { clientId } = await sandbox.registerClient({
      jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'bench', alg: 'ES384' }] },
    });
    const assertion = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES384', kid: 'bench', typ: 'JWT' })
      .setIssuer(clientId)
      .setSubject(clientId)
      .setAudience(sandbox.tokenUrl)
      .setJti(randomUUID())
      .setExpirationTime('4m')
      .sign(privateKey);
    const tokenResponse = await fetch(sandbox.tokenUrl, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: assertion,
        scope: 'system/*.rs',
      }),
    });
    if (!tokenResponse.ok) throw new Error(`sandbox token request answered ${tokenResponse.status}`);
    const { access_token: accessToken } = (await tokenResponse.json()) as { access_token: string };
    const auth = { authorization: `Bearer ${accessToken}` };

    const exportFiles = async (types: readonly string[], faults?: FaultPlan): Promise<SandboxManifest> => {
      const base = faults ? sandbox.faultBaseUrl(faults) : sandbox.baseUrl;
      const kickoff = await fetch(`${base}/$export?_type=${types.join(',')}`, {
        headers: { ...auth, accept: 'application/fhir+json', prefer: 'respond-async' },
      });
      await kickoff.body?.cancel();
      const statusUrl = kickoff.headers.get('content-location');
      if (kickoff.status !== 202 || !statusUrl)
        throw new Error(`sandbox kick-off answered ${kickoff.status}`);
      for (let poll = 0; poll < 100; poll++) {
        const status = await fetch(statusUrl, { headers: { ...auth, accept: 'application/json' } });
        if (status.status === 200) return (await status.json()) as SandboxManifest;
        await status.body?.cancel();
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      throw new Error('sandbox export did not complete');
    };
    return { sandbox, accessToken, exportFiles, close: () => sandbox.close() };
  } catch (error) {
    await sandbox.close();
    throw error;
  }
}
