import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  accessToken,
  exportAndWait,
  kickOff,
  ndjsonLines,
  registerTestClient,
  startTestSandbox,
  type TestClient,
  type TestSandbox,
} from './support/sandbox.js';

describe('kick-off', () => {
  let t: TestSandbox;
  let client: TestClient;
  let token: string;
  beforeAll(async () => {
    t = await startTestSandbox();
    client = await registerTestClient(t.sandbox);
  });
  afterAll(() => t.sandbox.close());
  // One export per client at a time: each test gets its token afresh and cancels what it started.
  afterEach(async () => {
    for (const job of t.sandbox.jobs()) {
      if (job.state === 'in-progress' || job.state === 'complete') {
        await fetch(job.statusUrl, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
      }
    }
  });
  const fresh = async () => {
    token = await accessToken(t, client);
    return token;
  };

  it.each([
    ['system', '/$export'],
    ['Patient', '/Patient/$export'],
    ['Group', '/Group/cohort/$export'],
  ])('accepts a %s-level GET kick-off with 202 and an absolute Content-Location', async (_level, path) => {
    // Act
    const response = await kickOff(`${t.sandbox.baseUrl}${path}`, await fresh());
    // Assess
    expect(response.status).toBe(202);
    const location = response.headers.get('content-location')!;
    expect(location).toMatch(new RegExp(`^${t.sandbox.origin}/export-status/[0-9a-f]{24}$`));
    expect(t.sandbox.jobs().find((j) => j.statusUrl === location)).toMatchObject({
      clientId: client.clientId,
      state: 'in-progress',
      request: `${t.sandbox.baseUrl}${path}`,
    });
  });

  it('accepts a POST kick-off with a Parameters resource and records the URL without parameters', async () => {
    // Act
    const { manifest } = await exportAndWait(t, await fresh(), `${t.sandbox.baseUrl}/Group/cohort/$export`, {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify({
        resourceType: 'Parameters',
        parameter: [
          { name: '_type', valueString: 'Patient' },
          { name: 'patient', valueReference: { reference: 'Patient/pt-1' } },
          { name: 'patient', valueReference: { reference: `${t.sandbox.baseUrl}/Patient/pt-3` } },
        ],
      }),
    });
    // Assess
    expect(manifest.request).toBe(`${t.sandbox.baseUrl}/Group/cohort/$export`);
    expect(manifest.output.map((o) => o.type)).toEqual(['Patient']);
    const ids = ndjsonLines(t.sandbox.fileContent(manifest.output[0]!.url)).map((r) => r.id);
    expect(ids).toEqual(['pt-1', 'pt-3']);
  });

  it('restricts a Group export to the Group members', async () => {
    // Prepare
    const members = t.sandbox.dataset.groups.find((g) => g.id === 'diabetes')!.patientIndexes;
    // Act
    const { manifest } = await exportAndWait(
      t,
      await fresh(),
      `${t.sandbox.baseUrl}/Group/diabetes/$export?_type=Patient`,
    );
    // Assess
    const ids = ndjsonLines(t.sandbox.fileContent(manifest.output[0]!.url)).map((r) => r.id);
    expect(members.length).toBeGreaterThan(0);
    expect(ids).toEqual(members.map((i) => `pt-${i}`));
  });

  it('merges repeated _type parameters with comma lists', async () => {
    const { manifest } = await exportAndWait(
      t,
      await fresh(),
      `${t.sandbox.baseUrl}/Patient/$export?_type=Patient,Condition&_type=Observation`,
    );
    expect(manifest.output.map((o) => o.type)).toEqual(['Patient', 'Condition', 'Observation']);
  });

  it('applies _since, _until, _elements and _typeFilter (repeats are ORed)', async () => {
    // Prepare
    const since = '2024-01-01T00:00:00Z';
    const until = '2025-06-30T12:00:00.000+02:00';
    const query = new URLSearchParams([
      ['_type', 'Observation'],
      ['_since', since],
      ['_until', until],
      ['_elements', 'status,Observation.category'],
      ['_typeFilter', 'Observation?category=laboratory'],
      ['_typeFilter', 'Observation?category=vital-signs'],
      ['_outputFormat', 'ndjson'],
    ]);
    // Act
    const { manifest } = await exportAndWait(t, await fresh(), `${t.sandbox.baseUrl}/$export?${query}`);
    // Assess
    const bytes = t.sandbox.fileContent(manifest.output[0]!.url);
    const resources = ndjsonLines(bytes) as {
      meta: { lastUpdated: string; tag: { code: string }[] };
      category: { coding: { code: string }[] }[];
    }[];
    expect(resources.length).toBe(manifest.output[0]!.count);
    expect(resources.length).toBeGreaterThan(0);
    for (const r of resources) {
      expect(Date.parse(r.meta.lastUpdated)).toBeGreaterThan(Date.parse(since));
      expect(Date.parse(r.meta.lastUpdated)).toBeLessThanOrEqual(Date.parse(until));
      expect(['laboratory', 'vital-signs']).toContain(r.category[0]!.coding[0]!.code);
      expect(Object.keys(r).sort()).toEqual(['category', 'id', 'meta', 'resourceType', 'status']);
      expect(r.meta.tag.map((tag) => tag.code)).toContain('SUBSETTED');
    }
    const expected = [
      ...t.sandbox.dataset.lines({
        type: 'Observation',
        since: '2024-01-01T00:00:00.000Z',
        until: '2025-06-30T10:00:00.000Z',
        elements: ['status', 'category'],
        typeFilters: ['category=laboratory', 'category=vital-signs'],
      }),
    ];
    expect(bytes.toString()).toBe(`${expected.join('\n')}\n`);
  });

  it('splits _typeFilter items on commas that start a new Type? only', async () => {
    const query = `_type=Observation&_typeFilter=${encodeURIComponent('Observation?category=laboratory,vital-signs,Observation?status=final')}`;
    const { manifest } = await exportAndWait(t, await fresh(), `${t.sandbox.baseUrl}/$export?${query}`);
    const expected = t.sandbox.dataset.count({
      type: 'Observation',
      until: manifest.transactionTime,
      typeFilters: ['category=laboratory,vital-signs', 'status=final'],
    });
    expect(manifest.output.reduce((sum, o) => sum + o.count!, 0)).toBe(expected);
  });

  const badRequests: [string, string, RequestInit, string, RegExp][] = [
    ['no Prefer header', '/$export', { headers: { prefer: '' } }, 'invalid', /Prefer: respond-async/],
    [
      'Accept: application/xml',
      '/$export',
      { headers: { accept: 'application/xml' } },
      'not-supported',
      /Accept must be application\/fhir\+json/,
    ],
    ['an unknown parameter', '/$export?_foo=bar', {}, 'not-supported', /parameter _foo is not supported/],
    [
      'an unknown _outputFormat',
      '/$export?_outputFormat=text/csv',
      {},
      'not-supported',
      /_outputFormat text\/csv/,
    ],
    ['an invalid _since', '/$export?_since=yesterday', {}, 'invalid', /_since must be a FHIR instant/],
    [
      'a _since without seconds',
      '/$export?_since=2020-01-01T00:00Z',
      {},
      'invalid',
      /_since must be a FHIR instant/,
    ],
    [
      '_until before _since',
      '/$export?_since=2021-01-01T00:00:00Z&_until=2020-01-01T00:00:00Z',
      {},
      'invalid',
      /_until must be later/,
    ],
    [
      'an unsupported _type',
      '/$export?_type=Claim',
      {},
      'not-supported',
      /resource type Claim is not supported/,
    ],
    [
      'a non-compartment type at Patient level',
      '/Patient/$export?_type=Practitioner',
      {},
      'not-supported',
      /Practitioner is outside the Patient compartment; a patient-level export needs/,
    ],
    [
      'a nested _elements',
      '/$export?_elements=Patient.name.given',
      {},
      'not-supported',
      /not a root element/,
    ],
    [
      'an unsupported _typeFilter',
      '/$export?_typeFilter=Observation%3Fcolor%3Dblue',
      {},
      'not-supported',
      /_typeFilter Observation\?color=blue/,
    ],
    [
      'a _typeFilter with _include',
      '/$export?_typeFilter=Observation%3F_include%3DObservation%3Asubject',
      {},
      'invalid',
      /_include may not be used/,
    ],
    [
      'a patient parameter in a GET',
      '/Patient/$export?patient=Patient/pt-1',
      {},
      'not-supported',
      /only supported in a POST/,
    ],
    [
      'an unknown includeAssociatedData value',
      '/$export?includeAssociatedData=Everything',
      {},
      'not-supported',
      /includeAssociatedData value Everything/,
    ],
    [
      'an allowPartialManifests that is not a boolean',
      '/$export?allowPartialManifests=maybe',
      {},
      'invalid',
      /allowPartialManifests must be true or false, got maybe/,
    ],
    [
      'organizeOutputBy other than Patient',
      '/$export?organizeOutputBy=Encounter',
      {},
      'not-supported',
      /organizeOutputBy Encounter is not supported; use Patient/,
    ],
  ];
  it.each(badRequests)(
    'answers 400 + OperationOutcome to %s',
    async (_name, path, init, code, diagnostics) => {
      // Act
      const response = await kickOff(`${t.sandbox.baseUrl}${path}`, await fresh(), init);
      // Assess
      expect(response.status).toBe(400);
      expect(response.headers.get('content-type')).toMatch(/^application\/fhir\+json/);
      const outcome = (await response.json()) as {
        resourceType: string;
        issue: { code: string; diagnostics: string }[];
      };
      expect(outcome.resourceType).toBe('OperationOutcome');
      expect(outcome.issue[0]!.code).toBe(code);
      expect(outcome.issue[0]!.diagnostics).toMatch(diagnostics);
    },
  );

  it.each([
    ['absent', undefined],
    ['*/*', '*/*'],
    ['a list with fhir+json', 'application/json, application/fhir+json;q=0.9'],
  ])('accepts Accept %s', async (_name, accept) => {
    const headers: Record<string, string> = { prefer: 'respond-async' };
    if (accept) headers.accept = accept;
    const response = await fetch(`${t.sandbox.baseUrl}/$export`, {
      headers: { ...headers, authorization: `Bearer ${await fresh()}` },
    });
    expect(response.status).toBe(202);
  });

  it.each(['application/fhir+ndjson', 'application/ndjson', 'ndjson'])(
    'accepts _outputFormat %s',
    async (format) => {
      const response = await kickOff(
        `${t.sandbox.baseUrl}/$export?${new URLSearchParams({ _outputFormat: format })}`,
        await fresh(),
      );
      expect(response.status).toBe(202);
    },
  );

  it('accepts includeAssociatedData values it knows (and ignores them)', async () => {
    const response = await kickOff(
      `${t.sandbox.baseUrl}/$export?includeAssociatedData=LatestProvenanceResources,_custom`,
      await fresh(),
    );
    expect(response.status).toBe(202);
  });

  it('ignores unsupported parameters under Prefer: handling=lenient and reports each in error[]', async () => {
    // Act
    const { manifest } = await exportAndWait(
      t,
      await fresh(),
      `${t.sandbox.baseUrl}/Patient/$export?_type=Patient,Claim&_foo=1`,
      {
        headers: { prefer: 'respond-async, handling=lenient' },
      },
    );
    // Assess
    expect(manifest.output.map((o) => o.type)).toEqual(['Patient']);
    expect(manifest.error).toEqual([{ type: 'OperationOutcome', url: expect.any(String), count: 2 }]);
    const outcomes = ndjsonLines(t.sandbox.fileContent(manifest.error[0]!.url));
    expect(outcomes.map((o) => (o.issue as { severity: string; diagnostics: string }[])[0])).toEqual([
      {
        severity: 'warning',
        code: 'not-supported',
        diagnostics: 'ignored (handling=lenient): parameter _foo is not supported',
      },
      {
        severity: 'warning',
        code: 'not-supported',
        diagnostics: 'ignored (handling=lenient): _type: resource type Claim is not supported by this server',
      },
    ]);
  });

  it('answers 400 to a POST patient that is not a member of the Group', async () => {
    // Prepare
    const members = t.sandbox.dataset.groups.find((g) => g.id === 'small')!.patientIndexes;
    const outsider = `pt-${members.length}`;
    // Act
    const response = await kickOff(`${t.sandbox.baseUrl}/Group/small/$export`, await fresh(), {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify({
        resourceType: 'Parameters',
        parameter: [{ name: 'patient', valueReference: { reference: `Patient/${outsider}` } }],
      }),
    });
    // Assess
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({
      resourceType: 'OperationOutcome',
      issue: [
        {
          severity: 'error',
          code: 'not-found',
          diagnostics: `patient Patient/${outsider} is not a member of the Group`,
        },
      ],
    });
  });

  it.each([
    ['not JSON', 'application/fhir+json', '{', 400, /not valid JSON/],
    [
      'not a Parameters resource',
      'application/fhir+json',
      '{"resourceType":"Bundle"}',
      400,
      /must be a FHIR Parameters resource/,
    ],
    [
      'form-encoded',
      'application/x-www-form-urlencoded',
      '_type=Patient',
      415,
      /Parameters resource in application\/fhir\+json/,
    ],
  ])('rejects a POST body that is %s', async (_name, contentType, body, status, diagnostics) => {
    const response = await kickOff(`${t.sandbox.baseUrl}/$export`, await fresh(), {
      method: 'POST',
      headers: { 'content-type': contentType },
      body,
    });
    expect(response.status).toBe(status);
    expect(((await response.json()) as { issue: { diagnostics: string }[] }).issue[0]!.diagnostics).toMatch(
      diagnostics,
    );
  });

  it('answers 404 + OperationOutcome for an unknown Group', async () => {
    const response = await kickOff(`${t.sandbox.baseUrl}/Group/nope/$export`, await fresh());
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'not-found', diagnostics: 'Group/nope does not exist' }],
    });
  });

  it('answers 401 without a bearer token', async () => {
    const response = await fetch(`${t.sandbox.baseUrl}/$export`, { headers: { prefer: 'respond-async' } });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe('Bearer realm="fhir-sandbox"');
  });

  it('answers 403 when the token does not cover an explicitly requested type', async () => {
    const narrow = await accessToken(t, client, { scope: 'system/Patient.read' });
    const response = await kickOff(`${t.sandbox.baseUrl}/Patient/$export?_type=Patient,Observation`, narrow);
    expect(response.status).toBe(403);
    expect(((await response.json()) as { issue: { diagnostics: string }[] }).issue[0]!.diagnostics).toBe(
      "the access token's scopes do not allow exporting Observation",
    );
  });

  it('exports only the types the token covers when _type is absent', async () => {
    token = await accessToken(t, client, { scope: 'system/Patient.rs system/Condition.read' });
    const { manifest } = await exportAndWait(t, token);
    expect(manifest.output.map((o) => o.type)).toEqual(['Patient', 'Condition']);
  });

  it('answers 429 + Retry-After + OperationOutcome to a second export while one runs', async () => {
    // Prepare
    const first = await kickOff(`${t.sandbox.baseUrl}/$export`, await fresh());
    // Act
    const second = await kickOff(`${t.sandbox.baseUrl}/$export`, token);
    // Assess
    expect(first.status).toBe(202);
    expect(second.status).toBe(429);
    expect(second.headers.get('retry-after')).toBe('1');
    const outcome = (await second.json()) as { issue: { code: string; diagnostics: string }[] };
    expect(outcome.issue[0]!.code).toBe('throttled');
    expect(outcome.issue[0]!.diagnostics).toContain(first.headers.get('content-location'));
  });
});
