import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EHR_MODES } from '../../scripts/sandbox/ehr-modes.js';
import { startSandbox } from '../../scripts/sandbox/index.js';
import {
  accessToken,
  getStatus,
  kickOff,
  registerTestClient,
  requestToken,
  startTestSandbox,
  type TestSandbox,
} from './support/sandbox.js';

/**
 * The EHR modes' own behaviours, request by request (test/workflow/ehr-profiles.test.ts runs
 * whole exports against each mode): what each EHR refuses, it refuses here, the way it does.
 */
describe('sandbox EHR modes', () => {
  let t: TestSandbox;
  beforeAll(async () => {
    t = await startTestSandbox({ jobDurationMs: 60_000 });
  });
  afterAll(() => t.sandbox.close());

  it("epic: only capital-R v1 scopes, as Epic's registrations spell them", async () => {
    const client = await registerTestClient(t.sandbox, { faults: EHR_MODES.epic.faults });
    // The mode's count fault: the first token request meets a bare 400.
    expect((await requestToken(t, client, { scope: 'system/Patient.Read' })).status).toBe(400);
    for (const scope of ['system/Patient.read', 'system/Patient.rs']) {
      const refused = await requestToken(t, client, { scope });
      expect(refused.status, scope).toBe(400);
      expect(await refused.json()).toMatchObject({ error: 'invalid_scope' });
    }
    const token = await accessToken(t, client, { scope: 'system/Patient.Read' });
    expect((await kickOff(`${t.sandbox.baseUrl}/Group/cohort/$export?_type=Patient`, token)).status).toBe(
      202,
    );
  });

  it('athenahealth, Oracle Health, eClinicalWorks: v2 scopes are refused, v1 granted', async () => {
    for (const mode of ['athenahealth', 'oracle-health', 'eclinicalworks'] as const) {
      const client = await registerTestClient(t.sandbox, { faults: EHR_MODES[mode].faults });
      const refused = await requestToken(t, client, { scope: 'system/Patient.rs' });
      expect(refused.status, mode).toBe(400);
      expect(await refused.json(), mode).toMatchObject({ error: 'invalid_scope' });
      expect((await requestToken(t, client, { scope: 'system/Patient.read' })).status, mode).toBe(200);
    }
  });

  it('cms-bcda: Groups all and runout only, GET only, _since a full instant, no Retry-After while exporting', async () => {
    const client = await registerTestClient(t.sandbox, { faults: EHR_MODES['cms-bcda'].faults });
    const token = await accessToken(t, client, { scope: 'system/*.read' });
    const unknownGroup = await kickOff(`${t.sandbox.baseUrl}/Group/cohort/$export`, token);
    expect(unknownGroup.status).toBe(400);
    expect(JSON.stringify(await unknownGroup.json())).toContain('Invalid group ID: expected all or runout');
    const post = await kickOff(`${t.sandbox.baseUrl}/Group/all/$export`, token, {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Parameters' }),
    });
    expect(post.status).toBe(405);
    const dateOnly = await kickOff(`${t.sandbox.baseUrl}/Group/all/$export?_since=2024-01-01`, token);
    expect(dateOnly.status).toBe(400);
    const runout = await kickOff(
      `${t.sandbox.baseUrl}/Group/runout/$export?_since=${encodeURIComponent('2024-01-01T00:00:00.000-05:00')}`,
      token,
    );
    expect(runout.status).toBe(202);
    expect(t.sandbox.jobs().find((job) => job.clientId === client.clientId)?.received.since).toBe(
      '2024-01-01T05:00:00.000Z',
    );
    const status = await getStatus(runout.headers.get('content-location')!, token);
    expect(status.status).toBe(202);
    expect(status.headers.get('retry-after')).toBeNull();
  });

  it('refuses an unknown mode, naming the known ones', async () => {
    await expect(startSandbox({ ehr: 'cerner' as never })).rejects.toThrow(
      'sandbox option ehr: expected one of generic, epic, oracle-health, athenahealth, eclinicalworks, cms-bcda, smart-reference',
    );
    await expect(t.sandbox.registerClient({ jwks: { keys: [] }, ehr: 'cerner' as never })).rejects.toThrow(
      'ehr: expected one of',
    );
  });

  it('a sandbox started in a mode gives it to every client that names none', async () => {
    const epic = await startTestSandbox({ ehr: 'epic' });
    try {
      const client = await registerTestClient(epic.sandbox);
      await requestToken(epic, client, { scope: 'system/Patient.Read' }); // the mode's one bare 400
      expect((await requestToken(epic, client, { scope: 'system/Patient.rs' })).status).toBe(400);
      expect((await requestToken(epic, client, { scope: 'system/Patient.Read' })).status).toBe(200);
    } finally {
      await epic.sandbox.close();
    }
  });

  it('a sandbox started as cms-bcda authenticates as BCDA does: Basic only, as its discovery says', async () => {
    const bcda = await startTestSandbox({ ehr: 'cms-bcda' });
    try {
      const discovery = await fetch(`${bcda.sandbox.baseUrl}/.well-known/smart-configuration`);
      expect(
        ((await discovery.json()) as Record<string, unknown>).token_endpoint_auth_methods_supported,
      ).toStrictEqual(['client_secret_basic']);
    } finally {
      await bcda.sandbox.close();
    }
  });
});
