/**
 * Warehouse tables as the load writes them (Parquet at the layout's keys), made with DuckDB's COPY TO so the
 * query side is tested against real Parquet files in a real (embedded) S3, without running a load.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { DuckDBInstance } from '@duckdb/node-api';
import { parquetPartKey, tablePartitionPrefix } from '../../lambdas/warehouse/layout.js';
import { quoteIdentifier, quoteLiteral } from '../../lambdas/warehouse/sql.js';

export interface PatientRow {
  readonly id: string;
  readonly version_id: string;
  readonly last_updated: string;
  readonly gender: string;
  /** One row per name: a view with forEach gives several rows per resource version. */
  readonly given: string;
}

export const E1 = '2026-11-01T000000.000Z';
export const E2 = '2026-11-02T000000.000Z';
export const E3 = '2026-11-03T000000.000Z';

/** A Parquet file with these columns (all text) and rows, as bytes. */
export async function parquetOf(
  columns: readonly string[],
  rows: readonly Record<string, string | null>[],
): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'warehouse-fixture-'));
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    const file = join(dir, 'part.parquet');
    const select =
      rows.length === 0
        ? `SELECT ${columns.map((name) => `CAST(NULL AS VARCHAR) AS ${quoteIdentifier(name)}`).join(', ')} WHERE false`
        : rows
            .map(
              (row) =>
                `SELECT ${columns
                  .map(
                    (name) =>
                      `CAST(${row[name] == null ? 'NULL' : quoteLiteral(row[name]!)} AS VARCHAR) AS ${quoteIdentifier(name)}`,
                  )
                  .join(', ')}`,
            )
            .join(' UNION ALL ');
    await connection.run(`COPY (${select}) TO ${quoteLiteral(file)} (FORMAT parquet)`);
    return await readFile(file);
  } finally {
    connection.closeSync();
    instance.closeSync();
    await rm(dir, { recursive: true, force: true });
  }
}

export const PATIENT_COLUMNS = ['id', 'patient_id', 'version_id', 'last_updated', 'gender', 'given'];

export async function putPatientPart(
  s3: S3Client,
  bucket: string,
  source: string,
  exportToken: string,
  rows: readonly PatientRow[],
): Promise<string> {
  const body = await parquetOf(
    PATIENT_COLUMNS,
    rows.map((row) => ({ ...row, patient_id: row.id })),
  );
  const key = parquetPartKey(tablePartitionPrefix('', 'patient', source, exportToken), 1);
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  return key;
}

export async function putDeletedPart(
  s3: S3Client,
  bucket: string,
  source: string,
  exportToken: string,
  rows: readonly { resource_type: string; id: string }[],
): Promise<string> {
  const body = await parquetOf(['resource_type', 'id'], rows);
  const key = parquetPartKey(tablePartitionPrefix('', 'deleted', source, exportToken), 1);
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  return key;
}

const row = (id: string, version: string, lastUpdated: string, gender: string, given = id) => ({
  id,
  version_id: version,
  last_updated: lastUpdated,
  gender,
  given,
});

/**
 * Source s1: two deltas after a first export, and a deleted file; source s2 has a patient with an id s1
 * deleted (deletions are per source).
 *
 *   a  E1 v1 female → E2 v2 male (newer last_updated)
 *   b  E1 v1 (2 names) → E2 v2 (3 names): every row of the newest version is kept
 *   c  E1 v1, deleted in E2: dropped (and s2's c is kept)
 *   d  E1 v1, deleted in E2, re-created in E3 as v2: back
 *   e  E1 11:00Z (v2) and E2 12:00+02:00 = 10:00Z (v1): the newer timestamp wins, though its text sorts lower
 *   t  E1 and E2 with the same last_updated: the newer export wins
 *   Observation a is deleted in E2: Patient a stays.
 */
export async function putDeltaFixtures(
  config: S3ClientConfig,
  bucket: string,
): Promise<Record<string, string>> {
  const s3 = new S3Client(config);
  try {
    const keys: Record<string, string> = {};
    keys.s1e1 = await putPatientPart(s3, bucket, 's1', E1, [
      row('a', '1', '2026-10-01T10:00:00Z', 'female'),
      row('b', '1', '2026-10-01T10:00:00Z', 'male', 'b1'),
      row('b', '1', '2026-10-01T10:00:00Z', 'male', 'b2'),
      row('c', '1', '2026-10-01T10:00:00Z', 'female'),
      row('d', '1', '2026-10-01T10:00:00Z', 'female'),
      row('e', '2', '2026-10-05T11:00:00Z', 'female'),
      row('t', '1', '2026-10-01T10:00:00.000Z', 'other'),
    ]);
    keys.s1e2 = await putPatientPart(s3, bucket, 's1', E2, [
      row('a', '2', '2026-10-02T10:00:00Z', 'male'),
      row('b', '2', '2026-10-02T10:00:00Z', 'male', 'b1'),
      row('b', '2', '2026-10-02T10:00:00Z', 'male', 'b2'),
      row('b', '2', '2026-10-02T10:00:00Z', 'male', 'b3'),
      row('e', '1', '2026-10-05T12:00:00+02:00', 'male'),
      row('t', '1', '2026-10-01T10:00:00Z', 'unknown'),
    ]);
    keys.s1e2deleted = await putDeletedPart(s3, bucket, 's1', E2, [
      { resource_type: 'Patient', id: 'c' },
      { resource_type: 'Patient', id: 'd' },
      { resource_type: 'Observation', id: 'a' },
    ]);
    keys.s1e3 = await putPatientPart(s3, bucket, 's1', E3, [row('d', '2', '2026-10-03T10:00:00Z', 'male')]);
    keys.s2e1 = await putPatientPart(s3, bucket, 's2', E1, [row('c', '1', '2026-10-01T10:00:00Z', 'male')]);
    return keys;
  } finally {
    s3.destroy();
  }
}
