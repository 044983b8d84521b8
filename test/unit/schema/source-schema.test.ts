import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { parsePipelineConfig } from '../../../infra/config.js';
import { parseRegisteredSource, parseSourceSettings } from '../../../lambdas/config.js';
import { CREDENTIAL_KEYS, SourceSettingsSchema } from '../../../lambdas/schema/source.js';
import { renderSchemas, SCHEMA_DIR } from '../../../scripts/generate-schemas.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const readJson = (path: string) =>
  JSON.parse(readFileSync(join(ROOT, path), 'utf8')) as Record<string, unknown>;

const EXAMPLES = {
  'examples/sources/hapi.source.json': 'source.schema.json',
  'examples/sources/epic-prod.registered.json': 'registered-source.schema.json',
  'infra/pipeline.config.json': 'pipeline-config.schema.json',
} as const;

const PARSERS: Record<string, (raw: unknown) => unknown> = {
  'source.schema.json': (raw) => parseSourceSettings(raw),
  'registered-source.schema.json': (raw) => parseRegisteredSource(raw),
  'pipeline-config.schema.json': (raw) => parsePipelineConfig(raw),
};

function jsonSchemaValidator(file: string) {
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  return ajv.compile(JSON.parse(readFileSync(join(SCHEMA_DIR, file), 'utf8')));
}

describe('the JSON Schemas in schemas/', () => {
  it('are what the zod schemas generate (run `npm run schemas` after changing one)', () => {
    for (const [file, text] of Object.entries(renderSchemas())) {
      expect(readFileSync(join(SCHEMA_DIR, file), 'utf8'), file).toBe(text);
    }
  });

  it.each(Object.entries(EXAMPLES))(
    '%s names its schema and passes it and the parser alike',
    (path, schemaFile) => {
      // Prepare
      const example = readJson(path);
      const validate = jsonSchemaValidator(schemaFile);
      // Act
      const valid = validate(example);
      // Assess
      expect(example.$schema).toBe(relative(join(ROOT, path, '..'), join(SCHEMA_DIR, schemaFile)));
      expect(validate.errors ?? []).toStrictEqual([]);
      expect(valid).toBe(true);
      expect(() => PARSERS[schemaFile]!(example)).not.toThrow();
    },
  );

  it.each([
    ['a misspelled key', { maxConcurency: 4 }],
    ['a setting out of range', { maxConcurrency: 0 }],
    ['a lower-case resource type', { export: { types: ['patient'] } }],
    ['a type filter without a query', { export: { typeFilters: ['Observation'] } }],
    ['an unknown level', { export: { level: 'tenant' } }],
  ])('refuses %s in editors and in the pipeline alike', (_, change) => {
    // Prepare
    const example = readJson('examples/sources/hapi.source.json');
    const broken = {
      ...example,
      ...change,
      ...('export' in change ? { export: { ...(example.export as object), ...change.export } } : {}),
    };
    // Act
    const validInEditors = jsonSchemaValidator('source.schema.json')(broken);
    // Assess
    expect(validInEditors).toBe(false);
    expect(() => parseSourceSettings(broken)).toThrow(/^source[.\s]\S* /);
  });
});

describe('round trips', () => {
  it('parsed settings are valid settings again, unchanged', () => {
    // Prepare
    const first = parseSourceSettings(readJson('examples/sources/hapi.source.json'));
    const { id, ...settings } = first;
    // Act
    const again = parseRegisteredSource({ id, clientSecret: 'fhir-bulk-export/hapi', settings });
    // Assess
    expect(again.settings).toStrictEqual(first);
  });

  it('a registry record written from CDK-style settings reads back with every default filled once', () => {
    // Prepare
    const record = readJson('examples/sources/epic-prod.registered.json');
    // Act
    const registered = parseRegisteredSource(JSON.parse(JSON.stringify(record)));
    // Assess
    expect(registered).toMatchObject({
      id: 'epic-prod',
      clientSecret: 'fhir-bulk-export/epic-prod',
      settings: {
        id: 'epic-prod',
        export: { level: 'group', groupId: 'research-cohort-2024', method: 'GET' },
        maxConcurrency: 4,
        deadlineHours: 96,
        fileLinksValidHours: 24,
      },
    });
    expect(SourceSettingsSchema.parse(record.settings).maxLineBytes).toBe(registered.settings.maxLineBytes);
  });

  it('refuses a registry record whose settings carry credentials, naming the key', () => {
    expect(() =>
      parseRegisteredSource({
        id: 'epic-prod',
        clientSecret: 's',
        settings: { fhirBaseUrl: 'https://fhir.example.org', clientId: 'x' },
      }),
    ).toThrow(
      /^source\.settings has unknown key\(s\) clientId; credentials belong in the source.s client secret, not in its settings; expected only id, description, profile, fhirBaseUrl, export,/,
    );
  });

  it('refuses a registry record whose settings name another source', () => {
    expect(() =>
      parseRegisteredSource({
        id: 'epic-prod',
        clientSecret: 's',
        settings: { id: 'epic-test', fhirBaseUrl: 'https://fhir.example.org' },
      }),
    ).toThrow(
      'source.settings.id is "epic-test" but the source id is "epic-prod"; set the id once, on the source',
    );
  });
});

/** Every TypeScript file a user runs or deploys (tests and the schema itself aside). */
function productionFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => relative(ROOT, join(entry.parentPath, entry.name)))
    .filter((path) => !path.startsWith('lambdas/schema/'));
}

describe('one definition', () => {
  const files = ['lambdas', 'infra', 'scripts'].flatMap(productionFiles);
  const settingKeys = Object.keys(SourceSettingsSchema.out.shape).filter(
    (key) => !key.startsWith('$') && key !== 'id' && key !== 'description',
  );

  it('knows the settings it looks for', () => {
    expect(settingKeys).toContain('maxConcurrency');
    expect(settingKeys).toContain('retryPassDelaySeconds');
  });

  it('no file outside lambdas/schema declares the settings shape again', () => {
    const repeats = files.filter((file) => {
      const text = readFileSync(join(ROOT, file), 'utf8');
      const declared = settingKeys.filter((key) => new RegExp(`readonly ${key}\\??:`).test(text));
      // A function's options may share a name or three with the settings (a transfer's maxLineBytes); a copy of the shape has a dozen.
      return declared.length >= 5;
    });
    expect(repeats).toStrictEqual([]);
  });

  it('no file outside lambdas/schema lists the credential keys again', () => {
    const repeats = files.filter((file) => {
      const text = readFileSync(join(ROOT, file), 'utf8');
      // An option list may name a credential or three (the token provider's clientId, scope, tokenUrl); a copy of the list names more.
      return CREDENTIAL_KEYS.filter((key) => text.includes(`'${key}'`)).length >= 4;
    });
    expect(repeats).toStrictEqual([]);
  });
});
