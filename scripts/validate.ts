/**
 * `npm run validate -- --export s3://<bucket>/[<prefix>/]source=<id>/export=<…>/` (see USAGE)
 *
 * Validates an export already landed against US Core 6.1.0, with the same
 * state machine the `_SUCCESS.json` event starts on AWS
 * (state-machines/validate-export.asl.json) and the real handlers, and prints
 * the table: per type, resources checked, % conformant and the top 3 rules.
 */
import './local/node-version.js';
import { resolve } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { createS3Store } from '../lambdas/adapters/s3-store.js';
import { renderValidationTable } from '../lambdas/validation/report.js';
import { openS3Target, s3TargetOptions } from './local/cli.js';
import { parseCommandLine, runCommand, UsageError } from './local/command.js';
import { parseExportUrl, runLocalValidation } from './local/local-validation.js';

const USAGE = `usage: npm run validate -- --export s3://BUCKET/[PREFIX/]source=ID/export=TIME/ [--s3-endpoint URL | --aws-s3] [--json]

  Validates every resource of a complete export (its _SUCCESS.json) against US Core 6.1.0 and writes, in the
  export folder, _validation/summary.json, _validation/issues/type=<T>/part-NNNN.ndjson and _VALIDATED.json
  (docs/validation.md). The source's validation policy (report or gate) comes from its registration.
  --export URL    the export folder, as npm run export prints it (s3://bulk-export/source=…/export=…/)
  --s3-endpoint, --aws-s3: where the bucket is (default: the embedded S3 in .local/s3)
  --json          print _VALIDATED.json instead of the table
  Exit 0: validated and passed; 3: validated, but the source's gate did not pass (the reason is printed);
  2: a wrong command line; 1: the validation failed (no _VALIDATED.json is written).`;

const OPTIONS = {
  export: { type: 'string' },
  's3-endpoint': { type: 'string' },
  'aws-s3': { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandLine(argv, OPTIONS);
  if (!values.export)
    throw new UsageError('--export is required: the s3:// URL of the export folder to validate');
  const { bucket, prefix, folder } = parseExportUrl(values.export);
  const target = await openS3Target(s3TargetOptions({ ...values, bucket }, resolve('.local', 's3')));
  try {
    const markerKey = `${folder}_SUCCESS.json`;
    const s3 = new S3Client(target.s3ClientConfig);
    try {
      const store = createS3Store({ s3, bucket });
      if (!(await store.head(markerKey))) {
        const partial = await store.head(`${folder}_PARTIAL.json`);
        throw new Error(
          partial
            ? `s3://${bucket}/${folder} is a partial export (_PARTIAL.json): only complete exports are validated`
            : `no _SUCCESS.json in s3://${bucket}/${folder} (${target.description}): not a complete export`,
        );
      }
    } finally {
      s3.destroy();
    }
    process.stderr.write(`validating s3://${bucket}/${folder} against US Core 6.1.0…\n`);
    const result = await runLocalValidation({
      s3ClientConfig: target.s3ClientConfig,
      bucket,
      prefix,
      markerKey,
    });
    if (result.run.status !== 'SUCCEEDED') {
      throw new Error(
        `the validation ${result.run.status.toLowerCase()}: ${result.run.error ?? ''} ${result.run.cause ?? ''}`.trim(),
      );
    }
    if (!result.marker || !result.summary) {
      process.stdout.write(`validation is turned off for this source (validation.enabled: false)\n`);
      return 0;
    }
    if (values.json) {
      process.stdout.write(`${JSON.stringify(result.marker, null, 2)}\n`);
    } else {
      process.stdout.write(`${renderValidationTable(result.summary)}\n`);
      process.stdout.write(
        `${result.marker.passed ? 'passed' : `NOT PASSED: ${result.marker.reason}`} (${result.marker.mode}); report: s3://${bucket}/${result.marker.summaryKey}\n`,
      );
    }
    return result.marker.passed ? 0 : 3;
  } finally {
    await target.close();
  }
}

runCommand('validate', USAGE, () => main(process.argv.slice(2)));
