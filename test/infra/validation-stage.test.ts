import { Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { ValidationStage } from '../../infra/constructs/validation-stage.js';
import { actionsOf, identityPolicies, type PolicyStatementJson, synthesize } from './pipeline-fixture.js';

describe('ValidationStage (issue 17)', () => {
  const { stack, template, logicalId } = synthesize();
  const part = stack.pipeline.node.findChild('Validation') as ValidationStage;
  const resources = template.toJSON().Resources as Record<
    string,
    { Type: string; Properties: Record<string, unknown> }
  >;

  it('is on by default: the state machine, its three arm64 functions and the trigger', () => {
    expect(part).toBeInstanceOf(ValidationStage);
    expect(stack.pipeline.validationStateMachine).toBe(part.stateMachine);
    for (const fn of Object.values(part.functions)) {
      const props = resources[logicalId(fn)]!.Properties;
      expect(props).toMatchObject({
        Architectures: ['arm64'],
        Runtime: 'nodejs24.x',
        Handler: 'index.handler',
      });
    }
    expect(Object.keys(part.functions).sort()).toEqual([
      'PlanValidation',
      'ValidateFile',
      'WriteValidationReport',
    ]);
  });

  it('starts the state machine on the export bucket’s Object Created events of keys ending in _SUCCESS.json', () => {
    const rule = resources[logicalId(part.rule)]!.Properties as {
      EventPattern: Record<string, unknown>;
      Targets: { Arn: unknown; DeadLetterConfig?: unknown; RoleArn?: unknown }[];
    };
    expect(rule.EventPattern).toEqual({
      source: ['aws.s3'],
      'detail-type': ['Object Created'],
      detail: {
        bucket: { name: [{ Ref: logicalId(stack.pipeline.bucket) }] },
        object: { key: [{ suffix: '_SUCCESS.json' }] },
      },
    });
    expect(rule.Targets).toHaveLength(1);
    expect(rule.Targets[0]!.Arn).toEqual({ Ref: logicalId(part.stateMachine) });
    // An event the rule cannot deliver goes to the stage's own queue, where ValidationDeadLetterAlarm sees it.
    expect(rule.Targets[0]!.DeadLetterConfig).toEqual({
      Arn: { 'Fn::GetAtt': [logicalId(part.triggerDeadLetterQueue as never), 'Arn'] },
    });
  });

  it('fans out over the batch list with a Distributed Map that loops on Validate Batch', () => {
    const definition = JSON.parse(
      resources[logicalId(part.stateMachine)]!.Properties.DefinitionString as string,
    ) as { States: Record<string, Record<string, unknown>> };
    const map = definition.States['Validate Files'] as {
      ItemReader: { Resource: string };
      ItemProcessor: {
        ProcessorConfig: { Mode: string };
        States: Record<string, { Default?: string; Resource?: string }>;
      };
    };
    expect(map.ItemReader.Resource).toBe('arn:aws:states:::s3:getObject');
    expect(map.ItemProcessor.ProcessorConfig.Mode).toBe('DISTRIBUTED');
    expect(map.ItemProcessor.States['Is Batch Validated?']!.Default).toBe('Validate Batch');
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      DefinitionSubstitutions: Match.objectLike({
        PlanValidationFunctionArn: Match.anyValue(),
        ValidateFileFunctionArn: Match.anyValue(),
        WriteValidationReportFunctionArn: Match.anyValue(),
      }),
    });
  });

  it('grants least privilege: reads exports, writes only the report and its work objects, never the data', () => {
    const statementsOf = (name: keyof ValidationStage['functions']): PolicyStatementJson[] => {
      const role = logicalId(part.node.findChild(`${name}Role`));
      return identityPolicies(template)
        .filter((policy) => policy.roles.includes(role))
        .flatMap((policy) => policy.statements);
    };
    const resourcesFor = (name: keyof ValidationStage['functions'], action: string) =>
      JSON.stringify(
        statementsOf(name)
          .filter((statement) => actionsOf(statement).includes(action))
          .map((s) => s.Resource),
      );
    for (const name of ['PlanValidation', 'ValidateFile', 'WriteValidationReport'] as const) {
      const puts = resourcesFor(name, 's3:PutObject');
      // Writes go to _work/validation/ or the report's own keys: never a bare source=* (the data).
      expect(puts, name).not.toMatch(/source=\*"/);
      expect(statementsOf(name).flatMap(actionsOf)).not.toContain('kms:Decrypt*');
      expect(
        statementsOf(name)
          .flatMap(actionsOf)
          .some((action) => action === 's3:*' || action === '*'),
      ).toBe(false);
    }
    expect(resourcesFor('ValidateFile', 's3:PutObject')).toContain('/_validation/*');
    expect(resourcesFor('WriteValidationReport', 's3:PutObject')).toContain('/_VALIDATED.json');
    expect(statementsOf('WriteValidationReport').flatMap(actionsOf)).toContain('events:PutEvents');
    expect(statementsOf('ValidateFile').flatMap(actionsOf)).not.toContain('events:PutEvents');
    expect(statementsOf('PlanValidation').flatMap(actionsOf)).not.toContain('s3:DeleteObject');
  });

  it('is left out with validation: { enabled: false }', () => {
    const off = synthesize({ validation: { enabled: false } });
    expect(off.stack.pipeline.node.tryFindChild('Validation')).toBeUndefined();
    expect(off.stack.pipeline.validationStateMachine).toBeUndefined();
    const machines = Object.values(
      off.template.toJSON().Resources as Record<string, { Type: string }>,
    ).filter((resource) => resource.Type === 'AWS::StepFunctions::StateMachine');
    // The export's, the clean-up's and the warehouse load's (issue 18), which then follows _SUCCESS.json.
    expect(machines).toHaveLength(3);
    const alarms = Object.values(off.template.findResources('AWS::CloudWatch::Alarm')).map(
      (alarm) => alarm.Properties.AlarmDescription as string,
    );
    expect(alarms.filter((description) => description.includes('validation'))).toEqual([]);
  });

  it('pages when a validation does not finish or cannot start, into the pipeline’s alarm topic', () => {
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')) as {
      Properties: { AlarmDescription: string; Metrics?: { Id: string; MetricStat?: unknown }[] };
    }[];
    const failed = alarms.find((alarm) =>
      alarm.Properties.AlarmDescription.startsWith('The US Core validation'),
    );
    expect(failed?.Properties.AlarmDescription).toContain('failed, timed out or was aborted');
    // failed + timedOut + aborted of the validation state machine, not the export's.
    const stats = JSON.stringify(failed?.Properties.Metrics);
    for (const metric of ['ExecutionsFailed', 'ExecutionsTimedOut', 'ExecutionsAborted'])
      expect(stats).toContain(metric);
    expect(stats).toContain(logicalId(part.stateMachine));
    const deadLetters = alarms.find((alarm) => alarm.Properties.AlarmDescription.includes('validation DLQ'));
    expect(JSON.stringify(deadLetters?.Properties)).toContain(
      logicalId(part.triggerDeadLetterQueue as never),
    );
  });
});
