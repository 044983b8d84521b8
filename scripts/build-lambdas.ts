/**
 * Bundles every Lambda of the pipeline into `dist/lambdas/<FunctionName>/index.mjs`
 * (`npm run build:lambdas`; run by `npm run synth` and by the infra tests'
 * global setup). The construct deploys these files as they are, so what was
 * tested is what ships, and another CDK app can use the construct without
 * bundling TypeScript from this repository.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type BuildOptions, build } from 'esbuild';
import { DEFAULT_LAMBDA_BUNDLE_DIR, LAMBDA_ENTRIES, PACKAGE_ROOT } from '../infra/lambda-bundles.js';

/** How every function is bundled (exported so a test can check the options that matter). */
export const LAMBDA_BUILD_OPTIONS = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node24',
  mainFields: ['module', 'main'],
  minify: true,
  // Error names are the ASL's ErrorEquals contract (`this.name = this.constructor.name`): never mangle them.
  keepNames: true,
  sourcemap: true,
  sourcesContent: false,
  // Bundle the AWS SDK too: the version we tested, not the runtime's.
  external: [],
  // CommonJS dependencies call require(); give the ESM bundle one.
  banner: {
    js: "import { createRequire as __bulkExportCreateRequire } from 'node:module'; const require = __bulkExportCreateRequire(import.meta.url);",
  },
  outExtension: { '.js': '.mjs' },
  logLevel: 'warning',
} as const satisfies BuildOptions;

export async function buildLambdas(outdir = DEFAULT_LAMBDA_BUNDLE_DIR): Promise<void> {
  // A function renamed or removed must not leave a stale bundle behind for the construct to pick up.
  rmSync(outdir, { recursive: true, force: true });
  await build({
    ...LAMBDA_BUILD_OPTIONS,
    entryPoints: Object.entries(LAMBDA_ENTRIES).map(([name, entry]) => ({
      in: join(PACKAGE_ROOT, entry),
      out: `${name}/index`,
    })),
    outdir,
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const started = Date.now();
  await buildLambdas();
  console.log(`Lambda bundles in ${DEFAULT_LAMBDA_BUNDLE_DIR} (${Date.now() - started} ms)`);
}
