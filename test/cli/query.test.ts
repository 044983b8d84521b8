import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';
import { putDeltaFixtures } from '../support/warehouse-fixtures.js';
import { plainEnv, runCommand } from './support/command.js';

/** `npm run query` as a user runs it, in a folder whose .local/s3 holds an export bucket with a warehouse. */
describe('npm run query', () => {
  let dir: string;
  let empty: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cli-query-'));
    empty = await mkdtemp(join(tmpdir(), 'cli-query-empty-'));
    // The embedded S3 the command will start keeps its files here: fill them first, then stop it.
    const s3 = await startEmbeddedS3({ directory: join(dir, '.local', 's3') });
    try {
      await s3.createBucket('bulk-export');
      await putDeltaFixtures(s3.clientConfig, 'bulk-export');
    } finally {
      await s3.close();
    }
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
    await rm(empty, { recursive: true, force: true });
  });

  const query = (args: readonly string[], cwd = dir) =>
    runCommand('query.ts', args, { cwd, env: plainEnv() });

  it('prints a query’s result as a table, then as CSV: twice in a row, no process left', async () => {
    const sql = 'SELECT gender, count(*) AS patients FROM patient_latest GROUP BY 1 ORDER BY 1';
    const expected = [
      'gender   patients',
      '-------  --------',
      'female          1',
      'male            6',
      'unknown         1',
      '(3 rows)',
      '',
    ].join('\n');

    const first = await query([sql]);
    expect({ code: first.code, stdout: first.stdout }).toStrictEqual({ code: 0, stdout: expected });
    expect(first.stderr).toBe('warehouse: s3://bulk-export/warehouse/\n');
    // Again, as CSV: the cache is already there (nothing to download), the embedded S3 starts again.
    const second = await query([sql, '--format', 'csv']);
    expect({ code: second.code, stdout: second.stdout }).toStrictEqual({
      code: 0,
      stdout: 'gender,patients\nfemale,1\nmale,6\nunknown,1\n',
    });
    // The embedded S3 each run started (its files in this folder) ended with it.
    const { stdout: processes } = await promisify(execFile)('ps', ['-eo', 'args']);
    expect(processes.split('\n').filter((line) => line.includes(join(dir, '.local', 's3')))).toStrictEqual(
      [],
    );
  });

  it('lists the tables with their columns and row counts', async () => {
    const tables = await query(['--tables']);
    expect(tables.code).toBe(0);
    expect(tables.stdout).toMatch(/^patient\s+15\s+id VARCHAR, patient_id VARCHAR, .*source VARCHAR$/m);
    expect(tables.stdout).toMatch(/^patient_latest\s+8\s+id VARCHAR, .*, source VARCHAR, export VARCHAR$/m);
    expect(tables.stdout).toMatch(/^deleted\s+3\s+resource_type VARCHAR, id VARCHAR/m);
    expect(tables.stdout).toMatch(/\(3 tables\)\n$/);
  });

  it('--help prints the usage and exits 0', async () => {
    const result = await query(['--help']);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(/^usage: npm run query -- "SQL"/);
  });

  it('a bad query: exit 1 with DuckDB’s message naming the column', async () => {
    const result = await query(['SELECT no_such_column FROM patient']);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/query failed: Binder Error: Referenced column "no_such_column" not found/);
  });

  it('a wrong command line: exit 2 with one line saying what was wrong', async () => {
    const unknown = await query(['--no-such-option']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.split('\n')[0]).toBe(`query: Unknown option '--no-such-option'`);
    const format = await query(['SELECT 1', '--format', 'xml']);
    expect(format.code).toBe(2);
    expect(format.stderr.split('\n')[0]).toBe('query: --format must be table, csv or json (got "xml")');
    const none = await query([]);
    expect(none.code).toBe(2);
    expect(none.stderr.split('\n')[0]).toMatch(/^query: no SQL statement/);
  });

  it('no warehouse yet: says to run an export or the demo first', async () => {
    const result = await query(['SELECT 1'], empty);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /no warehouse tables in s3:\/\/bulk-export\/warehouse\/ or s3:\/\/bulk-export-demo\/warehouse\/: nothing has been loaded yet\. Run `npm run export` or `npm run demo` first/,
    );
  });
});
