import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  accessToken,
  exportAndWait,
  registerTestClient,
  startTestSandbox,
  type TestSandbox,
} from './support/sandbox.js';

describe('request log', () => {
  let t: TestSandbox;
  beforeAll(async () => {
    t = await startTestSandbox();
  });
  afterAll(() => t.sandbox.close());

  it('records every request with method, path, query, status, token presence and client', async () => {
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
    expect(t.sandbox.requestLog).toEqual([
      {
        time: expect.any(String),
        origin: t.sandbox.origin,
        method: 'POST',
        path: '/auth/token',
        query: '',
        status: 200,
        hasAuthorization: false,
        clientId: client.clientId,
        completed: true,
      },
      {
        time: expect.any(String),
        origin: t.sandbox.origin,
        method: 'GET',
        path: '/fhir/$export',
        query: '_type=Patient',
        status: 202,
        hasAuthorization: true,
        clientId: client.clientId,
        completed: true,
      },
      {
        time,
        origin: t.sandbox.origin,
        method: 'GET',
        path: new URL(statusUrl).pathname,
        query: '',
        status: 200,
        hasAuthorization: true,
        clientId: client.clientId,
        completed: true,
      },
      {
        time,
        origin: t.sandbox.origin,
        method: 'GET',
        path: new URL(manifest.output[0]!.url).pathname,
        query: '',
        status: 200,
        hasAuthorization: true,
        clientId: client.clientId,
        completed: true,
      },
      {
        time,
        origin: t.sandbox.origin,
        method: 'GET',
        path: '/fhir/metadata',
        query: '',
        status: 200,
        hasAuthorization: false,
        completed: true,
      },
    ]);
  });

  it('clears', () => {
    t.sandbox.clearRequestLog();
    expect(t.sandbox.requestLog).toEqual([]);
  });
});
