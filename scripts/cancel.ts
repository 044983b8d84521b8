/**
 * `npm run cancel -- --source-id ID [--bucket B] [--s3-endpoint URL | --aws-s3] [--prefix P]` (see USAGE)
 *
 * Ends the export that holds a source's lock, cleanly: the server job
 * DELETEd, open uploads aborted, a failure receipt saying "cancelled", the
 * lock released. Whom it asks depends on the holder the lock names: a
 * running local export is sent SIGINT (its own Ctrl-C clean-up runs); an
 * AWS execution is stopped (StopExecution; the clean-up started by its
 * status change does the rest); a dead local run, or a failed export kept
 * for a resume, is cleaned up here.
 */
import './local/node-version.js';
import { resolve } from 'node:path';
import { DescribeExecutionCommand, SFNClient, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { sealContext } from '../lambdas/runtime.js';
import { isSourceId } from '../lambdas/schema/source.js';
import { endExport } from '../lambdas/services/export-lifecycle.js';
import { holderLiveness, isLocalExecutionArn, readLock } from '../lambdas/services/source-lock.js';
import { openS3Target, readSourceFile, s3TargetOptions } from './local/cli.js';
import { parseCommandLine, runCommand, UsageError } from './local/command.js';
import { readExecutionRecord } from './local/executions.js';
import { createLocalRuntime } from './local/runtime.js';

const USAGE = `usage: npm run cancel -- --source-id ID [--bucket B] [--s3-endpoint URL | --aws-s3] [--prefix P]

  Cancels the export of source ID that holds its lock, cleanly: running downloads stop, the server job is
  DELETEd, open uploads are aborted, a failure receipt says "cancelled", and the lock is released.
  - a local export still running (npm run export in another terminal): it is sent SIGINT, as a Ctrl-C;
  - an AWS execution (the lock names its ARN): it is stopped (StopExecution); the clean-up its status
    change starts does the rest (credentials and region from the AWS SDK's defaults);
  - a local export that was killed, or a failed one kept for a resume: it is cleaned up here.
  --bucket, --s3-endpoint, --aws-s3, --prefix: where the lock is, as for npm run export.`;

const OPTIONS = {
  'source-id': { type: 'string' },
  bucket: { type: 'string' },
  's3-endpoint': { type: 'string' },
  'aws-s3': { type: 'boolean' },
  prefix: { type: 'string' },
} as const;

/** How long a running export may take to clean up after its SIGINT. */
const CANCEL_WAIT_MS = 120_000;

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandLine(argv, OPTIONS);
  const sourceId = values['source-id'];
  if (!sourceId) throw new UsageError('--source-id ID is required');
  if (!isSourceId(sourceId)) {
    throw new UsageError(
      `--source-id must be a source id (lower-case letters, digits and -), got ${JSON.stringify(String(sourceId).slice(0, 64))}`,
    );
  }
  const localDirectory = resolve('.local');
  const target = await openS3Target(s3TargetOptions(values, resolve(localDirectory, 's3')));
  const local = createLocalRuntime({
    sources: [],
    s3ClientConfig: target.s3ClientConfig,
    bucket: target.bucket,
    ...(values.prefix ? { prefix: values.prefix } : {}),
  });
  try {
    const lock = await readLock(local.runtime, sourceId);
    if (!lock) {
      process.stdout.write(
        `No export of source ${sourceId} holds its lock in ${target.description}: nothing to cancel.\n`,
      );
      return 0;
    }
    const holder = `export ${lock.executionName} (${lock.state ?? 'running'}, since ${lock.acquiredAt})`;
    if (lock.executionArn && !isLocalExecutionArn(lock.executionArn)) {
      return stopAwsExecution(lock.executionArn, holder);
    }
    const liveness = await holderLiveness(local.runtime, lock);
    if (liveness === 'alive' && lock.process) {
      process.stderr.write(`Cancelling ${holder}: sending SIGINT to its process ${lock.process.pid}\n`);
      process.kill(lock.process.pid, 'SIGINT');
      const started = Date.now();
      for (;;) {
        const now = await readLock(local.runtime, sourceId);
        if (now?.executionName !== lock.executionName) break;
        if (Date.now() - started > CANCEL_WAIT_MS) {
          process.stderr.write(
            `cancel: ${holder} still holds the lock after ${CANCEL_WAIT_MS / 1000} s; its process ${lock.process.pid} is still cleaning up (see its terminal)\n`,
          );
          return 1;
        }
        await new Promise((done) => setTimeout(done, 250));
      }
      process.stdout.write(
        `Cancelled ${holder}: its process cleaned up and released the lock of source ${sourceId}.\n`,
      );
      return 0;
    }
    if (liveness === 'unknown' && lock.state !== 'resumable') {
      process.stderr.write(
        `cancel: ${holder} runs on host ${lock.process?.host ?? 'unknown'}, which this one cannot check; cancel it there (or wait until ${lock.expiresAt}, when it is presumed dead)\n`,
      );
      return 1;
    }
    // Dead, or failed and kept for a resume: nobody else will clean it up.
    const record = await readExecutionRecord(localDirectory, lock.executionName).catch(() => undefined);
    let sealedToken: string | null = null;
    if (record) {
      const source = await readSourceFile(record.sourceFile);
      const minting = createLocalRuntime({
        sources: [source],
        s3ClientConfig: target.s3ClientConfig,
        bucket: target.bucket,
      });
      try {
        const token = await (await minting.runtime.accessTokens!(sourceId)).getAccessToken({
          minValiditySeconds: 60,
        });
        sealedToken = await local.runtime.sealer.seal(
          token.accessToken,
          sealContext(sourceId, lock.executionName),
        );
      } catch (error) {
        process.stderr.write(`cancel: no access token for the job's DELETE (${(error as Error).message})\n`);
      } finally {
        await minting.close();
      }
    }
    const ended = await endExport(local.runtime, {
      sourceId,
      executionName: lock.executionName,
      outcome: 'cancelled',
      failure: {
        error: 'ExportCancelled',
        message: `cancelled with npm run cancel: ${holder} was ${lock.state === 'resumable' ? 'failed and kept for a resume' : 'no longer running (its process is gone)'}`,
      },
      allowResume: false,
      sealedToken,
      waitForDownloads: false,
    });
    const problems = ended.problems.length > 0 ? `\nCould not: ${ended.problems.join('; ')}` : '';
    process.stdout.write(
      `Cancelled ${holder}: ${ended.actions.join('; ') || 'nothing to undo'}.${ended.failureReceiptKey ? `\nFailure receipt: s3://${target.bucket}/${ended.failureReceiptKey}` : ''}${problems}\n`,
    );
    return ended.problems.length > 0 ? 1 : 0;
  } finally {
    await local.close();
    await target.close();
  }
}

async function stopAwsExecution(executionArn: string, holder: string): Promise<number> {
  const region = executionArn.split(':')[3];
  const sfn = new SFNClient(region ? { region } : {});
  try {
    const described = await sfn.send(new DescribeExecutionCommand({ executionArn }));
    if (described.status !== 'RUNNING') {
      process.stderr.write(
        `cancel: ${holder} is ${described.status}, not running; its clean-up ran when it ended (the next export takes the lock over)\n`,
      );
      return 1;
    }
    await sfn.send(
      new StopExecutionCommand({ executionArn, error: 'ExportCancelled', cause: 'npm run cancel' }),
    );
    process.stdout.write(
      `Stopped ${executionArn}. The clean-up started by its status change DELETEs the server job, aborts uploads, writes the failure receipt and releases the lock.\n`,
    );
    return 0;
  } finally {
    sfn.destroy();
  }
}

runCommand('cancel', USAGE, () => main(process.argv.slice(2)));
