import { DescribeExecutionCommand, RedriveExecutionCommand, SFNClient } from '@aws-sdk/client-sfn';
import { ExportNotResumableError } from '../../lambdas/errors.js';
import { UsageError } from './command.js';

/** What the redrive needs of a Step Functions client (the real one, or a stand-in in tests). */
export interface RedriveClient {
  send(command: DescribeExecutionCommand | RedriveExecutionCommand): Promise<unknown>;
  destroy?(): void;
}

/**
 * On AWS a resume is RedriveExecution: Step Functions runs the failed
 * execution on from its failed state (the retry pass), re-running only the
 * files that have no verified result. Checked first with DescribeExecution,
 * so that a running, succeeded or unredrivable execution gets a clear answer.
 * Returns what to tell the user.
 */
export async function redriveExecution(
  stateMachineArn: string,
  execution: string,
  client?: RedriveClient,
): Promise<string> {
  const machine = /^arn:(aws[a-z-]*):states:([a-z0-9-]+):(\d{12}):stateMachine:([A-Za-z0-9_-]+)$/.exec(
    stateMachineArn,
  );
  if (!machine) {
    throw new UsageError(
      `--state-machine-arn must be a state machine ARN (got ${JSON.stringify(stateMachineArn.slice(0, 120))})`,
    );
  }
  const executionArn = execution.startsWith('arn:')
    ? execution
    : `arn:${machine[1]}:states:${machine[2]}:${machine[3]}:execution:${machine[4]}:${execution}`;
  const sfn = client ?? new SFNClient({ region: machine[2] });
  try {
    const described = (await sfn.send(new DescribeExecutionCommand({ executionArn }))) as {
      status?: string;
      redriveStatus?: string;
      redriveStatusReason?: string;
    };
    if (described.status === 'RUNNING') {
      throw new ExportNotResumableError(
        `execution ${executionArn} is still running; to end it: npm run cancel -- --source-id <id> (StopExecution)`,
      );
    }
    if (described.status === 'SUCCEEDED') {
      throw new ExportNotResumableError(`execution ${executionArn} succeeded; there is nothing to resume`);
    }
    if (described.redriveStatus === 'NOT_REDRIVABLE') {
      throw new ExportNotResumableError(
        `execution ${executionArn} cannot be redriven: ${described.redriveStatusReason ?? 'Step Functions does not say why'}`,
      );
    }
    const redriven = (await sfn.send(new RedriveExecutionCommand({ executionArn }))) as {
      redriveDate?: Date;
    };
    return `Redriven ${executionArn} at ${redriven.redriveDate?.toISOString() ?? 'now'}: it goes on from its failed state; files that landed are kept.\nWatch it: aws stepfunctions describe-execution --execution-arn ${executionArn}`;
  } finally {
    sfn.destroy?.();
  }
}
