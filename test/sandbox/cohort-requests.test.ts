import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildKickOffRequest, type ExportRequest } from '../../lambdas/core/kickoff.js';
import {
  accessToken,
  exportAndWait,
  getStatus,
  kickOff,
  ndjsonLines,
  registerTestClient,
  startTestSandbox,
  type TestClient,
  type TestSandbox,
} from './support/sandbox.js';

const parameters = (...parameter: Record<string, unknown>[]) => ({
  method: 'POST',
  headers: { 'content-type': 'application/fhir+json' },
  body: JSON.stringify({ resourceType: 'Parameters', parameter }),
});
const patient = (id: string) => ({ name: 'patient', valueReference: { reference: `Patient/${id}` } });

describe('cohort requests: patient, includeAssociatedData, _until', () => {
  let t: TestSandbox;
  let client: TestClient;
  let token: string;
  beforeAll(async () => {
    t = await startTestSandbox();
    client = await registerTestClient(t.sandbox);
  });
  afterAll(() => t.sandbox.close());
  // One export per client at a time: cancel what a test started.
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

  it('restricts a POST Group export to the patient list and their compartment', async () => {
    // Act
    const { manifest } = await exportAndWait(
      t,
      await fresh(),
      `${t.sandbox.baseUrl}/Group/cohort/$export`,
      parameters(
        { name: '_type', valueString: 'Patient,Observation,Practitioner' },
        patient('pt-2'),
        patient('pt-5'),
      ),
    );
    // Assess
    const resources = (type: string) =>
      manifest.output
        .filter((o) => o.type === type)
        .flatMap((o) => ndjsonLines(t.sandbox.fileContent(o.url)));
    expect(resources('Patient').map((p) => p.id)).toEqual(['pt-2', 'pt-5']);
    const subjects = new Set(
      resources('Observation').map((o) => (o.subject as { reference: string }).reference),
    );
    expect([...subjects].sort()).toEqual(['Patient/pt-2', 'Patient/pt-5']);
    const practitioners = new Set(resources('Practitioner').map((p) => `Practitioner/${p.id}`));
    const generalPractitioners = resources('Patient').map(
      (p) => (p.generalPractitioner as { reference: string }[])[0]!.reference,
    );
    for (const reference of generalPractitioners) expect(practitioners).toContain(reference);
    expect(t.sandbox.jobs().at(-1)!.received.patients).toEqual(['pt-2', 'pt-5']);
  });

  it('applies _until from a POST Parameters body: nothing updated after it', async () => {
    // Prepare
    const until = '2024-06-01T00:00:00Z';
    // Act
    const { manifest } = await exportAndWait(
      t,
      await fresh(),
      `${t.sandbox.baseUrl}/$export`,
      parameters({ name: '_type', valueString: 'Observation' }, { name: '_until', valueInstant: until }),
    );
    // Assess
    const lines = ndjsonLines(t.sandbox.fileContent(manifest.output[0]!.url));
    const all = t.sandbox.dataset.count({ type: 'Observation', until: manifest.transactionTime });
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThan(all);
    for (const line of lines) {
      expect(Date.parse((line.meta as { lastUpdated: string }).lastUpdated)).toBeLessThanOrEqual(
        Date.parse(until),
      );
    }
    expect(lines.length).toBe(
      t.sandbox.dataset.count({ type: 'Observation', until: '2024-06-01T00:00:00.000Z' }),
    );
  });

  it.each([
    ['GET, comma-joined', 'GET'],
    ['POST, one valueCode each', 'POST'],
  ] as const)(
    'accepts the IG includeAssociatedData codes and a server-defined _ value (%s)',
    async (_, method) => {
      // Prepare
      const values = ['LatestProvenanceResources', 'RelevantProvenanceResources', '_sandboxPreset'];
      const url = `${t.sandbox.baseUrl}/Patient/$export`;
      // Act
      const response =
        method === 'GET'
          ? await kickOff(`${url}?_type=Patient&includeAssociatedData=${values.join(',')}`, await fresh())
          : await kickOff(
              url,
              await fresh(),
              parameters(
                { name: '_type', valueString: 'Patient' },
                ...values.map((value) => ({ name: 'includeAssociatedData', valueCode: value })),
              ),
            );
      // Assess
      expect(response.status).toBe(202);
      expect(t.sandbox.jobs().at(-1)!.received.includeAssociatedData).toEqual(values);
      // The dataset holds no Provenance: the export is the one without the parameter.
      t.clock.advance(60_000);
      const manifest = (await (await getStatus(response.headers.get('content-location')!, token)).json()) as {
        output: { type: string }[];
        error: unknown[];
      };
      expect(manifest.output.map((o) => o.type)).toEqual(['Patient']);
      expect(manifest.error).toEqual([]);
    },
  );

  it('refuses an includeAssociatedData value that is neither the IG’s nor server-defined with 400 + OperationOutcome', async () => {
    // Prepare
    const jobsBefore = t.sandbox.jobs().length;
    // Act
    const response = await kickOff(
      `${t.sandbox.baseUrl}/$export?includeAssociatedData=LatestProvenanceResources,AllProvenance`,
      await fresh(),
    );
    // Assess
    expect(response.status).toBe(400);
    const outcome = (await response.json()) as {
      resourceType: string;
      issue: { code: string; diagnostics: string }[];
    };
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue).toEqual([
      expect.objectContaining({
        code: 'not-supported',
        diagnostics: expect.stringMatching(/^includeAssociatedData value AllProvenance is not supported/),
      }),
    ]);
    expect(t.sandbox.jobs()).toHaveLength(jobsBefore);
  });

  it('serves GET Group/cohort-technical-ids with members referenced by technical id, found by identifier', async () => {
    // Act
    const response = await fetch(`${t.sandbox.baseUrl}/Group/cohort-technical-ids`, {
      headers: { authorization: `Bearer ${await fresh()}` },
    });
    // Assess
    expect(response.status).toBe(200);
    const group = (await response.json()) as {
      resourceType: string;
      quantity: number;
      member: { entity: { reference: string } }[];
    };
    expect(group).toMatchObject({ resourceType: 'Group', quantity: 25 });
    expect(group.member[0]).toEqual({ entity: { reference: 'Patient/M10000000' } });
    const { manifest } = await exportAndWait(t, token, `${t.sandbox.baseUrl}/Patient/$export?_type=Patient`);
    const patients = ndjsonLines(t.sandbox.fileContent(manifest.output[0]!.url));
    const first = patients.find((p) => p.id === 'pt-0')!;
    expect(first.identifier).toContainEqual(expect.objectContaining({ value: 'M10000000' }));
    expect(patients.map((p) => `Patient/${p.id}`)).not.toContain(group.member[0]!.entity.reference);
  });

  it('serves every member of a Group on GET Group/{id}', async () => {
    // Act
    const response = await fetch(`${t.sandbox.baseUrl}/Group/small`, {
      headers: { authorization: `Bearer ${await fresh()}` },
    });
    // Assess
    const group = (await response.json()) as { member: { entity: { reference: string } }[] };
    expect(group.member.map((m) => m.entity.reference)).toEqual(
      Array.from({ length: 10 }, (_, i) => `Patient/pt-${i}`),
    );
  });
});

describe('the client’s kick-off request, as the sandbox receives it', () => {
  let t: TestSandbox;
  let client: TestClient;
  beforeAll(async () => {
    t = await startTestSandbox();
    client = await registerTestClient(t.sandbox);
  });
  afterAll(() => t.sandbox.close());

  const REQUEST: ExportRequest = {
    level: 'group',
    groupId: 'cohort',
    since: '2020-01-01T00:00:00Z',
    until: '2025-01-01T00:00:00Z',
    types: ['Patient', 'Observation', 'Condition'],
    typeFilters: [
      'Observation?category=laboratory',
      'Observation?category=vital-signs',
      'Condition?clinical-status=active',
    ],
    elements: [],
  };
  const SETTINGS = {
    outputFormat: 'application/fhir+ndjson',
    typeParameterStyle: 'comma',
    includeAssociatedData: ['LatestProvenanceResources'],
  } as const;

  it.each([
    ['GET', { ...SETTINGS, method: 'GET' as const, patient: [] }, undefined],
    [
      'POST',
      { ...SETTINGS, method: 'POST' as const, patient: ['Patient/pt-1', 'Patient/pt-4'] },
      ['pt-1', 'pt-4'],
    ],
  ])(
    'carries _since, _until, per-type _typeFilter, includeAssociatedData and patient (%s)',
    async (_, settings, patients) => {
      // Prepare
      const token = await accessToken(t, client);
      const spec = buildKickOffRequest(t.sandbox.baseUrl, settings, REQUEST);
      // Act
      const response = await fetch(spec.url, {
        method: spec.method,
        headers: { ...spec.headers, authorization: `Bearer ${token}` },
        ...(spec.body === undefined ? {} : { body: spec.body }),
      });
      // Assess
      expect(response.status).toBe(202);
      const job = t.sandbox.jobs().find((j) => j.statusUrl === response.headers.get('content-location'))!;
      expect(job.received).toStrictEqual({
        types: ['Patient', 'Observation', 'Condition'],
        since: '2020-01-01T00:00:00.000Z',
        until: '2025-01-01T00:00:00.000Z',
        typeFilters: {
          Observation: ['category=laboratory', 'category=vital-signs'],
          Condition: ['clinical-status=active'],
        },
        ...(patients === undefined ? {} : { patients }),
        includeAssociatedData: ['LatestProvenanceResources'],
      });
      await fetch(job.statusUrl, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    },
  );
});
