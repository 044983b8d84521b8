import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parquetPartKey, tablePartitionPrefix } from '../../lambdas/warehouse/layout.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';
import {
  DEMO_QUERY,
  demoExportQuery,
  demoQueryReport,
  NoWarehouseError,
  openWarehouse,
  QueryError,
  renderCsv,
  renderJson,
  renderTextTable,
  syncWarehouseCache,
} from '../../scripts/local/warehouse-query.js';
import { E1, E2, E3, parquetOf, putDeltaFixtures, putPatientPart } from '../support/warehouse-fixtures.js';

const BUCKET = 'warehouse-test';

describe('the local warehouse over an embedded S3', () => {
  let s3: EmbeddedS3;
  let client: S3Client;
  let cacheDirectory: string;
  let keys: Record<string, string>;
  const location = () => ({ s3ClientConfig: s3.clientConfig, bucket: BUCKET, cacheDirectory });

  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    client = new S3Client(s3.clientConfig);
    cacheDirectory = await mkdtemp(join(tmpdir(), 'warehouse-cache-'));
    keys = await putDeltaFixtures(s3.clientConfig, BUCKET);
    // A view without last_updated: a table, but no latest view.
    await client.send(
      new PutObjectCommand({
        Bucket: BUCKET,
        Key: parquetPartKey(tablePartitionPrefix('', 'codes_only', 's1', E1), 1),
        Body: await parquetOf(['id', 'code'], [{ id: 'x', code: '123' }]),
      }),
    );
  });
  afterAll(async () => {
    client.destroy();
    await s3.close();
    await rm(cacheDirectory, { recursive: true, force: true });
  });

  const latestPatients = async () => {
    const warehouse = await openWarehouse(location());
    try {
      const result = await warehouse.query(
        'SELECT source, id, version_id, gender, given, export FROM patient_latest ORDER BY source, id, given',
      );
      return { warehouse, rows: result.rows.map((row) => row.join(' ')) };
    } finally {
      warehouse.close();
    }
  };

  it('keeps every row of each resource’s newest version and drops the deleted ones', async () => {
    const { warehouse, rows } = await latestPatients();

    expect(rows).toStrictEqual([
      `s1 a 2 male a ${E2}`, // newer last_updated; Observation a's deletion is not Patient a's
      `s1 b 2 male b1 ${E2}`, // all three rows of the newest version
      `s1 b 2 male b2 ${E2}`,
      `s1 b 2 male b3 ${E2}`,
      `s1 d 2 male d ${E3}`, // deleted in E2, re-created in E3
      `s1 e 2 female e ${E1}`, // 11:00Z beats 12:00+02:00 (10:00Z): compared as time, not text
      `s1 t 1 unknown t ${E2}`, // same instant: the newer export
      `s2 c 1 male c ${E1}`, // s1 deleted its c, not s2's
    ]);
    expect(warehouse.notes).toStrictEqual([
      'codes_only has no last_updated column: no codes_only_latest view',
    ]);
    expect(warehouse.sync).toMatchObject({ objects: 6, downloaded: 6, removed: 0 });
  });

  it('lists the tables with their columns and row counts, the partition columns included', async () => {
    const warehouse = await openWarehouse(location());
    try {
      const tables = await warehouse.tables();
      expect(tables.map((table) => [table.name, table.kind, table.rows])).toStrictEqual([
        ['codes_only', 'table', 1],
        ['patient', 'table', 15],
        ['patient_latest', 'latest', 8],
        ['deleted', 'deleted', 3],
      ]);
      expect(tables[1]!.columns.map((column) => column.name)).toStrictEqual([
        'id',
        'patient_id',
        'version_id',
        'last_updated',
        'gender',
        'given',
        'export',
        'source',
      ]);
      expect(warehouse.sync.downloaded).toBe(0); // nothing changed since the first sync
    } finally {
      warehouse.close();
    }
  });

  it('renders a result as aligned text, CSV and JSON', async () => {
    const warehouse = await openWarehouse(location());
    try {
      const result = await warehouse.query(
        "SELECT gender, count(*) AS patients FROM patient_latest WHERE gender <> 'unknown' GROUP BY 1 ORDER BY 1",
      );
      expect(renderTextTable(result)).toBe(
        ['gender  patients', '------  --------', 'female         1', 'male           6', '(2 rows)'].join(
          '\n',
        ),
      );
      expect(renderCsv(result)).toBe('gender,patients\nfemale,1\nmale,6');
      expect(JSON.parse(renderJson(result))).toStrictEqual([
        { gender: 'female', patients: 1 },
        { gender: 'male', patients: 6 },
      ]);
      await expect(warehouse.query('SELECT no_such_column FROM patient')).rejects.toThrow(QueryError);
      await expect(warehouse.query('SELECT no_such_column FROM patient')).rejects.toThrow(/no_such_column/);
      // A message that would quote a value from the data (a name) quotes none; the user's SQL stays.
      const conversion = warehouse.query('SELECT CAST(given AS INTEGER) FROM patient');
      await expect(conversion).rejects.toThrow(/^Conversion Error: Could not convert string '…' to INT32/);
      await expect(conversion).rejects.toThrow(/LINE 1: SELECT CAST\(given AS INTEGER\) FROM patient/);
    } finally {
      warehouse.close();
    }
  });

  it('the demo’s last words: its query’s table, or that nothing was loaded', async () => {
    const report = await demoQueryReport(location());
    expect(report.split('\n')).toStrictEqual([
      `Warehouse (every export in s3://${BUCKET}, newest version of each patient):`,
      `npm run query -- --bucket ${BUCKET} "${DEMO_QUERY}"`,
      '',
      'gender   patients',
      '-------  --------',
      'male            6',
      'female          1',
      'unknown         1',
      '(3 rows)',
    ]);
    // After a load, the demo shows that export's partition only: E3 holds one row, s1's re-created d.
    const one = await demoQueryReport(location(), E3);
    expect(one.split('\n')).toStrictEqual([
      "Warehouse (this export's patients; `patient_latest` has the newest version of each across exports):",
      `npm run query -- --bucket ${BUCKET} "${demoExportQuery(E3)}"`,
      '',
      'gender  patients',
      '------  --------',
      'male           1',
      '(1 row)',
    ]);
    await s3.createBucket('not-loaded');
    expect(await demoQueryReport({ ...location(), bucket: 'not-loaded' })).toBe(
      'No warehouse tables in s3://not-loaded/warehouse/: the load was off (--no-load) or loaded nothing, so there is nothing to query.',
    );
  });

  it('downloads a changed object again and removes one S3 no longer has', async () => {
    // d changes again in E3's part (same key, new content); the deleted file goes away.
    await putPatientPart(client, BUCKET, 's1', E3, [
      { id: 'd', version_id: '3', last_updated: '2026-10-04T10:00:00Z', gender: 'female', given: 'd' },
    ]);
    await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: keys.s1e2deleted }));

    const { warehouse, rows } = await latestPatients();

    expect(warehouse.sync).toMatchObject({ objects: 5, downloaded: 1, removed: 1 });
    expect(rows).toContain(`s1 d 3 female d ${E3}`);
    expect(rows).toContain(`s1 c 1 female c ${E1}`); // no deleted file lists it any more
    // The removed part's folder is gone from the cache too.
    const views = await readdir(join(cacheDirectory, BUCKET, 'warehouse'));
    expect(views.sort()).toStrictEqual(['view=codes_only', 'view=patient']);
  });

  it('a source’s own view gets a latest view from its _LOADED.json marker’s resource type, under a prefix', async () => {
    const bucket = 'own-views';
    await s3.createBucket(bucket);
    const put = (Key: string, Body: Buffer | string) =>
      client.send(new PutObjectCommand({ Bucket: bucket, Key, Body }));
    const columns = ['id', 'last_updated', 'code'];
    await put(
      parquetPartKey(tablePartitionPrefix('pipeline/', 'vital_signs', 's1', E1), 1),
      await parquetOf(columns, [{ id: 'o1', last_updated: '2026-10-01T10:00:00Z', code: 'old' }]),
    );
    await put(
      parquetPartKey(tablePartitionPrefix('pipeline/', 'vital_signs', 's1', E2), 1),
      await parquetOf(columns, [{ id: 'o1', last_updated: '2026-10-02T10:00:00Z', code: 'new' }]),
    );
    await put(
      `pipeline/source=s1/export=${E2}/_LOADED.json`,
      JSON.stringify({ tables: { vital_signs: { resource: 'Observation', rows: 1, parts: [] } } }),
    );
    await put(
      parquetPartKey(tablePartitionPrefix('pipeline/', 'deleted', 's1', E2), 1),
      await parquetOf(['resource_type', 'id'], [{ resource_type: 'Patient', id: 'o1' }]),
    );

    const warehouse = await openWarehouse({ ...location(), bucket, prefix: 'pipeline/' });
    try {
      expect(warehouse.notes).toStrictEqual([]);
      const result = await warehouse.query('SELECT id, code FROM vital_signs_latest');
      // Patient o1's deletion is not Observation o1's.
      expect(result.rows).toStrictEqual([['o1', 'new']]);
    } finally {
      warehouse.close();
    }
  });

  it('says there is no warehouse when nothing was loaded', async () => {
    await s3.createBucket('empty');
    await expect(
      syncWarehouseCache({ ...location(), bucket: 'empty' }).then(() =>
        openWarehouse({ ...location(), bucket: 'empty' }),
      ),
    ).rejects.toThrow(NoWarehouseError);
    await expect(openWarehouse({ ...location(), bucket: 'empty' })).rejects.toThrow(
      /no warehouse tables in s3:\/\/empty\/warehouse\/.*npm run export.*npm run demo/,
    );
  });
});
