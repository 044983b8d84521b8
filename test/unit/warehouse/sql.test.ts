import { describe, expect, it } from 'vitest';
import {
  createLatestViewSql,
  duckdbTableViewSql,
  latestViewSql,
  missingLatestColumns,
  quoteIdentifier,
} from '../../../lambdas/warehouse/sql.js';
import { viewsFor } from '../../../lambdas/warehouse/views.js';

const COLUMNS = ['id', 'patient_id', 'version_id', 'last_updated', 'gender'];

describe('latest view SQL', () => {
  it('DuckDB: names every column, ranks by last_updated as a timestamp then the export partition', () => {
    const sql = latestViewSql('patient', COLUMNS, 'duckdb', { resourceType: 'Patient' });

    for (const column of COLUMNS) expect(sql).toContain(`t."${column}"`);
    expect(sql).toContain(
      'rank() OVER (PARTITION BY t."source", t."id" ORDER BY TRY_CAST(t."last_updated" AS TIMESTAMPTZ) DESC NULLS LAST, t."export" DESC)',
    );
    expect(sql).toContain('FROM "patient" t');
    expect(sql).toContain(`d."resource_type" = 'Patient'`);
    expect(sql).toContain('d."export" >= r."export"');
    expect(sql).not.toContain('$path');
    expect(sql).not.toMatch(/row_number/i);
  });

  it('Athena: the export token from $path, from_iso8601_timestamp, tables in the Glue database', () => {
    const sql = createLatestViewSql('observation', COLUMNS, 'athena', {
      resourceType: 'Observation',
      database: 'fhir_warehouse',
    });

    expect(sql.split('\n')[0]).toBe('CREATE OR REPLACE VIEW "fhir_warehouse"."observation_latest" AS');
    for (const column of COLUMNS) expect(sql).toContain(`t."${column}"`);
    expect(sql).toContain(`regexp_extract(t."$path", '/export=([^/]+)/', 1) AS "export"`);
    expect(sql).toContain(`regexp_extract(d."$path", '/export=([^/]+)/', 1) >= r."export"`);
    expect(sql).toContain('try(from_iso8601_timestamp(t."last_updated")) DESC NULLS LAST');
    expect(sql).toContain('FROM "fhir_warehouse"."observation" t');
    expect(sql).toContain('FROM "fhir_warehouse"."deleted" d');
    expect(sql).not.toContain('TIMESTAMPTZ');
  });

  it('refuses a table without id or last_updated, naming what is missing', () => {
    expect(missingLatestColumns(['id', 'code'])).toStrictEqual(['last_updated']);
    expect(() => latestViewSql('codes', ['code'], 'duckdb', { resourceType: 'Observation' })).toThrow(
      'table codes has no id or last_updated column',
    );
  });

  it('every default view can have a latest view', () => {
    for (const [table, view] of viewsFor()) {
      const columns = view.columns.map((column) => column.name);
      expect({ table, missing: missingLatestColumns(columns) }).toStrictEqual({ table, missing: [] });
    }
  });

  it('quotes identifiers and literals so a name cannot end the statement', () => {
    expect(quoteIdentifier('we"ird')).toBe('"we""ird"');
    expect(latestViewSql('p', ['id', 'last_updated'], 'duckdb', { resourceType: "O'Brien" })).toContain(
      `'O''Brien'`,
    );
    expect(duckdbTableViewSql('patient', "/tmp/it's/warehouse")).toContain(
      `read_parquet('/tmp/it''s/warehouse/view=patient/**/*.parquet', hive_partitioning = true, union_by_name = true`,
    );
  });
});
