import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Store } from '../../lambdas/adapters/s3-store.js';
import { createSourceRegistry } from '../../lambdas/adapters/source-registry.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';
import { listAllKeys } from '../workflow/support/s3-keys.js';
import { plainEnv, runCommand } from './support/command.js';

const BUCKET = 'registry-bucket';
const PREFIX = 'pipeline/';
const EPIC = {
  id: 'epic',
  clientSecret: 'fhir-bulk-export/epic',
  settings: { fhirBaseUrl: 'https://fhir.epic.example.org/api/FHIR/R4', export: { types: ['Patient'] } },
};

/** A one-column ViewDefinition over Observation. */
const view = (name: string, path: string) => ({
  resourceType: 'ViewDefinition',
  name,
  resource: 'Observation',
  status: 'active',
  select: [{ column: [{ name: 'id', path }] }],
});

/**
 * `npm run sources` as a process against the embedded S3: what it writes is
 * what the Lambdas' registry reads.
 */
describe('npm run sources', () => {
  let s3: EmbeddedS3;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    dir = await mkdtemp(join(tmpdir(), 'cli-sources-'));
    env = plainEnv({ AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' });
  }, 60_000);
  afterAll(async () => {
    await s3?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const sources = (...args: string[]) =>
    runCommand('sources.ts', [...args, '--bucket', BUCKET, '--prefix', PREFIX, '--endpoint', s3.endpoint], {
      cwd: dir,
      env,
    });
  const registry = () =>
    createSourceRegistry({
      store: createS3Store({ s3: new S3Client(s3.clientConfig), bucket: BUCKET }),
      prefix: PREFIX,
    });

  it('puts a registration the Lambdas read, and a second put of the same file changes nothing', async () => {
    // Prepare
    await writeFile(join(dir, 'epic.json'), JSON.stringify(EPIC));
    // Act
    const first = await sources('put', 'epic.json');
    const second = await sources('put', 'epic.json');
    // Assess
    const where = `s3://${BUCKET}/${PREFIX}_registry/sources/epic.json`;
    expect(first).toMatchObject({
      code: 0,
      stderr: '',
      stdout: `Registered source epic at ${where}; the functions read it within SOURCE_CACHE_SECONDS.\n`,
    });
    expect(second).toMatchObject({
      code: 0,
      stdout: `Source epic is registered as given already (${where}); nothing changed.\n`,
    });
    const registered = await registry().registration('epic');
    expect(registered.clientSecret).toBe('fhir-bulk-export/epic');
    expect(registered.settings).toMatchObject({
      id: 'epic',
      maxConcurrency: 4,
      export: { types: ['Patient'] },
    });
  });

  it('lists and shows what is registered', async () => {
    // Prepare
    await writeFile(
      join(dir, 'cerner.json'),
      JSON.stringify({
        ...EPIC,
        id: 'cerner',
        settings: { fhirBaseUrl: 'https://fhir.cerner.example.org/r4' },
      }),
    );
    await sources('put', 'epic.json');
    await sources('put', 'cerner.json');
    // Act
    const listed = await sources('list');
    const shown = await sources('show', 'cerner');
    // Assess
    expect(listed).toMatchObject({
      code: 0,
      stdout: 'cerner\thttps://fhir.cerner.example.org/r4\nepic\thttps://fhir.epic.example.org/api/FHIR/R4\n',
    });
    expect({ code: shown.code, record: JSON.parse(shown.stdout) }).toEqual({
      code: 0,
      record: { ...EPIC, id: 'cerner', settings: { fhirBaseUrl: 'https://fhir.cerner.example.org/r4' } },
    });
  });

  it('removes a registration; removing it again says there is nothing to remove', async () => {
    // Prepare
    await writeFile(join(dir, 'gone.json'), JSON.stringify({ ...EPIC, id: 'gone' }));
    await sources('put', 'gone.json');
    // Act
    const first = await sources('remove', 'gone');
    const second = await sources('remove', 'gone');
    const shown = await sources('show', 'gone');
    // Assess
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^Removed source gone \(/);
    expect(second).toMatchObject({ code: 0, stdout: expect.stringMatching(/nothing removed\.\n$/) });
    expect(shown).toMatchObject({
      code: 1,
      stderr: `No source gone is registered: s3://${BUCKET}/${PREFIX}_registry/sources/gone.json does not exist.\n`,
    });
    await expect(registry().get('gone')).rejects.toThrow(/^unknown sourceId "gone": no registration at/);
  });

  it.each([
    [
      { ...EPIC, settings: { ...EPIC.settings, export: { level: 'grp' } } },
      'registration.settings.export.level must be one of system, patient, group (got "grp")',
    ],
    [
      { ...EPIC, settings: { ...EPIC.settings, clientId: 'abc' } },
      "registration.settings has unknown key(s) clientId; credentials belong in the source's client secret, not in its settings; expected only id, description, profile, fhirBaseUrl, export, serverSupports, scopeSyntax, scopeCasing, extraScopes, tokenLifetimeSeconds, maxConcurrency, filesPerBatch, retryAfterCeilingSeconds, deadlineHours, maxConsecutiveTransientErrors, maxClockSkewSeconds, allowInsecureHttp, invalidLinePolicy, maxLineBytes, fileLinksValidHours, retryPassDelaySeconds, serverFileErrors, trustedOrigins, auth, validation, warehouse",
    ],
    [{ id: 'bad', settings: EPIC.settings }, 'registration.clientSecret is required: a non-empty string'],
    // Issue 18: a source's views compile at registration, with the runner's own error.
    [
      { ...EPIC, settings: { ...EPIC.settings, warehouse: { views: [view('bp', 'id.(((')] } } },
      "registration.settings.warehouse.views ViewDefinition \"bp\": select[0].column[0].path: the FHIRPath does not parse: line: 1; column: 3; message: mismatched input '(' expecting {'is', 'as', 'in', 'contains', '$this', '$index', '$total', 'sort', '`sort`', 'asc', 'desc', IDENTIFIER, DELIMITEDIDENTIFIER}",
    ],
    [
      { ...EPIC, settings: { ...EPIC.settings, warehouse: { views: [view('patient_latest', 'id')] } } },
      'registration.settings.warehouse.views views[0] is named "patient_latest": the warehouse keeps "deleted" and names ending in _latest for itself (the deleted ids\' table, the latest-version views); expected another name',
    ],
  ])('refuses a mistake in the file, naming the field, and writes nothing: %#', async (record, message) => {
    // Prepare
    await writeFile(join(dir, 'bad.json'), JSON.stringify({ ...record, id: 'bad' }));
    // Act
    const result = await sources('put', 'bad.json');
    // Assess
    expect(result).toMatchObject({
      code: 1,
      stdout: '',
      stderr: `sources failed: InvalidRegistration: bad.json: ${message}\n`,
    });
    expect(
      await listAllKeys(new S3Client(s3.clientConfig), BUCKET, `${PREFIX}_registry/sources/bad`),
    ).toEqual([]);
  });

  it('refuses a file that is not JSON', async () => {
    await writeFile(join(dir, 'broken.json'), '{ "id": ');
    const result = await sources('put', 'broken.json');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^sources failed: InvalidRegistration: broken\.json is not valid JSON: /);
  });

  it.each([
    [
      ['show', '../epic'],
      'sources: show: "../epic" is not a source id (1-63 lower-case letters, digits or dashes)',
    ],
    [['put'], 'sources: put needs a file'],
    [['list', 'extra'], 'sources: list takes no argument'],
    [['publish'], 'sources: unknown command "publish": expected put, list, show or remove'],
  ])('says what is wrong with the command line %j, exit 2', async (args, line) => {
    const result = await sources(...args);
    expect({ code: result.code, first: result.stderr.split('\n')[0], stdout: result.stdout }).toEqual({
      code: 2,
      first: line,
      stdout: '',
    });
  });

  it('--help prints the usage and touches nothing', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'cli-sources-help-'));
    try {
      const result = await runCommand('sources.ts', ['--help'], { cwd: empty, env });
      expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
      expect(result.stdout).toMatch(/^usage: npm run sources -- <command> --bucket B/);
      expect(await readdir(empty)).toEqual([]);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });
});
