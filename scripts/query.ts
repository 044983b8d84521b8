/**
 * `npm run query -- "SELECT gender, count(*) FROM patient_latest GROUP BY 1"` (see USAGE)
 *
 * SQL over the warehouse tables the load wrote (issue 18), with an embedded DuckDB: the same Parquet files
 * Athena reads on AWS, mirrored from S3 into .local/warehouse/ first.
 */
import './local/node-version.js';
import { resolve } from 'node:path';
import { parseCommandLine, runCommand, UsageError } from './local/command.js';
import type { TableInfo } from './local/warehouse-query.js';

// Imported once the command line is known good: the AWS SDK and DuckDB take seconds to load, which --help and
// a mistyped option need not wait for.
const loadEngine = () =>
  Promise.all([import('./local/cli.js'), import('./local/warehouse-query.js')]).then(([cli, query]) => ({
    ...cli,
    ...query,
  }));

/** The export commands' bucket in the embedded S3 (DEFAULT_LOCAL_BUCKET of scripts/local/cli.ts). */
const EXPORT_BUCKET = 'bulk-export';

/** Where `npm run demo` puts its exports; looked in when the export bucket has no warehouse. */
const DEMO_BUCKET = 'bulk-export-demo';

const USAGE = `usage: npm run query -- "SQL" [--format table|csv|json] [--bucket NAME] [--prefix PREFIX] [--s3-endpoint URL | --aws-s3]
       npm run query -- --tables

  Runs one SQL statement (DuckDB's dialect) over the warehouse tables the load wrote as Parquet under
  s3://BUCKET/[PREFIX/]warehouse/ (docs/warehouse.md). Each view is a table (patient, observation, …) with
  every export's rows and the partition columns source and export; <table>_latest keeps the newest version of
  each resource and drops the deleted ones; deleted lists the ids the exports' deleted files named.
  The objects are copied into .local/warehouse/ first (only new or changed ones).
  --tables        list the tables, their columns and row counts
  --format F      table (default, aligned text), csv or json
  --bucket NAME   default: ${EXPORT_BUCKET}, or ${DEMO_BUCKET} (the demo's) when that has no warehouse
  --prefix P      the pipeline's prefix in the bucket, if it has one
  --s3-endpoint, --aws-s3: where the bucket is (default: the embedded S3 in .local/s3)
  Exit 0: the result was printed; 1: the query failed (DuckDB's message) or there is no warehouse yet;
  2: a wrong command line.`;

const OPTIONS = {
  tables: { type: 'boolean' },
  format: { type: 'string' },
  bucket: { type: 'string' },
  prefix: { type: 'string' },
  's3-endpoint': { type: 'string' },
  'aws-s3': { type: 'boolean' },
} as const;

const FORMATS = ['table', 'csv', 'json'] as const;

async function main(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, OPTIONS, { allowPositionals: true });
  const format = (values.format ?? 'table') as (typeof FORMATS)[number];
  if (!FORMATS.includes(format)) {
    throw new UsageError(`--format must be table, csv or json (got ${JSON.stringify(values.format)})`);
  }
  if (values.tables && positionals.length > 0) {
    throw new UsageError('give either --tables or one SQL statement, not both');
  }
  if (!values.tables && positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0
        ? 'no SQL statement: give one, in quotes (npm run query -- "SELECT …"), or --tables'
        : `one SQL statement, in quotes, was expected (got ${positionals.length} arguments)`,
    );
  }
  const prefix = values.prefix ? (values.prefix.endsWith('/') ? values.prefix : `${values.prefix}/`) : '';
  const localDir = resolve('.local');
  const engine = await loadEngine();
  const { DEFAULT_LOCAL_BUCKET, openS3Target, s3TargetOptions, NoWarehouseError, openWarehouse, QueryError } =
    engine;
  const { renderCsv, renderJson, renderTextTable } = engine;
  const candidates = values.bucket ? [values.bucket] : [DEFAULT_LOCAL_BUCKET, DEMO_BUCKET];
  const target = await openS3Target(
    s3TargetOptions({ ...values, bucket: values.bucket }, resolve(localDir, 's3')),
  );
  try {
    let warehouse: import('./local/warehouse-query.js').Warehouse | undefined;
    // Without --bucket, the demo's bucket is a second guess; the message is the first bucket's.
    let firstMissing: InstanceType<typeof NoWarehouseError> | undefined;
    for (const bucket of candidates) {
      try {
        warehouse = await openWarehouse({
          s3ClientConfig: target.s3ClientConfig,
          bucket,
          prefix,
          cacheDirectory: resolve(localDir, 'warehouse'),
        });
        if (!values.bucket) process.stderr.write(`warehouse: s3://${bucket}/${prefix}warehouse/\n`);
        break;
      } catch (error) {
        if (!(error instanceof NoWarehouseError)) throw error;
        firstMissing ??= error;
      }
    }
    if (!warehouse) {
      throw candidates.length === 1
        ? firstMissing!
        : new NoWarehouseError(
            `no warehouse tables in ${candidates.map((bucket) => `s3://${bucket}/${prefix}warehouse/`).join(' or ')}: nothing has been loaded yet. Run \`npm run export\` or \`npm run demo\` first`,
          );
    }
    try {
      for (const note of warehouse.notes) process.stderr.write(`note: ${note}\n`);
      if (values.tables) {
        const tables = await warehouse.tables();
        process.stdout.write(`${formatTables(tables, format, engine)}\n`);
        return 0;
      }
      let result: Awaited<ReturnType<typeof warehouse.query>>;
      try {
        result = await warehouse.query(positionals[0]!);
      } catch (error) {
        if (!(error instanceof QueryError)) throw error;
        process.stderr.write(`query failed: ${error.message}\n`);
        return 1;
      }
      const text =
        format === 'csv'
          ? renderCsv(result)
          : format === 'json'
            ? renderJson(result)
            : renderTextTable(result);
      process.stdout.write(`${text}\n`);
      return 0;
    } finally {
      warehouse.close();
    }
  } finally {
    await target.close();
  }
}

function formatTables(
  tables: readonly TableInfo[],
  format: (typeof FORMATS)[number],
  { renderCsv, renderTextTable, rowCount }: Awaited<ReturnType<typeof loadEngine>>,
): string {
  if (format === 'json') return JSON.stringify(tables, null, 2);
  const result = {
    columns: [
      { name: 'table', type: 'VARCHAR' },
      { name: 'rows', type: 'BIGINT' },
      { name: 'columns', type: 'VARCHAR' },
    ],
    rows: tables.map((table) => [
      table.name,
      String(table.rows),
      table.columns.map((column) => `${column.name} ${column.type}`).join(', '),
    ]),
  };
  if (format === 'csv') return renderCsv(result);
  return renderTextTable(result).replace(
    /\n\(\d+ rows?\)$/,
    `\n${rowCount(tables.length).replace('row', 'table')}`,
  );
}

runCommand('query', USAGE, () => main(process.argv.slice(2)));
