/**
 * `npm run export -- --source <file.json> [options]` (see USAGE)
 *
 * Runs the real state machine locally against any FHIR server (see
 * scripts/local/cli.ts for where the data lands). Exits 0 only when every
 * file landed and was verified.
 */
import './local/node-version.js';
import { resolve } from 'node:path';
import {
  checkExportRequest,
  DEFAULT_LOCAL_BUCKET,
  localExecutionName,
  openS3Target,
  readSourceFile,
  s3TargetOptions,
  summarize,
} from './local/cli.js';
import { parseCommandLine, runCommand, UsageError } from './local/command.js';
import { runLocalExport } from './local/local-export.js';
import { createProgressPrinter } from './local/progress.js';

const USAGE = `usage: npm run export -- --source <file.json> [--since ISO|auto] [--until ISO] [--types A,B] [--group ID]
                         [--bucket B] [--s3-endpoint URL | --aws-s3] [--prefix P]

  --source FILE      the source settings (JSON); a relative path is read from the folder you run this in
  --since ISO|auto   only changes since then; auto (the default): since the last fully successful
                     export of this source (none yet: everything)
  --until ISO        only changes until then
  --types A,B        these resource types only; --group ID: this Group instead of the source's own
                     (with --until, --types or --group the run does not move the watermark --since auto reads)
  --bucket B         the bucket (default ${DEFAULT_LOCAL_BUCKET}); without --s3-endpoint or --aws-s3 it lives in the
                     embedded S3 under .local/s3/B and is created if new
  --s3-endpoint URL  any S3-compatible endpoint (credentials from the environment); the bucket must exist
  --aws-s3           real S3 (the AWS SDK's default credentials and region); the bucket must exist
  --prefix P         a key prefix for everything written
Local state (.local/s3/<bucket>, one log per run in .local/logs/export-<execution>.ndjson) is kept
in .local/ of the folder it runs in: the project folder under npm run.`;

const OPTIONS = {
  source: { type: 'string' },
  bucket: { type: 'string' },
  's3-endpoint': { type: 'string' },
  'aws-s3': { type: 'boolean' },
  prefix: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  types: { type: 'string' },
  group: { type: 'string' },
} as const;

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandLine(argv, OPTIONS);
  if (!values.source) throw new UsageError('--source <file.json> is required');
  const localDirectory = resolve('.local');
  const targetOptions = s3TargetOptions(values, resolve(localDirectory, 's3'));
  const request: Record<string, unknown> = { since: values.since ?? 'auto' };
  if (values.until) request.until = values.until;
  if (values.types)
    request.types = values.types
      .split(',')
      .map((type) => type.trim())
      .filter(Boolean);
  if (values.group) request.groupId = values.group;
  checkExportRequest(request);
  const source = await readSourceFile(values.source);
  const input: Record<string, unknown> = { sourceId: source.id, ...request };

  const target = await openS3Target(targetOptions);
  try {
    const executionName = localExecutionName(source.id);
    const logFile = resolve(localDirectory, 'logs', `export-${executionName}.ndjson`);
    process.stderr.write(
      `Exporting source ${source.id} into ${target.description}\nExecution ${executionName}; logs: ${logFile}\n`,
    );
    const printer = createProgressPrinter();
    const { run, receipt } = await runLocalExport({
      sources: [source],
      input,
      executionName,
      s3ClientConfig: target.s3ClientConfig,
      bucket: target.bucket,
      ...(values.prefix ? { prefix: values.prefix } : {}),
      logFile,
      progress: (event) => printer.onProgress(event),
      onEvent: (event) => printer.onExecutionEvent(event),
    });
    printer.finish();
    if (run.status !== 'SUCCEEDED' || !receipt) {
      process.stderr.write(`Export FAILED: ${run.cause}\nLogs: ${logFile}\n`);
      return 1;
    }
    const output = run.output as { receiptKey: string; completionMarkerKey: string };
    process.stdout.write(
      `\n${summarize(receipt)}\n\nReceipt: s3://${target.bucket}/${output.receiptKey}\nMarker:  s3://${target.bucket}/${output.completionMarkerKey}\nLogs:    ${logFile}\n`,
    );
    return 0;
  } finally {
    await target.close();
  }
}

runCommand('export', USAGE, () => main(process.argv.slice(2)));
