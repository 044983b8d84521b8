/**
 * Writes the JSON Schemas in `schemas/` from the zod schemas they describe,
 * so editors validate source files, registry records and the deployment
 * config with the very rules the pipeline applies. `npm run schemas` after a
 * schema change; a test fails while the committed files are stale.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { PipelineConfigSchema } from '../infra/config.js';
import { RegisteredSourceSchema, SourceFileSchema } from '../lambdas/schema/source.js';
import { PROFILE_DOC, withProfileTables } from './profile-docs.js';

const SCHEMAS = {
  'source.schema.json': { schema: SourceFileSchema, title: 'FHIR Bulk Data source (local source file)' },
  'registered-source.schema.json': {
    schema: RegisteredSourceSchema,
    title: 'FHIR Bulk Data source in a pipeline registry',
  },
  'pipeline-config.schema.json': {
    schema: PipelineConfigSchema,
    title: 'FHIR Bulk Data export pipeline config',
  },
} as const;

/** The JSON Schema documents, by file name, as they should be committed. */
export function renderSchemas(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(SCHEMAS).map(([file, { schema, title }]) => {
      // Input side: what a person writes, so settings with defaults are optional.
      const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' });
      return [file, `${JSON.stringify({ ...json, $id: file, title }, null, 2)}\n`];
    }),
  );
}

export const SCHEMA_DIR = fileURLToPath(new URL('../schemas/', import.meta.url));

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const [file, text] of Object.entries(renderSchemas())) {
    const path = join(SCHEMA_DIR, file);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
    console.log(`wrote ${path}`);
  }
  const profileDoc = fileURLToPath(new URL(`../${PROFILE_DOC}`, import.meta.url));
  writeFileSync(profileDoc, withProfileTables(readFileSync(profileDoc, 'utf8')));
  console.log(`wrote the profile tables of ${profileDoc}`);
}
