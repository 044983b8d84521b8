import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseFaultSpec } from '../../scripts/sandbox/index.js';
import {
  accessToken,
  getStatus,
  kickOff,
  registerTestClient,
  startTestSandbox,
  type TestSandbox,
} from './support/sandbox.js';

const WEEK_MS = 7 * 86_400_000;

const patientList = (ids: readonly string[]) => ({
  method: 'POST',
  headers: { 'content-type': 'application/fhir+json' },
  body: JSON.stringify({
    resourceType: 'Parameters',
    parameter: [
      { name: '_type', valueString: 'Patient' },
      ...ids.map((id) => ({ name: 'patient', valueReference: { reference: `Patient/${id}` } })),
    ],
  }),
});

describe('fault neverCompleteAboveMembers: a large Group cohort is accepted and never completes', () => {
  let t: TestSandbox;
  beforeAll(async () => {
    t = await startTestSandbox();
  });
  afterAll(() => t.sandbox.close());

  const withLimit = async (limit: number) => {
    const client = await registerTestClient(t.sandbox, { faults: { neverCompleteAboveMembers: limit } });
    // Tokens live minutes and these exports outlive them: a new one after the clock jumps.
    return { token: await accessToken(t, client), renew: () => accessToken(t, client) };
  };

  it('keeps a Group export above the limit in progress with X-Progress, a week later too, until DELETE', async () => {
    // Prepare
    const { token: first, renew } = await withLimit(5);
    let token = first;
    // Act
    const kickoff = await kickOff(`${t.sandbox.baseUrl}/Group/small/$export`, token);
    const statusUrl = kickoff.headers.get('content-location')!;
    const polls: { status: number; progress: string | null; retryAfter: string | null }[] = [];
    for (const step of [0, 60_000, WEEK_MS]) {
      t.clock.advance(step);
      token = await renew();
      const poll = await getStatus(statusUrl, token);
      polls.push({
        status: poll.status,
        progress: poll.headers.get('x-progress'),
        retryAfter: poll.headers.get('retry-after'),
      });
    }
    const blocked = await kickOff(`${t.sandbox.baseUrl}/Group/small/$export`, token);
    const deleted = await fetch(statusUrl, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${token}` },
    });
    const afterDelete = await getStatus(statusUrl, token);
    // Assess
    expect(kickoff.status).toBe(202);
    expect(polls.map((p) => p.status)).toEqual([202, 202, 202]);
    for (const poll of polls) expect(poll.progress).toMatch(/^\d{1,2}% complete$/);
    expect(polls.at(-1)!.progress).toBe('99% complete');
    // The running export holds the client's one slot, with a finite Retry-After.
    expect(blocked.status).toBe(429);
    expect(blocked.headers.get('retry-after')).toBe('1');
    expect(deleted.status).toBe(202);
    expect(afterDelete.status).toBe(404);
    const log = t.sandbox.requestLog.filter((e) => e.path.endsWith('/Group/small/$export'));
    expect(log[0]).toMatchObject({ status: 202, fault: 'neverCompleteAboveMembers' });
  });

  it('completes a POST export of the same Group whose patient list is within the limit', async () => {
    // Prepare
    const { token } = await withLimit(5);
    // Act
    const kickoff = await kickOff(
      `${t.sandbox.baseUrl}/Group/small/$export`,
      token,
      patientList(['pt-1', 'pt-2', 'pt-3', 'pt-4', 'pt-5']),
    );
    t.clock.advance(60_000);
    const status = await getStatus(kickoff.headers.get('content-location')!, token);
    // Assess
    expect(status.status).toBe(200);
    const manifest = (await status.json()) as { output: { type: string; count: number }[] };
    expect(manifest.output).toEqual([expect.objectContaining({ type: 'Patient', count: 5 })]);
  });

  it('keeps a POST export in progress when its patient list exceeds the limit', async () => {
    // Prepare
    const { token: first, renew } = await withLimit(2);
    // Act
    const kickoff = await kickOff(
      `${t.sandbox.baseUrl}/Group/cohort/$export`,
      first,
      patientList(['pt-1', 'pt-2', 'pt-3']),
    );
    const statusUrl = kickoff.headers.get('content-location')!;
    t.clock.advance(WEEK_MS);
    const token = await renew();
    const status = await getStatus(statusUrl, token);
    // Assess
    expect([kickoff.status, status.status]).toEqual([202, 202]);
    await fetch(statusUrl, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
  });

  it('leaves Patient and system level exports alone', async () => {
    // Prepare
    const { token } = await withLimit(0);
    // Act
    const kickoff = await kickOff(`${t.sandbox.baseUrl}/Patient/$export?_type=Patient`, token);
    t.clock.advance(60_000);
    const status = await getStatus(kickoff.headers.get('content-location')!, token);
    // Assess
    expect(status.status).toBe(200);
  });

  it('can be asked for per export, and refuses a value that is no member count', () => {
    // Act
    const plan = parseFaultSpec('neverCompleteAboveMembers=100');
    // Assess
    expect(plan).toEqual({ neverCompleteAboveMembers: 100 });
    expect(() => parseFaultSpec('neverCompleteAboveMembers=-1')).toThrow(
      'faults.neverCompleteAboveMembers: expected a file index (a non-negative integer), got -1',
    );
  });
});
