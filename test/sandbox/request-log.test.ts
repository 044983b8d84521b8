import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  accessToken,
  exportAndWait,
  kickOff,
  registerTestClient,
  startTestSandbox,
  type TestSandbox,
} from './support/sandbox.js';

/** The monotonic times are checked on their own below; here they only have to be there. */
const anyTimes = { startMs: expect.any(Number), endMs: expect.any(Number) };

describe('request log', () => {
  let t: TestSandbox;
  beforeAll(async () => {
    t = await startTestSandbox();
  });
  afterAll(() => t.sandbox.close());

  it('records every request with method, path, query, status, token presence, client and which token', async () => {
    // Prepare
    const client = await registerTestClient(t.sandbox);
    t.sandbox.clearRequestLog();
    // Act
    const token = await accessToken(t, client);
    const { statusUrl, manifest } = await exportAndWait(
      t,
      token,
      `${t.sandbox.baseUrl}/$export?_type=Patient`,
    );
    await (
      await fetch(manifest.output[0]!.url, { headers: { authorization: `Bearer ${token}` } })
    ).arrayBuffer();
    await (await fetch(`${t.sandbox.baseUrl}/metadata`)).arrayBuffer();
    await t.sandbox.settled();
    // Assess
    const time = t.clock.now().toISOString();
    // Node's fetch names itself; the pipeline's own User-Agent is checked in test/workflow.
    const sentBy = { host: new URL(t.sandbox.origin).host, userAgent: expect.any(String) };
    expect(t.sandbox.requestLog).toEqual([
      {
        time: expect.any(String),
        ...anyTimes,
        origin: t.sandbox.origin,
        method: 'POST',
        path: '/auth/token',
        query: '',
        status: 200,
        hasAuthorization: false,
        ...sentBy,
        clientId: client.clientId,
        issuedToken: 1,
        completed: true,
      },
      {
        time: expect.any(String),
        ...anyTimes,
        origin: t.sandbox.origin,
        method: 'GET',
        path: '/fhir/$export',
        query: '_type=Patient',
        status: 202,
        hasAuthorization: true,
        ...sentBy,
        clientId: client.clientId,
        presentedToken: 1,
        completed: true,
      },
      {
        time,
        ...anyTimes,
        origin: t.sandbox.origin,
        method: 'GET',
        path: new URL(statusUrl).pathname,
        query: '',
        status: 200,
        hasAuthorization: true,
        ...sentBy,
        clientId: client.clientId,
        presentedToken: 1,
        completed: true,
      },
      {
        time,
        ...anyTimes,
        origin: t.sandbox.origin,
        method: 'GET',
        path: new URL(manifest.output[0]!.url).pathname,
        query: '',
        status: 200,
        hasAuthorization: true,
        ...sentBy,
        clientId: client.clientId,
        presentedToken: 1,
        completed: true,
      },
      {
        time,
        ...anyTimes,
        origin: t.sandbox.origin,
        method: 'GET',
        path: '/fhir/metadata',
        query: '',
        status: 200,
        hasAuthorization: false,
        ...sentBy,
        completed: true,
      },
    ]);
  });

  it('names which token each request carried and which one each token response issued, never the token', async () => {
    // Prepare
    const client = await registerTestClient(t.sandbox);
    const first = await accessToken(t, client);
    const second = await accessToken(t, client);
    t.sandbox.clearRequestLog();
    // Act
    await (await kickOff(`${t.sandbox.baseUrl}/$export`, second)).arrayBuffer();
    await (await kickOff(`${t.sandbox.baseUrl}/$export`, first)).arrayBuffer();
    await (await kickOff(`${t.sandbox.baseUrl}/$export`, 'not-a-token-we-issued')).arrayBuffer();
    const third = await accessToken(t, client);
    await t.sandbox.settled();
    // Assess
    expect(
      t.sandbox.requestLog.map(({ path, status, presentedToken, issuedToken }) => ({
        path,
        status,
        presentedToken,
        issuedToken,
      })),
    ).toEqual([
      { path: '/fhir/$export', status: 202, presentedToken: 2, issuedToken: undefined },
      // One export at a time per client: the second kick-off is refused, but its token was known.
      { path: '/fhir/$export', status: 429, presentedToken: 1, issuedToken: undefined },
      { path: '/fhir/$export', status: 401, presentedToken: undefined, issuedToken: undefined },
      { path: '/auth/token', status: 200, presentedToken: undefined, issuedToken: 3 },
    ]);
    const logged = JSON.stringify(t.sandbox.requestLog);
    for (const token of [first, second, third]) expect(logged).not.toContain(token);
  });

  it('answers a revoked token 401 invalid_token and still names it; a token issued afterwards works', async () => {
    // Prepare
    const client = await registerTestClient(t.sandbox);
    const revoked = await accessToken(t, client);
    const other = await registerTestClient(t.sandbox);
    const othersToken = await accessToken(t, other);
    // Act
    const count = t.sandbox.revokeAccessTokens(client.clientId);
    t.sandbox.clearRequestLog();
    const refused = await kickOff(`${t.sandbox.baseUrl}/$export`, revoked);
    const fresh = await accessToken(t, client);
    const accepted = await kickOff(`${t.sandbox.baseUrl}/$export`, fresh);
    const othersKickOff = await kickOff(`${t.sandbox.baseUrl}/$export`, othersToken);
    await t.sandbox.settled();
    // Assess
    expect(count).toBe(1);
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toBe(
      'Bearer realm="fhir-sandbox", error="invalid_token", error_description="the access token was revoked"',
    );
    expect(accepted.status).toBe(202);
    expect(othersKickOff.status).toBe(202);
    expect(
      t.sandbox.requestLog
        .filter((entry) => entry.clientId === client.clientId || entry.path === '/fhir/$export')
        .map(({ path, status, presentedToken, issuedToken }) => [
          path,
          status,
          presentedToken ?? issuedToken,
        ]),
    ).toEqual([
      ['/fhir/$export', 401, 1],
      ['/auth/token', 200, 2],
      ['/fhir/$export', 202, 2],
      ['/fhir/$export', 202, 1],
    ]);
  });

  it('times each request on a monotonic clock: requests in progress at once overlap, one after the other do not', async () => {
    // Prepare: every GET of the file holds its body back for a second.
    const client = await registerTestClient(t.sandbox, {
      faults: { slowFile: { stallAfterBytes: 0, stallMs: 1000 } },
    });
    const token = await accessToken(t, client);
    const { manifest } = await exportAndWait(t, token, `${t.sandbox.baseUrl}/$export?_type=Patient`);
    const fileUrl = manifest.output[0]!.url;
    const download = async () =>
      (await fetch(fileUrl, { headers: { authorization: `Bearer ${token}` } })).arrayBuffer();
    t.sandbox.clearRequestLog();
    // Act: two at once, then (once the server is done with them) a third.
    await Promise.all([download(), download()]);
    await t.sandbox.settled();
    await download();
    await t.sandbox.settled();
    // Assess
    const [a, b, c] = t.sandbox.requestLog;
    for (const entry of [a!, b!, c!]) expect(entry.endMs).toBeGreaterThan(entry.startMs);
    expect(a!.startMs < b!.endMs && b!.startMs < a!.endMs).toBe(true);
    expect(c!.startMs).toBeGreaterThan(Math.max(a!.endMs, b!.endMs));
    // The hand-moved sandbox clock did not move, the monotonic one did.
    expect(new Set([a!.time, b!.time, c!.time]).size).toBe(1);
  });

  it('clears', () => {
    t.sandbox.clearRequestLog();
    expect(t.sandbox.requestLog).toEqual([]);
  });
});
