import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { USER_AGENT } from '../../lambdas/core/user-agent.js';
import { type Harness, startHarness } from './support/harness.js';

/**
 * A kick-off whose Content-Location names another origin, through the real
 * workflow: the export fails before the status URL is polled (every poll
 * would carry the token), unless the source trusts that origin; a manifest
 * whose token-requiring files are elsewhere fails before any download. The
 * page link and the other file cases are in test/integration/token-origins.test.ts.
 * The sandbox's other origin is its own listener under `localhost` instead of `127.0.0.1`.
 */
describe('status URLs and files on another origin (local workflow)', () => {
  let harness: Harness;
  let other: string;
  beforeAll(async () => {
    harness = await startHarness({ patientCount: 20, jobDurationMs: 0, retryAfterSeconds: 0 });
    other = harness.sandbox.origin.replace('//127.0.0.1:', '//localhost:');
  }, 60_000);
  afterAll(async () => {
    await harness?.close();
  });

  const requestsTo = (origin: string) =>
    harness.sandbox.requestLog.filter((entry) => entry.host === new URL(origin).host);

  it('fails the export without polling it when the origin is not trusted, and presents nothing', async () => {
    // Prepare
    await harness.sandbox.settled();
    harness.sandbox.clearRequestLog();
    // Act
    const result = await harness.exportWith({ faults: { otherOriginFor: 'status' } });
    // Assess
    expect({ status: result.run.status, error: result.run.error }).toEqual({
      status: 'FAILED',
      error: 'ConfigurationError',
    });
    expect(result.run.cause).toMatch(
      new RegExp(
        `^ConfigurationError: the status URL \\(the kick-off's Content-Location\\) ${other}/export-status/[0-9a-f]+ is on origin ${other}, ` +
          `which may not receive the access token \\(it goes only to the FHIR server's origin ${harness.sandbox.origin}\\); ` +
          `if that host belongs to the FHIR server, add "${other}" to the source's trustedOrigins \\(source ${result.sourceId}\\)`,
      ),
    );
    await harness.sandbox.settled();
    expect(requestsTo(other)).toEqual([]);
    // The file's first export: discovery is cached for the next.
    expect(harness.sandbox.requestLog.map((entry) => `${entry.method} ${entry.path}`)).toEqual([
      'GET /fhir/.well-known/smart-configuration',
      'POST /auth/token',
      'GET /fhir/Group/cohort/$export',
    ]);
    expect(harness.sandbox.requestLog.filter((entry) => entry.userAgent !== USER_AGENT)).toEqual([]);
    expect(await harness.listKeys(`source=${result.sourceId}/`)).toEqual([]);
  }, 60_000);

  it('fails the export when the manifest lists files that need the token on an untrusted origin, landing none', async () => {
    // Prepare
    await harness.sandbox.settled();
    harness.sandbox.clearRequestLog();
    // Act
    const result = await harness.exportWith({ faults: { otherOriginFor: 'files' } });
    // Assess
    expect({ status: result.run.status, error: result.run.error }).toEqual({
      status: 'FAILED',
      error: 'ConfigurationError',
    });
    expect(result.run.cause).toMatch(
      new RegExp(
        `^ConfigurationError: (\\d+) of the manifest's \\1 files need the access token \\(requiresAccessToken: true\\) but are on origin ${other}; ` +
          `first: the file \\(the manifest says requiresAccessToken: true\\) ${other}/files/`,
      ),
    );
    await harness.sandbox.settled();
    expect(requestsTo(other)).toEqual([]);
    expect(
      (await harness.listKeys(`source=${result.sourceId}/`)).filter((key) => key.endsWith('_SUCCESS.json')),
    ).toEqual([]);
    expect(result.receipt).toBeUndefined();
  }, 60_000);

  it('polls, downloads and DELETEs through a trusted origin, every request naming the pipeline', async () => {
    // Prepare
    await harness.sandbox.settled();
    harness.sandbox.clearRequestLog();
    // Act
    const result = await harness.exportWith({
      faults: { otherOriginFor: 'status' },
      source: { trustedOrigins: [other] },
    });
    // Assess
    expect(result.run.status).toBe('SUCCEEDED');
    expect(result.receipt).toMatchObject({ serverJobDeleted: true });
    expect(result.receipt?.files?.length).toBeGreaterThan(0);
    await harness.sandbox.settled();
    const kinds = new Set(
      harness.sandbox.requestLog.map(
        (entry) => `${entry.method} ${entry.path.replace(/\/[0-9a-f]{24}(\/|$).*/, '/…')}`,
      ),
    );
    expect([...kinds].sort()).toEqual(
      expect.arrayContaining([
        'DELETE /export-status/…',
        'GET /fhir/Group/cohort/$export',
        'GET /export-status/…',
        'GET /files/…',
        'POST /auth/token',
      ]),
    );
    expect(harness.sandbox.requestLog.filter((entry) => entry.userAgent !== USER_AGENT)).toEqual([]);
    expect(requestsTo(other).map(({ method, hasAuthorization }) => ({ method, hasAuthorization }))).toEqual(
      expect.arrayContaining([
        { method: 'GET', hasAuthorization: true },
        { method: 'DELETE', hasAuthorization: true },
      ]),
    );
    expect(requestsTo(other).every((entry) => entry.path.startsWith('/export-status/'))).toBe(true);
  }, 60_000);
});
