import { describe, expect, it } from 'vitest';
import { parseSourceSettings } from '../../../lambdas/config.js';
import { buildKickOffRequest, type ExportRequest } from '../../../lambdas/core/kickoff.js';
import { fileKey, quarantineKey } from '../../../lambdas/core/layout.js';
import { type ManifestFile, parseCompletionManifest } from '../../../lambdas/core/manifest.js';
import { NdjsonFramer } from '../../../lambdas/core/ndjson/framer.js';
import {
  filesBeyondListing,
  listedFile,
  type PartialListing,
} from '../../../lambdas/core/partial-manifest.js';
import { type ReceiptFile, summarizeFiles } from '../../../lambdas/core/receipt.js';
import { interpretStatusResponse } from '../../../lambdas/core/status.js';
import { InvalidManifestError, InvalidNdjsonError } from '../../../lambdas/errors.js';
import { organizedFileTypes } from '../../../lambdas/handlers/download-file.js';
import { stagingKey } from '../../../lambdas/services/publish-export.js';
import { thrown } from '../../support/thrown.js';

/** organizeOutputBy=Patient and allowPartialManifests: the pure parts (IG 2.0 export.md). */

const BASE = 'https://ehr.example.org/fhir';
const GET = { method: 'GET', outputFormat: 'application/fhir+ndjson', typeParameterStyle: 'comma' } as const;
const REQUEST: ExportRequest = {
  level: 'system',
  types: ['Patient', 'Condition'],
  typeFilters: [],
  elements: [],
  organizeOutputBy: 'Patient',
  allowPartialManifests: true,
};
const LOCATION = { prefix: 'bulk', sourceId: 'epic', transactionTime: '2026-11-26T11:00:00Z' };
const FILES = 'https://files.ehr.example.org/x';

const organizedManifest = (extra: Record<string, unknown> = {}) => ({
  transactionTime: '2026-11-26T11:00:00Z',
  request: `${BASE}/$export?organizeOutputBy=Patient`,
  requiresAccessToken: true,
  outputOrganizedBy: 'Patient',
  output: [
    { url: `${FILES}/1.ndjson`, count: 12 },
    { type: 'Patient', url: `${FILES}/2.ndjson` },
    { type: 'Practitioner', url: `${FILES}/3.ndjson` },
  ],
  error: [],
  ...extra,
});

describe('kick-off parameters', () => {
  it('sends organizeOutputBy and allowPartialManifests on a GET', () => {
    const url = new URL(buildKickOffRequest(BASE, GET, REQUEST).url);
    expect(url.searchParams.get('organizeOutputBy')).toBe('Patient');
    expect(url.searchParams.get('allowPartialManifests')).toBe('true');
  });

  it('sends them as Parameters on a POST', () => {
    const body = JSON.parse(buildKickOffRequest(BASE, { ...GET, method: 'POST' }, REQUEST).body!);
    expect(body.parameter).toEqual(
      expect.arrayContaining([
        { name: 'organizeOutputBy', valueString: 'Patient' },
        { name: 'allowPartialManifests', valueBoolean: true },
      ]),
    );
  });

  it('sends neither when not asked', () => {
    const { organizeOutputBy: _o, allowPartialManifests: _a, ...plain } = REQUEST;
    const url = new URL(buildKickOffRequest(BASE, GET, plain).url);
    expect([...url.searchParams.keys()]).toEqual(['_outputFormat', '_type']);
  });
});

describe('a manifest organized by patient', () => {
  it('marks untyped and Patient-typed output entries as organized, keeps another type by type', () => {
    const manifest = parseCompletionManifest(organizedManifest(), false, { organizeOutputBy: 'Patient' });
    expect(
      manifest.files.map(({ type, resourceType, organizedBy }) => ({ type, resourceType, organizedBy })),
    ).toEqual([
      { type: 'Patient', resourceType: 'Patient', organizedBy: 'Patient' },
      { type: 'Patient', resourceType: 'Patient', organizedBy: 'Patient' },
      { type: 'Practitioner', resourceType: 'Practitioner', organizedBy: undefined },
    ]);
  });

  it('refuses an outputOrganizedBy the kick-off did not ask for, or another one', () => {
    const unasked = thrown(() => parseCompletionManifest(organizedManifest(), false));
    expect(unasked).toBeInstanceOf(InvalidManifestError);
    expect(unasked.message).toBe(
      'completion manifest outputOrganizedBy is Patient but the kick-off did not ask for organizeOutputBy',
    );
    const other = thrown(() =>
      parseCompletionManifest(organizedManifest({ outputOrganizedBy: 'Encounter' }), false, {
        organizeOutputBy: 'Patient',
      }),
    );
    expect(other.message).toBe(
      'completion manifest outputOrganizedBy must be Patient, as the kick-off asked',
    );
  });

  it('still needs a type on entries when nothing was organized', () => {
    const { outputOrganizedBy: _, ...plain } = organizedManifest();
    const error = thrown(() => parseCompletionManifest(plain, false));
    expect(error.message).toBe('completion manifest output[0].type must be a FHIR resource type');
  });
});

describe('layout of files organized by patient', () => {
  it('numbers them under organizedBy=Patient/, stages and quarantines them beside that', () => {
    const key = fileKey(LOCATION, 'output', 'Patient', 3, 'Patient');
    expect(key).toBe('bulk/source=epic/export=2026-11-26T110000.000Z/organizedBy=Patient/part-0003.ndjson');
    expect(stagingKey(key)).toBe(
      'bulk/source=epic/export=2026-11-26T110000.000Z/_staging/organizedBy=Patient/part-0003.ndjson',
    );
    expect(quarantineKey(key)).toBe(
      'bulk/source=epic/export=2026-11-26T110000.000Z/_quarantine/organizedBy=Patient/part-0003.quarantine.ndjson',
    );
  });
});

describe('lines of several types', () => {
  const header =
    '{"resourceType":"Parameters","parameter":[{"name":"header","valueReference":{"reference":"Patient/p1"}}]}';
  const lines = [
    header,
    '{"resourceType":"Patient","id":"p1"}',
    '{"resourceType":"Condition","id":"c1"}',
    '{"resourceType":"Condition","id":"c2"}',
  ];

  function frame(text: string, types: readonly string[], chunk = 7) {
    const framer = new NdjsonFramer({ resourceType: 'Patient', resourceTypes: types, maxLineBytes: 1024 });
    const input = Buffer.from(text);
    for (let at = 0; at < input.length; at += chunk) framer.push(input.subarray(at, at + chunk));
    framer.end();
    return framer.position;
  }

  it('accepts each type asked for and the block headers, and counts lines per type however chunked', () => {
    const types = organizedFileTypes(['Patient', 'Condition']);
    for (const chunk of [1, 7, 1000]) {
      expect(frame(`${lines.join('\n')}\n`, types, chunk)).toMatchObject({
        lines: 4,
        resourceTypeCounts: { Parameters: 1, Patient: 1, Condition: 2 },
      });
    }
  });

  it('refuses a type the request did not ask for, naming what was expected', () => {
    const error = thrown(() =>
      frame(
        `${header}\n{"resourceType":"Observation","id":"o1"}\n`,
        organizedFileTypes(['Patient', 'Condition']),
      ),
    );
    expect(error).toBeInstanceOf(InvalidNdjsonError);
    expect(error.message).toBe(
      `NDJSON line 2 (byte offset ${header.length + 1}) is invalid: resourceType is Observation, expected one of Patient, Condition, Parameters`,
    );
  });

  it('accepts any FHIR type name when the request named none, but not a non-name', () => {
    expect(frame('{"resourceType":"Observation"}\n', organizedFileTypes([])).resourceTypeCounts).toEqual({
      Observation: 1,
    });
    const error = thrown(() => frame('{"resourceType":"not a type"}\n', organizedFileTypes([])));
    expect(error.message).toContain('resourceType is (not a FHIR type name), expected any resource type');
  });

  it('resumes the per-type counts from a checkpointed position', () => {
    const framer = new NdjsonFramer({
      resourceType: 'Patient',
      resourceTypes: [],
      maxLineBytes: 1024,
      start: { byteOffset: 10, lines: 3, blankLines: 0, invalidLines: 0, resourceTypeCounts: { Patient: 3 } },
    });
    framer.push(Buffer.from('{"resourceType":"Patient"}\n'));
    expect(framer.position.resourceTypeCounts).toEqual({ Patient: 4 });
  });
});

describe('receipt of files organized by patient', () => {
  const organized = (lines: number, bytes: number, counts: Record<string, number>): ReceiptFile => ({
    kind: 'output',
    type: 'Patient',
    key: 'k',
    bytes,
    lines,
    sha256: 'x',
    invalidLines: 0,
    organizedBy: 'Patient',
    resourceTypeCounts: counts,
  });

  it('counts resources per line type and the blocks apart, beside files by type', () => {
    const summary = summarizeFiles([
      organized(5, 500, { Parameters: 2, Patient: 2, Condition: 1 }),
      organized(3, 300, { Parameters: 1, Patient: 1, Condition: 1 }),
      { kind: 'output', type: 'Practitioner', key: 'p', bytes: 50, lines: 4, sha256: 'y', invalidLines: 0 },
    ]);
    expect(summary.byType).toEqual({
      Patient: { files: 2, resources: 3, bytes: 0 },
      Condition: { files: 2, resources: 2, bytes: 0 },
      Practitioner: { files: 1, resources: 4, bytes: 50 },
    });
    expect(summary.organizedBy).toEqual({ Patient: { files: 2, blocks: 3, resources: 5, bytes: 800 } });
    expect(summary.totals).toEqual({ files: 3, resources: 9, bytes: 850 });
  });

  it('has no organizedBy when no file was organized', () => {
    expect(summarizeFiles([]).organizedBy).toBeUndefined();
  });
});

describe('files listed while the job runs (allowPartialManifests)', () => {
  const file = (type: string, count?: number): ManifestFile => ({
    kind: 'output',
    type,
    resourceType: type,
    url: `${FILES}/${type}-${count}`,
    ...(count === undefined ? {} : { count }),
  });
  const manifest = (files: ManifestFile[], transactionTime = '2026-11-26T11:00:00Z') => ({
    transactionTime,
    request: `${BASE}/$export`,
    requiresAccessToken: true,
    files,
  });
  const listing = (files: ManifestFile[]): PartialListing => ({
    transactionTime: '2026-11-26T11:00:00Z',
    files: files.map(listedFile),
    rounds: 1,
  });

  it('counts the files beyond those listed before; a fresh URL for a listed file is allowed', () => {
    const before = [file('Patient', 3)];
    const again = [{ ...file('Patient', 3), url: `${FILES}/fresh-link` }, file('Condition', 5)];
    expect(filesBeyondListing(undefined, manifest(before))).toBe(1);
    expect(filesBeyondListing(listing(before), manifest(again))).toBe(1);
    expect(filesBeyondListing(listing(again), manifest(again))).toBe(0);
  });

  it('refuses a manifest that moved, dropped or changed a listed file, naming it', () => {
    const before = [file('Patient', 3), file('Condition', 5)];
    const message = (files: ManifestFile[], transactionTime?: string) =>
      thrown(() => filesBeyondListing(listing(before), manifest(files, transactionTime))).message;
    const prefix = 'the manifest changed files it had listed while the export ran (allowPartialManifests): ';
    const suffix = '; a listed file must keep its place (IG, "Response - In-Progress Status")';
    expect(message([file('Condition', 5), file('Patient', 3)])).toBe(
      `${prefix}file 0 was output Patient (count 3), now output Condition (count 5)${suffix}`,
    );
    expect(message([file('Patient', 3)])).toBe(`${prefix}2 files were listed, now 1${suffix}`);
    expect(message([file('Patient', 3), file('Condition', 6)])).toBe(
      `${prefix}file 1 was output Condition (count 5), now output Condition (count 6)${suffix}`,
    );
    expect(message(before, '2026-11-26T12:00:00Z')).toBe(
      `${prefix}transactionTime was 2026-11-26T11:00:00Z, now 2026-11-26T12:00:00Z${suffix}`,
    );
    expect(thrown(() => filesBeyondListing(listing(before), manifest([])))).toBeInstanceOf(
      InvalidManifestError,
    );
  });

  it('reads a 202 body as a partial manifest, and a 202 without one as before', () => {
    const manifestBody = { transactionTime: '2026-11-26T11:00:00Z', output: [] };
    const now = new Date('2026-11-26T12:00:00Z');
    expect(
      interpretStatusResponse({ status: 202, headers: {}, body: JSON.stringify(manifestBody) }, now),
    ).toEqual({ outcome: 'in-progress', partialManifestBody: manifestBody });
    expect(interpretStatusResponse({ status: 202, headers: {}, body: '' }, now)).toEqual({
      outcome: 'in-progress',
    });
    expect(interpretStatusResponse({ status: 202, headers: {}, body: '{not json' }, now)).toEqual({
      outcome: 'in-progress',
    });
  });

  it('is refused with chunking, saying why and what to do', () => {
    const source = {
      id: 'epic',
      clientId: 'client',
      fhirBaseUrl: 'https://ehr.example.org/fhir',
      export: {
        level: 'group',
        groupId: 'g',
        allowPartialManifests: true,
        chunk: { by: 'time', window: '30d' },
      },
    };
    expect(thrown(() => parseSourceSettings(source)).message).toContain(
      'export.allowPartialManifests cannot be combined with export.chunk or export.chunkOnTimeout: a chunked export lands its files after every chunk is complete; turn one of them off',
    );
  });
});
