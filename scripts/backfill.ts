/**
 * `npm run backfill -- --source <file.json> --from ISO --to ISO --window 30d [--types A,B]
 *   [--bucket B] [--s3-endpoint URL]`                       (locally, one export per window, in order)
 * `npm run backfill -- --state-machine-arn ARN --source-id ID --from … --to … --window 30d`
 *                                                           (on AWS: one execution per window)
 *
 * Windows run one after another: a source has one export at a time (the
 * per-source lock, and Epic and Oracle Health allow no more). On AWS each
 * window's execution name is derived from the source and the window, so
 * starting the same backfill twice never exports a window twice.
 */
import './local/node-version.js';
import { parseArgs } from 'node:util';
import { DescribeExecutionCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { executionNameForWindow, splitIntoWindows } from '../lambdas/core/execution-input.js';
import { openS3Target, parseWindow, readSourceFile } from './local/cli.js';
import { runLocalExport } from './local/local-export.js';

const USAGE = `usage: npm run backfill -- --source <file.json> --from ISO --to ISO --window 30d [--types A,B] [--bucket B] [--s3-endpoint URL]
       npm run backfill -- --state-machine-arn ARN --source-id ID --from ISO --to ISO --window 30d [--types A,B]`;

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      source: { type: 'string' },
      'source-id': { type: 'string' },
      'state-machine-arn': { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      window: { type: 'string', default: '30d' },
      types: { type: 'string' },
      bucket: { type: 'string' },
      's3-endpoint': { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help || !values.from || !values.to || (!values.source && !values['state-machine-arn'])) {
    process.stderr.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  const windows = splitIntoWindows(values.from, values.to, parseWindow(values.window));
  const types = values.types
    ?.split(',')
    .map((type) => type.trim())
    .filter(Boolean);
  process.stderr.write(`${windows.length} window(s) from ${values.from} to ${values.to}\n`);

  if (values['state-machine-arn']) {
    const sourceId = values['source-id'];
    if (!sourceId) throw new Error('--source-id is required with --state-machine-arn');
    return backfillOnAws(values['state-machine-arn'], sourceId, windows, types);
  }

  const source = await readSourceFile(values.source!);
  const target = await openS3Target({
    ...(values.bucket ? { bucket: values.bucket } : {}),
    ...(values['s3-endpoint'] ? { s3Endpoint: values['s3-endpoint'] } : {}),
  });
  try {
    for (const [index, window] of windows.entries()) {
      const { run, receipt } = await runLocalExport({
        sources: [source],
        input: { sourceId: source.id, ...window, ...(types ? { types } : {}) },
        executionName: executionNameForWindow(source.id, window.since, window.until),
        s3ClientConfig: target.s3ClientConfig,
        bucket: target.bucket,
      });
      const label = `window ${index + 1}/${windows.length} ${window.since} → ${window.until}`;
      if (run.status !== 'SUCCEEDED' || !receipt) {
        process.stderr.write(`${label}: FAILED: ${run.cause}\nLater windows were not started.\n`);
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

async function backfillOnAws(
  stateMachineArn: string,
  sourceId: string,
  windows: readonly { since: string; until: string }[],
  types: readonly string[] | undefined,
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
          input: JSON.stringify({ sourceId, ...window, ...(types ? { types } : {}) }),
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

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: Error) => {
    process.stderr.write(`backfill failed: ${error.message}\n`);
    process.exitCode = 1;
  },
);
