import { Match, Template } from 'aws-cdk-lib/assertions';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { describe, expect, it } from 'vitest';
import { ExportSchedules } from '../../infra/constructs/export-schedules.js';
import type { BulkExportSourceProps } from '../../infra/pipeline-props.js';
import { partStack } from './part-context.js';

function schedulesFor(sources: (stack: ReturnType<typeof partStack>['stack']) => BulkExportSourceProps[]) {
  const { stack, context } = partStack();
  const stateMachine = sfn.StateMachine.fromStateMachineArn(
    stack,
    'Machine',
    'arn:aws:states:us-east-1:123456789012:stateMachine:exports',
  );
  const part = new ExportSchedules(stack, 'Schedules', {
    context,
    sources: sources(stack),
    stateMachine,
    dependsOn: [],
  });
  return { part, template: Template.fromStack(stack) };
}

const source = (
  stack: ReturnType<typeof partStack>['stack'],
  id: string,
  scheduled: boolean,
): BulkExportSourceProps => ({
  id,
  clientSecret: secretsmanager.Secret.fromSecretNameV2(stack, `Secret-${id}`, id),
  settings: { fhirBaseUrl: 'https://fhir.example.org/r4' },
  ...(scheduled ? { schedule: { expression: 'rate(1 day)' } } : {}),
});

describe('ExportSchedules', () => {
  it('schedules only the sources that have a schedule, each starting a delta of its own source', () => {
    const { part, template } = schedulesFor((stack) => [source(stack, 'a', true), source(stack, 'b', false)]);
    expect([...part.schedules.keys()]).toEqual(['a']);
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(1 day)',
      Target: Match.objectLike({ Input: '{"sourceId":"a","since":"auto"}' }),
    });
  });

  it('creates no scheduler role without a schedule, but keeps its dead-letter queue', () => {
    const { template } = schedulesFor((stack) => [source(stack, 'b', false)]);
    template.resourceCountIs('AWS::IAM::Role', 0);
    template.resourceCountIs('AWS::SQS::Queue', 1);
  });
});
