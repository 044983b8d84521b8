import { describe, expect, it } from 'vitest';
import type { JsonStore } from '../../../lambdas/adapters/s3-store.js';
import { createSourceRegistry } from '../../../lambdas/adapters/source-registry.js';
import { parseRegisteredSource } from '../../../lambdas/config.js';
import { ConfigurationError } from '../../../lambdas/errors.js';
import { createDownloadFileHandler } from '../../../lambdas/handlers/download-file.js';
import type { InvocationContext } from '../../../lambdas/middleware.js';
import type { Runtime } from '../../../lambdas/runtime.js';
import type { ExportContext, FileItem } from '../../../lambdas/state.js';
import { registryOf } from '../../support/source-registry.js';

const KEY = 'exports/_registry/sources/epic.json';
const EPIC = {
  id: 'epic',
  clientSecret: 'arn:aws:secretsmanager:us-east-1:111122223333:secret:fhir-bulk-export/epic-AbCdEf',
  settings: { fhirBaseUrl: 'https://fhir.example.org/api/FHIR/R4/', export: { types: ['Patient'] } },
};

/** A bucket in memory that counts reads: the registry's cache is what is under test. */
function bucket(objects: Record<string, unknown>) {
  const reads: string[] = [];
  const store: Pick<JsonStore, 'bucket' | 'getJson'> = {
    bucket: 'export-bucket',
    getJson: async <T>(key: string) => {
      reads.push(key);
      return structuredClone(objects[key]) as T | undefined;
    },
  };
  return { store, reads, objects };
}

describe('the source registry', () => {
  it('reads a registration with the settings parsed and their defaults applied', async () => {
    // Prepare
    const { store } = bucket({ [KEY]: EPIC });
    // Act
    const registered = await createSourceRegistry({ store, prefix: 'exports' }).registration('epic');
    // Assess
    expect(registered.clientSecret).toBe(EPIC.clientSecret);
    expect(registered.settings).toMatchObject({
      id: 'epic',
      fhirBaseUrl: 'https://fhir.example.org/api/FHIR/R4',
      maxConcurrency: 4,
      export: { level: 'system', types: ['Patient'], method: 'GET' },
    });
  });

  it('reuses a registration for SOURCE_CACHE_SECONDS, then reads it again', async () => {
    // Prepare
    let clock = new Date('2026-05-04T03:00:00Z');
    const { store, reads, objects } = bucket({ [KEY]: EPIC });
    const registry = createSourceRegistry({ store, prefix: 'exports', cacheSeconds: 60, now: () => clock });
    await registry.get('epic');
    objects[KEY] = { ...EPIC, settings: { ...EPIC.settings, maxConcurrency: 9 } };
    // Act
    clock = new Date(clock.getTime() + 59_000);
    const cached = await registry.get('epic');
    clock = new Date(clock.getTime() + 2_000);
    const fresh = await registry.get('epic');
    // Assess
    expect([cached.maxConcurrency, fresh.maxConcurrency]).toEqual([4, 9]);
    expect(reads).toEqual([KEY, KEY]);
  });

  it('does not keep a miss: a source registered a moment later is found at once', async () => {
    // Prepare
    const { store, reads, objects } = bucket({});
    const registry = createSourceRegistry({ store, prefix: 'exports' });
    const missing = await registry.get('epic').catch((error: Error) => error);
    objects[KEY] = EPIC;
    // Act
    const found = await registry.get('epic');
    // Assess
    expect(missing).toEqual(
      new ConfigurationError(`unknown sourceId "epic": no registration at s3://export-bucket/${KEY}`),
    );
    expect(found.id).toBe('epic');
    expect(reads).toEqual([KEY, KEY]);
  });

  it.each([
    ['../epic', '"../epic"'],
    ['Epic', '"Epic"'],
    ['', '""'],
    ['a'.repeat(64), `"${'a'.repeat(64)}"`],
  ])('refuses the id %j without reading S3', async (sourceId, shown) => {
    // Prepare
    const { store, reads } = bucket({ [KEY]: EPIC });
    // Act
    const refused = await createSourceRegistry({ store, prefix: 'exports' })
      .get(sourceId)
      .catch((error: Error) => error);
    // Assess
    expect(refused).toEqual(
      new ConfigurationError(
        `sourceId ${shown} is not a source id: expected 1-63 lower-case letters, digits or dashes, starting with a letter or digit`,
      ),
    );
    expect(reads).toEqual([]);
  });

  it('refuses an object whose id is not the one its key names', async () => {
    // Prepare
    const { store } = bucket({ [KEY]: { ...EPIC, id: 'cerner' } });
    // Act
    const refused = await createSourceRegistry({ store, prefix: 'exports' })
      .get('epic')
      .catch((error: Error) => error);
    // Assess
    expect(refused).toEqual(
      new ConfigurationError(`s3://export-bucket/${KEY}: id is "cerner", expected "epic" (the key's id)`),
    );
  });
});

describe('parseRegisteredSource (the registry record)', () => {
  it.each([
    [{ ...EPIC, clientSecret: undefined }, 'registration.clientSecret is required: a non-empty string'],
    [
      { ...EPIC, extra: 1 },
      'registration has unknown key(s) extra; expected only id, clientSecret, settings',
    ],
    [{ ...EPIC, settings: [] }, 'registration.settings must be a JSON object (got an array)'],
    [
      { ...EPIC, settings: { ...EPIC.settings, clientId: 'abc' } },
      "registration.settings has unknown key(s) clientId; credentials belong in the source's client secret, not in its settings; expected only id, description, profile, fhirBaseUrl, export, serverSupports, scopeSyntax, scopeCasing, extraScopes, tokenLifetimeSeconds, maxConcurrency, filesPerBatch, retryAfterCeilingSeconds, deadlineHours, maxConsecutiveTransientErrors, maxClockSkewSeconds, allowInsecureHttp, invalidLinePolicy, maxLineBytes, fileLinksValidHours, retryPassDelaySeconds, serverFileErrors, trustedOrigins, auth, validation, warehouse",
    ],
    [
      { ...EPIC, settings: { ...EPIC.settings, id: 'cerner' } },
      'registration.settings.id is "cerner" but the source id is "epic"; set the id once, on the source',
    ],
    [
      { ...EPIC, settings: { ...EPIC.settings, export: { level: 'grp' } } },
      'registration.settings.export.level must be one of system, patient, group (got "grp")',
    ],
    [
      { ...EPIC, id: 'Epic' },
      'registration.id must be 1-63 lower-case letters, digits or dashes, starting with a letter or digit',
    ],
  ])('names the field and what was expected: %#', (raw, message) => {
    expect(() => parseRegisteredSource(raw, 'registration')).toThrow(new ConfigurationError(message));
  });

  it('accepts a $schema reference for editors', () => {
    expect(parseRegisteredSource({ $schema: '../schemas/source.schema.json', ...EPIC }).id).toBe('epic');
  });
});

describe('Download File and the line ceiling', () => {
  it('refuses a source whose maxLineBytes exceeds MAX_LINE_BYTES, naming both', async () => {
    // Prepare: nothing else of the runtime is reached.
    const runtime = {
      sources: registryOf({ ...EPIC.settings, id: 'epic', maxLineBytes: 128 * 1024 * 1024 }),
      maxLineBytes: 64 * 1024 * 1024,
    } as Partial<Runtime> as Runtime;
    const event = {
      file: { index: 0 } as FileItem,
      export: { sourceId: 'epic', workPrefix: '_work/' } as ExportContext,
      requiresAccessToken: true,
      urlsKey: 'urls.json',
      sealedToken: 'sealed',
      transfer: { checkpoint: null },
    };
    // Act
    const refused = await createDownloadFileHandler(runtime)(event, {} as InvocationContext).catch(
      (error: Error) => error,
    );
    // Assess
    expect(refused).toEqual(
      new ConfigurationError(
        "source epic allows lines of 134217728 bytes (its maxLineBytes) but Download File is sized for lines of at most 67108864 bytes (the pipeline's maxLineBytes, MAX_LINE_BYTES): lower the source's maxLineBytes or raise the pipeline's",
      ),
    );
  });
});
