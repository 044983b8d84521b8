import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReceiptFile } from '../../../lambdas/core/receipt.js';
import { tablePartitionPrefix } from '../../../lambdas/warehouse/layout.js';
import {
  type LoadBatch,
  type LoadBatchItem,
  LoadIncompleteError,
  LoadInputError,
  type LoadPlan,
  loadWarehouseFiles,
  planLoad,
  ValidationNotPassedError,
  writeLoadMarker,
} from '../../../lambdas/warehouse/stage.js';
import type { FileLoad, FileLoaded } from '../../../lambdas/warehouse/types.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../../scripts/local/embedded-s3.js';
import { createLocalRuntime, type LocalRuntime } from '../../../scripts/local/runtime.js';
import { listAllKeys } from '../../workflow/support/s3-keys.js';

/**
 * Plan Load against the embedded S3, from hand-made markers and file indexes: which files become which
 * tables' parts, what it removes before a load (and what it leaves alone), and when it refuses; then
 * what Load Warehouse Files and Write Load Marker make of the files' results.
 */
const BUCKET = 'plan-load';
const TOKEN = '2026-11-26T110000.123Z';
const OTHER_TOKEN = '2026-11-25T110000.000Z';

const BP_VIEW = {
  resourceType: 'ViewDefinition',
  name: 'blood_pressure',
  resource: 'Observation',
  status: 'active',
  select: [{ column: [{ name: 'id', path: 'getResourceKey()', type: 'id' }] }],
};

const source = (id: string, extra: Record<string, unknown> = {}) => ({
  raw: { id, fhirBaseUrl: 'https://fhir.example.org/r4', clientId: 'c', kmsKeyId: 'alias/k', ...extra },
});

const file = (
  root: string,
  kind: ReceiptFile['kind'],
  type: string,
  part: number,
  lines: number,
  extra = {},
) =>
  ({
    kind,
    type,
    key: `${root}${kind === 'output' ? '' : `${kind}/`}type=${type}/part-${String(part).padStart(4, '0')}.ndjson`,
    bytes: lines * 100,
    lines,
    sha256: '0'.repeat(64),
    invalidLines: 0,
    ...extra,
  }) satisfies ReceiptFile;

describe('Plan Load', () => {
  let s3: EmbeddedS3;
  let client: S3Client;
  let local: LocalRuntime;
  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    client = new S3Client(s3.clientConfig);
    local = createLocalRuntime({
      sources: [
        source('validated'),
        source('unvalidated', { validation: { enabled: false } }),
        source('own-views', { validation: { enabled: false }, warehouse: { views: [BP_VIEW] } }),
        source('not-loaded', { warehouse: { enabled: false } }),
      ],
      s3ClientConfig: s3.clientConfig,
      bucket: BUCKET,
    });
    await local.publishSources();
  }, 60_000);
  afterAll(async () => {
    await local?.close();
    client?.destroy();
    await s3?.close();
  });

  const put = (key: string, body: unknown) =>
    client.send(
      new PutObjectCommand({
        Bucket: BUCKET,
        Key: key,
        Body: typeof body === 'string' ? body : JSON.stringify(body),
      }),
    );
  const keys = (prefix: string) => listAllKeys(client, BUCKET, prefix);
  const json = async <T>(key: string) => (await local.runtime.store.getJson<T>(key)) as T;

  /** An export folder with its receipt, file index, `_SUCCESS.json` and (optionally) `_VALIDATED.json`. */
  async function exportFolder(sourceId: string, files: (root: string) => ReceiptFile[], passed?: boolean) {
    const root = `source=${sourceId}/export=${TOKEN}/`;
    const index = files(root);
    await put(`${root}_receipt.files.ndjson`, index.map((entry) => `${JSON.stringify(entry)}\n`).join(''));
    await put(`${root}_receipt.json`, {
      complete: true,
      fileIndex: { key: `${root}_receipt.files.ndjson`, files: index.length, sha256: '0'.repeat(64) },
    });
    await put(`${root}_SUCCESS.json`, {
      sourceId,
      transactionTime: '2026-11-26T11:00:00.123Z',
      receiptKey: `${root}_receipt.json`,
      complete: true,
    });
    if (passed !== undefined) {
      await put(`${root}_VALIDATED.json`, {
        sourceId,
        completionMarkerKey: `${root}_SUCCESS.json`,
        passed,
        conformantPercent: passed ? 100 : 80,
        ...(passed ? {} : { reason: '80% of the checked resources are conformant; the gate needs 100%' }),
      });
    }
    return root;
  }

  const itemsOf = async (result: Awaited<ReturnType<typeof planLoad>>) => {
    if (!result.enabled) throw new Error(`not planned: ${result.reason}`);
    const items = await json<LoadBatchItem[]>(result.itemsKey);
    const batches = await Promise.all(items.map((item) => json<LoadBatch>(item.batchKey)));
    return {
      items,
      files: batches.flatMap((batch) => batch.files),
      plan: await json<LoadPlan>(`${result.load.workPrefix}plan.json`),
    };
  };

  it('makes one part per table a file feeds, numbered per table in file-index order; deleted files go to the deleted table', async () => {
    // Prepare
    const root = await exportFolder(
      'validated',
      (r) => [
        file(r, 'output', 'Patient', 1, 3),
        file(r, 'output', 'Device', 1, 2),
        file(r, 'output', 'Patient', 2, 3),
        file(r, 'output', 'Encounter', 1, 0),
        file(r, 'error', 'OperationOutcome', 1, 1),
        file(r, 'output', 'Observation', 1, 5),
        file(r, 'deleted', 'Bundle', 1, 1),
      ],
      true,
    );
    const part = (table: string, n: number) =>
      `${tablePartitionPrefix('', table, 'validated', TOKEN)}part-000${n}.parquet`;
    // Act
    const result = await planLoad(local.runtime, { bucket: BUCKET, key: `${root}_VALIDATED.json` });
    // Assess
    const { items, files, plan } = await itemsOf(result);
    expect(result).toMatchObject({ enabled: true, files: 4, batches: 1, load: { bucket: BUCKET, root } });
    expect(items).toEqual([
      { batch: 0, batchKey: expect.stringMatching(/batches\/000000\.json$/), files: 4 },
    ]);
    expect(files).toEqual([
      {
        dataKey: `${root}type=Patient/part-0001.ndjson`,
        kind: 'output',
        fileIndex: 0,
        resourceTypes: ['Patient'],
        targets: [{ table: 'patient', partKey: part('patient', 1) }],
      },
      {
        dataKey: `${root}type=Patient/part-0002.ndjson`,
        kind: 'output',
        fileIndex: 2,
        resourceTypes: ['Patient'],
        targets: [{ table: 'patient', partKey: part('patient', 2) }],
      },
      {
        dataKey: `${root}type=Observation/part-0001.ndjson`,
        kind: 'output',
        fileIndex: 5,
        resourceTypes: ['Observation'],
        targets: [{ table: 'observation', partKey: part('observation', 1) }],
      },
      {
        dataKey: `${root}deleted/type=Bundle/part-0001.ndjson`,
        kind: 'deleted',
        fileIndex: 6,
        resourceTypes: ['Bundle'],
        targets: [{ table: 'deleted', partKey: part('deleted', 1) }],
      },
    ]);
    expect(plan).toMatchObject({
      sourceId: 'validated',
      exportToken: TOKEN,
      validatedMarkerKey: `${root}_VALIDATED.json`,
      completionMarkerKey: `${root}_SUCCESS.json`,
      files: 4,
    });
    expect(plan.tables.map(({ table }) => table)).toEqual([
      'patient',
      'encounter',
      'condition',
      'observation',
      'medication_request',
      'immunization',
      'procedure',
      'allergy_intolerance',
      'document_reference',
      'deleted',
    ]);
  });

  it("removes what an earlier load left in this export's partitions of the tables it writes, and nothing else", async () => {
    // Prepare
    const root = await exportFolder('unvalidated', (r) => [file(r, 'output', 'Patient', 1, 3)]);
    const mine = tablePartitionPrefix('', 'patient', 'unvalidated', TOKEN);
    const otherExport = tablePartitionPrefix('', 'patient', 'unvalidated', OTHER_TOKEN);
    const otherTable = tablePartitionPrefix('', 'immunization', 'unvalidated', TOKEN);
    await put(`${mine}part-0001.parquet`, 'stale');
    await put(`${mine}part-0009.parquet`, 'stale');
    await put(`${otherExport}part-0001.parquet`, 'an earlier export');
    await put(`${otherTable}part-0001.parquet`, 'not written by this load');
    await put(`${root}_LOADED.json`, { stale: true });
    // Act
    const result = await planLoad(local.runtime, { bucket: BUCKET, key: `${root}_SUCCESS.json` });
    // Assess
    expect(result.enabled).toBe(true);
    expect(await keys(mine)).toEqual([]);
    expect(await keys(otherExport)).toEqual([`${otherExport}part-0001.parquet`]);
    expect(await keys(otherTable)).toEqual([`${otherTable}part-0001.parquet`]);
    expect(await keys(`${root}_LOADED.json`)).toEqual([]);
  });

  it("adds a source's own views, and a file organized by patient feeds every table its types have, in view order", async () => {
    // Prepare
    const organized = {
      organizedBy: 'Patient',
      resourceTypeCounts: { Parameters: 1, Patient: 1, Observation: 4, Device: 1 },
    };
    const root = await exportFolder('own-views', (r) => [
      { ...file(r, 'output', 'Patient', 1, 7, organized), key: `${r}organizedBy=Patient/part-0001.ndjson` },
    ]);
    // Act
    const { files, plan } = await itemsOf(
      await planLoad(local.runtime, { bucket: BUCKET, key: `${root}_SUCCESS.json` }),
    );
    // Assess
    expect(files).toHaveLength(1);
    expect(files[0]!.resourceTypes).toEqual(['Device', 'Observation', 'Patient']);
    expect(files[0]!.targets.map(({ table }) => table)).toEqual(['patient', 'observation', 'blood_pressure']);
    expect(plan.sourceViews).toEqual([BP_VIEW]);
    expect(plan.tables.at(-1)).toEqual({ table: 'blood_pressure', resource: 'Observation' });
  });

  it('refuses an export that did not pass its validation gate, naming why, and writes or removes nothing', async () => {
    // Prepare
    const root = await exportFolder('validated', (r) => [file(r, 'output', 'Patient', 1, 3)], false);
    const mine = tablePartitionPrefix('', 'patient', 'validated', TOKEN);
    await put(`${mine}part-0001.parquet`, 'kept');
    const before = await keys('');
    // Act
    const error = await planLoad(local.runtime, { bucket: BUCKET, key: `${root}_VALIDATED.json` }).catch(
      (e) => e,
    );
    // Assess
    expect(error).toBeInstanceOf(ValidationNotPassedError);
    expect(error.message).toBe(
      `the export ${root} did not pass its validation gate (80% of the checked resources are conformant; the gate needs 100%): it is not loaded; change the source's validation policy or fix the data, then validate again`,
    );
    expect(await keys('')).toEqual(before);
  });

  it('does not start from _SUCCESS.json when the source validates first, nor at all when its load is off', async () => {
    // Prepare
    const validated = await exportFolder('validated', (r) => [file(r, 'output', 'Patient', 1, 3)], true);
    const off = await exportFolder('not-loaded', (r) => [file(r, 'output', 'Patient', 1, 3)], true);
    // Act
    const bySuccess = await planLoad(local.runtime, { bucket: BUCKET, key: `${validated}_SUCCESS.json` });
    const turnedOff = await planLoad(local.runtime, { bucket: BUCKET, key: `${off}_VALIDATED.json` });
    // Assess
    expect(bySuccess).toEqual({
      enabled: false,
      sourceId: 'validated',
      reason: "the source's validation is on: the load starts from _VALIDATED.json",
    });
    expect(turnedOff).toEqual({
      enabled: false,
      sourceId: 'not-loaded',
      reason: "the source's warehouse.enabled is false",
    });
  });

  it.each([
    [`source=validated/export=${TOKEN}/_PARTIAL.json`, /a partial export's _PARTIAL\.json is never loaded/],
    [`source=validated/export=${OTHER_TOKEN}/_VALIDATED.json`, /^no validation marker at s3:\/\/plan-load\//],
  ])('refuses %s', async (key, message) => {
    const error = await planLoad(local.runtime, { bucket: BUCKET, key }).catch((e) => e);
    expect(error).toBeInstanceOf(LoadInputError);
    expect(error.message).toMatch(message);
  });

  it('a retried batch skips the files it loaded; the marker waits for every file, then sums them', async () => {
    // Prepare
    const root = await exportFolder('unvalidated', (r) => [
      file(r, 'output', 'Patient', 1, 3),
      file(r, 'output', 'Patient', 2, 3),
    ]);
    const result = await planLoad(local.runtime, { bucket: BUCKET, key: `${root}_SUCCESS.json` });
    if (!result.enabled) throw new Error(result.reason);
    const [item] = await json<LoadBatchItem[]>(result.itemsKey);
    const calls: string[] = [];
    let failOn: string | undefined;
    // Stands in for the Parquet writer: this test is about which files the stage hands it and what it keeps.
    const loader = async (_: unknown, load: FileLoad): Promise<FileLoaded> => {
      calls.push(load.dataKey);
      if (load.dataKey === failOn) throw new Error('the Lambda was stopped');
      return {
        dataKey: load.dataKey,
        lines: 3,
        parts: load.targets.map(({ table, partKey }) => ({ table, partKey, rows: 3, bytes: 100 })),
      };
    };
    failOn = `${root}type=Patient/part-0002.ndjson`;
    // Act
    const first = await loadWarehouseFiles(local.runtime, loader, { load: result.load, item: item! }).catch(
      (e) => e,
    );
    const early = await writeLoadMarker(local.runtime, { load: result.load }).catch((e) => e);
    failOn = undefined;
    const retried = await loadWarehouseFiles(local.runtime, loader, { load: result.load, item: item! });
    const written = await writeLoadMarker(local.runtime, { load: result.load });
    // Assess
    expect(first.message).toBe('the Lambda was stopped');
    expect(early).toBeInstanceOf(LoadIncompleteError);
    expect(early.message).toBe(
      `1 of the 2 data files of ${root} were loaded; no _LOADED.json is written for an unfinished load`,
    );
    expect(calls).toEqual([
      `${root}type=Patient/part-0001.ndjson`,
      `${root}type=Patient/part-0002.ndjson`,
      `${root}type=Patient/part-0002.ndjson`,
    ]);
    expect(retried).toEqual({ batch: 0, files: 2, rows: 6 });
    expect(written).toEqual({
      loadedMarkerKey: `${root}_LOADED.json`,
      totals: { files: 2, parts: 2, rows: 6, bytes: 200 },
    });
    const marker = await json<{ tables: Record<string, { rows: number; parts: unknown[] }> }>(
      `${root}_LOADED.json`,
    );
    expect(marker.tables.patient).toMatchObject({ resource: 'Patient', rows: 6 });
    expect(marker.tables.encounter).toEqual({ resource: 'Encounter', rows: 0, parts: [] });
    expect(await keys(result.load.workPrefix)).toEqual([]);
  });
});
