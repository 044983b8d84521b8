import { DescribeExecutionCommand, RedriveExecutionCommand } from '@aws-sdk/client-sfn';
import { describe, expect, it } from 'vitest';
import { ExportNotResumableError } from '../../lambdas/errors.js';
import { type RedriveClient, redriveExecution } from '../../scripts/local/aws-redrive.js';
import { UsageError } from '../../scripts/local/command.js';

const MACHINE = 'arn:aws:states:us-east-1:123456789012:stateMachine:bulk-export';
const EXECUTION = 'arn:aws:states:us-east-1:123456789012:execution:bulk-export:epic-20261206';

/**
 * Step Functions as far as a redrive goes: executions by ARN with their
 * status and redrive status; DescribeExecution of an unknown ARN and a
 * redrive of a running one fail with the service's error names.
 */
function stepFunctions(
  executions: Record<string, { status: string; redriveStatus?: string; redriveStatusReason?: string }>,
) {
  const calls: string[] = [];
  const client: RedriveClient = {
    async send(command) {
      const { executionArn } = command.input as { executionArn: string };
      const execution = executions[executionArn];
      calls.push(`${command.constructor.name} ${executionArn}`);
      if (!execution) {
        throw Object.assign(new Error(`Execution Does Not Exist: '${executionArn}'`), {
          name: 'ExecutionDoesNotExist',
        });
      }
      if (command instanceof DescribeExecutionCommand) return { executionArn, ...execution };
      if (command instanceof RedriveExecutionCommand) {
        if (execution.status === 'RUNNING' || execution.redriveStatus === 'NOT_REDRIVABLE') {
          throw Object.assign(new Error('Execution is not redrivable'), { name: 'ExecutionNotRedrivable' });
        }
        execution.status = 'RUNNING';
        return { redriveDate: new Date('2026-12-06T12:00:00Z') };
      }
      throw new Error('unexpected command');
    },
  };
  return { client, calls, executions };
}

describe('redriveExecution (npm run export -- --resume NAME --state-machine-arn ARN)', () => {
  it('redrives a failed execution named by its name, after checking it can be', async () => {
    const service = stepFunctions({ [EXECUTION]: { status: 'FAILED', redriveStatus: 'REDRIVABLE' } });
    const message = await redriveExecution(MACHINE, 'epic-20261206', service.client);
    expect(message).toMatch(
      /^Redriven arn:aws:states:us-east-1:123456789012:execution:bulk-export:epic-20261206 at 2026-12-06T12:00:00.000Z/,
    );
    expect(service.calls).toEqual([
      `DescribeExecutionCommand ${EXECUTION}`,
      `RedriveExecutionCommand ${EXECUTION}`,
    ]);
    expect(service.executions[EXECUTION]!.status).toBe('RUNNING');
  });

  it.each([
    [{ status: 'RUNNING' }, /is still running; to end it: npm run cancel/],
    [{ status: 'SUCCEEDED' }, /succeeded; there is nothing to resume/],
    [
      {
        status: 'FAILED',
        redriveStatus: 'NOT_REDRIVABLE',
        redriveStatusReason: 'Execution is older than 14 days',
      },
      /cannot be redriven: Execution is older than 14 days/,
    ],
  ])('refuses %j with a clear reason and redrives nothing', async (execution, reason) => {
    const service = stepFunctions({ [EXECUTION]: execution });
    const attempt = redriveExecution(MACHINE, EXECUTION, service.client);
    await expect(attempt).rejects.toThrow(ExportNotResumableError);
    await expect(attempt).rejects.toThrow(reason);
    expect(service.calls.filter((call) => call.startsWith('Redrive'))).toEqual([]);
  });

  it('passes the service error of an unknown execution on, and rejects a malformed state machine ARN as usage', async () => {
    const service = stepFunctions({});
    await expect(redriveExecution(MACHINE, 'nope', service.client)).rejects.toMatchObject({
      name: 'ExecutionDoesNotExist',
    });
    await expect(redriveExecution('bulk-export', 'x', service.client)).rejects.toThrow(UsageError);
    expect(service.calls).toHaveLength(1);
  });
});
