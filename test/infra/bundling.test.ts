import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { afterEach, describe, expect, it } from 'vitest';
import { LAMBDA_BUNDLING } from '../../infra/bulk-export-pipeline.js';

/**
 * The template tests skip bundling; this bundles real handlers with the
 * construct's esbuild options and runs them. It guards two things synth
 * cannot show: the ESM bundle loads (CommonJS dependencies get their
 * `require`), and minification keeps error names, which the ASL's
 * `ErrorEquals` matches on.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

async function bundle(
  entry: string,
): Promise<{ handler: (event: unknown, context: unknown) => Promise<unknown> }> {
  const outfile = join(mkdtempSync(join(tmpdir(), 'bundle-')), 'index.mjs');
  await build({
    entryPoints: [join(ROOT, entry)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: LAMBDA_BUNDLING.target,
    mainFields: [...LAMBDA_BUNDLING.mainFields],
    minify: LAMBDA_BUNDLING.minify,
    keepNames: LAMBDA_BUNDLING.keepNames,
    banner: { js: LAMBDA_BUNDLING.banner },
    logLevel: 'silent',
  });
  return import(pathToFileURL(outfile).href);
}

const context = { awsRequestId: 'test', getRemainingTimeInMillis: () => 60_000 };

describe('bundled handlers', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  it.each([
    [
      'lambdas/handlers/kick-off.ts',
      'EXPORT_BUCKET',
      'environment variable EXPORT_BUCKET is missing: expected the export bucket name',
    ],
    [
      'infra/jwks-function/handler.ts',
      'JWKS_KEY_IDS',
      'environment variable JWKS_KEY_IDS is missing: expected a JSON array of KMS key ARNs',
    ],
  ])('%s loads as minified ESM and still throws errors by their names', async (entry, variable, message) => {
    delete process.env[variable];
    const { handler } = await bundle(entry);
    await expect(handler({ rawPath: '/' }, context)).rejects.toMatchObject({
      name: 'ConfigurationError',
      message,
    });
  });
});
