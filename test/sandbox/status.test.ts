import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  accessToken,
  exportAndWait,
  getStatus,
  kickOff,
  type Manifest,
  ndjsonLines,
  registerTestClient,
  startTestSandbox,
  type TestClient,
  type TestSandbox,
} from './support/sandbox.js';

describe('status, manifest and delete', () => {
  let t: TestSandbox;
  let client: TestClient;
  beforeAll(async () => {
    t = await startTestSandbox({ resourcesPerFile: 50 });
  });
  afterAll(() => t.sandbox.close());
  // Each test registers its own client: one export per client at a time.
  const newClient = async () => {
    client = await registerTestClient(t.sandbox);
    return accessToken(t, client);
  };

  it('answers 202 with X-Progress and Retry-After while the export runs', async () => {
    // Prepare
    const token = await newClient();
    const kickoff = await kickOff(`${t.sandbox.baseUrl}/$export`, token);
    t.clock.advance(500);
    // Act
    const status = await getStatus(kickoff.headers.get('content-location')!, token);
    // Assess
    expect(status.status).toBe(202);
    expect(status.headers.get('x-progress')).toBe('50% complete');
    expect(status.headers.get('retry-after')).toBe('1');
    expect(await status.text()).toBe('');
  });

  it('answers 200 with a complete manifest once the export is done', async () => {
    // Prepare
    const token = await newClient();
    const kickedOffAt = t.clock.now().toISOString();
    const kickoffUrl = `${t.sandbox.baseUrl}/Patient/$export?_type=Patient,Observation`;
    const kickoff = await kickOff(kickoffUrl, token);
    t.clock.advance(1000);
    // Act
    const status = await getStatus(kickoff.headers.get('content-location')!, token);
    // Assess
    expect(status.status).toBe(200);
    expect(status.headers.get('content-type')).toMatch(/^application\/json/);
    expect(status.headers.get('expires')).toBe(new Date(t.clock.now().getTime() + 86_400_000).toUTCString());
    const manifest = (await status.json()) as Manifest;
    expect(manifest).toEqual({
      transactionTime: kickedOffAt,
      request: kickoffUrl,
      requiresAccessToken: true,
      output: expect.any(Array),
      error: [],
    });
    // Large types are split into files of resourcesPerFile (50); every URL is absolute.
    const observationCount = t.sandbox.dataset.count({ type: 'Observation', until: kickedOffAt });
    expect(manifest.output.map((o) => [o.type, o.count])).toEqual([
      ['Patient', 30],
      ...Array.from({ length: Math.ceil(observationCount / 50) }, (_, i) => [
        'Observation',
        Math.min(50, observationCount - i * 50),
      ]),
    ]);
    for (const file of manifest.output) {
      expect(file.url.startsWith(`${t.sandbox.origin}/files/`)).toBe(true);
      expect(ndjsonLines(t.sandbox.fileContent(file.url))).toHaveLength(file.count!);
    }
    const observations = Buffer.concat(
      manifest.output.filter((o) => o.type === 'Observation').map((o) => t.sandbox.fileContent(o.url)),
    );
    expect(observations.toString()).toBe(
      `${[...t.sandbox.dataset.lines({ type: 'Observation', until: kickedOffAt })].join('\n')}\n`,
    );
  });

  it('lists deleted resources as transaction Bundles of DELETEs when _since is given', async () => {
    // Prepare
    const token = await newClient();
    const since = '2020-01-01T00:00:00Z';
    // Act
    const { manifest } = await exportAndWait(
      t,
      token,
      `${t.sandbox.baseUrl}/$export?_type=Patient,Observation&_since=${since}`,
    );
    // Assess
    expect(manifest.deleted).toEqual([
      { type: 'Bundle', url: expect.stringContaining('/deleted.1.ndjson'), count: 1 },
    ]);
    const bundles = ndjsonLines(t.sandbox.fileContent(manifest.deleted![0]!.url)) as {
      resourceType: string;
      type: string;
      entry: { request: { method: string; url: string } }[];
    }[];
    const expected = (['Patient', 'Observation'] as const).flatMap((type) =>
      t.sandbox.dataset.deletions({
        type,
        since: '2020-01-01T00:00:00.000Z',
        until: manifest.transactionTime,
      }),
    );
    expect(expected.length).toBeGreaterThan(0);
    expect(bundles[0]!.resourceType).toBe('Bundle');
    expect(bundles[0]!.type).toBe('transaction');
    expect(bundles[0]!.entry.map((e) => e.request)).toEqual(
      expected.map((d) => ({ method: 'DELETE', url: `${d.type}/${d.id}` })),
    );
  });

  it('omits deleted[] when _since is not given', async () => {
    const { manifest } = await exportAndWait(
      t,
      await newClient(),
      `${t.sandbox.baseUrl}/$export?_type=Patient`,
    );
    expect(Object.keys(manifest)).not.toContain('deleted');
  });

  it('cancels with DELETE: 202, then status and files answer 404', async () => {
    // Prepare
    const token = await newClient();
    const { statusUrl, manifest } = await exportAndWait(
      t,
      token,
      `${t.sandbox.baseUrl}/$export?_type=Patient`,
    );
    // Act
    const deletion = await fetch(statusUrl, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${token}` },
    });
    // Assess
    expect(deletion.status).toBe(202);
    expect(((await deletion.json()) as { resourceType: string }).resourceType).toBe('OperationOutcome');
    expect(t.sandbox.jobs().find((j) => j.statusUrl === statusUrl)?.state).toBe('deleted');
    const status = await getStatus(statusUrl, token);
    expect(status.status).toBe(404);
    expect(((await status.json()) as { issue: { code: string }[] }).issue[0]!.code).toBe('not-found');
    const file = await fetch(manifest.output[0]!.url, { headers: { authorization: `Bearer ${token}` } });
    expect(file.status).toBe(404);
    const again = await fetch(statusUrl, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    expect(again.status).toBe(404);
    // The true content stays available to tests after the export is gone.
    expect(t.sandbox.fileContent(manifest.output[0]!.url).length).toBeGreaterThan(0);
  });

  it('lets the client start a new export once the running one is deleted', async () => {
    // Prepare
    const token = await newClient();
    const first = await kickOff(`${t.sandbox.baseUrl}/$export`, token);
    const statusUrl = first.headers.get('content-location')!;
    const blocked = await kickOff(`${t.sandbox.baseUrl}/$export`, token);
    // Act
    await fetch(statusUrl, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    const second = await kickOff(`${t.sandbox.baseUrl}/$export`, token);
    // Assess
    expect(blocked.status).toBe(429);
    expect(second.status).toBe(202);
  });

  it("refuses another client's status URL and files with 403", async () => {
    // Prepare
    const ownerToken = await newClient();
    const { statusUrl, manifest } = await exportAndWait(
      t,
      ownerToken,
      `${t.sandbox.baseUrl}/$export?_type=Patient`,
    );
    const intruderToken = await newClient();
    // Act
    const status = await getStatus(statusUrl, intruderToken);
    const file = await fetch(manifest.output[0]!.url, {
      headers: { authorization: `Bearer ${intruderToken}` },
    });
    const deletion = await fetch(statusUrl, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${intruderToken}` },
    });
    // Assess
    expect([status.status, file.status, deletion.status]).toEqual([403, 403, 403]);
  });

  it('refuses a token whose scopes do not cover every exported type with 403', async () => {
    // Prepare
    const token = await newClient();
    const { statusUrl, manifest } = await exportAndWait(
      t,
      token,
      `${t.sandbox.baseUrl}/$export?_type=Patient,Condition`,
    );
    const narrow = await accessToken(t, client, { scope: 'system/Patient.rs' });
    // Act
    const status = await getStatus(statusUrl, narrow);
    const file = await fetch(manifest.output[0]!.url, { headers: { authorization: `Bearer ${narrow}` } });
    // Assess
    expect(status.status).toBe(403);
    expect(file.status).toBe(403);
  });

  it.each([
    ['no token', undefined, 401],
    ['an unknown token', 'not-a-token', 401],
  ])('answers %s on a status URL with %i', async (_name, token, status) => {
    const owner = await newClient();
    const kickoff = await kickOff(`${t.sandbox.baseUrl}/$export`, owner);
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    const response = await fetch(kickoff.headers.get('content-location')!, { headers });
    expect(response.status).toBe(status);
  });

  it('answers 404 for an unknown status URL', async () => {
    const response = await getStatus(
      `${t.sandbox.origin}/export-status/000000000000000000000000`,
      await newClient(),
    );
    expect(response.status).toBe(404);
  });

  it('completes at the first poll when jobDurationMs is 0', async () => {
    // Prepare
    const quick = await startTestSandbox({ jobDurationMs: 0 });
    try {
      const quickClient = await registerTestClient(quick.sandbox);
      const token = await accessToken(quick, quickClient);
      const kickoff = await kickOff(`${quick.sandbox.baseUrl}/$export?_type=Patient`, token);
      // Act
      const status = await getStatus(kickoff.headers.get('content-location')!, token);
      // Assess
      expect(status.status).toBe(200);
    } finally {
      await quick.sandbox.close();
    }
  });
});
