import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The Lambda bundles shipped with the package: `scripts/build-lambdas.ts`
 * writes one self-contained ESM file per function to
 * `dist/lambdas/<FunctionName>/index.mjs` at build time, and the construct
 * deploys those directories as they are. So a CDK app that imports the
 * construct needs neither esbuild nor this repository's sources and lock file.
 *
 * This module only names things: it is imported by the construct (which must
 * not pull in esbuild) and by the build script.
 */

/** The Task functions of both state machines, by the name their `${<Name>FunctionArn}` placeholders use. */
export type TaskFunctionName =
  | 'PrepareExport'
  | 'MintToken'
  | 'KickOff'
  | 'PollStatus'
  | 'PlanChunks'
  | 'MergeChunks'
  | 'DownloadFile'
  | 'CheckFiles'
  | 'VerifyFiles'
  | 'FinalizeExport'
  | 'CompleteExport'
  | 'CleanUp'
  | 'CleanUpEndedExport';

/** The validation stage's functions (infra/constructs/validation-stage.ts, validate-export.asl.json). */
export type ValidationFunctionName = 'PlanValidation' | 'ValidateFile' | 'WriteValidationReport';

/** The warehouse load's functions (infra/constructs/warehouse-stage.ts, load-warehouse.asl.json). */
export type WarehouseFunctionName = 'PlanLoad' | 'LoadWarehouseFiles' | 'WriteLoadMarker';

export type BundledFunctionName = TaskFunctionName | ValidationFunctionName | WarehouseFunctionName | 'Jwks';

/** Each bundle's entry file, relative to the package root. */
export const LAMBDA_ENTRIES: Readonly<Record<BundledFunctionName, string>> = {
  PrepareExport: 'lambdas/handlers/prepare-export.ts',
  MintToken: 'lambdas/handlers/mint-token.ts',
  KickOff: 'lambdas/handlers/kick-off.ts',
  PollStatus: 'lambdas/handlers/poll-status.ts',
  PlanChunks: 'lambdas/handlers/plan-chunks.ts',
  MergeChunks: 'lambdas/handlers/merge-chunks.ts',
  DownloadFile: 'lambdas/handlers/download-file.ts',
  CheckFiles: 'lambdas/handlers/check-files.ts',
  VerifyFiles: 'lambdas/handlers/verify-files.ts',
  FinalizeExport: 'lambdas/handlers/finalize-export.ts',
  CompleteExport: 'lambdas/handlers/complete-export.ts',
  CleanUp: 'lambdas/handlers/clean-up.ts',
  CleanUpEndedExport: 'lambdas/handlers/clean-up-ended-export.ts',
  PlanValidation: 'lambdas/handlers/plan-validation.ts',
  ValidateFile: 'lambdas/handlers/validate-file.ts',
  WriteValidationReport: 'lambdas/handlers/write-validation-report.ts',
  PlanLoad: 'lambdas/handlers/plan-load.ts',
  LoadWarehouseFiles: 'lambdas/handlers/load-warehouse-files.ts',
  WriteLoadMarker: 'lambdas/handlers/write-load-marker.ts',
  Jwks: 'infra/jwks-function/handler.ts',
};

/** The package root (this file is `<root>/infra/lambda-bundles.ts`). */
export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Where the build writes the bundles, and where the construct takes them from by default. */
export const DEFAULT_LAMBDA_BUNDLE_DIR = join(PACKAGE_ROOT, 'dist', 'lambdas');

/** Where the ASL files live by default. */
export const DEFAULT_STATE_MACHINE_DIR = join(PACKAGE_ROOT, 'state-machines');

/**
 * The directory Lambda gets for a function. Checked here, at synth, so a
 * missing build says what to run instead of CDK's "Cannot find asset".
 */
export function bundleDirectory(bundleRoot: string, name: BundledFunctionName): string {
  const directory = join(bundleRoot, name);
  if (!existsSync(join(directory, 'index.mjs'))) {
    throw new Error(
      `BulkExportPipeline: no Lambda bundle at ${join(directory, 'index.mjs')}; run \`npm run build:lambdas\` (or pass lambdaBundleDirectory)`,
    );
  }
  return directory;
}
