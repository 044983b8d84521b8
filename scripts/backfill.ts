/**
 * `npm run backfill -- --source <file.json> --from ISO --to ISO …` (locally, one export per window, in order)
 * `npm run backfill -- --state-machine-arn ARN --source-id ID --from … --to …` (on AWS: one execution per window)
 * (see USAGE)
 *
 * Windows run one after another: a source has one export at a time (the
 * per-source lock, and Epic and Oracle Health allow no more). On AWS each
 * window's execution name is derived from the source and the window, so
 * starting the same backfill twice never exports a window twice.
 */
import './local/node-version.js';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { DescribeExecutionCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { executionNameForWindow, splitIntoWindows } from '../lambdas/core/execution-input.js';
import { InvalidExecutionInputError } from '../lambdas/errors.js';
import {
  checkExportRequest,
  chunkOption,
  openS3Target,
  parseWindow,
  readSourceFile,
  s3TargetOptions,
} from './local/cli.js';
import { parseCommandLine, runCommand, UsageError } from './local/command.js';
import { runLocalExport } from './local/local-export.js';

const USAGE = `usage: npm run backfill -- --source <file.json> --from ISO --to ISO [--window 30d] [--types A,B] [--chunk C]
                           [--bucket B] [--s3-endpoint URL | --aws-s3]
       npm run backfill -- --state-machine-arn ARN --source-id ID --from ISO --to ISO [--window 30d] [--types A,B]

  Locally (--source; a relative path is read from the folder you run this in): one export per window, in
  order, into the embedded S3 (.local/s3/<bucket>) unless --s3-endpoint or --aws-s3 is given; logs in
  .local/logs/backfill-<execution>-<run>.ndjson. On AWS (--state-machine-arn): one execution per window.
  --window: 30d (the default), 12h, 1.5d, …
  --chunk patients:N|time:7d|none: each window's export as several server jobs (docs/chunking.md).`;

const OPTIONS = {
  source: { type: 'string' },
  'source-id': { type: 'string' },
  'state-machine-arn': { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  window: { type: 'string', default: '30d' },
  types: { type: 'string' },
  chunk: { type: 'string' },
  bucket: { type: 'string' },
  's3-endpoint': { type: 'string' },
  'aws-s3': { type: 'boolean' },
} as const;

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandLine(argv, OPTIONS);
  if (!values.from || !values.to) throw new UsageError('--from ISO and --to ISO are required');
  const onAws = values['state-machine-arn'] !== undefined;
  if (onAws === (values.source !== undefined)) {
    throw new UsageError('give either --source <file.json> (locally) or --state-machine-arn ARN (on AWS)');
  }
  if (onAws && !values['source-id']) throw new UsageError('--source-id is required with --state-machine-arn');
  const localDirectory = resolve('.local');
  const targetOptions = s3TargetOptions(values, resolve(localDirectory, 's3'));
  const windows = windowsOf(values.from, values.to, parseWindow(values.window));
  const types = values.types
    ?.split(',')
    .map((type) => type.trim())
    .filter(Boolean);
  if (types) checkExportRequest({ types });
  // Each window in chunks of its own (a window of a 200,000-patient Group is still too big for Epic).
  const chunk = values.chunk === undefined ? undefined : chunkOption(values.chunk);
  if (chunk !== undefined) checkExportRequest({ chunk });
  const extra = { ...(types ? { types } : {}), ...(chunk === undefined ? {} : { chunk }) };
  process.stderr.write(`${windows.length} window(s) from ${values.from} to ${values.to}\n`);

  if (onAws) return backfillOnAws(values['state-machine-arn']!, values['source-id']!, windows, extra);

  const source = await readSourceFile(values.source!);
  const target = await openS3Target(targetOptions);
  // A window's execution name is the same every time it runs; its log must not gather every run.
  const runId = randomUUID().slice(0, 8);
  try {
    for (const [index, window] of windows.entries()) {
      const executionName = executionNameForWindow(source.id, window.since, window.until);
      const logFile = resolve(localDirectory, 'logs', `backfill-${executionName}-${runId}.ndjson`);
      const { run, receipt } = await runLocalExport({
        sources: [source],
        input: { sourceId: source.id, ...window, ...extra },
        executionName,
        s3ClientConfig: target.s3ClientConfig,
        bucket: target.bucket,
        logFile,
      });
      const label = `window ${index + 1}/${windows.length} ${window.since} → ${window.until}`;
      if (run.status !== 'SUCCEEDED' || !receipt) {
        process.stderr.write(
          `${label}: FAILED: ${run.cause}\nLogs: ${logFile}\nLater windows were not started.\n`,
        );
        return 1;
      }
      process.stdout.write(
        `${label}: ${receipt.totals.resources} resources in ${receipt.totals.files} files\n`,
      );
    }
    return 0;
  } finally {
    await target.close();
  }
}

function windowsOf(from: string, to: string, days: number) {
  try {
    return splitIntoWindows(from, to, days);
  } catch (error) {
    if (error instanceof InvalidExecutionInputError) throw new UsageError(error.message);
    throw error;
  }
}

async function backfillOnAws(
  stateMachineArn: string,
  sourceId: string,
  windows: readonly { since: string; until: string }[],
  extra: { readonly types?: readonly string[]; readonly chunk?: unknown },
): Promise<number> {
  const sfn = new SFNClient({});
  for (const [index, window] of windows.entries()) {
    const name = executionNameForWindow(sourceId, window.since, window.until);
    let executionArn: string;
    try {
      const started = await sfn.send(
        new StartExecutionCommand({
          stateMachineArn,
          name,
          input: JSON.stringify({ sourceId, ...window, ...extra }),
        }),
      );
      executionArn = started.executionArn!;
    } catch (error) {
      if ((error as Error).name !== 'ExecutionAlreadyExists') throw error;
      // Same name, same window: Step Functions keeps names for 90 days, so this window already ran or runs.
      executionArn = `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`;
      process.stderr.write(`window ${index + 1}: execution ${name} already exists; following it\n`);
    }
    for (;;) {
      const described = await sfn.send(new DescribeExecutionCommand({ executionArn }));
      if (described.status === 'SUCCEEDED') break;
      if (described.status !== 'RUNNING' && described.status !== 'PENDING_REDRIVE') {
        process.stderr.write(
          `window ${index + 1} (${name}) ended ${described.status}: ${described.cause ?? ''}\n`,
        );
        return 1;
      }
      await new Promise((resolve) => setTimeout(resolve, 30_000));
    }
    process.stdout.write(`window ${index + 1}/${windows.length} (${name}) succeeded\n`);
  }
  return 0;
}

runCommand('backfill', USAGE, () => main(process.argv.slice(2)));
