import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FaultPlan } from '../../scripts/sandbox/faults.js';
import { jwksOf, testKey } from './support/keys.js';
import {
  accessToken,
  exportAndWait,
  getStatus,
  kickOff,
  type Manifest,
  ndjsonLines,
  registerTestClient,
  requestToken,
  startTestSandbox,
  type TestSandbox,
} from './support/sandbox.js';

describe('fault injection', () => {
  let t: TestSandbox;
  beforeAll(async () => {
    t = await startTestSandbox();
  });
  afterAll(() => t.sandbox.close());

  /** A new client with these faults (one export per client at a time) and a token. */
  const withFaults = async (faults: FaultPlan, scope?: string) => {
    const client = await registerTestClient(t.sandbox, { faults, ...(scope ? { scope } : {}) });
    const token = await accessToken(t, client);
    return { client, token, auth: { authorization: `Bearer ${token}` } };
  };
  const exportUrl = () => `${t.sandbox.baseUrl}/$export?_type=Patient`;
  const statuses = async (responses: Promise<Response>[]) =>
    Promise.all(responses.map(async (r) => (await r).status));

  describe('token endpoint', () => {
    it('token400: the first n token requests get a bare 400 without an OAuth body', async () => {
      // Prepare
      const client = await registerTestClient(t.sandbox, { faults: { token400: 1 } });
      // Act
      const first = await requestToken(t, client);
      const second = await requestToken(t, client);
      // Assess
      expect(first.status).toBe(400);
      expect(await first.text()).toBe('');
      expect(second.status).toBe(200);
      await t.sandbox.settled();
      expect(t.sandbox.requestLog.filter((e) => e.clientId === client.clientId).map((e) => e.fault)).toEqual([
        'token400',
        undefined,
      ]);
    });

    it('tokenLifetimeSeconds: tokens expire early, then every endpoint answers 401', async () => {
      // Prepare
      const client = await registerTestClient(t.sandbox, { faults: { tokenLifetimeSeconds: 30 } });
      const response = await requestToken(t, client);
      const { access_token: token, expires_in } = (await response.json()) as {
        access_token: string;
        expires_in: number;
      };
      const kickoff = await kickOff(exportUrl(), token);
      // Act
      t.clock.advance(30_000);
      const status = await getStatus(kickoff.headers.get('content-location')!, token);
      // Assess
      expect(expires_in).toBe(30);
      expect(kickoff.status).toBe(202);
      expect(status.status).toBe(401);
      expect(status.headers.get('www-authenticate')).toContain('the access token expired');
    });

    it('tokenExpiresInAsString: expires_in is a JSON string (CMS BCDA)', async () => {
      const client = await registerTestClient(t.sandbox, { faults: { tokenExpiresInAsString: true } });
      const body = (await (await requestToken(t, client)).json()) as { expires_in: unknown };
      expect(body.expires_in).toBe('300');
    });
  });

  describe('kick-off', () => {
    it.each([
      ['kickoff429', 429, 'throttled'],
      ['kickoff503', 503, 'transient'],
    ] as const)(
      '%s: the first n kick-offs get %i + Retry-After + OperationOutcome',
      async (fault, status, code) => {
        // Prepare
        const { token } = await withFaults({ [fault]: 2 });
        // Act
        const first = await kickOff(exportUrl(), token);
        const second = await kickOff(exportUrl(), token);
        const third = await kickOff(exportUrl(), token);
        // Assess
        expect([first.status, second.status, third.status]).toEqual([status, status, 202]);
        expect(first.headers.get('retry-after')).toBe('1');
        expect(((await first.json()) as { issue: { code: string }[] }).issue[0]!.code).toBe(code);
      },
    );

    it.each([400, 500])(
      'kickoffErrorStatus %i: every kick-off fails with an OperationOutcome',
      async (status) => {
        const { token } = await withFaults({ kickoffErrorStatus: status });
        const responses = [await kickOff(exportUrl(), token), await kickOff(exportUrl(), token)];
        expect(responses.map((r) => r.status)).toEqual([status, status]);
        const outcome = (await responses[0]!.json()) as { resourceType: string; issue: { code: string }[] };
        expect(outcome.resourceType).toBe('OperationOutcome');
        expect(outcome.issue[0]!.code).toBe(status === 500 ? 'exception' : 'processing');
      },
    );

    it('groupExportOnly: system and Patient kick-offs get 400, Group kick-offs work (Oracle Health)', async () => {
      const { token } = await withFaults({ groupExportOnly: true });
      expect(
        await statuses([
          kickOff(`${t.sandbox.baseUrl}/$export`, token),
          kickOff(`${t.sandbox.baseUrl}/Patient/$export`, token),
        ]),
      ).toEqual([400, 400]);
      expect((await kickOff(`${t.sandbox.baseUrl}/Group/cohort/$export`, token)).status).toBe(202);
    });

    it('rejectRepeatedType: a repeated _type gets 400, a comma-joined one works (Oracle Health)', async () => {
      const { token } = await withFaults({ rejectRepeatedType: true });
      const repeated = await kickOff(`${t.sandbox.baseUrl}/$export?_type=Patient&_type=Condition`, token);
      const joined = await kickOff(`${t.sandbox.baseUrl}/$export?_type=Patient,Condition`, token);
      expect([repeated.status, joined.status]).toEqual([400, 202]);
    });

    it('rejectElements: _elements gets 400 even with handling=lenient (Oracle Health)', async () => {
      const { token } = await withFaults({ rejectElements: true });
      const response = await kickOff(`${t.sandbox.baseUrl}/$export?_elements=id`, token, {
        headers: { prefer: 'respond-async, handling=lenient' },
      });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { issue: { diagnostics: string }[] }).issue[0]!.diagnostics).toBe(
        '_elements is not supported by this server',
      );
    });

    it('ignoreTypeFilter: _typeFilter is accepted and silently ignored', async () => {
      // Prepare
      const { token } = await withFaults({ ignoreTypeFilter: true });
      // Act
      const { manifest } = await exportAndWait(
        t,
        token,
        `${t.sandbox.baseUrl}/$export?_type=Observation&_typeFilter=${encodeURIComponent('Observation?category=laboratory')}`,
      );
      // Assess
      const all = t.sandbox.dataset.count({ type: 'Observation', until: manifest.transactionTime });
      expect(manifest.output.reduce((sum, o) => sum + o.count!, 0)).toBe(all);
    });

    it('oneExportUntilDelete: a finished export blocks the next kick-off until DELETE (Epic)', async () => {
      // Prepare
      const { token, auth } = await withFaults({ oneExportUntilDelete: true });
      const { statusUrl } = await exportAndWait(t, token, exportUrl());
      // Act
      const blocked = await kickOff(exportUrl(), token);
      await fetch(statusUrl, { method: 'DELETE', headers: auth });
      const allowed = await kickOff(exportUrl(), token);
      // Assess
      expect(blocked.status).toBe(429);
      expect(
        ((await blocked.json()) as { issue: { diagnostics: string }[] }).issue[0]!.diagnostics,
      ).toContain('waiting to be deleted');
      expect(allowed.status).toBe(202);
    });

    it('requireGroupScope: a Group export needs system/Group.read (eClinicalWorks)', async () => {
      // Prepare
      const client = await registerTestClient(t.sandbox, { faults: { requireGroupScope: true } });
      const withoutGroup = await accessToken(t, client, {
        scope: 'system/Patient.read system/Observation.read',
      });
      const withGroup = await accessToken(t, client, { scope: 'system/Patient.read system/Group.read' });
      // Act
      const denied = await kickOff(`${t.sandbox.baseUrl}/Group/small/$export?_type=Patient`, withoutGroup);
      const allowed = await kickOff(`${t.sandbox.baseUrl}/Group/small/$export?_type=Patient`, withGroup);
      // Assess
      expect([denied.status, allowed.status]).toEqual([403, 202]);
    });

    it('jobDurationMs: the export stays in progress longer (Epic)', async () => {
      const { token } = await withFaults({ jobDurationMs: 200_000 });
      const kickoff = await kickOff(exportUrl(), token);
      t.clock.advance(100_000);
      const status = await getStatus(kickoff.headers.get('content-location')!, token);
      expect(status.status).toBe(202);
      expect(status.headers.get('x-progress')).toBe('50% complete');
    });
  });

  describe('status', () => {
    const started = async (faults: FaultPlan) => {
      const { token, client } = await withFaults(faults);
      const kickoff = await kickOff(exportUrl(), token);
      return { token, client, statusUrl: kickoff.headers.get('content-location')! };
    };

    it('status5xx: the first n polls get 503 with a non-FHIR body and Retry-After', async () => {
      const { token, statusUrl } = await started({ status5xx: 2 });
      const first = await getStatus(statusUrl, token);
      expect(first.status).toBe(503);
      expect(first.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(first.headers.get('retry-after')).toBe('1');
      expect(await statuses([getStatus(statusUrl, token), getStatus(statusUrl, token)])).toEqual([503, 202]);
    });

    it('statusTransient: the first n polls get 500 + OperationOutcome with code transient', async () => {
      const { token, statusUrl } = await started({ statusTransient: 1 });
      const first = await getStatus(statusUrl, token);
      expect(first.status).toBe(500);
      expect(((await first.json()) as { issue: { code: string }[] }).issue[0]!.code).toBe('transient');
      expect((await getStatus(statusUrl, token)).status).toBe(202);
    });

    it('status429: the first n polls get 429 + Retry-After', async () => {
      const { token, statusUrl } = await started({ status429: 1, statusRetryAfterSeconds: 120 });
      const first = await getStatus(statusUrl, token);
      expect(first.status).toBe(429);
      expect(first.headers.get('retry-after')).toBe('120');
      expect((await getStatus(statusUrl, token)).status).toBe(202);
    });

    it.each([
      ['statusRetryAfterSeconds', { statusRetryAfterSeconds: 7200 }, '7200'],
      [
        'statusRetryAfterRaw (an HTTP-date)',
        { statusRetryAfterRaw: 'Fri, 31 Dec 1999 23:59:59 GMT' },
        'Fri, 31 Dec 1999 23:59:59 GMT',
      ],
      ['statusRetryAfterRaw (garbage)', { statusRetryAfterRaw: 'soon-ish' }, 'soon-ish'],
      ['statusRetryAfterRaw (negative)', { statusRetryAfterRaw: '-5' }, '-5'],
    ])('%s: in-progress polls carry that Retry-After', async (_name, faults, expected) => {
      const { token, statusUrl } = await started(faults);
      const status = await getStatus(statusUrl, token);
      expect(status.status).toBe(202);
      expect(status.headers.get('retry-after')).toBe(expected);
    });

    it.each([400, 503])('statusErrorStatus %i: every poll fails with an OperationOutcome', async (code) => {
      const { token, statusUrl } = await started({ statusErrorStatus: code });
      t.clock.advance(60_000);
      const status = await getStatus(statusUrl, token);
      expect(status.status).toBe(code);
      expect(((await status.json()) as { issue: { code: string }[] }).issue[0]!.code).toBe('processing');
    });

    it('jobFailure: after its duration the export answers 500 + OperationOutcome code exception', async () => {
      const { token, statusUrl } = await started({ jobFailure: true });
      const running = await getStatus(statusUrl, token);
      t.clock.advance(60_000);
      const failed = await getStatus(statusUrl, token);
      expect(running.status).toBe(202);
      expect(failed.status).toBe(500);
      expect(((await failed.json()) as { issue: { code: string }[] }).issue[0]!.code).toBe('exception');
      expect(t.sandbox.jobs().find((j) => j.statusUrl === statusUrl)?.state).toBe('failed');
    });

    it('jobExpiry: status answers 404 right after kick-off', async () => {
      const { token, statusUrl } = await started({ jobExpiry: true });
      const status = await getStatus(statusUrl, token);
      expect(status.status).toBe(404);
      expect(((await status.json()) as { issue: { code: string }[] }).issue[0]!.code).toBe('not-found');
      expect(t.sandbox.jobs().find((j) => j.statusUrl === statusUrl)?.state).toBe('expired');
    });

    it('errorFile: the manifest lists an OperationOutcome file (partial success)', async () => {
      const { token } = await withFaults({ errorFile: true });
      const { manifest } = await exportAndWait(t, token, exportUrl());
      expect(manifest.error).toEqual([{ type: 'OperationOutcome', url: expect.any(String), count: 1 }]);
      const [outcome] = ndjsonLines(t.sandbox.fileContent(manifest.error[0]!.url));
      expect(outcome).toEqual({
        resourceType: 'OperationOutcome',
        issue: [
          {
            severity: 'error',
            code: 'processing',
            diagnostics: 'Injected fault (errorFile): some Patient resources could not be exported',
          },
        ],
      });
    });

    it("someFilesFailed: every 2nd file of a type holds 1 resource of its count, and error[] names each (the SMART reference server's some_file_generation_failed)", async () => {
      const { token } = await withFaults({ someFilesFailed: true, resourcesPerFile: 7 });
      const { manifest } = await exportAndWait(t, token, exportUrl());
      const countAndDelivered = manifest.output.map((entry) => [
        entry.count,
        ndjsonLines(t.sandbox.fileContent(entry.url)).length,
      ]);
      expect(countAndDelivered).toEqual([
        [7, 7],
        [7, 1],
        [7, 7],
        [7, 1],
        [2, 2],
      ]);
      // The issue names the file by the name its URL ends with.
      expect(new URL(manifest.output[1]!.url).pathname).toMatch(/\/Patient\.2\.ndjson$/);
      const outcomes = ndjsonLines(t.sandbox.fileContent(manifest.error[0]!.url)) as { issue: unknown }[];
      expect(outcomes.map((outcome) => outcome.issue)).toEqual([
        [{ severity: 'fatal', code: 'exception', diagnostics: 'Failed to export Patient.2.ndjson' }],
        [{ severity: 'error', code: 'exception', diagnostics: 'Failed to export Patient.4.ndjson' }],
        [{ severity: 'information', code: 'informational', diagnostics: expect.any(String) }],
      ]);
    });

    it('fixedTransactionTime: every manifest carries that transactionTime; what is exported does not change', async () => {
      // Prepare
      const fixed = '2025-06-01T00:00:00.000Z';
      const { token } = await withFaults({ fixedTransactionTime: fixed });
      const plain = await withFaults({});
      // Act
      const first = await exportAndWait(t, token, exportUrl());
      const second = await exportAndWait(t, token, exportUrl());
      const unfaulted = await exportAndWait(t, plain.token, exportUrl());
      // Assess
      expect([first.manifest.transactionTime, second.manifest.transactionTime]).toEqual([fixed, fixed]);
      const realTimes = t.sandbox
        .jobs()
        .filter((job) => job.statusUrl === first.statusUrl || job.statusUrl === second.statusUrl)
        .map((job) => job.transactionTime);
      // The server's own clock moved on (a minute per export): only the manifest repeats itself.
      expect(new Set(realTimes).size).toBe(2);
      expect(realTimes).not.toContain(fixed);
      expect(t.sandbox.fileContent(first.manifest.output[0]!.url)).toEqual(
        t.sandbox.fileContent(unfaulted.manifest.output[0]!.url),
      );
      await t.sandbox.settled();
      expect(t.sandbox.requestLog.filter((e) => e.fault === 'fixedTransactionTime')).toHaveLength(2);
    });

    it('duplicateManifestEntry: output file n is listed again at the end of output', async () => {
      // Prepare
      const { token } = await withFaults({ duplicateManifestEntry: 0, resourcesPerFile: 10 });
      // Act
      const { manifest } = await exportAndWait(t, token, exportUrl());
      // Assess
      expect(manifest.output.length).toBeGreaterThan(2);
      expect(manifest.output.at(-1)).toEqual(manifest.output[0]);
      expect(new Set(manifest.output.map((entry) => entry.url)).size).toBe(manifest.output.length - 1);
    });

    it('countMismatch: the manifest count of the type’s first file is off by delta', async () => {
      const { token } = await withFaults({ countMismatch: { type: 'Patient', delta: 1 } });
      const { manifest } = await exportAndWait(t, token, exportUrl());
      expect(manifest.output[0]!.count).toBe(31);
      expect(ndjsonLines(t.sandbox.fileContent(manifest.output[0]!.url))).toHaveLength(30);
    });
  });

  describe('files', () => {
    const exported = async (faults: FaultPlan, url = exportUrl()) => {
      const setup = await withFaults(faults);
      const { manifest } = await exportAndWait(t, setup.token, url);
      return { ...setup, manifest, fileUrl: manifest.output[0]!.url };
    };

    it.each([
      ['file401', 401],
      ['file404', 404],
      ['file429', 429],
      ['file5xx', 503],
    ] as const)(
      '%s: the first n GETs of each file get %i, then the file is served',
      async (fault, status) => {
        // Prepare
        const { auth, fileUrl } = await exported({ [fault]: 1 });
        // Act
        const first = await fetch(fileUrl, { headers: auth });
        const second = await fetch(fileUrl, { headers: auth });
        // Assess
        expect(first.status).toBe(status);
        if (status === 429 || status === 503) expect(first.headers.get('retry-after')).toBe('1');
        expect(second.status).toBe(200);
        expect(Buffer.from(await second.arrayBuffer()).equals(t.sandbox.fileContent(fileUrl))).toBe(true);
        expect(
          t.sandbox.requestLog.filter((e) => e.path === new URL(fileUrl).pathname).map((e) => e.fault),
        ).toEqual([fault, undefined]);
      },
    );

    it('file faults count per file', async () => {
      // Prepare
      const setup = await withFaults({ file5xx: 1 });
      const { manifest } = await exportAndWait(
        t,
        setup.token,
        `${t.sandbox.baseUrl}/$export?_type=Patient,Condition`,
      );
      // Act
      const firstTries = await statuses(manifest.output.map((o) => fetch(o.url, { headers: setup.auth })));
      const secondTries = await statuses(manifest.output.map((o) => fetch(o.url, { headers: setup.auth })));
      // Assess
      expect(firstTries).toEqual([503, 503]);
      expect(secondTries).toEqual([200, 200]);
    });

    it('dropAfterBytes: the connection is cut after exactly that many body bytes, then the file is served whole', async () => {
      // Prepare
      const { auth, fileUrl } = await exported({ dropAfterBytes: { bytes: 1000 } });
      // Act
      const cut = await request(fileUrl, { headers: auth });
      let received = 0;
      const error = await (async () => {
        try {
          for await (const chunk of cut.body) received += (chunk as Buffer).length;
        } catch (e) {
          return e as Error;
        }
        return undefined;
      })();
      const retry = await request(fileUrl, { headers: auth });
      const whole = Buffer.from(await retry.body.arrayBuffer());
      // Assess
      expect(cut.statusCode).toBe(200);
      expect(error).toBeInstanceOf(Error);
      expect(received).toBe(1000);
      expect(whole.equals(t.sandbox.fileContent(fileUrl))).toBe(true);
      await t.sandbox.settled();
      const log = t.sandbox.requestLog.filter((e) => e.path === new URL(fileUrl).pathname);
      expect(log.map((e) => [e.fault, e.completed])).toEqual([
        ['dropAfterBytes', false],
        [undefined, true],
      ]);
    });

    it('dropAfterBytes with fileIndex cuts only that output file', async () => {
      const setup = await withFaults({ dropAfterBytes: { bytes: 10, fileIndex: 1 } });
      const { manifest } = await exportAndWait(
        t,
        setup.token,
        `${t.sandbox.baseUrl}/$export?_type=Patient,Condition`,
      );
      const first = await request(manifest.output[0]!.url, { headers: setup.auth });
      expect(
        Buffer.from(await first.body.arrayBuffer()).equals(t.sandbox.fileContent(manifest.output[0]!.url)),
      ).toBe(true);
      const second = await request(manifest.output[1]!.url, { headers: setup.auth });
      await expect(second.body.arrayBuffer()).rejects.toThrow();
    });

    it.each([
      ['a throttle', { bytesPerSecond: 2_000_000 }],
      ['a stall', { stallAfterBytes: 100, stallMs: 20 }],
    ])('slowFile with %s still delivers the exact file', async (_name, slowFile) => {
      const { auth, fileUrl } = await exported({ slowFile });
      const response = await fetch(fileUrl, { headers: auth });
      expect(Buffer.from(await response.arrayBuffer()).equals(t.sandbox.fileContent(fileUrl))).toBe(true);
      await t.sandbox.settled();
      expect(t.sandbox.requestLog.at(-1)?.fault).toBe('slowFile');
    });

    it('malformedLine: that line is served as invalid JSON; fileContent keeps the truth', async () => {
      // Prepare
      const { auth, fileUrl } = await exported({ malformedLine: { type: 'Patient', line: 2 } });
      // Act
      const response = await request(fileUrl, { headers: auth });
      const served = Buffer.from(await response.body.arrayBuffer());
      // Assess
      const truth = t.sandbox.fileContent(fileUrl);
      expect(served.equals(t.sandbox.fileContent(fileUrl, { served: true }))).toBe(true);
      expect(response.headers['content-length']).toBe(String(served.length));
      const servedLines = served.toString().split('\n');
      const trueLines = truth.toString().split('\n');
      expect(servedLines[1]).toBe('{"resourceType":"Patient","id":');
      expect(() => JSON.parse(servedLines[1]!)).toThrow(SyntaxError);
      expect(servedLines.filter((_, i) => i !== 1)).toEqual(trueLines.filter((_, i) => i !== 1));
      expect(() => ndjsonLines(truth)).not.toThrow();
    });

    it('resourcesPerFile: many small files (Oracle Health)', async () => {
      const { manifest } = await exported({ resourcesPerFile: 7 });
      expect(manifest.output.map((o) => o.count)).toEqual([7, 7, 7, 7, 2]);
    });

    it('filesFromSecondOrigin: presigned URLs on the second origin, no token required, Authorization refused', async () => {
      // Prepare
      const { auth, manifest, fileUrl } = await exported({ filesFromSecondOrigin: true });
      // Act
      const plain = await request(fileUrl);
      const withToken = await request(fileUrl, { headers: auth });
      const tampered = await request(fileUrl.replace(/X-Amz-Signature=[0-9a-f]/, 'X-Amz-Signature=g'));
      // Assess
      expect(manifest.requiresAccessToken).toBe(false);
      expect(fileUrl.startsWith(`${t.sandbox.secondOrigin}/files/`)).toBe(true);
      expect(new URL(fileUrl).searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
      expect(plain.statusCode).toBe(200);
      expect(Buffer.from(await plain.body.arrayBuffer()).equals(t.sandbox.fileContent(fileUrl))).toBe(true);
      expect(withToken.statusCode).toBe(400);
      expect(await withToken.body.text()).toContain('<Code>InvalidArgument</Code>');
      expect(tampered.statusCode).toBe(403);
      expect(await tampered.body.text()).toContain('<Code>SignatureDoesNotMatch</Code>');
    });

    it('redirectFiles: 307 to a presigned second-origin URL; a client that forwards the token gets 400', async () => {
      // Prepare
      const { auth, manifest, fileUrl } = await exported({ redirectFiles: true });
      // Act
      const redirect = await request(fileUrl, { headers: auth });
      const location = redirect.headers.location as string;
      const withToken = await request(location, { headers: auth });
      const withoutToken = await request(location);
      const unauthenticated = await request(fileUrl);
      // Assess
      expect(manifest.requiresAccessToken).toBe(true);
      expect(fileUrl.startsWith(`${t.sandbox.origin}/files/`)).toBe(true);
      expect(redirect.statusCode).toBe(307);
      expect(location.startsWith(`${t.sandbox.secondOrigin}${new URL(fileUrl).pathname}?`)).toBe(true);
      expect(location).toMatch(/X-Amz-Signature=[0-9a-f]{64}/);
      expect(withToken.statusCode).toBe(400);
      expect(withoutToken.statusCode).toBe(200);
      expect(Buffer.from(await withoutToken.body.arrayBuffer()).equals(t.sandbox.fileContent(fileUrl))).toBe(
        true,
      );
      expect(unauthenticated.statusCode).toBe(401);
      for (const r of [redirect, withToken, unauthenticated]) await r.body.dump();
    });

    it('redirectFiles: the request log shows whether the redirect target saw the token', async () => {
      // Prepare
      const { auth, fileUrl } = await exported({ redirectFiles: true });
      t.sandbox.clearRequestLog();
      // Act: fetch follows the 307 and drops Authorization across origins.
      const response = await fetch(fileUrl, { headers: auth });
      // Assess
      expect(response.status).toBe(200);
      await response.arrayBuffer();
      await t.sandbox.settled();
      expect(t.sandbox.requestLog.map((e) => [e.origin, e.status, e.hasAuthorization])).toEqual([
        [t.sandbox.origin, 307, true],
        [t.sandbox.secondOrigin, 200, false],
      ]);
    });

    it('fileLinkLifetimeMs: links expire (410) and a manifest re-read refreshes them', async () => {
      const { auth, fileUrl } = await exported({ fileLinkLifetimeMs: 1000 });
      t.clock.advance(1000);
      const response = await fetch(fileUrl, { headers: auth });
      expect(response.status).toBe(410);
      await t.sandbox.settled();
      expect(t.sandbox.requestLog.at(-1)?.fault).toBe('fileLinkLifetimeMs');
    });
  });

  describe('per-export choice', () => {
    it('a /fault/<spec>/fhir base URL applies its faults to exports started there, token endpoint included', async () => {
      // Prepare
      const client = await registerTestClient(t.sandbox);
      const base = `${t.sandbox.origin}/fault/${encodeURIComponent('kickoff429=1;tokenLifetimeSeconds=60')}/fhir`;
      const config = (await (await fetch(`${base}/.well-known/smart-configuration`)).json()) as {
        token_endpoint: string;
      };
      const token = await accessToken(t, client, { tokenUrl: config.token_endpoint });
      // Act
      const first = await kickOff(`${base}/$export?_type=Patient`, token);
      const second = await kickOff(`${base}/$export?_type=Patient`, token);
      // Assess
      expect(config.token_endpoint).toBe(
        `${t.sandbox.origin}/fault/kickoff429%3D1%3BtokenLifetimeSeconds%3D60/auth/token`,
      );
      expect([first.status, second.status]).toEqual([429, 202]);
      const job = t.sandbox.jobs().find((j) => j.statusUrl === second.headers.get('content-location'));
      expect(job?.faults).toEqual({ kickoff429: 1, tokenLifetimeSeconds: 60 });
      expect(job?.request).toBe(`${base}/$export?_type=Patient`);
    });

    it('an assertion for the plain token URL is refused at a /fault/ token URL (aud must match exactly)', async () => {
      const client = await registerTestClient(t.sandbox);
      const { signAssertion } = await import('./support/keys.js');
      const assertion = await signAssertion({
        key: client.key,
        clientId: client.clientId,
        tokenUrl: t.sandbox.tokenUrl,
        now: t.clock.now(),
      });
      const faultTokenUrl = `${t.sandbox.origin}/fault/jobFailure/auth/token`;
      const response = await requestToken(t, client, { tokenUrl: faultTokenUrl, assertion });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { error: string }).error).toBe('invalid_grant');
    });

    it('faultBaseUrl() builds such a base URL from a FaultPlan', async () => {
      const client = await registerTestClient(t.sandbox);
      const token = await accessToken(t, client);
      const base = t.sandbox.faultBaseUrl({ dropAfterBytes: { bytes: 5 } });
      const { manifest } = await exportAndWait(t, token, `${base}/$export?_type=Patient`);
      const response = await request(manifest.output[0]!.url, {
        headers: { authorization: `Bearer ${token}` },
      });
      await expect(response.body.arrayBuffer()).rejects.toThrow();
    });

    it('an X-Sandbox-Fault header on the kick-off overrides the client’s faults for that export', async () => {
      // Prepare
      const { token } = await withFaults({ jobFailure: true, status5xx: 3 });
      // Act
      const kickoff = await kickOff(exportUrl(), token, {
        headers: { 'x-sandbox-fault': '{"jobFailure":false,"status5xx":0}' },
      });
      t.clock.advance(60_000);
      const status = await getStatus(kickoff.headers.get('content-location')!, token);
      // Assess
      expect(status.status).toBe(200);
    });

    it('a fixedTransactionTime in a fault spec is read as the instant it spells', async () => {
      const { token } = await withFaults({});
      const { manifest } = await exportAndWait(t, token, exportUrl(), {
        headers: { 'x-sandbox-fault': 'fixedTransactionTime=2999-01-01T00:00:00Z' },
      });
      expect(manifest.transactionTime).toBe('2999-01-01T00:00:00Z');
    });

    it.each([
      ['an unknown fault', 'fileFiveHundred=1', /unknown fault "fileFiveHundred"/],
      ['a bad value', 'file5xx=-1', /faults.file5xx: expected a non-negative integer, got -1/],
      ['bad JSON', '{"file5xx":', /invalid JSON/],
      [
        'a fixedTransactionTime without a timezone',
        'fixedTransactionTime=2999-01-01T00:00:00',
        /faults.fixedTransactionTime: expected an ISO 8601 instant with a timezone/,
      ],
      [
        'a bare duplicateManifestEntry',
        'duplicateManifestEntry',
        /faults.duplicateManifestEntry: expected a file index \(a non-negative integer\), got true/,
      ],
    ])('answers 400 to a fault spec with %s', async (_name, spec, message) => {
      const { token } = await withFaults({});
      const response = await kickOff(exportUrl(), token, { headers: { 'x-sandbox-fault': spec } });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { issue: { diagnostics: string }[] }).issue[0]!.diagnostics).toMatch(
        message,
      );
    });
  });

  describe('registration', () => {
    it('re-registering a client_id replaces its faults without a restart, and their counts start afresh', async () => {
      // Prepare
      const key = await testKey('ES384');
      const register = (faults: FaultPlan) =>
        t.sandbox.registerClient({ clientId: 'flaky-ehr-client', jwks: jwksOf(key), faults });
      await register({ kickoff429: 1 });
      const token = await accessToken(t, { clientId: 'flaky-ehr-client', key });
      const first = await kickOff(exportUrl(), token);
      // Act
      await register({ kickoff429: 1 });
      const afterSameFaults = await kickOff(exportUrl(), token);
      await register({});
      const afterNoFaults = await kickOff(exportUrl(), token);
      // Assess
      expect([first.status, afterSameFaults.status, afterNoFaults.status]).toEqual([429, 429, 202]);
    });

    it.each([
      ['an unknown fault', { fileFiveHundred: 1 }, /unknown fault "fileFiveHundred"/],
      [
        'a bad dropAfterBytes',
        { dropAfterBytes: { bytes: 'many' } },
        /faults.dropAfterBytes: field "bytes": expected a non-negative integer/,
      ],
      [
        'an unknown malformedLine type',
        { malformedLine: { type: 'Claim', line: 1 } },
        /expected an exportable resource type/,
      ],
      ['both file hosts', { filesFromSecondOrigin: true, redirectFiles: true }, /mutually exclusive/],
    ])('refuses %s', async (_name, faults, message) => {
      const key = await testKey('ES384');
      await expect(
        t.sandbox.registerClient({ jwks: jwksOf(key), faults: faults as FaultPlan }),
      ).rejects.toThrow(message);
    });
  });

  it('manifest files all carry the export’s faults, whoever polls', async () => {
    const { token } = await withFaults({ countMismatch: { type: 'Patient', delta: -2 } });
    const { manifest } = (await exportAndWait(t, token, exportUrl())) as { manifest: Manifest };
    expect(manifest.output[0]!.count).toBe(28);
  });
});
