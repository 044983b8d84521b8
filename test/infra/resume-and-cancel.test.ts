import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { beforeAll, describe, expect, it } from 'vitest';
import { BulkExportPipeline, type TaskFunctionName } from '../../infra/bulk-export-pipeline.js';
import type { BulkExportStack } from '../../infra/bulk-export-stack.js';
import {
  actionsOf,
  grants,
  identityPolicies,
  importedSources,
  type PolicyStatementJson,
  type SynthesizedPipeline,
  synthesize,
} from './pipeline-fixture.js';

/**
 * Resume (redrive), cancel (StopExecution) and the clean-up that runs when an
 * export ends without its own: the new functions, the clean-up state machine,
 * the EventBridge rule that starts it, and the grants an operator needs.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

let synth: SynthesizedPipeline;
let resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
let operators: { redrive: iam.Role; cancel: iam.Role; grantsSucceeded: boolean[] };
beforeAll(() => {
  synth = synthesize(
    {},
    {
      configure: (app) => {
        const stack = app.node.findChild('Test') as BulkExportStack;
        const redrive = new iam.Role(stack, 'RedriveOperator', { assumedBy: new iam.AccountRootPrincipal() });
        const cancel = new iam.Role(stack, 'CancelOperator', { assumedBy: new iam.AccountRootPrincipal() });
        operators = {
          redrive,
          cancel,
          grantsSucceeded: [
            stack.pipeline.grantRedrive(redrive).success,
            stack.pipeline.grantCancel(cancel).success,
          ],
        };
      },
    },
  );
  resources = synth.template.toJSON().Resources;
});

type Construct = Parameters<SynthesizedPipeline['logicalId']>[0];
const pipeline = () => synth.stack.pipeline;
const ref = (construct: Construct) => ({ Ref: synth.logicalId(construct) });
const arnOf = (construct: Construct) => ({ 'Fn::GetAtt': [synth.logicalId(construct), 'Arn'] });
const propertiesOf = (construct: Construct) => resources[synth.logicalId(construct)]!.Properties;
const roleIdOf = (name: TaskFunctionName) => synth.logicalId(pipeline().functions[name].role!);
const statementsOfRole = (roleId: string) =>
  identityPolicies(synth.template)
    .filter((policy) => policy.roles.includes(roleId))
    .flatMap((policy) => policy.statements);
/** A function's statements without the logging and tracing ones every function has. */
const taskStatementsOf = (name: TaskFunctionName) =>
  statementsOfRole(roleIdOf(name)).filter((statement) => !/^(logs|xray):/.test(actionsOf(statement)[0]!));
const machineRoleId = (machine: Construct) =>
  (propertiesOf(machine).RoleArn as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];

/**
 * An ARN as the template spells it, with the account's pseudo parameters and
 * the export state machine's name filled in, so IAM's own wildcard matching
 * can be tried on it against real ARNs.
 */
const EXPORT_MACHINE_NAME = 'FhirBulkExport-Prod';
function render(value: unknown): string {
  if (typeof value === 'string') return value;
  const object = value as Record<string, unknown>;
  if (object['Fn::Join']) {
    const [delimiter, parts] = object['Fn::Join'] as [string, unknown[]];
    return parts.map(render).join(delimiter);
  }
  const pseudo: Record<string, string> = {
    'AWS::Partition': 'aws',
    'AWS::Region': 'us-east-1',
    'AWS::AccountId': '123456789012',
  };
  if (typeof object.Ref === 'string' && pseudo[object.Ref]) return pseudo[object.Ref]!;
  const getAtt = object['Fn::GetAtt'] as [string, string] | undefined;
  if (getAtt && getAtt[0] === synth.logicalId(pipeline().stateMachine) && getAtt[1] === 'Name')
    return EXPORT_MACHINE_NAME;
  throw new Error(`cannot render ${JSON.stringify(value)}`);
}
const covers = (statement: PolicyStatementJson | undefined, arn: string) =>
  [statement?.Resource ?? []].flat().some((resource) => grants(render(resource), arn));

const EXECUTION = `arn:aws:states:us-east-1:123456789012:execution:${EXPORT_MACHINE_NAME}`;
/** Children of the two Distributed Maps: the Map Run label (generated, or the Map's Label), then the child's name. */
const DOWNLOAD_CHILD = `${EXECUTION}/DownloadFiles:0d9e6c1a-1c8d-4c36-9e4a-3b1f0f0f6a11`;
const RETRY_CHILD = `${EXECUTION}/7b2f1e5d-aa22-4a5e-b5f1-2e0c3d4e5f60:c3f1a2b4-5d6e-4f70-8a9b-0c1d2e3f4a5b`;
const TOP_LEVEL = `${EXECUTION}:epic-prod-20240101T000000Z`;
const OTHER_MACHINE = 'arn:aws:states:us-east-1:123456789012:execution:SomeOtherMachine:run-1';
const OTHER_MACHINE_CHILD =
  'arn:aws:states:us-east-1:123456789012:execution:SomeOtherMachine/DownloadFiles:0d9e6c1a';

describe('the new Task functions', () => {
  it.each([
    ['CheckFiles', 60, 512],
    ['CompleteExport', 300, 256],
    ['CleanUpEndedExport', 900, 256],
  ] as const)(
    '%s gets a %i s timeout, %i MB and reserved concurrency of one per concurrent export plus two',
    (name, timeout, memory) => {
      expect(propertiesOf(pipeline().functions[name])).toMatchObject({
        Handler: 'index.handler',
        Runtime: 'nodejs24.x',
        Timeout: timeout,
        MemorySize: memory,
        // the fixture's maxConcurrentExports (2), plus two
        ReservedConcurrentExecutions: 2 + 2,
      });
    },
  );

  it('give check-files S3 under _work/ only (reading results, writing the retry list), and no token, event or KMS signing', () => {
    const workObjects = { 'Fn::Join': ['', [arnOf(pipeline().bucket), '/_work/*']] };
    expect(taskStatementsOf('CheckFiles')).toEqual([
      expect.objectContaining({ Action: ['s3:GetObject', 's3:PutObject'], Resource: workObjects }),
      expect.objectContaining({ Action: 's3:ListBucket', Resource: arnOf(pipeline().bucket) }),
      expect.objectContaining({
        Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
        Resource: arnOf(pipeline().dataKey!),
        Condition: { StringEquals: { 'kms:ViaService': expect.anything() } },
      }),
    ]);
  });

  it('give complete-export what follows the marker (open the token, write, delete, announce), and verify-files what publishing needs, no token and no events (nor finalize-export)', () => {
    const complete = taskStatementsOf('CompleteExport').flatMap(actionsOf);
    expect(complete).toEqual(
      expect.arrayContaining(['kms:Decrypt', 's3:PutObject', 's3:DeleteObject', 'events:PutEvents']),
    );
    // Publish Files (the VerifyFiles function) copies the staged files, tags included.
    const publish = taskStatementsOf('VerifyFiles').flatMap(actionsOf);
    expect(publish).toEqual(
      expect.arrayContaining(['s3:GetObject', 's3:GetObjectTagging', 's3:PutObject', 's3:PutObjectTagging']),
    );
    for (const actions of [publish, taskStatementsOf('FinalizeExport').flatMap(actionsOf)]) {
      expect(actions).not.toContain('events:PutEvents');
      expect(actions.filter((action) => action === 'kms:Decrypt')).toHaveLength(1); // the data key's, via S3
    }
  });

  it('give clean-up-ended-export clean-up’s permissions, and DescribeExecution on export executions only', () => {
    const statements = taskStatementsOf('CleanUpEndedExport');
    const lockLiveness = statements.filter((statement) =>
      actionsOf(statement).includes('states:DescribeExecution'),
    );
    expect(statements.filter((statement) => !lockLiveness.includes(statement))).toEqual(
      taskStatementsOf('CleanUp'),
    );
    expect(lockLiveness.map(actionsOf)).toEqual([['states:DescribeExecution']]);
  });

  it('let prepare-export and clean-up-ended-export ask whether a lock holder still runs: export executions, not Map children', () => {
    for (const name of ['PrepareExport', 'CleanUpEndedExport'] as const) {
      const lockLiveness = statementsOfRole(roleIdOf(name)).find((statement) =>
        actionsOf(statement).includes('states:DescribeExecution'),
      );
      expect(covers(lockLiveness, TOP_LEVEL)).toBe(true);
      expect(covers(lockLiveness, DOWNLOAD_CHILD)).toBe(false);
      expect(covers(lockLiveness, OTHER_MACHINE)).toBe(false);
    }
    const describers = identityPolicies(synth.template)
      .filter((policy) =>
        policy.statements.some((statement) =>
          actionsOf(statement).some((action) => grants(action, 'states:DescribeExecution')),
        ),
      )
      .flatMap((policy) => policy.roles);
    expect(new Set(describers)).toEqual(
      new Set([
        roleIdOf('PrepareExport'),
        roleIdOf('CleanUpEndedExport'),
        machineRoleId(pipeline().stateMachine),
        // The validation machine describes its own Map children (issue 17).
        machineRoleId(pipeline().validationStateMachine!),
        // So does the warehouse load's (issue 18).
        machineRoleId(pipeline().warehouse!.stateMachine),
        synth.logicalId(operators.redrive),
        synth.logicalId(operators.cancel),
      ]),
    );
  });
});

describe('the export state machine', () => {
  it('may invoke its own Task functions, and not the clean-up of ended exports', () => {
    const invoke = statementsOfRole(machineRoleId(pipeline().stateMachine)).find(
      (statement) => statement.Action === 'lambda:InvokeFunction',
    );
    const names: TaskFunctionName[] = [
      'PrepareExport',
      'MintToken',
      'KickOff',
      'PollStatus',
      'PlanChunks',
      'MergeChunks',
      'DownloadFile',
      'CheckFiles',
      'VerifyFiles',
      'FinalizeExport',
      'CompleteExport',
      'CleanUp',
    ];
    expect(new Set(invoke?.Resource as unknown[])).toEqual(
      new Set(names.map((name) => arnOf(pipeline().functions[name]))),
    );
  });

  it('lets both Distributed Maps describe, stop and redrive their children, and nothing of other machines', () => {
    const children = statementsOfRole(machineRoleId(pipeline().stateMachine)).find((statement) =>
      actionsOf(statement).includes('states:RedriveExecution'),
    );
    expect(actionsOf(children!)).toEqual([
      'states:DescribeExecution',
      'states:StopExecution',
      'states:RedriveExecution',
    ]);
    expect(covers(children, DOWNLOAD_CHILD)).toBe(true);
    expect(covers(children, RETRY_CHILD)).toBe(true);
    expect(covers(children, TOP_LEVEL)).toBe(false);
    expect(covers(children, OTHER_MACHINE_CHILD)).toBe(false);
  });

  it('lets the Retry Failed Files reader read the retry list under _work/', () => {
    const read = statementsOfRole(machineRoleId(pipeline().stateMachine)).find(
      (statement) => statement.Action === 's3:GetObject',
    );
    expect(read?.Resource).toEqual({ 'Fn::Join': ['', [arnOf(pipeline().bucket), '/_work/*']] });
  });
});

describe('the clean-up state machine', () => {
  const machine = () => propertiesOf(pipeline().cleanUpStateMachine);

  it('is state-machines/clean-up-ended-export.asl.json with the minter and the clean-up function substituted', () => {
    expect(machine().DefinitionString).toBe(
      readFileSync(join(ROOT, 'state-machines', 'clean-up-ended-export.asl.json'), 'utf8'),
    );
    expect(machine().DefinitionSubstitutions).toEqual({
      MintTokenFunctionArn: arnOf(pipeline().functions.MintToken),
      CleanUpEndedExportFunctionArn: arnOf(pipeline().functions.CleanUpEndedExport),
    });
  });

  it('is STANDARD and traced, and logs every event without execution data to its own encrypted log group', () => {
    expect(machine()).toMatchObject({
      StateMachineType: 'STANDARD',
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: { Level: 'ALL', IncludeExecutionData: false },
    });
    const logGroupOf = (properties: Record<string, unknown>) =>
      (
        properties.LoggingConfiguration as {
          Destinations: { CloudWatchLogsLogGroup: { LogGroupArn: { 'Fn::GetAtt': [string] } } }[];
        }
      ).Destinations[0]!.CloudWatchLogsLogGroup.LogGroupArn['Fn::GetAtt'][0];
    const own = logGroupOf(machine());
    expect(own).not.toBe(logGroupOf(propertiesOf(pipeline().stateMachine)));
    expect(resources[own]!.Properties).toMatchObject({
      KmsKeyId: arnOf(pipeline().operationsKey),
      LogGroupName: expect.stringMatching(/^\/aws\/vendedlogs\/states\/.+-clean-up$/),
    });
  });

  it('has a role of its own that invokes only the minter and the clean-up function, and touches no data', () => {
    const roleId = machineRoleId(pipeline().cleanUpStateMachine);
    expect(roleId).not.toBe(machineRoleId(pipeline().stateMachine));
    const statements = statementsOfRole(roleId);
    const invoke = statements.filter((statement) =>
      actionsOf(statement).some((action) => grants(action, 'lambda:InvokeFunction')),
    );
    expect(invoke).toEqual([
      expect.objectContaining({
        Action: 'lambda:InvokeFunction',
        Resource: [arnOf(pipeline().functions.MintToken), arnOf(pipeline().functions.CleanUpEndedExport)],
      }),
    ]);
    const services = new Set(statements.flatMap(actionsOf).map((action) => action.split(':')[0]));
    expect(services).toEqual(new Set(['lambda', 'logs', 'xray']));
  });
});

describe('the clean-up rule', () => {
  const rule = () => propertiesOf(pipeline().cleanUpRule);

  it('matches the export machine’s executions that ended ABORTED, TIMED_OUT or FAILED', () => {
    expect(rule().EventPattern).toEqual({
      source: ['aws.states'],
      'detail-type': ['Step Functions Execution Status Change'],
      detail: {
        status: ['ABORTED', 'TIMED_OUT', 'FAILED'],
        stateMachineArn: [ref(pipeline().stateMachine)],
      },
    });
    expect(rule()).not.toHaveProperty('EventBusName');
  });

  it('starts the clean-up machine with the whole event, retried for a day, then into an encrypted dead-letter queue', () => {
    const targets = rule().Targets as Record<string, unknown>[];
    expect(targets).toHaveLength(1);
    const target = targets[0]!;
    expect(target).toMatchObject({
      Arn: ref(pipeline().cleanUpStateMachine),
      DeadLetterConfig: { Arn: arnOf(pipeline().cleanUpDeadLetterQueue) },
      RetryPolicy: { MaximumRetryAttempts: 185, MaximumEventAgeInSeconds: 24 * 3600 },
    });
    for (const reshaping of ['Input', 'InputPath', 'InputTransformer'])
      expect(target).not.toHaveProperty(reshaping);
    expect(propertiesOf(pipeline().cleanUpDeadLetterQueue)).toMatchObject({
      KmsMasterKeyId: arnOf(pipeline().operationsKey),
      MessageRetentionPeriod: 14 * 24 * 3600,
    });
  });

  it('starts it through a role EventBridge assumes that may start only the clean-up machine', () => {
    const target = (rule().Targets as { RoleArn: { 'Fn::GetAtt': [string, string] } }[])[0]!;
    const roleId = target.RoleArn['Fn::GetAtt'][0];
    expect(resources[roleId]!.Properties.AssumeRolePolicyDocument).toMatchObject({
      Statement: [expect.objectContaining({ Principal: { Service: 'events.amazonaws.com' } })],
    });
    expect(statementsOfRole(roleId)).toEqual([
      expect.objectContaining({
        Action: 'states:StartExecution',
        Resource: ref(pipeline().cleanUpStateMachine),
      }),
    ]);
  });

  it('lets EventBridge put undelivered events into the dead-letter queue: queue policy and key policy', () => {
    const queuePolicy = Object.values(resources).find(
      (resource) =>
        resource.Type === 'AWS::SQS::QueuePolicy' &&
        JSON.stringify(resource.Properties.Queues) ===
          JSON.stringify([ref(pipeline().cleanUpDeadLetterQueue)]),
    );
    expect(queuePolicy).toMatchObject({
      Properties: {
        Queues: [ref(pipeline().cleanUpDeadLetterQueue)],
        PolicyDocument: {
          Statement: expect.arrayContaining([
            expect.objectContaining({
              Effect: 'Allow',
              Action: 'sqs:SendMessage',
              Principal: { Service: 'events.amazonaws.com' },
              Condition: { ArnEquals: { 'aws:SourceArn': arnOf(pipeline().cleanUpRule) } },
            }),
          ]),
        },
      },
    });
    const keyPolicy = propertiesOf(pipeline().operationsKey).KeyPolicy as { Statement: { Sid?: string }[] };
    expect(
      keyPolicy.Statement.find((statement) => statement.Sid === 'EventBridgeWritesUndeliveredCleanUps'),
    ).toEqual(
      expect.objectContaining({
        Effect: 'Allow',
        Principal: { Service: 'events.amazonaws.com' },
        Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
        Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
      }),
    );
  });

  it('alarms when a clean-up could not be started or did not succeed: a stranded source is never silent', () => {
    synth.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [
        {
          Name: 'QueueName',
          Value: { 'Fn::GetAtt': [synth.logicalId(pipeline().cleanUpDeadLetterQueue), 'QueueName'] },
        },
      ],
      Threshold: 1,
      AlarmActions: [ref(pipeline().alarmTopic)],
    });
    const cleanUpMetrics = Object.values(resources)
      .filter((resource) => resource.Type === 'AWS::CloudWatch::Alarm' && resource.Properties.Metrics)
      .flatMap(
        (resource) =>
          resource.Properties.Metrics as {
            MetricStat?: { Metric: { MetricName: string; Dimensions: unknown[] } };
          }[],
      )
      .filter((metric) =>
        JSON.stringify(metric.MetricStat?.Metric.Dimensions ?? []).includes(
          synth.logicalId(pipeline().cleanUpStateMachine),
        ),
      )
      .map((metric) => metric.MetricStat!.Metric.MetricName);
    expect(cleanUpMetrics.sort()).toEqual(['ExecutionsAborted', 'ExecutionsFailed', 'ExecutionsTimedOut']);
  });

  it('is in the stack outputs, with its dead-letter queue', () => {
    synth.template.hasOutput('CleanUpStateMachineArn', { Value: ref(pipeline().cleanUpStateMachine) });
    synth.template.hasOutput('CleanUpDeadLetterQueueUrl', { Value: ref(pipeline().cleanUpDeadLetterQueue) });
  });
});

describe('grantRedrive and grantCancel', () => {
  const operatorStatements = (role: iam.Role) => statementsOfRole(synth.logicalId(role));

  it('succeed on a role', () => {
    expect(operators.grantsSucceeded).toEqual([true, true]);
  });

  it('grantRedrive: RedriveExecution and DescribeExecution on the export executions, nothing else', () => {
    const statements = operatorStatements(operators.redrive);
    expect(statements.map(actionsOf)).toEqual([['states:RedriveExecution', 'states:DescribeExecution']]);
    expect(covers(statements[0], TOP_LEVEL)).toBe(true);
    expect(covers(statements[0], OTHER_MACHINE)).toBe(false);
  });

  it('grantCancel: StopExecution and DescribeExecution on the export executions, ListExecutions on the machine', () => {
    const statements = operatorStatements(operators.cancel);
    expect(statements.map(actionsOf)).toEqual([
      ['states:StopExecution', 'states:DescribeExecution'],
      ['states:ListExecutions'],
    ]);
    expect(covers(statements[0], TOP_LEVEL)).toBe(true);
    expect(covers(statements[0], OTHER_MACHINE)).toBe(false);
    expect(statements[1]!.Resource).toEqual(ref(pipeline().stateMachine));
  });
});

describe('placeholders a state machine may not use fail the synth', () => {
  /** A state machine directory whose ASL files differ from the repository's. */
  function projectWith(aslFile: string, edit: (definition: string) => string): string {
    const directory = join(mkdtempSync(join(tmpdir(), 'asl-')), 'state-machines');
    cpSync(join(ROOT, 'state-machines'), directory, { recursive: true });
    const file = join(directory, aslFile);
    writeFileSync(file, edit(readFileSync(file, 'utf8')));
    return directory;
  }
  const EXPORT_PROVIDES =
    'PrepareExportFunctionArn, MintTokenFunctionArn, KickOffFunctionArn, PollStatusFunctionArn, PlanChunksFunctionArn, MergeChunksFunctionArn, DownloadFileFunctionArn, CheckFilesFunctionArn, VerifyFilesFunctionArn, FinalizeExportFunctionArn, CompleteExportFunctionArn, CleanUpFunctionArn';

  const placeholder = (name: string) => `\${${name}FunctionArn}`;

  it.each([
    [
      'the clean-up machine naming an export Task (its role would have to invoke it)',
      'clean-up-ended-export.asl.json',
      'CleanUpEndedExport',
      'KickOff',
      'MintTokenFunctionArn, CleanUpEndedExportFunctionArn',
    ],
    [
      'the export machine naming the clean-up of ended exports',
      'bulk-export.asl.json',
      'CleanUp',
      'CleanUpEndedExport',
      EXPORT_PROVIDES,
    ],
    ['a misspelt placeholder', 'bulk-export.asl.json', 'CheckFiles', 'CheckFile', EXPORT_PROVIDES],
  ])('%s', (_, aslFile, used, replacement, provided) => {
    const stateMachineDirectory = projectWith(aslFile, (definition) => {
      expect(definition).toContain(placeholder(used));
      return definition.replaceAll(placeholder(used), placeholder(replacement));
    });
    const stack = new Stack(new App(), 'Edited');
    expect(
      () =>
        new BulkExportPipeline(stack, 'Pipeline', { sources: importedSources(stack), stateMachineDirectory }),
    ).toThrow(
      `BulkExportPipeline: state-machines/${aslFile} uses ${placeholder(replacement)} but the construct only provides ${provided} to it`,
    );
  });

  it('the repository’s own ASL files synthesize from a copied directory (the harness can pass)', () => {
    const stateMachineDirectory = projectWith('bulk-export.asl.json', (definition) => definition);
    const stack = new Stack(new App(), 'Copied');
    new BulkExportPipeline(stack, 'Pipeline', { sources: importedSources(stack), stateMachineDirectory });
    // The export machine, the clean-up machine, the validation stage's (issue 17) and the warehouse load's (18).
    Template.fromStack(stack).resourceCountIs('AWS::StepFunctions::StateMachine', 4);
  });
});
