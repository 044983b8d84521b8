import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LAMBDA_BUNDLE_DIR, LAMBDA_ENTRIES } from '../../infra/lambda-bundles.js';
import { LAMBDA_BUILD_OPTIONS } from '../../scripts/build-lambdas.js';

/**
 * The construct deploys dist/lambdas as it is (the global setup built it with
 * scripts/build-lambdas.ts). These run the shipped files themselves: the ESM
 * bundle loads (CommonJS dependencies get their `require`), and minification
 * keeps error names, which the ASL's `ErrorEquals` matches on.
 */
const load = async (name: keyof typeof LAMBDA_ENTRIES) =>
  (await import(pathToFileURL(join(DEFAULT_LAMBDA_BUNDLE_DIR, name, 'index.mjs')).href)) as {
    handler: (event: unknown, context: unknown) => Promise<unknown>;
  };

const context = { awsRequestId: 'test', getRemainingTimeInMillis: () => 60_000 };

describe('prebundled functions', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  it('exist for every function, minified with names kept, each one self-contained file and its source map', () => {
    expect(LAMBDA_BUILD_OPTIONS).toMatchObject({
      minify: true,
      keepNames: true,
      format: 'esm',
      external: [],
    });
    for (const name of Object.keys(LAMBDA_ENTRIES)) {
      const file = join(DEFAULT_LAMBDA_BUNDLE_DIR, name, 'index.mjs');
      expect(existsSync(`${file}.map`)).toBe(true);
      // No import of anything but Node built-ins: the AWS SDK and every dependency are inside.
      const imports = [
        ...readFileSync(file, 'utf8').matchAll(/(?:^|;)import\s*[^;"'`]*?from\s*["']([^"']+)["']/g),
      ].map((match) => match[1]);
      expect(imports).toContain('node:module');
      expect(imports.filter((specifier) => !specifier!.startsWith('node:'))).toEqual([]);
    }
  });

  it.each([
    [
      'KickOff',
      'EXPORT_BUCKET',
      'environment variable EXPORT_BUCKET is missing: expected the export bucket name',
    ],
    [
      'Jwks',
      'JWKS_KEY_ALIAS_PREFIX',
      'environment variable JWKS_KEY_ALIAS_PREFIX is missing: expected the signing key alias prefix, such as alias/fhir-bulk-export/',
    ],
  ] as const)(
    '%s loads as minified ESM and still throws errors by their names',
    async (name, variable, message) => {
      delete process.env[variable];
      const { handler } = await load(name);
      await expect(handler({ rawPath: '/' }, context)).rejects.toMatchObject({
        name: 'ConfigurationError',
        message,
      });
    },
  );
});
