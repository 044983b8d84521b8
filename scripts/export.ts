/**
 * `npm run export -- --source <file.json> [options]` (see USAGE)
 *
 * Runs the real state machine locally against any FHIR server (see
 * scripts/local/cli.ts for where the data lands). Exits 0 only when every
 * file landed and was verified.
 */
import './local/node-version.js';
import { resolve } from 'node:path';
import { parseSourceSettings } from '../lambdas/config.js';
import { renderEffectiveSettings } from '../lambdas/core/effective-settings.js';
import { ExportNotResumableError } from '../lambdas/errors.js';
import { redriveExecution } from './local/aws-redrive.js';
import {
  checkExportRequest,
  chunkOption,
  DEFAULT_LOCAL_BUCKET,
  localExecutionName,
  openS3Target,
  readSourceFile,
  s3TargetOptions,
  summarize,
} from './local/cli.js';
import { parseCommandLine, resolveFromCaller, runCommand, UsageError } from './local/command.js';
import { type LocalExecutionRecord, readExecutionRecord, saveExecutionRecord } from './local/executions.js';
import { runLocalExport } from './local/local-export.js';
import { describeValidation } from './local/local-validation.js';
import { describeLoad } from './local/local-warehouse.js';
import { createProgressPrinter } from './local/progress.js';
import type { RedrivePoint } from './local/runner.js';

const USAGE = `usage: npm run export -- --source <file.json> [--since ISO|auto] [--until ISO] [--types A,B] [--group ID] [--chunk C]
                         [--bucket B] [--s3-endpoint URL | --aws-s3] [--prefix P]
       npm run export -- --source <file.json> --explain
       npm run export -- --resume <execution-name>
       npm run export -- --resume <execution-name> --state-machine-arn ARN      (on AWS: RedriveExecution)

  --source FILE      the source settings (JSON); a relative path is read from the folder you run this in
  --explain          print the source's effective settings, each with where it comes from (the source file, its
                     EHR profile and why, or the default), and exit without exporting
  --since ISO|auto   only changes since then; auto (the default): since the last fully successful
                     export of this source (none yet: everything)
  --until ISO        only changes until then
  --types A,B        these resource types only; --group ID: this Group instead of the source's own
                     (with --until, --types or --group the run does not move the watermark --since auto reads)
  --chunk patients:N|time:30d|none
                     export the cohort as several server jobs: N patients each (POST, group level), or
                     _since/_until windows; none: in one piece whatever the source says (docs/chunking.md)
  --bucket B         the bucket (default ${DEFAULT_LOCAL_BUCKET}); without --s3-endpoint or --aws-s3 it lives in the
                     embedded S3 under .local/s3/B and is created if new
  --s3-endpoint URL  any S3-compatible endpoint (credentials from the environment); the bucket must exist
  --aws-s3           real S3 (the AWS SDK's default credentials and region); the bucket must exist
  --prefix P         a key prefix for everything written
  --resume NAME      resume the failed export NAME (the execution a failed run printed) from where it failed:
                     only files without a verified result are downloaded again, into the same bucket; it must
                     be resumed before the server's file links expire (its failure receipt says until when)
  --state-machine-arn ARN  with --resume: redrive that execution on AWS instead
  --no-validate      skip the US Core validation that runs after a successful export (as the _SUCCESS.json event
                     starts it on AWS; npm run validate runs it alone, docs/validation.md)
  --no-load          skip the warehouse load (SQL on FHIR views as Parquet) that runs after the validation, or
                     after the export when validation is off (docs/warehouse.md)
Ctrl-C cancels cleanly: running downloads stop, the server job is DELETEd, open uploads are aborted, a failure
receipt says "cancelled" and the source lock is released. A second Ctrl-C exits at once and says what was left.
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
  chunk: { type: 'string' },
  resume: { type: 'string' },
  'state-machine-arn': { type: 'string' },
  explain: { type: 'boolean' },
  'no-validate': { type: 'boolean' },
  'no-load': { type: 'boolean' },
} as const;

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandLine(argv, OPTIONS);
  const localDirectory = resolve('.local');
  if (values['state-machine-arn'] !== undefined) {
    if (!values.resume)
      throw new UsageError(
        '--state-machine-arn is for --resume NAME (a new AWS export is started by the schedule or `npm run backfill`)',
      );
    return redriveOnAws(values['state-machine-arn'], values.resume);
  }
  if (values.resume !== undefined) {
    if (values.explain) throw new UsageError('--explain is for --source FILE (what a new export would use)');
    const clashing = [
      'source',
      'since',
      'until',
      'types',
      'group',
      'chunk',
      'bucket',
      's3-endpoint',
      'aws-s3',
      'prefix',
    ].filter((name) => values[name as keyof typeof values] !== undefined);
    if (clashing.length > 0) {
      throw new UsageError(
        `--resume continues an export as it was started; --${clashing.join(', --')} cannot be changed (start a new export for that)`,
      );
    }
    const record = await readExecutionRecord(localDirectory, values.resume);
    if (record.status === 'SUCCEEDED') {
      throw new UsageError(`export ${record.executionName} succeeded; there is nothing to resume`);
    }
    if (record.status === 'RUNNING' && !record.redrivePoint) {
      throw new ExportNotResumableError(
        `export ${record.executionName} never ended (it was killed, or it still runs): it has no failed state to resume from; \`npm run cancel -- --source-id ${String(record.input.sourceId)}\` cleans it up, and a fresh export (npm run export -- --source ${record.sourceFile}) takes its lock over`,
      );
    }
    if (!record.redrivePoint) {
      throw new ExportNotResumableError(
        `export ${record.executionName} cannot be resumed: it ended ${record.status.toLowerCase()} (${record.error ?? 'no error'}) and was cleaned up for good; start a fresh export: npm run export -- --source ${record.sourceFile}`,
      );
    }
    const source = await readSourceFile(record.sourceFile);
    return runExport({
      localDirectory,
      source,
      sourceFile: record.sourceFile,
      input: record.input,
      target: record.target,
      executionName: record.executionName,
      redrive: record.redrivePoint,
      validate: !values['no-validate'],
      load: !values['no-load'],
    });
  }
  if (!values.source) throw new UsageError('--source <file.json> is required (or --resume NAME)');
  if (values.explain) {
    const source = await readSourceFile(values.source);
    process.stdout.write(renderEffectiveSettings(parseSourceSettings(source.raw), source.raw));
    return 0;
  }
  const targetOptions = s3TargetOptions(values, resolve(localDirectory, 's3'));
  const request: Record<string, unknown> = { since: values.since ?? 'auto' };
  if (values.until) request.until = values.until;
  if (values.types)
    request.types = values.types
      .split(',')
      .map((type) => type.trim())
      .filter(Boolean);
  if (values.group) request.groupId = values.group;
  if (values.chunk !== undefined) request.chunk = chunkOption(values.chunk);
  checkExportRequest(request);
  const source = await readSourceFile(values.source);
  return runExport({
    localDirectory,
    source,
    sourceFile: resolveFromCaller(values.source),
    input: { sourceId: source.id, ...request },
    target: {
      ...(targetOptions.bucket ? { bucket: targetOptions.bucket } : {}),
      ...(targetOptions.s3Endpoint ? { s3Endpoint: targetOptions.s3Endpoint } : {}),
      ...(targetOptions.awsS3 ? { awsS3: true } : {}),
      ...(values.prefix ? { prefix: values.prefix } : {}),
    },
    executionName: localExecutionName(source.id),
    validate: !values['no-validate'],
    load: !values['no-load'],
  });
}

interface ExportRun {
  readonly localDirectory: string;
  readonly source: Awaited<ReturnType<typeof readSourceFile>>;
  readonly sourceFile: string;
  readonly input: Record<string, unknown>;
  readonly target: LocalExecutionRecord['target'];
  readonly executionName: string;
  readonly redrive?: RedrivePoint;
  /** Run the validation stage after a successful export (`--no-validate` turns it off). */
  readonly validate: boolean;
  /** Run the warehouse load after the validation, or the export (`--no-load` turns it off). */
  readonly load: boolean;
}

async function runExport(options: ExportRun): Promise<number> {
  const { localDirectory, source, executionName, target: where } = options;
  const target = await openS3Target({
    ...(where.bucket ? { bucket: where.bucket } : {}),
    ...(where.s3Endpoint ? { s3Endpoint: where.s3Endpoint } : {}),
    ...(where.awsS3 ? { awsS3: true } : {}),
    localDirectory: resolve(localDirectory, 's3'),
  });
  const cancel = new AbortController();
  let interrupts = 0;
  const onInterrupt = (signal: NodeJS.Signals) => {
    interrupts += 1;
    if (interrupts === 1) {
      process.stderr.write(
        `\n${signal === 'SIGINT' ? 'Ctrl-C' : signal}: cancelling export ${executionName}: stopping downloads, DELETEing the server job, releasing the lock of source ${source.id} (Ctrl-C again to exit at once)\n`,
      );
      cancel.abort();
      return;
    }
    process.stderr.write(
      `Exiting at once. Left as it was: the lock of source ${source.id} (held by ${executionName}), its server job (not DELETEd) and any open uploads. \`npm run cancel -- --source-id ${source.id}\` finishes the clean-up; the next export of ${source.id} also takes the lock over.\n`,
    );
    process.exit(130);
  };
  process.on('SIGINT', onInterrupt);
  process.on('SIGTERM', onInterrupt);
  const record = {
    executionName,
    sourceFile: options.sourceFile,
    input: options.input,
    target: where,
  };
  try {
    // Before the run: a cancel after a hard exit (a second Ctrl-C, a kill) finds the source here,
    // and a resume killed midway can still be resumed.
    await saveExecutionRecord(localDirectory, {
      ...record,
      status: 'RUNNING',
      ...(options.redrive ? { redrivePoint: options.redrive } : {}),
    });
    const logFile = resolve(localDirectory, 'logs', `export-${executionName}.ndjson`);
    process.stderr.write(
      `${options.redrive ? `Resuming export ${executionName} of source ${source.id} from "${options.redrive.stateName}"` : `Exporting source ${source.id}`} into ${target.description}\nExecution ${executionName}; logs: ${logFile}\n`,
    );
    const printer = createProgressPrinter();
    const { run, receipt, endedCleanUp, validation, load } = await runLocalExport({
      sources: [source],
      input: options.input,
      executionName,
      s3ClientConfig: target.s3ClientConfig,
      bucket: target.bucket,
      ...(where.prefix ? { prefix: where.prefix } : {}),
      logFile,
      progress: (event) => printer.onProgress(event),
      onEvent: (event) => printer.onExecutionEvent(event),
      signal: cancel.signal,
      ...(options.redrive ? { redrive: options.redrive } : {}),
      validate: options.validate,
      load: options.load,
    });
    printer.finish();
    await saveExecutionRecord(localDirectory, {
      ...record,
      status: run.status,
      ...(run.error ? { error: run.error } : {}),
      ...(run.cause ? { cause: run.cause } : {}),
      // A run that was resumable keeps its redrive point; one cleaned up for good has none.
      ...(run.redrivePoint && endedCleanUp?.resumable ? { redrivePoint: run.redrivePoint } : {}),
      endedAt: new Date().toISOString(),
    });
    if (run.status === 'ABORTED') {
      process.stderr.write(
        `Export CANCELLED: ${endedCleanUp ? endedCleanUp.reason : 'the clean-up did not run; see the log'}${endedCleanUp?.failureReceiptKey ? `\nFailure receipt: s3://${target.bucket}/${endedCleanUp.failureReceiptKey}` : ''}\nLogs: ${logFile}\n`,
      );
      return 130;
    }
    if (run.status !== 'SUCCEEDED' || !receipt) {
      const resumable = endedCleanUp?.resumable
        ? `\nIt can be resumed (the server job and every landed file are kept): npm run export -- --resume ${executionName}`
        : '';
      process.stderr.write(`Export FAILED: ${run.cause}${resumable}\nLogs: ${logFile}\n`);
      return 1;
    }
    const output = run.output as { receiptKey: string; completionMarkerKey: string; warnings?: string[] };
    process.stdout.write(
      `\n${summarize(receipt)}\n${output.warnings?.length ? `\nWarnings (the export is complete and verified): ${output.warnings.join('; ')}\n` : ''}\nReceipt: s3://${target.bucket}/${output.receiptKey}\nMarker:  s3://${target.bucket}/${output.completionMarkerKey}\nLogs:    ${logFile}\n`,
    );
    if (validation) process.stdout.write(`\n${describeValidation(validation, target.bucket)}\n`);
    if (load) process.stdout.write(`\n${describeLoad(load, target.bucket)}\n`);
    // The export landed, but a downstream stage that failed is a failed command: its marker is missing.
    if (validation && validation.run.status !== 'SUCCEEDED') return 1;
    if (load && load.run.status !== 'SUCCEEDED') return 1;
    return 0;
  } finally {
    process.off('SIGINT', onInterrupt);
    process.off('SIGTERM', onInterrupt);
    await target.close();
  }
}

async function redriveOnAws(stateMachineArn: string, execution: string): Promise<number> {
  process.stdout.write(`${await redriveExecution(stateMachineArn, execution)}\n`);
  return 0;
}

runCommand('export', USAGE, () => main(process.argv.slice(2)));
