import { ConfigurationError } from './errors.js';
import { parseWith } from './schema/fields.js';
import {
  type RegisteredSource,
  RegisteredSourceSchema,
  SourceFileSchema,
  type SourceSettings,
  settingsOf,
} from './schema/source.js';

export type { ExportSettings, RegisteredSource, SourceSettings } from './schema/source.js';
export { AUTH_KEYS } from './schema/source.js';

/**
 * A source's settings from a local source file (credentials may sit beside
 * them; they are read by the token minter's own parser). The shape, its
 * defaults and its messages are the schema's (lambdas/schema/source.ts).
 */
export function parseSourceSettings(raw: unknown, path = 'source'): SourceSettings {
  const file = parseWith(SourceFileSchema, raw, path);
  return settingsOf(file.id, file);
}

/** A registry record (`<prefix>_registry/sources/<id>.json`): the source as a deployed pipeline reads it. */
export function parseRegisteredSource(raw: unknown, path = 'source'): RegisteredSource {
  const record = parseWith(RegisteredSourceSchema, raw, path);
  return {
    id: record.id,
    clientSecret: record.clientSecret,
    settings: settingsOf(record.id, record.settings),
  };
}

/**
 * The settings of every source, keyed by id, from a JSON array (the `SOURCES`
 * environment variable of deployments before the registry).
 */
export function parseSourceCatalog(
  raw: string | undefined,
  variable = 'SOURCES',
): Map<string, SourceSettings> {
  if (raw === undefined || raw.trim() === '') {
    throw new ConfigurationError(
      `environment variable ${variable} is missing: expected a JSON array of sources`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigurationError(
      `environment variable ${variable} is not valid JSON: expected an array of sources`,
    );
  }
  if (!Array.isArray(parsed)) throw new ConfigurationError(`${variable} must be a JSON array of sources`);
  const catalog = new Map<string, SourceSettings>();
  parsed.forEach((entry, index) => {
    const settings = parseSourceSettings(entry, `${variable}[${index}]`);
    if (catalog.has(settings.id))
      throw new ConfigurationError(`${variable}[${index}].id ${settings.id} is a duplicate`);
    catalog.set(settings.id, settings);
  });
  return catalog;
}

/** Reads a required environment variable, naming it when it is missing. */
export function requireEnv(env: NodeJS.ProcessEnv, name: string, expected: string): string {
  const value = env[name];
  if (value === undefined || value.trim() === '') {
    throw new ConfigurationError(`environment variable ${name} is missing: expected ${expected}`);
  }
  return value;
}
