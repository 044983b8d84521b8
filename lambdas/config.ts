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

/** Reads a required environment variable, naming it when it is missing. */
export function requireEnv(env: NodeJS.ProcessEnv, name: string, expected: string): string {
  const value = env[name];
  if (value === undefined || value.trim() === '') {
    throw new ConfigurationError(`environment variable ${name} is missing: expected ${expected}`);
  }
  return value;
}
