import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  claimedBy,
  claimKey,
  completionMarkerKey,
  describeClaim,
  type ExportLocation,
  exportFolder,
  exportPartition,
  exportRoot,
  failureReceiptKey,
  fileKey,
  lockKey,
  quarantineKey,
  receiptFileIndexKey,
  receiptKey,
  verifiedBatchKey,
  watermarkKey,
  workPrefix,
} from '../../../lambdas/core/layout.js';

const LOCATION: ExportLocation = {
  prefix: 'fhir',
  sourceId: 'epic-prod',
  transactionTime: '2026-11-26T12:00:00.123+01:00',
};
const ROOT = 'fhir/source=epic-prod/export=2026-11-26T110000.123Z/';

describe('exportPartition', () => {
  it.each([
    ['2026-11-26T12:00:00.123+01:00', '2026-11-26T110000.123Z'],
    ['2026-11-26T12:00:00Z', '2026-11-26T120000.000Z'],
    ['2026-11-26T23:30:00-05:00', '2026-11-27T043000.000Z'],
    ['2026-11-26T12:00:00.5Z', '2026-11-26T120000.500Z'],
    ['2026-11-26T12:00:00.123456789Z', '2026-11-26T120000.123Z'],
    ['2026-01-01T00:30:00+05:30', '2025-12-31T190000.000Z'],
  ])('%s → %s', (transactionTime, partition) => {
    expect(exportPartition(transactionTime)).toBe(partition);
  });

  it('yields the same partition for the same instant in any offset, and never a colon', () => {
    fc.assert(
      fc.property(
        fc.date({
          min: new Date('2000-01-01T00:00:00Z'),
          max: new Date('2099-12-31T23:59:59Z'),
          noInvalidDate: true,
        }),
        fc.integer({ min: -12 * 60, max: 14 * 60 }),
        (instant, offsetMinutes) => {
          // Prepare: the same instant written with a different UTC offset.
          const local = new Date(instant.getTime() + offsetMinutes * 60_000).toISOString().slice(0, -1);
          const sign = offsetMinutes < 0 ? '-' : '+';
          const abs = Math.abs(offsetMinutes);
          const offset = `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
          // Act
          const partition = exportPartition(`${local}${offset}`);
          // Assess
          expect(partition).toBe(exportPartition(instant.toISOString()));
          expect(partition).toMatch(/^\d{4}-\d{2}-\d{2}T\d{6}\.\d{3}Z$/);
        },
      ),
    );
  });
});

describe('exportRoot and prefixes', () => {
  it.each([
    ['fhir', ROOT],
    ['fhir/', ROOT],
    ['', 'source=epic-prod/export=2026-11-26T110000.123Z/'],
    ['lake/raw/fhir', 'lake/raw/fhir/source=epic-prod/export=2026-11-26T110000.123Z/'],
  ])('prefix %j → %s', (prefix, root) => {
    expect(exportRoot({ ...LOCATION, prefix })).toBe(root);
  });
});

describe('exportFolder: one folder per execution, even when two share a transactionTime', () => {
  it.each([
    [undefined, 'export=2026-11-26T110000.123Z'],
    ['epic-prod-20261126T110000Z-auto', 'export=2026-11-26T110000.123Z_epic-prod-20261126T110000Z-auto'],
    [
      '0b5c1e3a-8a8e-4a4e-9f0e-3c1d2b7e6a51',
      'export=2026-11-26T110000.123Z_0b5c1e3a-8a8e-4a4e-9f0e-3c1d2b7e6a51',
    ],
    ['run_1', 'export=2026-11-26T110000.123Z_run_1'],
  ])('execution %j → %s', (executionName, folder) => {
    expect(exportFolder(LOCATION.transactionTime, executionName)).toBe(folder);
  });

  it.each(['nightly=1', "o'brien", 'größe', 'a+b', 'x'.repeat(81)])(
    'replaces an execution name Hive would escape (%j) by a stable hash of it',
    (executionName) => {
      // Act
      const folder = exportFolder(LOCATION.transactionTime, executionName);
      // Assess
      expect(folder).toMatch(/^export=2026-11-26T110000\.123Z_x[0-9a-f]{16}$/);
      expect(exportFolder(LOCATION.transactionTime, executionName)).toBe(folder);
      expect(exportFolder(LOCATION.transactionTime, `${executionName}2`)).not.toBe(folder);
    },
  );

  it('keeps the folder of an execution apart from the plain one: no prefix of one is the other', () => {
    // S3 listings, upload aborts and Athena partitions work by prefix: `export=T/` must not cover `export=T_x/`.
    const plain = exportRoot(LOCATION);
    const named = exportRoot({ ...LOCATION, executionName: 'epic-prod-2' });
    expect(named.startsWith(plain)).toBe(false);
    expect(plain.startsWith(named)).toBe(false);
  });
});

describe('claimedBy: a folder is written by one execution, its retries and redrives included', () => {
  const claim = { executionName: 'epic-1', executionStartedAt: '2026-11-26T11:00:00.000Z' };
  it.each([
    [
      'the same execution (a retry or redrive)',
      { executionName: 'epic-1', startedAt: '2026-11-26T11:00:00.000Z' },
      true,
    ],
    ['another execution', { executionName: 'epic-2', startedAt: '2026-11-26T11:00:00.000Z' }, false],
    [
      'a later run that reused the name',
      { executionName: 'epic-1', startedAt: '2026-11-27T11:00:00.000Z' },
      false,
    ],
  ])('%s → %s', (_, execution, ours) => {
    expect(claimedBy(claim, execution)).toBe(ours);
  });

  it('describes the holder by name and start', () => {
    expect(describeClaim(claim)).toBe('execution epic-1 started 2026-11-26T11:00:00.000Z');
  });
});

describe('fileKey', () => {
  it.each([
    ['output', 'Patient', 1, `${ROOT}type=Patient/part-0001.ndjson`],
    ['output', 'Observation', 42, `${ROOT}type=Observation/part-0042.ndjson`],
    ['output', 'Observation', 9999, `${ROOT}type=Observation/part-9999.ndjson`],
    ['output', 'Observation', 12345, `${ROOT}type=Observation/part-12345.ndjson`],
    ['error', 'OperationOutcome', 1, `${ROOT}_errors/part-0001.ndjson`],
    ['error', 'OperationOutcome', 3, `${ROOT}_errors/part-0003.ndjson`],
    ['deleted', 'Patient', 1, `${ROOT}_deleted/type=Patient/part-0001.ndjson`],
    ['deleted', 'Bundle', 10, `${ROOT}_deleted/type=Bundle/part-0010.ndjson`],
  ] as const)('%s %s #%d → %s', (kind, type, ordinal, key) => {
    expect(fileKey(LOCATION, kind, type, ordinal)).toBe(key);
  });

  it('uses no prefix when the prefix is empty', () => {
    expect(fileKey({ ...LOCATION, prefix: '' }, 'output', 'Patient', 7)).toBe(
      'source=epic-prod/export=2026-11-26T110000.123Z/type=Patient/part-0007.ndjson',
    );
  });
});

describe('quarantineKey', () => {
  it.each([
    [`${ROOT}type=Patient/part-0001.ndjson`, `${ROOT}_quarantine/type=Patient/part-0001.quarantine.ndjson`],
    [
      `${ROOT}_deleted/type=Patient/part-0002.ndjson`,
      `${ROOT}_deleted/_quarantine/type=Patient/part-0002.quarantine.ndjson`,
    ],
    [`${ROOT}_errors/part-0001.ndjson`, `${ROOT}_errors/part-0001.quarantine.ndjson`],
    [
      'source=a/export=2026-11-26T120000.000Z/type=Observation/part-0010.ndjson',
      'source=a/export=2026-11-26T120000.000Z/_quarantine/type=Observation/part-0010.quarantine.ndjson',
    ],
  ])('%s → %s', (dataKey, key) => {
    expect(quarantineKey(dataKey)).toBe(key);
  });

  it('keeps quarantined lines out of the Athena-visible partitions', () => {
    // Act
    const key = quarantineKey(fileKey(LOCATION, 'output', 'Patient', 1));
    // Assess
    expect(key.slice(ROOT.length).startsWith('_')).toBe(true);
  });
});

describe('receipt, marker, work, watermark, lock and failure keys', () => {
  it.each([
    ['claimKey', () => claimKey(exportRoot(LOCATION)), `${ROOT}_claim.json`],
    ['receiptKey', () => receiptKey(exportRoot(LOCATION)), `${ROOT}_receipt.json`],
    ['receiptFileIndexKey', () => receiptFileIndexKey(exportRoot(LOCATION)), `${ROOT}_receipt.files.ndjson`],
    [
      'verifiedBatchKey, by its first file',
      () => verifiedBatchKey(workPrefix('', 'a', 'x'), 1500),
      '_work/source=a/execution=x/verified/001500.json',
    ],
    ['completionMarkerKey', () => completionMarkerKey(exportRoot(LOCATION)), `${ROOT}_SUCCESS.json`],
    [
      'completionMarkerKey, empty prefix',
      () => completionMarkerKey(exportRoot({ ...LOCATION, prefix: '' })),
      'source=epic-prod/export=2026-11-26T110000.123Z/_SUCCESS.json',
    ],
    [
      'completionMarkerKey of a folder that names its execution',
      () => completionMarkerKey(exportRoot({ ...LOCATION, executionName: 'epic-prod-2' })),
      'fhir/source=epic-prod/export=2026-11-26T110000.123Z_epic-prod-2/_SUCCESS.json',
    ],
    [
      'workPrefix',
      () => workPrefix('fhir', 'epic-prod', 'epic-prod-abc'),
      'fhir/_work/source=epic-prod/execution=epic-prod-abc/',
    ],
    ['workPrefix, empty prefix', () => workPrefix('', 'a', 'x'), '_work/source=a/execution=x/'],
    ['watermarkKey', () => watermarkKey('fhir/', 'epic-prod'), 'fhir/_state/source=epic-prod/watermark.json'],
    [
      'watermarkKey, empty prefix',
      () => watermarkKey('', 'epic-prod'),
      '_state/source=epic-prod/watermark.json',
    ],
    ['lockKey', () => lockKey('fhir', 'epic-prod'), 'fhir/_state/source=epic-prod/lock.json'],
    ['lockKey, empty prefix', () => lockKey('', 'epic-prod'), '_state/source=epic-prod/lock.json'],
    [
      'failureReceiptKey',
      () => failureReceiptKey('fhir', 'epic-prod', 'epic-prod-abc'),
      'fhir/_failures/source=epic-prod/epic-prod-abc.json',
    ],
    [
      'failureReceiptKey, empty prefix',
      () => failureReceiptKey('', 'epic-prod', 'run-1'),
      '_failures/source=epic-prod/run-1.json',
    ],
  ])('%s', (_, act, key) => {
    expect(act()).toBe(key);
  });
});

describe('quarantineKey under a prefix that itself contains type=', () => {
  it('quarantines beside the data partition, not inside the prefix', () => {
    const key = fileKey(
      { prefix: 'lake/type=fhir', sourceId: 'epic', transactionTime: '2026-01-01T00:00:00Z' },
      'output',
      'Patient',
      1,
    );
    expect(quarantineKey(key)).toBe(
      'lake/type=fhir/source=epic/export=2026-01-01T000000.000Z/_quarantine/type=Patient/part-0001.quarantine.ndjson',
    );
  });
});
