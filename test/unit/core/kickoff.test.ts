import { describe, expect, it } from 'vitest';
import {
  buildKickOffRequest,
  type ExportRequest,
  type HttpResponseView,
  interpretKickOffResponse,
} from '../../../lambdas/core/kickoff.js';
import {
  AccessTokenRejectedError,
  ConfigurationError,
  ExportRequestRejectedError,
} from '../../../lambdas/errors.js';
import { thrown } from '../../support/thrown.js';

const NOW = new Date('2026-11-26T12:00:00Z');
const BASE = 'https://ehr.example.org/fhir/r4';
const KICK_OFF_URL = `${BASE}/Group/g1/$export?_outputFormat=application%2Ffhir%2Bndjson`;
const GET = { method: 'GET', outputFormat: 'application/fhir+ndjson', typeParameterStyle: 'comma' } as const;
const POST = { ...GET, method: 'POST' } as const;
const EMPTY: ExportRequest = { level: 'system', types: [], typeFilters: [], elements: [] };
const KICK_OFF_HEADERS = { Accept: 'application/fhir+json', Prefer: 'respond-async' };

function errorShape(error: Error): { name: string; code: unknown; message: string } {
  return { name: error.name, code: (error as { code?: unknown }).code, message: error.message };
}

const outcomeBody = (...issues: Record<string, unknown>[]) =>
  JSON.stringify({ resourceType: 'OperationOutcome', issue: issues });

describe('buildKickOffRequest (GET)', () => {
  it.each([
    ['system', { ...EMPTY }, `${BASE}/$export?_outputFormat=application%2Ffhir%2Bndjson`],
    [
      'patient',
      { ...EMPTY, level: 'patient' },
      `${BASE}/Patient/$export?_outputFormat=application%2Ffhir%2Bndjson`,
    ],
    [
      'group',
      { ...EMPTY, level: 'group', groupId: 'g1' },
      `${BASE}/Group/g1/$export?_outputFormat=application%2Ffhir%2Bndjson`,
    ],
    [
      'group with an id that needs escaping',
      { ...EMPTY, level: 'group', groupId: 'a b/c?d' },
      `${BASE}/Group/a%20b%2Fc%3Fd/$export?_outputFormat=application%2Ffhir%2Bndjson`,
    ],
  ] as const)('targets the %s level endpoint', (_, request, url) => {
    // Act
    const spec = buildKickOffRequest(BASE, GET, request);
    // Assess
    expect(spec).toStrictEqual({ method: 'GET', url, headers: KICK_OFF_HEADERS });
  });

  it('drops trailing slashes of the base URL', () => {
    // Act
    const spec = buildKickOffRequest(`${BASE}//`, GET, EMPTY);
    // Assess
    expect(spec.url).toBe(`${BASE}/$export?_outputFormat=application%2Ffhir%2Bndjson`);
  });

  it('sends every parameter, with _type comma-joined and each _typeFilter as its own value', () => {
    // Prepare
    const request: ExportRequest = {
      level: 'group',
      groupId: 'g1',
      since: '2026-01-01T00:00:00Z',
      until: '2026-02-01T00:00:00.5+01:00',
      types: ['Patient', 'Observation'],
      elements: ['id', 'meta'],
      typeFilters: ['Observation?category=laboratory,vital-signs&date=ge2020', 'Patient?active=true'],
    };
    // Act
    const spec = buildKickOffRequest(BASE, GET, request);
    // Assess
    expect(spec).toStrictEqual({
      method: 'GET',
      url:
        `${BASE}/Group/g1/$export?_outputFormat=application%2Ffhir%2Bndjson` +
        '&_since=2026-01-01T00%3A00%3A00Z' +
        '&_until=2026-02-01T00%3A00%3A00.5%2B01%3A00' +
        '&_type=Patient%2CObservation' +
        '&_elements=id%2Cmeta' +
        '&_typeFilter=Observation%3Fcategory%3Dlaboratory%2Cvital-signs%26date%3Dge2020' +
        '&_typeFilter=Patient%3Factive%3Dtrue',
      headers: KICK_OFF_HEADERS,
    });
    const query = new URL(spec.url).searchParams;
    expect(query.getAll('_typeFilter')).toStrictEqual([
      'Observation?category=laboratory,vital-signs&date=ge2020',
      'Patient?active=true',
    ]);
    expect(query.getAll('_type')).toStrictEqual(['Patient,Observation']);
  });

  it('repeats _type when the source asks for the repeat style', () => {
    // Act
    const spec = buildKickOffRequest(
      BASE,
      { ...GET, typeParameterStyle: 'repeat' },
      { ...EMPTY, types: ['Patient', 'Observation', 'Condition'] },
    );
    // Assess
    expect(spec.url).toBe(
      `${BASE}/$export?_outputFormat=application%2Ffhir%2Bndjson&_type=Patient&_type=Observation&_type=Condition`,
    );
  });

  it('passes a custom _outputFormat through', () => {
    // Act
    const spec = buildKickOffRequest(BASE, { ...GET, outputFormat: 'ndjson' }, EMPTY);
    // Assess
    expect(spec.url).toBe(`${BASE}/$export?_outputFormat=ndjson`);
  });

  it('omits an empty patient list instead of refusing GET', () => {
    // Act
    const spec = buildKickOffRequest(BASE, GET, { ...EMPTY, level: 'patient', patients: [] });
    // Assess
    expect(spec.url).toBe(`${BASE}/Patient/$export?_outputFormat=application%2Ffhir%2Bndjson`);
  });
});

describe('buildKickOffRequest (POST)', () => {
  it('sends a Parameters resource with every parameter, patients as valueReference', () => {
    // Prepare
    const request: ExportRequest = {
      level: 'group',
      groupId: 'g1',
      since: '2026-01-01T00:00:00Z',
      until: '2026-02-01T00:00:00Z',
      types: ['Patient', 'Observation'],
      elements: ['id', 'meta'],
      typeFilters: ['Observation?category=laboratory,vital-signs'],
      patients: ['Patient/p1', 'Patient/p2'],
    };
    // Act
    const spec = buildKickOffRequest(`${BASE}/`, POST, request);
    // Assess
    expect(spec).toStrictEqual({
      method: 'POST',
      url: `${BASE}/Group/g1/$export`,
      headers: { ...KICK_OFF_HEADERS, 'Content-Type': 'application/fhir+json' },
      body: JSON.stringify({
        resourceType: 'Parameters',
        parameter: [
          { name: '_outputFormat', valueString: 'application/fhir+ndjson' },
          { name: '_since', valueInstant: '2026-01-01T00:00:00Z' },
          { name: '_until', valueInstant: '2026-02-01T00:00:00Z' },
          { name: '_type', valueString: 'Patient' },
          { name: '_type', valueString: 'Observation' },
          { name: '_elements', valueString: 'id' },
          { name: '_elements', valueString: 'meta' },
          { name: '_typeFilter', valueString: 'Observation?category=laboratory,vital-signs' },
          { name: 'patient', valueReference: { reference: 'Patient/p1' } },
          { name: 'patient', valueReference: { reference: 'Patient/p2' } },
        ],
      }),
    });
  });

  it.each([
    ['system', EMPTY, `${BASE}/$export`],
    ['patient', { ...EMPTY, level: 'patient' }, `${BASE}/Patient/$export`],
  ] as const)('sends only _outputFormat at the %s level when nothing else is asked', (_, request, url) => {
    // Act
    const spec = buildKickOffRequest(BASE, POST, request);
    // Assess
    expect(spec).toStrictEqual({
      method: 'POST',
      url,
      headers: { ...KICK_OFF_HEADERS, 'Content-Type': 'application/fhir+json' },
      body: '{"resourceType":"Parameters","parameter":[{"name":"_outputFormat","valueString":"application/fhir+ndjson"}]}',
    });
  });
});

describe('buildKickOffRequest: includeAssociatedData, patient and per-type _typeFilter', () => {
  const PER_TYPE_FILTERS = [
    'Observation?category=laboratory',
    'Observation?category=vital-signs',
    'MedicationRequest?status=active,completed',
  ];
  const parametersOf = (body: string | undefined) =>
    (JSON.parse(body ?? '{}') as { parameter: { name: string }[] }).parameter;

  it('sends includeAssociatedData comma-joined on GET and each _typeFilter as its own parameter', () => {
    // Act
    const spec = buildKickOffRequest(
      BASE,
      { ...GET, includeAssociatedData: ['LatestProvenanceResources', '_history'], patient: [] },
      { ...EMPTY, typeFilters: PER_TYPE_FILTERS },
    );
    // Assess
    const query = new URL(spec.url).searchParams;
    expect(query.getAll('_typeFilter')).toEqual(PER_TYPE_FILTERS);
    expect(query.getAll('includeAssociatedData')).toEqual(['LatestProvenanceResources,_history']);
    expect(query.has('patient')).toBe(false);
  });

  it('sends includeAssociatedData as valueCode, patients as valueReference and one _typeFilter per filter on POST', () => {
    // Act
    const spec = buildKickOffRequest(
      BASE,
      {
        ...POST,
        includeAssociatedData: ['RelevantProvenanceResources'],
        patient: ['Patient/p1', 'Patient/p2'],
      },
      { ...EMPTY, level: 'group', groupId: 'g1', typeFilters: PER_TYPE_FILTERS },
    );
    // Assess
    expect(parametersOf(spec.body)).toStrictEqual([
      { name: '_outputFormat', valueString: 'application/fhir+ndjson' },
      { name: '_typeFilter', valueString: 'Observation?category=laboratory' },
      { name: '_typeFilter', valueString: 'Observation?category=vital-signs' },
      { name: '_typeFilter', valueString: 'MedicationRequest?status=active,completed' },
      { name: 'patient', valueReference: { reference: 'Patient/p1' } },
      { name: 'patient', valueReference: { reference: 'Patient/p2' } },
      { name: 'includeAssociatedData', valueCode: 'RelevantProvenanceResources' },
    ]);
  });

  it("uses the execution's lists instead of the source's, an empty list clearing them", () => {
    // Act
    const spec = buildKickOffRequest(
      BASE,
      { ...POST, includeAssociatedData: ['LatestProvenanceResources'], patient: ['Patient/source-1'] },
      { ...EMPTY, level: 'patient', patients: ['Patient/chunk-7'], includeAssociatedData: [] },
    );
    // Assess
    expect(parametersOf(spec.body)).toStrictEqual([
      { name: '_outputFormat', valueString: 'application/fhir+ndjson' },
      { name: 'patient', valueReference: { reference: 'Patient/chunk-7' } },
    ]);
  });

  it("refuses the source's patient list on a GET kick-off", () => {
    // Act
    const error = thrown(() =>
      buildKickOffRequest(BASE, { ...GET, patient: ['Patient/p1'] }, { ...EMPTY, level: 'patient' }),
    );
    // Assess
    expect(errorShape(error)).toStrictEqual({
      name: 'ConfigurationError',
      code: 'ERR_CONFIGURATION',
      message: 'the patient parameter needs export.method POST (the IG defines it for POST only)',
    });
  });
});

describe('buildKickOffRequest rejections', () => {
  it.each([
    [
      'patient with GET',
      GET,
      { ...EMPTY, level: 'patient', patients: ['Patient/p1'] },
      'the patient parameter needs export.method POST (the IG defines it for POST only)',
    ],
    [
      'patient at system level',
      POST,
      { ...EMPTY, level: 'system', patients: ['Patient/p1'] },
      'the patient parameter applies to Patient or Group level exports, not system level',
    ],
    ['group without id (GET)', GET, { ...EMPTY, level: 'group' }, 'a group level export needs a groupId'],
    [
      'group with an empty id (POST)',
      POST,
      { ...EMPTY, level: 'group', groupId: '' },
      'a group level export needs a groupId',
    ],
  ] as const)('refuses %s', (_, settings, request, message) => {
    // Act
    const error = thrown(() => buildKickOffRequest(BASE, settings, request as ExportRequest));
    // Assess
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(errorShape(error)).toStrictEqual({
      name: 'ConfigurationError',
      code: 'ERR_CONFIGURATION',
      message,
    });
  });
});

describe('interpretKickOffResponse', () => {
  const respond = (
    status: number,
    headers: Record<string, string> = {},
    body?: string,
  ): HttpResponseView => ({ status, headers, ...(body === undefined ? {} : { body }) });

  it.each([
    ['an absolute', 'https://ehr.example.org/status/42', 'https://ehr.example.org/status/42'],
    ['another host', 'https://jobs.ehr.example.net/bulk/42?x=1', 'https://jobs.ehr.example.net/bulk/42?x=1'],
    ['a root-relative', '/bulkstatus/42', 'https://ehr.example.org/bulkstatus/42'],
    ['a path-relative', 'status/42', 'https://ehr.example.org/fhir/r4/Group/g1/status/42'],
    ['a parent-relative', '../../status/42', 'https://ehr.example.org/fhir/r4/status/42'],
  ])('accepts 202 with %s Content-Location', (_, location, statusUrl) => {
    // Act
    const outcome = interpretKickOffResponse(
      respond(202, { 'content-location': location }),
      KICK_OFF_URL,
      false,
      NOW,
    );
    // Assess
    expect(outcome).toStrictEqual({ outcome: 'accepted', statusUrl });
  });

  it('accepts a loopback http status URL in local mode', () => {
    // Act
    const outcome = interpretKickOffResponse(
      respond(202, { 'content-location': 'http://127.0.0.1:8080/status/1' }),
      'http://127.0.0.1:8080/fhir/$export',
      true,
      NOW,
    );
    // Assess
    expect(outcome).toStrictEqual({ outcome: 'accepted', statusUrl: 'http://127.0.0.1:8080/status/1' });
  });

  it.each([
    [
      'no Content-Location',
      {},
      false,
      'kick-off answered 202 without a Content-Location header (the status URL)',
    ],
    [
      'an empty Content-Location',
      { 'content-location': '' },
      false,
      'kick-off answered 202 without a Content-Location header (the status URL)',
    ],
    [
      'a file: Content-Location',
      { 'content-location': 'file:///etc/passwd' },
      false,
      'kick-off Content-Location uses the file: scheme; only https is allowed',
    ],
    [
      'a non-loopback http: Content-Location',
      { 'content-location': 'http://ehr.example.org/status/42' },
      true,
      'kick-off Content-Location uses http: on a non-loopback host; only https is allowed',
    ],
    [
      'a loopback http: Content-Location outside local mode',
      { 'content-location': 'http://localhost:8080/status/42' },
      false,
      'kick-off Content-Location uses http:, allowed only for loopback hosts with allowInsecureHttp: true',
    ],
    [
      'a Content-Location with credentials',
      { 'content-location': 'https://user:secret@ehr.example.org/status/42' },
      false,
      'kick-off Content-Location must not carry credentials',
    ],
  ])('rejects 202 with %s', (_, headers, allowInsecureHttp, message) => {
    // Act
    const error = thrown(() =>
      interpretKickOffResponse(respond(202, headers), KICK_OFF_URL, allowInsecureHttp, NOW),
    );
    // Assess
    expect(error).toBeInstanceOf(ExportRequestRejectedError);
    expect(errorShape(error)).toStrictEqual({
      name: 'ExportRequestRejectedError',
      code: 'ERR_EXPORT_REJECTED',
      message,
    });
  });

  it.each([
    [429, {}, undefined, { outcome: 'retry', reason: 'kick-off answered 429' }],
    [
      429,
      { 'retry-after': '120' },
      undefined,
      { outcome: 'retry', retryAfterSeconds: 120, reason: 'kick-off answered 429' },
    ],
    [
      503,
      { 'retry-after': 'Thu, 26 Nov 2026 12:01:30 GMT' },
      undefined,
      { outcome: 'retry', retryAfterSeconds: 90, reason: 'kick-off answered 503' },
    ],
    [503, { 'retry-after': 'soon' }, undefined, { outcome: 'retry', reason: 'kick-off answered 503' }],
    [
      429,
      { 'retry-after': '3600' },
      outcomeBody({
        severity: 'error',
        code: 'throttled',
        diagnostics: 'An export is already running\nfor this client',
      }),
      {
        outcome: 'retry',
        retryAfterSeconds: 3600,
        reason: 'kick-off answered 429: error throttled An export is already running for this client',
      },
    ],
    [
      503,
      {},
      '<html><body>Service Unavailable</body></html>',
      { outcome: 'retry', reason: 'kick-off answered 503' },
    ],
    [500, {}, undefined, { outcome: 'retry', reason: 'kick-off answered 500' }],
    [
      500,
      { 'retry-after': '30' },
      '',
      { outcome: 'retry', retryAfterSeconds: 30, reason: 'kick-off answered 500' },
    ],
    [502, {}, '<html>Bad Gateway</html>', { outcome: 'retry', reason: 'kick-off answered 502' }],
    [504, {}, '{"truncated": ', { outcome: 'retry', reason: 'kick-off answered 504' }],
    [
      500,
      {},
      outcomeBody({ severity: 'error', code: 'transient', diagnostics: 'database busy' }),
      { outcome: 'retry', reason: 'kick-off answered 500: error transient database busy' },
    ],
  ] as const)('asks to retry %d %j', (status, headers, body, expected) => {
    // Act
    const outcome = interpretKickOffResponse(respond(status, headers, body), KICK_OFF_URL, false, NOW);
    // Assess
    expect(outcome).toStrictEqual(expected);
  });

  it.each([
    [401, undefined, 'kick-off answered 401'],
    [
      401,
      outcomeBody({ severity: 'error', code: 'login', diagnostics: 'token expired' }),
      'kick-off answered 401: error login token expired',
    ],
  ])('fails %d with AccessTokenRejectedError (body %j)', (status, body, message) => {
    // Act
    const error = thrown(() => interpretKickOffResponse(respond(status, {}, body), KICK_OFF_URL, false, NOW));
    // Assess
    expect(error).toBeInstanceOf(AccessTokenRejectedError);
    expect(errorShape(error)).toStrictEqual({
      name: 'AccessTokenRejectedError',
      code: 'ERR_ACCESS_TOKEN_REJECTED',
      message,
    });
  });

  it.each([
    [
      400,
      outcomeBody({ severity: 'error', code: 'invalid', diagnostics: 'Unknown _type: Foo' }),
      'kick-off was rejected with HTTP 400: error invalid Unknown _type: Foo',
    ],
    [
      404,
      outcomeBody({ severity: 'error', code: 'not-found', details: { text: 'Group g1 does not exist' } }),
      'kick-off was rejected with HTTP 404: error not-found Group g1 does not exist',
    ],
    [
      400,
      outcomeBody(
        { severity: 'error', code: 'not-supported', diagnostics: '_elements is not supported' },
        { severity: 'warning', code: 'informational' },
      ),
      'kick-off was rejected with HTTP 400: error not-supported _elements is not supported; warning informational',
    ],
    [400, undefined, 'kick-off was rejected with HTTP 400 and no OperationOutcome'],
    [403, '<html><h1>Forbidden</h1></html>', 'kick-off was rejected with HTTP 403 and no OperationOutcome'],
    [422, '{"resourceType":"Bundle"}', 'kick-off was rejected with HTTP 422 and no OperationOutcome'],
    [
      500,
      outcomeBody({ severity: 'fatal', code: 'exception', diagnostics: 'NullPointerException' }),
      'kick-off was rejected with HTTP 500: fatal exception NullPointerException',
    ],
    [
      504,
      outcomeBody({ severity: 'error', code: 'timeout' }),
      'kick-off was rejected with HTTP 504: error timeout',
    ],
    [501, undefined, 'kick-off was rejected with HTTP 501 and no OperationOutcome'],
    [200, '{}', 'kick-off was rejected with HTTP 200 and no OperationOutcome'],
  ])('fails %d for good (body %j)', (status, body, message) => {
    // Act
    const error = thrown(() => interpretKickOffResponse(respond(status, {}, body), KICK_OFF_URL, false, NOW));
    // Assess
    expect(error).toBeInstanceOf(ExportRequestRejectedError);
    expect(errorShape(error)).toStrictEqual({
      name: 'ExportRequestRejectedError',
      code: 'ERR_EXPORT_REJECTED',
      message,
    });
  });

  it('caps a megabyte of diagnostics to one short line', () => {
    // Prepare
    const body = outcomeBody({
      severity: 'error',
      code: 'invalid',
      diagnostics: `boom\n${'x'.repeat(1_000_000)}`,
    });
    // Act
    const error = thrown(() => interpretKickOffResponse(respond(400, {}, body), KICK_OFF_URL, false, NOW));
    // Assess
    expect(error.message).toHaveLength(300);
    expect(error.message).toBe(
      `kick-off was rejected with HTTP 400: error invalid boom ${'x'.repeat(300 - 57)}…`,
    );
  });
});

describe('interpretKickOffResponse: a Content-Location that is no URL', () => {
  it('is an ExportRequestRejectedError like every other bad status URL', () => {
    expect(() =>
      interpretKickOffResponse(
        { status: 202, headers: { 'content-location': 'https://[::1' } },
        'https://e/x',
        false,
        NOW,
      ),
    ).toThrow(new ExportRequestRejectedError('kick-off Content-Location is not a URL'));
  });
});
