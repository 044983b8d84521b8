import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zstdDecompressSync } from 'node:zlib';
import { DeleteObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { parquetReadObjects } from 'hyparquet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tablePartitionPrefix } from '../../lambdas/warehouse/layout.js';
import type { LoadedMarker } from '../../lambdas/warehouse/types.js';
import { type LocalLoadResult, runLoadLocally } from '../../scripts/local/local-warehouse.js';
import { createLocalRuntime } from '../../scripts/local/runtime.js';
import { openWarehouse } from '../../scripts/local/warehouse-query.js';
import type { ExportableType } from '../../scripts/sandbox/data/types.js';
import { type Harness, receiptOf, type ScenarioResult, startHarness } from './support/harness.js';

/**
 * The load stage end to end, with the real parts: an export from the sandbox (real ASL, real handlers,
 * embedded S3), its validation, then load-warehouse.asl.json started with the S3 Object Created event of
 * `_VALIDATED.json` (or of `_SUCCESS.json` when the source's validation is off), as runLocalExport does for
 * `npm run export`. Counts are checked against the sandbox's own dataset, not against the receipt.
 */

/** Every default view is one row per resource of its type (none has forEach or where). */
const VIEW_TYPES: Record<string, ExportableType> = {
  patient: 'Patient',
  encounter: 'Encounter',
  condition: 'Condition',
  observation: 'Observation',
  medication_request: 'MedicationRequest',
  immunization: 'Immunization',
  procedure: 'Procedure',
  allergy_intolerance: 'AllergyIntolerance',
  document_reference: 'DocumentReference',
};

const readParquet = (bytes: Buffer) =>
  parquetReadObjects({
    file: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer,
    compressors: { ZSTD: (input: Uint8Array) => new Uint8Array(zstdDecompressSync(input)) },
  });

describe('the warehouse load of an export (load-warehouse.asl.json)', () => {
  let harness: Harness;
  let validated: ScenarioResult;
  let unvalidated: ScenarioResult;
  let gated: ScenarioResult;
  beforeAll(async () => {
    harness = await startHarness({
      patientCount: 20,
      jobDurationMs: 0,
      retryAfterSeconds: 0,
      resourcesPerFile: 150,
    });
    validated = await harness.exportWith({
      sourceId: 'wh-validated',
      validate: true,
      load: true,
      waitOverrideMs: 20,
    });
    unvalidated = await harness.exportWith({
      sourceId: 'wh-unvalidated',
      validate: true,
      load: true,
      waitOverrideMs: 20,
      source: { validation: { enabled: false } },
    });
    gated = await harness.exportWith({
      sourceId: 'wh-gated',
      validate: true,
      load: true,
      waitOverrideMs: 20,
      faults: { nonConformant: { missingPatientIdentifier: 1 } },
      source: { validation: { mode: 'gate', minConformantPercent: 100 } },
    });
  }, 180_000);
  afterAll(async () => {
    await harness?.close();
  });

  const folderOf = (result: ScenarioResult) =>
    receiptOf(result).fileIndex.key.replace(/_receipt\.files\.ndjson$/, '');
  const tokenOf = (result: ScenarioResult) => /export=([^/]+)\/$/.exec(folderOf(result))![1]!;
  const markerOf = async (result: ScenarioResult) =>
    JSON.parse((await harness.getText(`${folderOf(result)}_LOADED.json`))!) as LoadedMarker;
  const cohort = () => harness.sandbox.dataset.groups.find((group) => group.id === 'cohort')!.patientIndexes;
  /** The sandbox's resources of a type in the exported Group, as it serves them. */
  const resourcesOf = (type: ExportableType) =>
    [...harness.sandbox.dataset.lines({ type, patientIndexes: cohort() })].map(
      (line) => JSON.parse(line) as Record<string, unknown> & { id: string },
    );
  /** A later load on a runtime of its own, as a second EventBridge event would start it. */
  const loadAgain = async (markerKey: string, executionName: string): Promise<LocalLoadResult> => {
    const local = createLocalRuntime({
      sources: [],
      s3ClientConfig: harness.s3.clientConfig,
      bucket: harness.bucket,
    });
    try {
      return await runLoadLocally(local.runtime, { markerKey, executionName, retryOverrideMs: 20 });
    } finally {
      await local.close();
    }
  };

  it('loads every view with one row per resource of its type in the exported Group', async () => {
    expect(validated.load?.run.status).toBe('SUCCEEDED');
    const marker = await markerOf(validated);
    const folder = folderOf(validated);
    expect(marker).toMatchObject({
      loadedVersion: 1,
      sourceId: 'wh-validated',
      exportToken: tokenOf(validated),
      root: folder,
      validatedMarkerKey: `${folder}_VALIDATED.json`,
    });
    expect(Object.keys(marker.tables).sort()).toEqual(Object.keys(VIEW_TYPES).sort());
    let rows = 0;
    for (const [table, type] of Object.entries(VIEW_TYPES)) {
      const expected = resourcesOf(type).length;
      expect(marker.tables[table]!.rows, table).toBe(expected);
      expect(marker.tables[table]!.resource, table).toBe(type);
      rows += expected;
    }
    expect(rows).toBeGreaterThan(100);
    expect(marker.totals.rows).toBe(rows);
    expect(marker.totals.parts).toBe(
      Object.values(marker.tables).reduce((n, table) => n + table.parts.length, 0),
    );
  });

  it("writes the parts at the layout's keys, one per data file of the view's type, and nothing else", async () => {
    const marker = await markerOf(validated);
    const receipt = receiptOf(validated);
    const written = (await harness.listKeys('warehouse/')).filter((key) =>
      key.includes('/source=wh-validated/'),
    );
    const listed: string[] = [];
    for (const [table, { parts, resource }] of Object.entries(marker.tables)) {
      const partition = tablePartitionPrefix('', table, 'wh-validated', tokenOf(validated));
      expect(parts.map((part) => part.partKey)).toEqual(
        parts.map((_, i) => `${partition}part-${String(i + 1).padStart(4, '0')}.parquet`),
      );
      expect(parts.length, table).toBe(receipt.byType[resource]?.files ?? 0);
      for (const part of parts) {
        const head = await harness.client.send(
          new HeadObjectCommand({ Bucket: harness.bucket, Key: part.partKey }),
        );
        expect(head.ContentLength, part.partKey).toBe(part.bytes);
      }
      listed.push(...parts.map((part) => part.partKey));
    }
    expect(written.sort()).toEqual(listed.sort());
    // The work objects are gone once the marker is written.
    expect(await harness.listKeys(`_work/warehouse/source=wh-validated/`)).toEqual([]);
  });

  it("holds the sandbox's values: patient ids, genders and birth dates; observation ids and statuses", async () => {
    const marker = await markerOf(validated);
    const columnsOf = async (table: string) => {
      const rows: Record<string, unknown>[] = [];
      for (const part of marker.tables[table]!.parts)
        rows.push(...(await readParquet((await harness.getBytes(part.partKey))!)));
      return rows;
    };
    const patients = await columnsOf('patient');
    const expectedPatients = resourcesOf('Patient').map((p) => ({
      id: p.id,
      gender: p.gender ?? null,
      birth_date: p.birthDate ?? null,
    }));
    expect(patients.map((row) => ({ id: row.id, gender: row.gender, birth_date: row.birth_date }))).toEqual(
      expectedPatients,
    );
    const observations = await columnsOf('observation');
    expect(observations.map((row) => [row.id, row.status])).toEqual(
      resourcesOf('Observation').map((o) => [o.id, o.status]),
    );
  });

  it("ends in a query: DuckDB over the loaded parts (npm run query) answers with the sandbox's counts", async () => {
    const cacheDirectory = await mkdtemp(join(tmpdir(), 'warehouse-chain-'));
    const warehouse = await openWarehouse({
      s3ClientConfig: harness.s3.clientConfig,
      bucket: harness.bucket,
      cacheDirectory,
    });
    try {
      const scalar = async (sql: string) => (await warehouse.query(sql)).rows[0]![0];
      for (const [table, type] of Object.entries(VIEW_TYPES)) {
        expect(
          Number(await scalar(`SELECT count(*) FROM ${table} WHERE source = 'wh-validated'`)),
          table,
        ).toBe(resourcesOf(type).length);
      }
      // One export per source here, so the latest view holds each patient once, with the sandbox's gender.
      const byGender = new Map<string, number>();
      for (const patient of resourcesOf('Patient')) {
        const gender = String(patient.gender ?? 'null');
        byGender.set(gender, (byGender.get(gender) ?? 0) + 1);
      }
      const latest = await warehouse.query(
        "SELECT coalesce(gender, 'null'), count(*) FROM patient_latest WHERE source = 'wh-validated' GROUP BY 1",
      );
      expect(new Map(latest.rows.map(([gender, n]) => [String(gender), Number(n)]))).toEqual(byGender);
      // The views join on the ids the runner keys them by.
      const observationsOfCohort = await scalar(
        "SELECT count(*) FROM observation o JOIN patient p ON o.patient_id = p.id AND o.source = p.source WHERE o.source = 'wh-validated'",
      );
      expect(Number(observationsOfCohort)).toBe(resourcesOf('Observation').length);
      expect(await scalar(`SELECT DISTINCT export FROM patient WHERE source = 'wh-validated'`)).toBe(
        tokenOf(validated),
      );
    } finally {
      warehouse.close();
      await rm(cacheDirectory, { recursive: true, force: true });
    }
  });

  it("a delta adds a partition: the latest view keeps each resource once, and the deleted table lists the delta's deletions", async () => {
    // A full export, then a _since delta of the same source, as a daily schedule makes them.
    const full = await harness.exportWith({
      sourceId: 'wh-delta',
      validate: true,
      load: true,
      waitOverrideMs: 20,
    });
    // A time at which the 20-patient cohort has both unchanged patients and a deletion after it.
    const since = '2022-03-01T00:00:00.000Z';
    const delta = await harness.exportWith({
      sourceId: 'wh-delta',
      validate: true,
      load: true,
      waitOverrideMs: 20,
      input: { since },
    });
    expect([full.load?.run.status, delta.load?.run.status]).toEqual(['SUCCEEDED', 'SUCCEEDED']);
    const deltaTransactionTime = receiptOf(delta).transactionTime;
    const patients = resourcesOf('Patient');
    const changedPatients = patients.filter(
      (p) => String((p.meta as { lastUpdated: string }).lastUpdated) > since,
    );
    expect(changedPatients.length).toBeGreaterThan(0);
    expect(changedPatients.length).toBeLessThan(patients.length);
    const expectedDeletions = (Object.values(VIEW_TYPES) as ExportableType[])
      .concat(['Practitioner', 'Organization'] as ExportableType[])
      .flatMap((type) =>
        harness.sandbox.dataset.deletions({
          type,
          since,
          until: deltaTransactionTime,
          patientIndexes: cohort(),
        }),
      )
      .map((d) => `${d.type}/${d.id}`)
      .sort();
    expect(expectedDeletions.length).toBeGreaterThan(0);

    const cacheDirectory = await mkdtemp(join(tmpdir(), 'warehouse-delta-'));
    const warehouse = await openWarehouse({
      s3ClientConfig: harness.s3.clientConfig,
      bucket: harness.bucket,
      cacheDirectory,
    });
    try {
      const rows = async (sql: string) => (await warehouse.query(sql)).rows;
      const byExport = await rows(
        "SELECT export, count(*) FROM patient WHERE source = 'wh-delta' GROUP BY 1 ORDER BY 1",
      );
      expect(byExport.map(([token, n]) => [token, Number(n)])).toEqual([
        [tokenOf(full), patients.length],
        [tokenOf(delta), changedPatients.length],
      ]);
      // Every patient once; one the delta carried again comes from the delta (same lastUpdated: the newer export).
      const latest = await rows(
        "SELECT id, export FROM patient_latest WHERE source = 'wh-delta' ORDER BY id",
      );
      const changed = new Set(changedPatients.map((p) => p.id));
      expect(latest).toEqual(
        patients
          .map((p) => [p.id, changed.has(p.id) ? tokenOf(delta) : tokenOf(full)])
          .sort(([a], [b]) => (String(a) < String(b) ? -1 : 1)),
      );
      const deleted = await rows(
        "SELECT resource_type || '/' || id, export FROM deleted WHERE source = 'wh-delta' ORDER BY 1",
      );
      expect(deleted.map(([key]) => key)).toEqual(expectedDeletions);
      expect(new Set(deleted.map(([, token]) => token))).toEqual(new Set([tokenOf(delta)]));
    } finally {
      warehouse.close();
      await rm(cacheDirectory, { recursive: true, force: true });
    }
  }, 120_000);

  it('writes _LOADED.json after every part, then announces it with keys and counts only', async () => {
    const folder = folderOf(validated);
    const marker = await markerOf(validated);
    const modified = async (key: string) =>
      (
        await harness.client.send(new HeadObjectCommand({ Bucket: harness.bucket, Key: key }))
      ).LastModified!.getTime();
    const markerTime = await modified(`${folder}_LOADED.json`);
    for (const table of Object.values(marker.tables))
      for (const part of table.parts) expect(await modified(part.partKey)).toBeLessThanOrEqual(markerTime);
    const loaded = validated.emittedEvents.filter((event) => event.detailType === 'Bulk Export Loaded');
    expect(loaded).toHaveLength(1);
    expect(loaded[0]!.detail).toEqual({
      sourceId: 'wh-validated',
      exportToken: tokenOf(validated),
      bucket: harness.bucket,
      root: folder,
      loadedMarkerKey: `${folder}_LOADED.json`,
      totals: marker.totals,
    });
  });

  it('a load that cannot finish writes no _LOADED.json; a re-run writes the same marker bytes and parts', async () => {
    const folder = folderOf(validated);
    const markerKey = `${folder}_LOADED.json`;
    const before = (await harness.getText(markerKey))!;
    const marker = JSON.parse(before) as LoadedMarker;
    const partBytes = await harness.getBytes(marker.tables.patient!.parts[0]!.partKey);
    // A data file gone: its Map child fails, the load fails, and the earlier marker was removed by Plan Load.
    const dataKey = (await harness.listKeys(`${folder}type=Observation/`)).find((key) =>
      key.endsWith('.ndjson'),
    )!;
    const data = (await harness.getBytes(dataKey))!;
    await harness.client.send(new DeleteObjectCommand({ Bucket: harness.bucket, Key: dataKey }));
    const failed = await loadAgain(`${folder}_VALIDATED.json`, 'wh-validated-load-broken');
    expect(failed.run.status).toBe('FAILED');
    expect(await harness.getText(markerKey)).toBeUndefined();
    // Put back: the next load writes what the first did, byte for byte.
    await harness.client.send(new PutObjectCommand({ Bucket: harness.bucket, Key: dataKey, Body: data }));
    const again = await loadAgain(`${folder}_VALIDATED.json`, 'wh-validated-load-again');
    expect(again.run.status).toBe('SUCCEEDED');
    expect(await harness.getText(markerKey)).toBe(before);
    expect((await harness.getBytes(marker.tables.patient!.parts[0]!.partKey))!.equals(partBytes!)).toBe(true);
  });

  it("loads from _SUCCESS.json when the source's validation is off", async () => {
    expect(unvalidated.validation?.marker).toBeUndefined();
    expect(unvalidated.load?.run.status).toBe('SUCCEEDED');
    const marker = await markerOf(unvalidated);
    expect(marker.validatedMarkerKey).toBeUndefined();
    expect(marker.tables.patient!.rows).toBe(resourcesOf('Patient').length);
    const start = unvalidated.load!.run.events.find((event) => event.type === 'ExecutionStarted');
    expect(JSON.stringify(start)).toContain(`${folderOf(unvalidated)}_SUCCESS.json`);
  });

  it('refuses an export whose validation gate did not pass, and writes nothing', async () => {
    expect(gated.validation?.marker?.passed).toBe(false);
    expect(gated.load?.run).toMatchObject({ status: 'FAILED', error: 'ValidationNotPassedError' });
    expect(gated.load?.run.cause).toContain('did not pass its validation gate');
    expect(await harness.getText(`${folderOf(gated)}_LOADED.json`)).toBeUndefined();
    expect((await harness.listKeys('warehouse/')).filter((key) => key.includes('/source=wh-gated/'))).toEqual(
      [],
    );
    expect(await harness.listKeys('_work/warehouse/source=wh-gated/')).toEqual([]);
  });

  it("keeps resource content out of the load's state, history, output and marker", async () => {
    const sample = resourcesOf('Patient').slice(0, 5);
    const names = sample.flatMap((p) => {
      const name = (p.name as { family?: string; given?: string[] }[] | undefined)?.[0];
      return name?.family ? [name.family] : [];
    });
    expect(names.length).toBe(5);
    const places = [validated, unvalidated, gated].flatMap((result) => [
      { where: `${result.sourceId} load history`, text: JSON.stringify(result.load?.run.events) },
      {
        where: `${result.sourceId} load output`,
        text: JSON.stringify([result.load?.run.output, result.load?.run.cause]),
      },
    ]);
    places.push({
      where: '_LOADED.json',
      text: (await harness.getText(`${folderOf(validated)}_LOADED.json`))!,
    });
    for (const place of places) {
      expect(/"resourceType"\s*:\s*"[A-Za-z]+"\s*,\s*"id"\s*:/.test(place.text), place.where).toBe(false);
      for (const patient of sample)
        expect(place.text.includes(patient.id), `${place.where} names a patient id`).toBe(false);
      for (const name of names)
        expect(place.text.includes(`"${name}"`), `${place.where} names a patient`).toBe(false);
    }
  });
});
