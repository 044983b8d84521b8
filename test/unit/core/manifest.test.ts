import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type CompletionManifest,
  checkTransactionTime,
  MAX_MANIFEST_FILES,
  type ManifestFile,
  mergeManifestPages,
  parseCompletionManifest,
} from '../../../lambdas/core/manifest.js';
import { InvalidManifestError } from '../../../lambdas/errors.js';
import { thrown } from '../../support/thrown.js';

const FILES = 'https://files.ehr.example.org/exports/42';
/** Looks like a presigned S3 URL: its query string is a credential and must never be echoed. */
const SIGNATURE = 'X-Amz-Signature=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08';
const PRESIGNED_QUERY = `X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE&${SIGNATURE}`;

function errorShape(error: Error): { name: string; code: unknown; message: string } {
  return { name: error.name, code: (error as { code?: unknown }).code, message: error.message };
}

const validManifest = (): Record<string, unknown> => ({
  transactionTime: '2026-11-26T11:59:00.123+01:00',
  request: 'https://ehr.example.org/fhir/Group/g1/$export?_type=Patient,Observation',
  requiresAccessToken: true,
  output: [
    { type: 'Patient', url: `${FILES}/Patient-1.ndjson`, count: 120 },
    { type: 'Observation', url: `${FILES}/Observation-1.ndjson?${PRESIGNED_QUERY}` },
  ],
  error: [{ type: 'OperationOutcome', url: `${FILES}/errors.ndjson`, count: 0 }],
  deleted: [{ type: 'Patient', url: `${FILES}/deleted-Patient.ndjson` }],
  link: [
    { relation: 'self', url: 'https://ehr.example.org/status/42?page=1' },
    { relation: 'next', url: 'https://ehr.example.org/status/42?page=2' },
  ],
  extension: { 'https://example.org/vendor': { anything: true } },
});

describe('parseCompletionManifest: a valid manifest', () => {
  it('parses output with and without count, error, deleted and link next', () => {
    // Act
    const manifest = parseCompletionManifest(validManifest(), false);
    // Assess
    expect(manifest).toStrictEqual({
      transactionTime: '2026-11-26T11:59:00.123+01:00',
      request: 'https://ehr.example.org/fhir/Group/g1/$export?_type=Patient,Observation',
      requiresAccessToken: true,
      files: [
        {
          kind: 'output',
          type: 'Patient',
          resourceType: 'Patient',
          url: `${FILES}/Patient-1.ndjson`,
          count: 120,
        },
        {
          kind: 'output',
          type: 'Observation',
          resourceType: 'Observation',
          url: `${FILES}/Observation-1.ndjson?${PRESIGNED_QUERY}`,
        },
        {
          kind: 'error',
          type: 'OperationOutcome',
          resourceType: 'OperationOutcome',
          url: `${FILES}/errors.ndjson`,
          count: 0,
        },
        { kind: 'deleted', type: 'Patient', resourceType: 'Bundle', url: `${FILES}/deleted-Patient.ndjson` },
      ],
      nextPageUrl: 'https://ehr.example.org/status/42?page=2',
    });
  });

  it('accepts a minimal manifest: empty output, no error, deleted or link', () => {
    // Act
    const manifest = parseCompletionManifest(
      { transactionTime: '2026-11-26T12:00:00Z', request: 'r', requiresAccessToken: false, output: [] },
      false,
    );
    // Assess
    expect(manifest).toStrictEqual({
      transactionTime: '2026-11-26T12:00:00Z',
      request: 'r',
      requiresAccessToken: false,
      files: [],
    });
  });

  it('ignores link entries that are not next', () => {
    // Act
    const manifest = parseCompletionManifest(
      { ...validManifest(), link: [{ relation: 'previous', url: 'ftp://x' }, null, 'next', 7] },
      false,
    );
    // Assess
    expect(manifest.nextPageUrl).toBeUndefined();
    expect(manifest.files).toHaveLength(4);
  });

  it('normalizes URLs the way WHATWG URL does', () => {
    // Act
    const manifest = parseCompletionManifest(
      {
        ...validManifest(),
        output: [{ type: 'Patient', url: 'HTTPS://Files.EHR.example.org:443/a b.ndjson' }],
      },
      false,
    );
    // Assess
    expect(manifest.files[0]?.url).toBe('https://files.ehr.example.org/a%20b.ndjson');
  });
});

describe('parseCompletionManifest: rejections', () => {
  const cases: Array<[string, (manifest: Record<string, unknown>) => unknown, string]> = [
    ['null', () => null, 'is not a JSON object'],
    ['an array', (m) => [m], 'is not a JSON object'],
    ['a string', () => '{"transactionTime":"2026-11-26T12:00:00Z"}', 'is not a JSON object'],
    [
      'missing transactionTime',
      ({ transactionTime: _, ...m }) => m,
      'transactionTime must be a FHIR instant with a timezone',
    ],
    [
      'transactionTime not an instant',
      (m) => ({ ...m, transactionTime: 'yesterday' }),
      'transactionTime must be a FHIR instant with a timezone',
    ],
    [
      'transactionTime a date only',
      (m) => ({ ...m, transactionTime: '2026-11-26' }),
      'transactionTime must be a FHIR instant with a timezone',
    ],
    [
      'transactionTime without timezone',
      (m) => ({ ...m, transactionTime: '2026-11-26T12:00:00' }),
      'transactionTime must be a FHIR instant with a timezone',
    ],
    [
      'transactionTime in month 13',
      (m) => ({ ...m, transactionTime: '2026-13-01T00:00:00Z' }),
      'transactionTime must be a FHIR instant with a timezone',
    ],
    [
      'transactionTime a number',
      (m) => ({ ...m, transactionTime: 1_764_158_400_000 }),
      'transactionTime must be a FHIR instant with a timezone',
    ],
    ['missing request', ({ request: _, ...m }) => m, 'request must be the kick-off URL (a string)'],
    ['empty request', (m) => ({ ...m, request: '' }), 'request must be the kick-off URL (a string)'],
    [
      'missing requiresAccessToken',
      ({ requiresAccessToken: _, ...m }) => m,
      'requiresAccessToken must be true or false',
    ],
    [
      'requiresAccessToken a string',
      (m) => ({ ...m, requiresAccessToken: 'true' }),
      'requiresAccessToken must be true or false',
    ],
    ['missing output', ({ output: _, ...m }) => m, 'output must be an array'],
    ['output an object', (m) => ({ ...m, output: { type: 'Patient' } }), 'output must be an array'],
    ['error not an array', (m) => ({ ...m, error: {} }), 'error must be an array'],
    ['deleted null', (m) => ({ ...m, deleted: null }), 'deleted must be an array'],
    [
      'an output entry that is a string',
      (m) => ({ ...m, output: ['Patient'] }),
      'output[0] must be an object',
    ],
    ['an output entry that is null', (m) => ({ ...m, output: [null] }), 'output[0] must be an object'],
    ['an output entry that is an array', (m) => ({ ...m, output: [[]] }), 'output[0] must be an object'],
    [
      'an output type in lower case',
      (m) => ({ ...m, output: [{ type: 'patient', url: `${FILES}/p.ndjson` }] }),
      'output[0].type must be a FHIR resource type',
    ],
    [
      'an output type missing',
      (m) => ({ ...m, output: [{ url: `${FILES}/p.ndjson` }] }),
      'output[0].type must be a FHIR resource type',
    ],
    [
      'an output type with a path',
      (m) => ({ ...m, output: [{ type: 'Patient/../x', url: `${FILES}/p.ndjson` }] }),
      'output[0].type must be a FHIR resource type',
    ],
    [
      'an output url missing',
      (m) => ({ ...m, output: [{ type: 'Patient' }] }),
      'output[0].url is not a non-empty string',
    ],
    [
      'an output url that is relative',
      (m) => ({ ...m, output: [{ type: 'Patient', url: '/files/p.ndjson' }] }),
      'output[0].url is not an absolute URL',
    ],
    [
      'a negative count',
      (m) => ({ ...m, output: [{ type: 'Patient', url: `${FILES}/p.ndjson`, count: -1 }] }),
      'output[0].count must be a non-negative integer when present',
    ],
    [
      'a fractional count',
      (m) => ({ ...m, output: [{ type: 'Patient', url: `${FILES}/p.ndjson`, count: 1.5 }] }),
      'output[0].count must be a non-negative integer when present',
    ],
    [
      'a string count',
      (m) => ({ ...m, output: [{ type: 'Patient', url: `${FILES}/p.ndjson`, count: '12' }] }),
      'output[0].count must be a non-negative integer when present',
    ],
    [
      'a null count',
      (m) => ({ ...m, output: [{ type: 'Patient', url: `${FILES}/p.ndjson`, count: null }] }),
      'output[0].count must be a non-negative integer when present',
    ],
    [
      'an unsafe integer count',
      (m) => ({ ...m, output: [{ type: 'Patient', url: `${FILES}/p.ndjson`, count: 2 ** 53 }] }),
      'output[0].count must be a non-negative integer when present',
    ],
    [
      'a bad second entry',
      (m) => ({
        ...m,
        output: [
          { type: 'Patient', url: `${FILES}/p.ndjson` },
          { type: 'Observation', url: `${FILES}/o.ndjson`, count: -3 },
        ],
      }),
      'output[1].count must be a non-negative integer when present',
    ],
    [
      'an error entry that is not OperationOutcome',
      (m) => ({ ...m, error: [{ type: 'Patient', url: `${FILES}/e.ndjson` }] }),
      'error[0].type must be OperationOutcome',
    ],
    [
      'a deleted entry without type',
      (m) => ({ ...m, deleted: [{ url: `${FILES}/d.ndjson` }] }),
      'deleted[0].type must be a FHIR resource type',
    ],
    ['link not an array', (m) => ({ ...m, link: { relation: 'next' } }), 'link must be an array'],
    [
      'a next link without url',
      (m) => ({ ...m, link: [{ relation: 'self', url: 'https://x' }, { relation: 'next' }] }),
      'link[1].url is not a non-empty string',
    ],
    [
      'a next link over http',
      (m) => ({ ...m, link: [{ relation: 'next', url: 'http://ehr.example.org/status/42?page=2' }] }),
      'link[0].url uses http: on a non-loopback host; only https is allowed',
    ],
  ];

  it.each(cases)('rejects %s', (_, mutate, message) => {
    // Act
    const error = thrown(() => parseCompletionManifest(mutate(validManifest()), false));
    // Assess
    expect(error).toBeInstanceOf(InvalidManifestError);
    expect(errorShape(error)).toStrictEqual({
      name: 'InvalidManifestError',
      code: 'ERR_INVALID_MANIFEST',
      message: `completion manifest ${message}`,
    });
  });
});

describe('parseCompletionManifest: URL policy', () => {
  const withOutputUrl = (url: string) => ({ ...validManifest(), output: [{ type: 'Patient', url }] });

  it.each([
    ['file:', 'file:///etc/passwd', false, 'uses the file: scheme; only https is allowed'],
    ['javascript:', 'javascript:alert(1)', false, 'uses the javascript: scheme; only https is allowed'],
    [
      'ftp:',
      `ftp://files.example.org/p.ndjson?${PRESIGNED_QUERY}`,
      false,
      'uses the ftp: scheme; only https is allowed',
    ],
    ['data:', 'data:application/x-ndjson,{}', false, 'uses the data: scheme; only https is allowed'],
    [
      'non-loopback http:',
      `http://files.example.org/p.ndjson?${PRESIGNED_QUERY}`,
      true,
      'uses http: on a non-loopback host; only https is allowed',
    ],
    [
      'loopback http: outside local mode',
      'http://127.0.0.1:4568/bucket/p.ndjson',
      false,
      'uses http:, allowed only for loopback hosts with allowInsecureHttp: true',
    ],
    [
      'credentials',
      `https://user:${SIGNATURE}@files.example.org/p.ndjson`,
      false,
      'must not carry credentials',
    ],
    ['a user name', 'https://admin@files.example.org/p.ndjson', false, 'must not carry credentials'],
  ])('rejects a %s file URL', (_, url, allowInsecureHttp, reason) => {
    // Act
    const error = thrown(() => parseCompletionManifest(withOutputUrl(url), allowInsecureHttp));
    // Assess
    expect(error).toBeInstanceOf(InvalidManifestError);
    expect(error.message).toBe(`completion manifest output[0].url ${reason}`);
  });

  it.each([
    'http://127.0.0.1:4568/bucket/p.ndjson',
    'http://localhost:8080/files/p.ndjson',
    'http://[::1]:8080/files/p.ndjson',
  ])('accepts loopback %s in local mode', (url) => {
    // Act
    const manifest = parseCompletionManifest(withOutputUrl(url), true);
    // Assess
    expect(manifest.files[0]).toStrictEqual({
      kind: 'output',
      type: 'Patient',
      resourceType: 'Patient',
      url,
    });
  });

  it('never echoes a presigned URL in any error message', () => {
    // Prepare
    const hostile = fc.constantFrom(
      `http://files.example.org/p.ndjson?${PRESIGNED_QUERY}`,
      `ftp://files.example.org/p.ndjson?${PRESIGNED_QUERY}`,
      `file:///p.ndjson?${PRESIGNED_QUERY}`,
      `https://AKIAIOSFODNN7EXAMPLE:${SIGNATURE}@files.example.org/p.ndjson`,
      `/relative/p.ndjson?${PRESIGNED_QUERY}`,
      `not a url ${PRESIGNED_QUERY}`,
    );
    const where = fc.constantFrom('output', 'error', 'deleted', 'link');
    fc.assert(
      fc.property(hostile, where, (url, field) => {
        const manifest =
          field === 'link'
            ? { ...validManifest(), link: [{ relation: 'next', url }] }
            : {
                ...validManifest(),
                [field]: [{ type: field === 'error' ? 'OperationOutcome' : 'Patient', url }],
              };
        // Act
        const error = thrown(() => parseCompletionManifest(manifest, false));
        // Assess
        expect(error).toBeInstanceOf(InvalidManifestError);
        expect(error.message).not.toContain('X-Amz');
        expect(error.message).not.toContain('AKIA');
        expect(error.message).not.toContain('files.example.org');
      }),
    );
  });
});

describe('parseCompletionManifest: size limit', () => {
  const base = { transactionTime: '2026-11-26T12:00:00Z', request: 'r', requiresAccessToken: false };
  const message = `completion manifest lists more than ${MAX_MANIFEST_FILES} files; refusing to process it`;

  it('allows 200,000 files but not one more in output alone', () => {
    // Prepare: the count is checked before any entry is read, so a sparse array is enough.
    const tooMany = { ...base, output: new Array(MAX_MANIFEST_FILES + 1) };
    // Act
    const error = thrown(() => parseCompletionManifest(tooMany, false));
    // Assess
    expect(errorShape(error)).toStrictEqual({
      name: 'InvalidManifestError',
      code: 'ERR_INVALID_MANIFEST',
      message,
    });
  });

  it('counts output, error and deleted together', () => {
    // Prepare
    const manifest = {
      ...base,
      output: [{ type: 'Patient', url: `${FILES}/p.ndjson` }],
      error: [],
      deleted: new Array(MAX_MANIFEST_FILES),
    };
    // Act
    const error = thrown(() => parseCompletionManifest(manifest, false));
    // Assess
    expect(errorShape(error)).toStrictEqual({
      name: 'InvalidManifestError',
      code: 'ERR_INVALID_MANIFEST',
      message,
    });
  });

  it('accepts exactly MAX_MANIFEST_FILES entries', () => {
    // Prepare: one real entry plus holes, which forEach skips.
    const output: unknown[] = new Array(MAX_MANIFEST_FILES);
    output[0] = { type: 'Patient', url: `${FILES}/p.ndjson` };
    // Act
    const manifest = parseCompletionManifest({ ...base, output }, false);
    // Assess
    expect(manifest.files).toHaveLength(1);
  });
});

describe('parseCompletionManifest: arbitrary input', () => {
  it('returns or throws InvalidManifestError for any JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.boolean(), (body, allowInsecureHttp) => {
        try {
          parseCompletionManifest(body, allowInsecureHttp);
        } catch (error) {
          expect(error).toBeInstanceOf(InvalidManifestError);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('returns or throws InvalidManifestError for anything, including odd objects', () => {
    fc.assert(
      fc.property(
        fc.anything({
          withNullPrototype: true,
          withBoxedValues: true,
          withMap: true,
          withSet: true,
          withSparseArray: true,
        }),
        (body) => {
          try {
            parseCompletionManifest(body, false);
          } catch (error) {
            expect(error).toBeInstanceOf(InvalidManifestError);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('returns or throws InvalidManifestError for near-valid manifests with any field swapped', () => {
    // Prepare: random values in every field, so the deeper checks run too.
    const value = fc.oneof(
      fc.anything(),
      fc.constantFrom(
        '2026-11-26T12:00:00Z',
        'Patient',
        'OperationOutcome',
        `${FILES}/p.ndjson`,
        'http://[::1]/x',
        3,
      ),
    );
    const entry = fc.oneof(fc.record({ type: value, url: value, count: value }, { requiredKeys: [] }), value);
    const manifest = fc.record(
      {
        transactionTime: fc.oneof(fc.constant('2026-11-26T12:00:00Z'), value),
        request: fc.oneof(fc.constant('r'), value),
        requiresAccessToken: fc.oneof(fc.boolean(), value),
        output: fc.oneof(fc.array(entry, { maxLength: 4 }), value),
        error: fc.oneof(fc.array(entry, { maxLength: 2 }), value),
        deleted: fc.oneof(fc.array(entry, { maxLength: 2 }), value),
        link: fc.oneof(
          fc.array(fc.record({ relation: fc.constantFrom('next', 'self'), url: value }), { maxLength: 2 }),
          value,
        ),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(manifest, fc.boolean(), (body, allowInsecureHttp) => {
        try {
          const parsed = parseCompletionManifest(body, allowInsecureHttp);
          expect(parsed.files.length).toBeLessThanOrEqual(8);
        } catch (error) {
          expect(error).toBeInstanceOf(InvalidManifestError);
        }
      }),
      { numRuns: 1_000 },
    );
  });
});

describe('mergeManifestPages', () => {
  const file = (type: string, n: number): ManifestFile => ({
    kind: 'output',
    type,
    resourceType: type,
    url: `${FILES}/${type}-${n}.ndjson`,
  });
  const page = (overrides: Partial<CompletionManifest>): CompletionManifest => ({
    transactionTime: '2026-11-26T12:00:00Z',
    request: 'https://ehr.example.org/fhir/$export',
    requiresAccessToken: true,
    files: [],
    ...overrides,
  });

  it('joins the files of every page in order and keeps the first page header', () => {
    // Prepare
    const pages = [
      page({ files: [file('Patient', 1)], nextPageUrl: 'https://ehr.example.org/status/42?page=2' }),
      page({
        transactionTime: '2026-11-26T12:30:00Z',
        requiresAccessToken: false,
        files: [file('Observation', 1), file('Observation', 2)],
        nextPageUrl: 'https://ehr.example.org/status/42?page=3',
      }),
      page({ files: [file('Condition', 1)] }),
    ];
    // Act
    const merged = mergeManifestPages(pages);
    // Assess
    expect(merged).toStrictEqual({
      transactionTime: '2026-11-26T12:00:00Z',
      request: 'https://ehr.example.org/fhir/$export',
      requiresAccessToken: true,
      files: [file('Patient', 1), file('Observation', 1), file('Observation', 2), file('Condition', 1)],
    });
  });

  it('returns a single page without its next link', () => {
    // Act
    const merged = mergeManifestPages([page({ files: [file('Patient', 1)] })]);
    // Assess
    expect(merged).toStrictEqual(page({ files: [file('Patient', 1)] }));
  });

  it('keeps a file URL listed twice (on one page or across pages) once, at its first place, and reports it', () => {
    // Prepare
    const pages = [
      page({
        files: [file('Patient', 1), file('Observation', 1), file('Patient', 1)],
        nextPageUrl: 'https://ehr.example.org/status/42?page=2',
      }),
      page({ files: [{ ...file('Observation', 1), count: 7 }, file('Condition', 1), file('Patient', 1)] }),
    ];
    // Act
    const merged = mergeManifestPages(pages);
    // Assess
    expect(merged.files).toStrictEqual([
      file('Patient', 1),
      // A count given only by the later listing is kept: it is the file's.
      { ...file('Observation', 1), count: 7 },
      file('Condition', 1),
    ]);
    expect(merged.duplicateFiles).toStrictEqual([
      { index: 0, kind: 'output', type: 'Patient', timesListed: 3 },
      { index: 1, kind: 'output', type: 'Observation', timesListed: 2 },
    ]);
  });

  it.each([
    [
      'a file URL listed as two types',
      [
        page({
          files: [
            file('Patient', 1),
            { ...file('Patient', 1), type: 'Observation', resourceType: 'Observation' },
          ],
        }),
      ],
      'completion manifest lists one file URL as output Patient and again as output Observation',
    ],
    [
      'a file URL listed as output and as an error file',
      [page({ files: [file('OperationOutcome', 1), { ...file('OperationOutcome', 1), kind: 'error' }] })],
      'completion manifest lists one file URL as output OperationOutcome and again as error OperationOutcome',
    ],
    [
      'a file URL listed twice with different counts',
      [
        page({ files: [{ ...file('Patient', 1), count: 5 }] }),
        page({ files: [{ ...file('Patient', 1), count: 6 }] }),
      ],
      'completion manifest lists one output Patient file URL twice with different counts (5 and 6)',
    ],
    ['no pages', [] as CompletionManifest[], 'completion manifest has no pages'],
    [
      'more than MAX_MANIFEST_FILES files across pages',
      [
        page({ files: new Array<ManifestFile>(MAX_MANIFEST_FILES / 2).fill(file('Patient', 1)) }),
        page({ files: new Array<ManifestFile>(MAX_MANIFEST_FILES / 2 + 1).fill(file('Patient', 2)) }),
      ],
      `completion manifest lists more than ${MAX_MANIFEST_FILES} files; refusing to process it`,
    ],
  ])('rejects %s', (_, pages, message) => {
    // Act
    const error = thrown(() => mergeManifestPages(pages));
    // Assess
    expect(error).toBeInstanceOf(InvalidManifestError);
    expect(errorShape(error)).toStrictEqual({
      name: 'InvalidManifestError',
      code: 'ERR_INVALID_MANIFEST',
      message,
    });
  });
});

describe('parseCompletionManifest: transactionTime must name a real instant', () => {
  it.each(['2026-02-30T00:00:00Z', '2026-13-01T00:00:00Z', '2026-01-01T24:00:00Z'])(
    'rejects %j',
    (transactionTime) => {
      expect(() => parseCompletionManifest({ ...validManifest(), transactionTime }, false)).toThrow(
        'completion manifest transactionTime must be a FHIR instant with a timezone',
      );
    },
  );
});

describe('checkTransactionTime: never a transactionTime from the future', () => {
  const now = new Date('2026-12-06T12:00:00.000Z');

  it.each([
    '2026-12-06T11:00:00Z',
    '2026-12-06T12:00:00Z',
    '2026-12-06T12:05:00Z',
    '2026-12-06T13:04:59+01:00',
  ])('accepts %s (up to the allowed skew of 300 s ahead)', (transactionTime) => {
    expect(() => checkTransactionTime(transactionTime, now, 300)).not.toThrow();
  });

  it.each([
    ['2999-01-01T00:00:00Z', 300, '972 years', 300],
    ['2026-12-06T12:05:01Z', 300, '301 s', 300],
    ['2026-12-06T12:00:01Z', 0, '1 s', 0],
    ['2026-12-06T14:30:00+01:00', 300, '90 min', 300],
  ])('refuses %s with maxClockSkewSeconds %d', (transactionTime, skew, ahead, allowed) => {
    // Act
    const error = thrown(() => checkTransactionTime(transactionTime, now, skew));
    // Assess
    expect(errorShape(error)).toStrictEqual({
      name: 'InvalidManifestError',
      code: 'ERR_INVALID_MANIFEST',
      message:
        `completion manifest transactionTime ${transactionTime} is ${ahead} ahead of this client's clock (2026-12-06T12:00:00.000Z); ` +
        `maxClockSkewSeconds allows ${allowed} s. The server's clock or manifest is wrong, and as the next _since it would ` +
        'skip every change until then, so the export is refused and the watermark stays where it was',
    });
  });
});
