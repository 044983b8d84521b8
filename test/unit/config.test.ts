import { describe, expect, it } from 'vitest';
import { AUTH_KEYS, parseSourceSettings, requireEnv } from '../../lambdas/config.js';
import { ConfigurationError } from '../../lambdas/errors.js';
import { thrown } from '../support/thrown.js';

function errorShape(error: Error): { name: string; code: unknown; message: string } {
  return { name: error.name, code: (error as { code?: unknown }).code, message: error.message };
}

const configurationError = (message: string) => ({
  name: 'ConfigurationError',
  code: 'ERR_CONFIGURATION',
  message,
});

const MINIMAL = { id: 'epic', fhirBaseUrl: 'https://ehr.example.org/fhir/r4/' };

const SERVER_SUPPORTS_DEFAULTS = {
  levels: ['system', 'patient', 'group'],
  typeFilter: true,
  until: true,
  elements: true,
  includeAssociatedData: true,
  patientParameter: true,
  partialManifests: true,
  organizeOutputBy: true,
};

const DEFAULTS = {
  id: 'epic',
  profile: 'generic',
  fhirBaseUrl: 'https://ehr.example.org/fhir/r4',
  serverSupports: SERVER_SUPPORTS_DEFAULTS,
  scopeSyntax: 'v2',
  scopeCasing: 'lower',
  extraScopes: [],
  tokenLifetimeSeconds: 300,
  export: {
    level: 'system',
    types: [],
    typeFilters: [],
    elements: [],
    method: 'GET',
    typeParameterStyle: 'comma',
    outputFormat: 'application/fhir+ndjson',
    includeAssociatedData: [],
    patient: [],
    maxConcurrentJobs: 1,
    maxChunkAttempts: 3,
  },
  maxConcurrency: 4,
  filesPerBatch: 50,
  retryAfterCeilingSeconds: 300,
  deadlineHours: 72,
  maxConsecutiveTransientErrors: 10,
  maxClockSkewSeconds: 300,
  allowInsecureHttp: false,
  invalidLinePolicy: 'fail',
  maxLineBytes: 64 * 1024 * 1024,
  fileLinksValidHours: 24,
  retryPassDelaySeconds: 60,
  // Issue 16 parts 3 and 5.
  serverFileErrors: 'fail',
  trustedOrigins: [],
  auth: 'private_key_jwt',
  // Issue 17: US Core validation of each export.
  validation: { enabled: true, mode: 'report', minConformantPercent: 100 },
  // Issue 18: the warehouse load of each export.
  warehouse: { enabled: true },
};

const SOURCE_KEYS =
  'id, description, profile, fhirBaseUrl, export, serverSupports, scopeSyntax, scopeCasing, extraScopes, tokenLifetimeSeconds, maxConcurrency, filesPerBatch, retryAfterCeilingSeconds, deadlineHours, maxConsecutiveTransientErrors, maxClockSkewSeconds, allowInsecureHttp, invalidLinePolicy, maxLineBytes, fileLinksValidHours, retryPassDelaySeconds, serverFileErrors, trustedOrigins, auth, validation, warehouse, clientId, kmsKeyId, tokenUrl, scope, privateKeyFile, nextPrivateKeyFile, previousPrivateKeyFile, clientSecretEnv, clientSecretFile';
const EXPORT_KEYS =
  'level, groupId, types, typeFilters, elements, method, typeParameterStyle, outputFormat, includeAssociatedData, patient, chunk, chunkOnTimeout, maxConcurrentJobs, maxChunkAttempts, allowPartialManifests, organizeOutputBy';

describe('parseSourceSettings', () => {
  it('fills every default and drops the trailing slash of the base URL', () => {
    expect(parseSourceSettings(MINIMAL)).toStrictEqual(DEFAULTS);
  });

  it('reads every setting', () => {
    // Act
    const settings = parseSourceSettings({
      id: 'oracle-prod',
      description: 'Oracle Health, production tenant',
      fhirBaseUrl: 'https://fhir-ehr.cerner.com/r4/tenant',
      scopeSyntax: 'v1',
      scopeCasing: 'capitalized',
      extraScopes: ['system/Group.read'],
      tokenLifetimeSeconds: 570,
      export: {
        level: 'group',
        groupId: 'g-1',
        types: ['Patient', 'Observation'],
        typeFilters: ['Observation?category=laboratory'],
        elements: ['id', 'meta'],
        method: 'POST',
        typeParameterStyle: 'repeat',
        outputFormat: 'ndjson',
        includeAssociatedData: ['LatestProvenanceResources'],
        patient: ['Patient/p-1'],
        chunk: { by: 'time', window: '30d' },
        chunkOnTimeout: '12h',
        maxConcurrentJobs: 2,
        maxChunkAttempts: 5,
      },
      maxConcurrency: 1000,
      filesPerBatch: 100,
      retryAfterCeilingSeconds: 86_400,
      deadlineHours: 336,
      maxConsecutiveTransientErrors: 0,
      maxClockSkewSeconds: 3600,
      allowInsecureHttp: false,
      invalidLinePolicy: 'quarantine',
      maxLineBytes: 1024,
      fileLinksValidHours: 720,
      retryPassDelaySeconds: 0,
      serverFileErrors: 'accept',
      trustedOrigins: ['https://files.example.org'],
      auth: 'client_secret_basic',
      validation: { mode: 'gate', minConformantPercent: 95 },
    });
    // Assess
    expect(settings).toStrictEqual({
      id: 'oracle-prod',
      profile: 'generic',
      fhirBaseUrl: 'https://fhir-ehr.cerner.com/r4/tenant',
      serverSupports: SERVER_SUPPORTS_DEFAULTS,
      scopeSyntax: 'v1',
      scopeCasing: 'capitalized',
      extraScopes: ['system/Group.read'],
      tokenLifetimeSeconds: 570,
      export: {
        level: 'group',
        groupId: 'g-1',
        types: ['Patient', 'Observation'],
        typeFilters: ['Observation?category=laboratory'],
        elements: ['id', 'meta'],
        method: 'POST',
        typeParameterStyle: 'repeat',
        outputFormat: 'ndjson',
        includeAssociatedData: ['LatestProvenanceResources'],
        patient: ['Patient/p-1'],
        chunk: { by: 'time', window: '30d' },
        chunkOnTimeout: '12h',
        maxConcurrentJobs: 2,
        maxChunkAttempts: 5,
      },
      maxConcurrency: 1000,
      filesPerBatch: 100,
      retryAfterCeilingSeconds: 86_400,
      deadlineHours: 336,
      maxConsecutiveTransientErrors: 0,
      maxClockSkewSeconds: 3600,
      allowInsecureHttp: false,
      invalidLinePolicy: 'quarantine',
      maxLineBytes: 1024,
      fileLinksValidHours: 720,
      retryPassDelaySeconds: 0,
      serverFileErrors: 'accept',
      trustedOrigins: ['https://files.example.org'],
      auth: 'client_secret_basic',
      validation: { enabled: true, mode: 'gate', minConformantPercent: 95 },
      warehouse: { enabled: true },
    });
  });

  it.each([
    ['fileLinksValidHours', 1],
    ['fileLinksValidHours', 720],
    ['retryPassDelaySeconds', 0],
    ['retryPassDelaySeconds', 3600],
  ])('accepts %s %i, an end of its range', (key, value) => {
    expect(parseSourceSettings({ ...MINIMAL, [key]: value })).toStrictEqual({ ...DEFAULTS, [key]: value });
  });

  it('infers the group level from a groupId', () => {
    expect(parseSourceSettings({ ...MINIMAL, export: { groupId: 'g1' } }).export).toStrictEqual({
      ...DEFAULTS.export,
      level: 'group',
      groupId: 'g1',
    });
  });

  it('accepts the patient level', () => {
    expect(parseSourceSettings({ ...MINIMAL, export: { level: 'patient' } }).export.level).toBe('patient');
  });

  it('accepts loopback http in local mode', () => {
    // Act
    const settings = parseSourceSettings({
      ...MINIMAL,
      fhirBaseUrl: 'http://localhost:8080/fhir',
      allowInsecureHttp: true,
    });
    // Assess
    expect(settings).toStrictEqual({
      ...DEFAULTS,
      fhirBaseUrl: 'http://localhost:8080/fhir',
      allowInsecureHttp: true,
    });
  });

  it('accepts and ignores the authorization keys of a local source file', () => {
    // Prepare
    const auth = {
      clientId: 'client-1',
      kmsKeyId: 'alias/epic',
      tokenUrl: 'https://ehr.example.org/oauth2/token',
      scope: 'system/*.rs',
      privateKeyFile: 'keys/epic.jwk.json',
      nextPrivateKeyFile: 'keys/next.jwk.json',
      previousPrivateKeyFile: 'keys/previous.jwk.json',
      clientSecretEnv: 'EPIC_SECRET',
      clientSecretFile: 'epic.secret',
    };
    // Act
    const settings = parseSourceSettings({ ...MINIMAL, ...auth });
    // Assess
    expect(Object.keys(auth)).toStrictEqual([...AUTH_KEYS]);
    expect(settings).toStrictEqual(DEFAULTS);
  });

  it.each([
    ['not an object', 'epic', 'source must be a JSON object (got a string)'],
    ['null', null, 'source must be a JSON object (got null)'],
    ['an array', [MINIMAL], 'source must be a JSON object (got an array)'],
    [
      'an unknown key',
      { ...MINIMAL, maxConcurency: 4 },
      `source has unknown key(s) maxConcurency; expected only ${SOURCE_KEYS}`,
    ],
    [
      'a secret-looking unknown key',
      { ...MINIMAL, clientSecret: 's3cr3t' },
      `source has unknown key(s) clientSecret; a secret never belongs in a source file: name it with clientSecretEnv (an environment variable) or clientSecretFile (a file), privateKeyFile for a key, or on AWS put it in the source’s Secrets Manager secret; expected only ${SOURCE_KEYS}`,
    ],
    [
      'no id',
      { fhirBaseUrl: MINIMAL.fhirBaseUrl },
      'source.id is required: 1-63 lower-case letters, digits or dashes, starting with a letter or digit',
    ],
    [
      'an upper-case id',
      { ...MINIMAL, id: 'Epic' },
      'source.id must be 1-63 lower-case letters, digits or dashes, starting with a letter or digit',
    ],
    [
      'an id starting with a dash',
      { ...MINIMAL, id: '-epic' },
      'source.id must be 1-63 lower-case letters, digits or dashes, starting with a letter or digit',
    ],
    [
      'an id with a slash',
      { ...MINIMAL, id: 'epic/prod' },
      'source.id must be 1-63 lower-case letters, digits or dashes, starting with a letter or digit',
    ],
    [
      'an id of 64 characters',
      { ...MINIMAL, id: 'a'.repeat(64) },
      'source.id must be 1-63 lower-case letters, digits or dashes, starting with a letter or digit',
    ],
    ['no fhirBaseUrl', { id: 'epic' }, 'source.fhirBaseUrl is required: a non-empty string'],
    [
      'an empty fhirBaseUrl',
      { ...MINIMAL, fhirBaseUrl: '' },
      'source.fhirBaseUrl must be a non-empty string (got an empty string)',
    ],
    [
      'a fhirBaseUrl of spaces',
      { ...MINIMAL, fhirBaseUrl: '  ' },
      'source.fhirBaseUrl must be a non-empty string (got a string of only white space)',
    ],
    [
      'a relative fhirBaseUrl',
      { ...MINIMAL, fhirBaseUrl: 'ehr.example.org/fhir' },
      'source.fhirBaseUrl is not an absolute URL',
    ],
    [
      'http on a non-loopback host',
      { ...MINIMAL, fhirBaseUrl: 'http://ehr.example.org/fhir', allowInsecureHttp: true },
      'source.fhirBaseUrl uses http: on a non-loopback host; only https is allowed',
    ],
    [
      'loopback http without allowInsecureHttp',
      { ...MINIMAL, fhirBaseUrl: 'http://127.0.0.1:8080/fhir' },
      'source.fhirBaseUrl uses http:, allowed only for loopback hosts with allowInsecureHttp: true',
    ],
    [
      'credentials in the base URL',
      { ...MINIMAL, fhirBaseUrl: 'https://user:pw@ehr.example.org/fhir' },
      'source.fhirBaseUrl must not carry credentials',
    ],
    [
      'a file: base URL',
      { ...MINIMAL, fhirBaseUrl: 'file:///fhir' },
      'source.fhirBaseUrl uses the file: scheme; only https is allowed',
    ],
    [
      'allowInsecureHttp a string',
      { ...MINIMAL, allowInsecureHttp: 'true' },
      'source.allowInsecureHttp must be true or false (got a string)',
    ],
    [
      'export not an object',
      { ...MINIMAL, export: [] },
      'source.export must be a JSON object (got an array)',
    ],
    [
      'an unknown export key',
      { ...MINIMAL, export: { type: ['Patient'] } },
      `source.export has unknown key(s) type; expected only ${EXPORT_KEYS}`,
    ],
    [
      'level group without groupId',
      { ...MINIMAL, export: { level: 'group' } },
      'source.export.groupId is required when export.level is group',
    ],
    [
      'a groupId at the system level',
      { ...MINIMAL, export: { level: 'system', groupId: 'g1' } },
      'source.export.groupId is set but export.level is system; use level group',
    ],
    [
      'a groupId at the patient level',
      { ...MINIMAL, export: { level: 'patient', groupId: 'g1' } },
      'source.export.groupId is set but export.level is patient; use level group',
    ],
    [
      'an empty groupId',
      { ...MINIMAL, export: { groupId: '' } },
      'source.export.groupId must be a non-empty string (got an empty string)',
    ],
    [
      'a bad level',
      { ...MINIMAL, export: { level: 'grp' } },
      'source.export.level must be one of system, patient, group (got "grp")',
    ],
    [
      'chunks by patients over GET',
      { ...MINIMAL, export: { groupId: 'g1', chunk: { by: 'patients', size: 500 } } },
      'source.export.chunk.by patients sends the patient parameter, which needs export.method POST (GET cannot carry it)',
    ],
    [
      'chunks by patients at the system level',
      { ...MINIMAL, export: { method: 'POST', chunk: { by: 'patients', size: 500 } } },
      'source.export.chunk.by patients applies to patient or group level exports only; set export.level to patient or group, or chunk by time',
    ],
    [
      'chunks by patients of a patient-level export without a list',
      { ...MINIMAL, export: { level: 'patient', method: 'POST', chunk: { by: 'patients', size: 500 } } },
      'source.export.chunk.patientsFrom is required to chunk a patient level export by patients (a group level export reads its Group)',
    ],
    [
      'chunks by patients beside a fixed patient list',
      {
        ...MINIMAL,
        export: { groupId: 'g1', method: 'POST', patient: ['Patient/1'], chunk: { by: 'patients', size: 5 } },
      },
      'source.export.patient cannot be combined with chunk.by patients, which sets patient per chunk',
    ],
    [
      'chunks by patients without a size',
      { ...MINIMAL, export: { groupId: 'g1', method: 'POST', chunk: { by: 'patients' } } },
      'source.export.chunk.size is required when chunk.by is patients',
    ],
    [
      'a chunk size beyond what a patient parameter carries',
      { ...MINIMAL, export: { groupId: 'g1', method: 'POST', chunk: { by: 'patients', size: 20_000 } } },
      'source.export.chunk.size must be an integer from 1 to 10000 (got 20000)',
    ],
    [
      'time chunks without a window',
      { ...MINIMAL, export: { chunk: { by: 'time' } } },
      'source.export.chunk.window is required when chunk.by is time',
    ],
    [
      'a time window in weeks',
      { ...MINIMAL, export: { chunk: { by: 'time', window: '2w' } } },
      'source.export.chunk.window must be a whole number of days or hours such as 30d or 12h',
    ],
    [
      'a patient list for time chunks',
      { ...MINIMAL, export: { chunk: { by: 'time', window: '30d', patientsFrom: 's3://bucket/k' } } },
      'source.export.chunk.patientsFrom applies to chunk.by patients only; remove it or use by patients',
    ],
    [
      'a patient list that is not in S3',
      {
        ...MINIMAL,
        export: {
          groupId: 'g1',
          method: 'POST',
          chunk: { by: 'patients', size: 5, patientsFrom: '/tmp/cohort.txt' },
        },
      },
      'source.export.chunk.patientsFrom must be s3://<bucket>/<key>',
    ],
    [
      'chunkOnTimeout without chunk',
      { ...MINIMAL, export: { chunkOnTimeout: '6h' } },
      'source.export.chunkOnTimeout needs export.chunk: how to split the export when it times out',
    ],
    [
      'a chunkOnTimeout in weeks',
      { ...MINIMAL, export: { chunk: { by: 'time', window: '30d' }, chunkOnTimeout: '1w' } },
      'source.export.chunkOnTimeout must be a whole number of seconds, minutes, hours or days such as 45m, 12h or 2d',
    ],
    [
      'an unknown chunk key',
      { ...MINIMAL, export: { chunk: { by: 'time', window: '30d', parallel: 2 } } },
      'source.export.chunk has unknown key(s) parallel; expected only by, size, window, patientsFrom',
    ],
    [
      'a bad method',
      { ...MINIMAL, export: { method: 'get' } },
      'source.export.method must be one of GET, POST (got "get")',
    ],
    [
      'a bad typeParameterStyle',
      { ...MINIMAL, export: { typeParameterStyle: 'csv' } },
      'source.export.typeParameterStyle must be one of comma, repeat (got "csv")',
    ],
    [
      'a bad invalidLinePolicy',
      { ...MINIMAL, invalidLinePolicy: 'skip' },
      'source.invalidLinePolicy must be one of fail, quarantine (got "skip")',
    ],
    [
      'a lower-case type',
      { ...MINIMAL, export: { types: ['Patient', 'observation'] } },
      'source.export.types[1] must be a FHIR resource type such as Patient',
    ],
    [
      'types a string',
      { ...MINIMAL, export: { types: 'Patient,Observation' } },
      'source.export.types must be an array of strings (got a string)',
    ],
    [
      'a typeFilter without a query',
      { ...MINIMAL, export: { typeFilters: ['Observation'] } },
      'source.export.typeFilters[0] must be a query like Observation?category=laboratory',
    ],
    [
      'a typeFilter with an empty query',
      { ...MINIMAL, export: { typeFilters: ['Observation?category=laboratory', 'Patient?'] } },
      'source.export.typeFilters[1] must be a query like Observation?category=laboratory',
    ],
    [
      'an empty element',
      { ...MINIMAL, export: { elements: ['id', ' '] } },
      'source.export.elements[1] must be a non-empty string (got a string of only white space)',
    ],
    [
      'an empty outputFormat',
      { ...MINIMAL, export: { outputFormat: '' } },
      'source.export.outputFormat must be a non-empty string (got an empty string)',
    ],
    [
      'a negative maxClockSkewSeconds',
      { ...MINIMAL, maxClockSkewSeconds: -1 },
      'source.maxClockSkewSeconds must be an integer from 0 to 86400 (got -1)',
    ],
    [
      'maxConcurrency 0',
      { ...MINIMAL, maxConcurrency: 0 },
      'source.maxConcurrency must be an integer from 1 to 1000 (got 0)',
    ],
    [
      'maxConcurrency 1001',
      { ...MINIMAL, maxConcurrency: 1001 },
      'source.maxConcurrency must be an integer from 1 to 1000 (got 1001)',
    ],
    [
      'filesPerBatch 0',
      { ...MINIMAL, filesPerBatch: 0 },
      'source.filesPerBatch must be an integer from 1 to 100 (got 0)',
    ],
    [
      'filesPerBatch 101',
      { ...MINIMAL, filesPerBatch: 101 },
      'source.filesPerBatch must be an integer from 1 to 100 (got 101)',
    ],
    [
      'maxConcurrency a string',
      { ...MINIMAL, maxConcurrency: '4' },
      'source.maxConcurrency must be an integer from 1 to 1000 (got a string)',
    ],
    [
      'retryAfterCeilingSeconds 4',
      { ...MINIMAL, retryAfterCeilingSeconds: 4 },
      'source.retryAfterCeilingSeconds must be an integer from 5 to 86400 (got 4)',
    ],
    [
      'retryAfterCeilingSeconds 86401',
      { ...MINIMAL, retryAfterCeilingSeconds: 86_401 },
      'source.retryAfterCeilingSeconds must be an integer from 5 to 86400 (got 86401)',
    ],
    [
      'deadlineHours 0',
      { ...MINIMAL, deadlineHours: 0 },
      'source.deadlineHours must be an integer from 1 to 336 (got 0)',
    ],
    [
      'deadlineHours 1.5',
      { ...MINIMAL, deadlineHours: 1.5 },
      'source.deadlineHours must be an integer from 1 to 336 (got 1.5)',
    ],
    [
      'maxConsecutiveTransientErrors -1',
      { ...MINIMAL, maxConsecutiveTransientErrors: -1 },
      'source.maxConsecutiveTransientErrors must be an integer from 0 to 1000 (got -1)',
    ],
    [
      'maxLineBytes 1023',
      { ...MINIMAL, maxLineBytes: 1023 },
      'source.maxLineBytes must be an integer from 1024 to 268435456 (got 1023)',
    ],
    [
      'maxLineBytes above 256 MiB',
      { ...MINIMAL, maxLineBytes: 256 * 1024 * 1024 + 1 },
      'source.maxLineBytes must be an integer from 1024 to 268435456 (got 268435457)',
    ],
    [
      'fileLinksValidHours 0',
      { ...MINIMAL, fileLinksValidHours: 0 },
      'source.fileLinksValidHours must be an integer from 1 to 720 (got 0)',
    ],
    [
      'fileLinksValidHours above 30 days',
      { ...MINIMAL, fileLinksValidHours: 721 },
      'source.fileLinksValidHours must be an integer from 1 to 720 (got 721)',
    ],
    [
      'fileLinksValidHours 1.5',
      { ...MINIMAL, fileLinksValidHours: 1.5 },
      'source.fileLinksValidHours must be an integer from 1 to 720 (got 1.5)',
    ],
    [
      'fileLinksValidHours a string',
      { ...MINIMAL, fileLinksValidHours: '24' },
      'source.fileLinksValidHours must be an integer from 1 to 720 (got a string)',
    ],
    [
      'retryPassDelaySeconds -1',
      { ...MINIMAL, retryPassDelaySeconds: -1 },
      'source.retryPassDelaySeconds must be an integer from 0 to 3600 (got -1)',
    ],
    [
      'retryPassDelaySeconds above an hour',
      { ...MINIMAL, retryPassDelaySeconds: 3601 },
      'source.retryPassDelaySeconds must be an integer from 0 to 3600 (got 3601)',
    ],
    [
      'retryPassDelaySeconds null',
      { ...MINIMAL, retryPassDelaySeconds: null },
      'source.retryPassDelaySeconds must be an integer from 0 to 3600 (got null)',
    ],
  ])('rejects %s', (_, raw, message) => {
    // Act
    const error = thrown(() => parseSourceSettings(raw));
    // Assess
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(errorShape(error)).toStrictEqual(configurationError(message));
  });

  it('names the key by the path it was given', () => {
    // Act
    const error = thrown(() => parseSourceSettings({ ...MINIMAL, export: { level: 'grp' } }, 'sources.epic'));
    // Assess
    expect(error.message).toBe('sources.epic.export.level must be one of system, patient, group (got "grp")');
  });
});

describe('requireEnv', () => {
  it('returns the value', () => {
    expect(requireEnv({ BUCKET: 'exports' }, 'BUCKET', 'the export bucket name')).toBe('exports');
  });

  it.each([
    ['missing', {}],
    ['empty', { BUCKET: '' }],
    ['blank', { BUCKET: '  ' }],
  ])('names a %s variable and what it should hold', (_, env) => {
    // Act
    const error = thrown(() => requireEnv(env, 'BUCKET', 'the export bucket name'));
    // Assess
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(errorShape(error)).toStrictEqual(
      configurationError('environment variable BUCKET is missing: expected the export bucket name'),
    );
  });
});
