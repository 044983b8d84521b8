/** Starting a sandbox and talking to it the way a Bulk Data client would, over real HTTP. */

import type { FaultPlan } from '../../../scripts/sandbox/faults.js';
import { type Sandbox, type SandboxOptions, startSandbox } from '../../../scripts/sandbox/index.js';
import { type Alg, jwksOf, signAssertion, type TestKey, testKey } from './keys.js';

/** A clock the test moves by hand: jobs finish and tokens expire when the test says so. */
export class TestClock {
  #ms: number;
  constructor(start = Date.UTC(2026, 5, 1, 12, 0, 0)) {
    this.#ms = start;
  }
  readonly now = (): Date => new Date(this.#ms);
  advance(ms: number): void {
    this.#ms += ms;
  }
}

export interface TestSandbox {
  readonly sandbox: Sandbox;
  readonly clock: TestClock;
}

/** A sandbox on a free port with a small synthetic dataset and a hand-moved clock. */
export async function startTestSandbox(options: SandboxOptions = {}): Promise<TestSandbox> {
  const clock = new TestClock();
  const sandbox = await startSandbox({
    port: 0,
    patientCount: 30,
    jobDurationMs: 1000,
    now: clock.now,
    ...options,
  });
  return { sandbox, clock };
}

export interface TestClient {
  readonly clientId: string;
  readonly key: TestKey;
}

export async function registerTestClient(
  sandbox: Sandbox,
  options: { alg?: Alg; scope?: string; faults?: FaultPlan; clientId?: string } = {},
): Promise<TestClient> {
  const key = await testKey(options.alg ?? 'ES384');
  const { clientId } = await sandbox.registerClient({
    jwks: jwksOf(key),
    ...(options.scope !== undefined ? { scope: options.scope } : {}),
    ...(options.faults !== undefined ? { faults: options.faults } : {}),
    ...(options.clientId !== undefined ? { clientId: options.clientId } : {}),
  });
  return { clientId, key };
}

export async function requestToken(
  t: TestSandbox,
  client: TestClient,
  options: { scope?: string; tokenUrl?: string; assertion?: string } = {},
): Promise<Response> {
  const tokenUrl = options.tokenUrl ?? t.sandbox.tokenUrl;
  const assertion =
    options.assertion ??
    (await signAssertion({ key: client.key, clientId: client.clientId, tokenUrl, now: t.clock.now() }));
  return fetch(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
      scope: options.scope ?? 'system/*.rs',
    }),
  });
}

export async function accessToken(
  t: TestSandbox,
  client: TestClient,
  options: { scope?: string; tokenUrl?: string } = {},
): Promise<string> {
  const response = await requestToken(t, client, options);
  if (response.status !== 200)
    throw new Error(`token request failed: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { access_token: string }).access_token;
}

export const KICKOFF_HEADERS = { accept: 'application/fhir+json', prefer: 'respond-async' };

export function kickOff(url: string, token: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, {
    ...init,
    headers: {
      ...KICKOFF_HEADERS,
      authorization: `Bearer ${token}`,
      ...(init.headers as Record<string, string>),
    },
  });
}

export function getStatus(statusUrl: string, token: string): Promise<Response> {
  return fetch(statusUrl, { headers: { accept: 'application/json', authorization: `Bearer ${token}` } });
}

export interface Manifest {
  transactionTime: string;
  request: string;
  requiresAccessToken: boolean;
  output: { type: string; url: string; count?: number }[];
  error: { type: string; url: string; count?: number }[];
  deleted?: { type: string; url: string; count?: number }[];
}

/** Kick off, let the job finish (by moving the clock), and read the manifest. */
export async function exportAndWait(
  t: TestSandbox,
  token: string,
  url = `${t.sandbox.baseUrl}/Patient/$export`,
  init: RequestInit = {},
): Promise<{ statusUrl: string; manifest: Manifest }> {
  const kickoff = await kickOff(url, token, init);
  if (kickoff.status !== 202) throw new Error(`kick-off failed: ${kickoff.status} ${await kickoff.text()}`);
  const statusUrl = kickoff.headers.get('content-location')!;
  t.clock.advance(60_000);
  const status = await getStatus(statusUrl, token);
  if (status.status !== 200) throw new Error(`status failed: ${status.status} ${await status.text()}`);
  return { statusUrl, manifest: (await status.json()) as Manifest };
}

export function ndjsonLines(bytes: Buffer | string): Record<string, unknown>[] {
  return bytes
    .toString()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
