/**
 * loadFile against the embedded S3 server over the sandbox's resources: each part's rows (read back by
 * DuckDB from the object S3 holds) equal the view's rows of the file's resources; a file organized by
 * patient feeds every target from one read; a deleted file becomes the deleted table; a bad line fails the
 * call with its file and line and leaves no part behind; a re-run writes the same bytes.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DELETED_COLUMNS,
  deletedRowsOfLine,
  InvalidDeletedFileError,
} from '../../../lambdas/warehouse/deleted.js';
import { DELETED_TABLE, parquetPartKey, tablePartitionPrefix } from '../../../lambdas/warehouse/layout.js';
import { type LoadFileDeps, loadFile, WarehouseLoadError } from '../../../lambdas/warehouse/load-file.js';
import type { FileLoad } from '../../../lambdas/warehouse/types.js';
import { viewsFor } from '../../../lambdas/warehouse/views.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../../scripts/local/embedded-s3.js';
import { createDataset } from '../../../scripts/sandbox/data/dataset.js';

const BUCKET = 'load-file';
const ROOT = 'source=s1/export=2026-01-01T000000.000Z/';
const views = viewsFor();
const dataset = createDataset({ patientCount: 20 });
const linesOf = (type: string) => [...dataset.lines({ type } as never)].map(String);
const partKey = (table: string, part = 1) =>
  parquetPartKey(tablePartitionPrefix('', table, 's1', '2026-01-01T000000.000Z'), part);
const expectedRows = (table: string, lines: readonly string[]) =>
  lines.reduce((sum, line) => sum + views.get(table)!.rowsOf(JSON.parse(line)).length, 0);

describe('loadFile', () => {
  let s3: EmbeddedS3;
  let client: S3Client;
  let deps: LoadFileDeps;
  let dir: string;
  let duck: Awaited<ReturnType<typeof DuckDBInstance.create>>;

  const put = (key: string, lines: readonly string[]) =>
    client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: `${lines.join('\n')}\n` }));
  const bytesOf = async (key: string) =>
    (await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToByteArray();
  const exists = async (key: string) =>
    client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })).then(
      () => true,
      () => false,
    );
  let n = 0;
  const query = async (key: string, sql: (file: string) => string) => {
    const path = join(dir, `${++n}.parquet`);
    await writeFile(path, await bytesOf(key));
    const connection = await duck.connect();
    try {
      return (await connection.runAndReadAll(sql(`read_parquet('${path}')`))).getRowObjectsJS();
    } finally {
      connection.closeSync();
    }
  };

  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    client = new S3Client(s3.clientConfig);
    // Small row groups and S3 parts, so that a part of this small cohort is a multipart upload of several.
    deps = {
      s3: client,
      store: { bucket: BUCKET },
      parquet: { rowGroupRows: 50 },
      upload: { partBytes: 4 * 1024 },
    };
    dir = await mkdtemp(join(tmpdir(), 'load-file-test-'));
    duck = await DuckDBInstance.create(':memory:');
  });
  afterAll(async () => {
    duck?.closeSync();
    client?.destroy();
    await s3?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('loads a file of one type, and one organized by patient into every table reading its types', async () => {
    const observations = linesOf('Observation');
    const patients = linesOf('Patient');
    const conditions = linesOf('Condition');
    await put(`${ROOT}type=Observation/part-0001.ndjson`, observations);
    const single = await loadFile(
      deps,
      {
        dataKey: `${ROOT}type=Observation/part-0001.ndjson`,
        kind: 'output',
        fileIndex: 0,
        resourceTypes: ['Observation'],
        targets: [{ table: 'observation', partKey: partKey('observation') }],
      },
      views,
    );
    const observationRows = expectedRows('observation', observations);
    expect(observationRows).toBeGreaterThan(100);
    expect(single).toEqual({
      dataKey: `${ROOT}type=Observation/part-0001.ndjson`,
      lines: observations.length,
      parts: [
        {
          table: 'observation',
          partKey: partKey('observation'),
          rows: observationRows,
          bytes: (await bytesOf(partKey('observation'))).length,
        },
      ],
    });
    const [count] = await query(partKey('observation'), (f) => `SELECT count(*) AS n FROM ${f}`);
    expect(count).toEqual({ n: BigInt(observationRows) });

    // Organized by patient: Patient, Observation and Condition lines interleaved; no table reads Condition here.
    const mixed = patients.flatMap((p, i) => [p, observations[i]!, conditions[i] ?? '', '']);
    await put(`${ROOT}patient-file.ndjson`, mixed);
    const loaded = await loadFile(
      deps,
      {
        dataKey: `${ROOT}patient-file.ndjson`,
        kind: 'output',
        fileIndex: 1,
        resourceTypes: ['Patient', 'Observation', 'Condition'],
        targets: [
          { table: 'patient', partKey: partKey('patient', 2) },
          { table: 'observation', partKey: partKey('observation', 2) },
        ],
      },
      views,
    );
    const nonBlank = mixed.filter((l) => l !== '');
    expect(loaded.lines).toBe(nonBlank.length);
    expect(loaded.parts.map((p) => [p.table, p.rows])).toEqual([
      ['patient', expectedRows('patient', patients)],
      ['observation', expectedRows('observation', observations.slice(0, patients.length))],
    ]);
    const ids = await query(partKey('patient', 2), (f) => `SELECT id FROM ${f} ORDER BY id`);
    expect(ids.map((r) => r.id)).toEqual(patients.map((l) => JSON.parse(l).id).sort());
  });

  it('loads a deleted file as the deleted table', async () => {
    const bundle = (urls: string[]) =>
      JSON.stringify({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: urls.map((url) => ({ request: { method: 'DELETE', url } })),
      });
    await put(`${ROOT}deleted/part-0001.ndjson`, [
      bundle(['Patient/pt-1', 'Observation/ob-7']),
      bundle(['https://fhir.example.org/r4/Condition/c.9']),
    ]);
    const item: FileLoad = {
      dataKey: `${ROOT}deleted/part-0001.ndjson`,
      kind: 'deleted',
      fileIndex: 2,
      resourceTypes: ['Bundle'],
      targets: [{ table: DELETED_TABLE, partKey: partKey(DELETED_TABLE) }],
    };
    const loaded = await loadFile(deps, item, views);
    expect(loaded.lines).toBe(2);
    expect(loaded.parts[0]!.rows).toBe(3);
    expect(
      await query(partKey(DELETED_TABLE), (f) => `SELECT resource_type, id FROM ${f} ORDER BY id`),
    ).toEqual([
      { resource_type: 'Condition', id: 'c.9' },
      { resource_type: 'Observation', id: 'ob-7' },
      { resource_type: 'Patient', id: 'pt-1' },
    ]);

    await put(`${ROOT}deleted/part-0002.ndjson`, [
      bundle(['Patient/pt-2']),
      bundle(['Patient/secret-id-123 and more']),
    ]);
    const bad = loadFile(
      deps,
      {
        ...item,
        dataKey: `${ROOT}deleted/part-0002.ndjson`,
        targets: [{ table: 'deleted', partKey: 'x.parquet' }],
      },
      views,
    );
    await expect(bad).rejects.toThrow(
      `the deleted file ${ROOT}deleted/part-0002.ndjson, line 2: entry[0].request.url is not Type/id`,
    );
    await expect(bad).rejects.not.toThrow(/secret/);
    expect(await exists('x.parquet')).toBe(false);
  });

  it('fails on a bad line with its file and line, and leaves no part behind', async () => {
    const observations = linesOf('Observation');
    // Far enough in that row groups and S3 parts were already uploaded when it fails.
    const before = [...observations, ...observations, ...observations];
    const lines = [...before, '{"resourceType":"Observation", secret', ...observations];
    await put(`${ROOT}bad.ndjson`, lines);
    const key = partKey('observation', 9);
    // Which S3 calls the load makes: the part was a multipart upload under way, and it was aborted.
    const sent: string[] = [];
    const spy = {
      send: (command: { constructor: { name: string } }) => {
        sent.push(command.constructor.name);
        return client.send(command as never);
      },
    } as unknown as S3Client;
    const failing = loadFile(
      { ...deps, s3: spy },
      {
        dataKey: `${ROOT}bad.ndjson`,
        kind: 'output',
        fileIndex: 3,
        resourceTypes: ['Observation'],
        targets: [{ table: 'observation', partKey: key }],
      },
      views,
    );
    await expect(failing).rejects.toThrow(WarehouseLoadError);
    await expect(failing).rejects.toThrow(
      `${ROOT}bad.ndjson, line ${before.length + 1}: not valid JSON (expected a FHIR resource)`,
    );
    await expect(failing).rejects.not.toThrow(/secret/);
    expect(sent).toContain('UploadPartCommand');
    expect(sent.at(-1)).toBe('AbortMultipartUploadCommand');
    expect(sent).not.toContain('CompleteMultipartUploadCommand');
    expect(await exists(key)).toBe(false);
  });

  it('writes the same bytes when the same file is loaded again', async () => {
    const item: FileLoad = {
      dataKey: `${ROOT}type=Observation/part-0001.ndjson`,
      kind: 'output',
      fileIndex: 0,
      resourceTypes: ['Observation'],
      targets: [{ table: 'observation', partKey: partKey('observation', 5) }],
    };
    await put(item.dataKey, linesOf('Observation'));
    await loadFile(deps, item, views);
    const first = await bytesOf(partKey('observation', 5));
    await loadFile(deps, item, views);
    expect(Buffer.from(await bytesOf(partKey('observation', 5))).equals(Buffer.from(first))).toBe(true);
  });
});

describe('deleted file lines', () => {
  const entry = (method: string, url: unknown) => ({ request: { method, url } });
  const line = (entries: unknown[]) =>
    JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry: entries });

  it('gives one row per entry, columns resource_type and id', () => {
    expect(DELETED_COLUMNS.map((c) => c.name)).toEqual(['resource_type', 'id']);
    expect(
      deletedRowsOfLine(line([entry('DELETE', 'Patient/a'), entry('DELETE', 'Encounter/b-1')]), 'd', 1),
    ).toEqual([
      { resource_type: 'Patient', id: 'a' },
      { resource_type: 'Encounter', id: 'b-1' },
    ]);
    expect(deletedRowsOfLine(line([]), 'd', 1)).toEqual([]);
  });

  it.each([
    ['not JSON', '{"resourceType":"Bundle",', 'not valid JSON'],
    ['not a Bundle', JSON.stringify({ resourceType: 'Patient', id: 'secret' }), 'not a Bundle'],
    ['no entry[]', JSON.stringify({ resourceType: 'Bundle' }), 'a Bundle without entry[]'],
    ['no request', line([{ resource: { id: 'secret' } }]), 'entry[0] has no request'],
    [
      'another method',
      line([entry('DELETE', 'Patient/a'), entry('PUT', 'Patient/secret')]),
      'entry[1].request.method is not DELETE',
    ],
    ['a search URL', line([entry('DELETE', 'Patient?name=secret')]), 'entry[0].request.url is not Type/id'],
    ['no URL', line([entry('DELETE', 42)]), 'entry[0].request.url is not Type/id'],
  ])('refuses a line that is %s, naming file and line, not content', (_what, text, problem) => {
    const read = () => deletedRowsOfLine(text, 'exp/deleted.ndjson', 7);
    expect(read).toThrow(InvalidDeletedFileError);
    expect(read).toThrow(`the deleted file exp/deleted.ndjson, line 7: ${problem} (expected a Bundle`);
    expect(read).not.toThrow(/secret/);
  });
});
