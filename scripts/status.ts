/**
 * `npm run status [-- --source-id ID] [--json] [--bucket B] [--s3-endpoint URL | --aws-s3] [--prefix P]
 *  [--state-machine-arn ARN]` (see USAGE)
 *
 * What every source is doing and last did, read from where the pipeline
 * keeps it: the lock (`_state/source=<id>/lock.json`) names the running
 * export and its holder; that export's job record (`_work/…/job.json`) says
 * how far it got (status URL, last poll and X-Progress, manifest), its
 * results how many files landed; the newest export folder with a completion
 * marker is the last success; the newest failure receipt the last failure.
 * Nothing is written: it can run beside a running export.
 */
import './local/node-version.js';
import { resolve } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { SFNClient } from '@aws-sdk/client-sfn';
import { createS3Store } from '../lambdas/adapters/s3-store.js';
import { isSourceId } from '../lambdas/schema/source.js';
import { openS3Target, s3TargetOptions } from './local/cli.js';
import { parseCommandLine, runCommand, UsageError } from './local/command.js';
import { normalizePrefix, readStatuses, render, type StateReader } from './local/job-status.js';

const USAGE = `usage: npm run status -- [--source-id ID] [--json] [--bucket B] [--s3-endpoint URL | --aws-s3] [--prefix P]
                         [--state-machine-arn ARN]

  Shows, per source (every registered source, and any with a lock, an export or a failure receipt; or only ID):
  - the running export: execution, phase (kicking off, waiting for the server, downloading, finalizing; stopping
    or failed-and-resumable), the server's last X-Progress, files landed of total, chunks done of total, age, and
    the lock holder (execution ARN or pid@host) and whether it is alive;
  - the last success: when, resources, files, bytes, and the watermark (the next since=auto _since);
  - the last failure: cause, and whether it can be resumed and until when.
  --json                     the same as one JSON document on stdout
  --bucket, --s3-endpoint, --aws-s3, --prefix: where the state is, as for npm run export (default: the embedded S3
                             in .local/s3, bucket bulk-export)
  --state-machine-arn ARN    on AWS: also the RUNNING executions of this state machine (ListExecutions), and
                             whether each lock's holder still runs (DescribeExecution); credentials and region
                             from the AWS SDK's defaults
  Reads only; exit 0 when it could read the state, 2 for a wrong command line, 1 otherwise.`;

const OPTIONS = {
  'source-id': { type: 'string' },
  json: { type: 'boolean' },
  bucket: { type: 'string' },
  's3-endpoint': { type: 'string' },
  'aws-s3': { type: 'boolean' },
  prefix: { type: 'string' },
  'state-machine-arn': { type: 'string' },
} as const;

const STATE_MACHINE_ARN = /^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$/;

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandLine(argv, OPTIONS);
  const only = values['source-id'];
  if (only !== undefined && !isSourceId(only)) {
    throw new UsageError(
      `--source-id must be a source id (lower-case letters, digits and -), got ${JSON.stringify(String(only).slice(0, 64))}`,
    );
  }
  const stateMachineArn = values['state-machine-arn'];
  if (stateMachineArn !== undefined && !STATE_MACHINE_ARN.test(stateMachineArn)) {
    throw new UsageError(
      `--state-machine-arn must be a state machine ARN (arn:aws:states:REGION:ACCOUNT:stateMachine:NAME), got ${JSON.stringify(stateMachineArn.slice(0, 120))}`,
    );
  }
  const target = await openS3Target(s3TargetOptions(values, resolve('.local', 's3')));
  const s3 = new S3Client(target.s3ClientConfig);
  const sfn = stateMachineArn ? new SFNClient({ region: stateMachineArn.split(':')[3]! }) : undefined;
  try {
    const state: StateReader = {
      s3,
      store: createS3Store({ s3, bucket: target.bucket }),
      bucket: target.bucket,
      prefix: normalizePrefix(values.prefix ?? ''),
      now: new Date(),
      ...(sfn ? { sfn } : {}),
    };
    const statuses = await readStatuses(state, {
      ...(only ? { only } : {}),
      ...(stateMachineArn ? { stateMachineArn } : {}),
    });
    if (values.json) {
      process.stdout.write(
        `${JSON.stringify({ target: target.description, at: state.now.toISOString(), sources: statuses }, null, 2)}\n`,
      );
    } else {
      process.stdout.write(`${render(target.description, statuses, only)}\n`);
    }
    return 0;
  } finally {
    s3.destroy();
    sfn?.destroy();
    await target.close();
  }
}

runCommand('status', USAGE, () => main(process.argv.slice(2)));
