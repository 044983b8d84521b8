import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { StateMachine } from 'aws-local-stepfunctions';
import { describe, expect, it } from 'vitest';
import {
  adaptDefinitionForLocalRun,
  LOCAL_ITEM_READER_FUNCTION,
  localFunctionArn,
  retryingStateNames,
  waitStateNames,
} from '../../scripts/local/asl-adapter.js';
import { thrown } from '../support/thrown.js';

type Json = Record<string, unknown>;
type Definition = { StartAt: string; States: Record<string, Json>; [key: string]: unknown };
type LibraryDefinition = ConstructorParameters<typeof StateMachine>[0];

const DEFINITION_PATH = 'state-machines/bulk-export.asl.json';
const MAP = 'Download Files';
const READER = 'Download Files [ItemReader]';

/** A CDK-style `${Name}` placeholder, as the ASL file spells it. */
const substitution = (name: string) => `\${${name}}`;

const loadDefinition = (): Definition => JSON.parse(readFileSync(DEFINITION_PATH, 'utf8')) as Definition;

/** Every `[from, to]` transition of one level of a machine: Next, Default, Choices and Catch. */
function transitions(machine: Definition): Array<[string, string]> {
  const edges: Array<[string, string]> = [];
  for (const [name, state] of Object.entries(machine.States)) {
    const targets = [
      state.Next,
      state.Default,
      ...((state.Choices as Json[] | undefined) ?? []).map((choice) => choice.Next),
      ...((state.Catch as Json[] | undefined) ?? []).map((catcher) => catcher.Next),
    ];
    for (const target of targets) if (typeof target === 'string') edges.push([name, target]);
  }
  return edges;
}

describe('adaptDefinitionForLocalRun on state-machines/bulk-export.asl.json', () => {
  const original = loadDefinition();
  const { definition, taskFunctions } = adaptDefinitionForLocalRun(original);
  const map = definition.States[MAP] as Json;
  const originalMap = original.States[MAP] as Json;

  it('fills every substitution', () => {
    // Assess
    expect(JSON.stringify(original)).toContain('${');
    expect(JSON.stringify(definition)).not.toContain('${');
  });

  it('maps every Task state, nested ones included, to its function', () => {
    expect(Object.fromEntries(taskFunctions)).toStrictEqual({
      'Prepare Export': 'PrepareExport',
      'Mint Token For Kick-Off': 'MintToken',
      'Kick Off Export': 'KickOff',
      'Mint Token For Status': 'MintToken',
      'Poll Export Status': 'PollStatus',
      'Mint Token For File': 'MintToken',
      'Download File': 'DownloadFile',
      [READER]: LOCAL_ITEM_READER_FUNCTION,
      'Mint Token For Finalize': 'MintToken',
      'Finalize Export': 'FinalizeExport',
      'Mint Token For Clean-Up': 'MintToken',
      'Clean Up Failed Export': 'CleanUp',
    });
  });

  it('points every Task at the local ARN of its function', () => {
    // Prepare
    const processor = map.ItemProcessor as Definition;
    const tasks = { ...definition.States, ...processor.States };
    // Assess
    for (const [name, functionName] of taskFunctions) {
      expect(tasks[name]?.Resource).toBe(localFunctionArn(functionName));
    }
    expect(localFunctionArn('KickOff')).toBe('arn:aws:lambda:local:000000000000:function:KickOff');
  });

  it('replaces the ItemReader with a Task that reads the same object and carries the Map Catch', () => {
    // Prepare
    const reader = originalMap.ItemReader as Json;
    // Assess
    expect(definition.States[READER]).toStrictEqual({
      Type: 'Task',
      Resource: localFunctionArn(LOCAL_ITEM_READER_FUNCTION),
      Parameters: { ...(reader.Parameters as Json), ReaderConfig: reader.ReaderConfig },
      ResultPath: '$.__itemReader',
      Catch: originalMap.Catch,
      Next: MAP,
    });
    expect(definition.States[READER]?.Parameters).toStrictEqual({
      'Bucket.$': '$.export.bucket',
      'Key.$': '$.poll.manifest.filesKey',
      ReaderConfig: { InputType: 'JSON' },
    });
  });

  it('turns the Distributed Map into an inline Map over the items the reader put at $.__itemReader', () => {
    // Prepare
    const {
      ItemReader: _reader,
      ToleratedFailurePercentage: _tolerated,
      ItemProcessor: originalProcessor,
      ...kept
    } = originalMap;
    const { ProcessorConfig: _config, ...processor } = originalProcessor as Json;
    // Assess
    expect(map).toStrictEqual({
      ...kept,
      ItemsPath: '$.__itemReader',
      ItemProcessor: {
        ...processor,
        States: Object.fromEntries(
          Object.entries((processor as Definition).States).map(([name, state]) => [
            name,
            typeof state.Resource === 'string'
              ? { ...state, Resource: localFunctionArn(taskFunctions.get(name) ?? '?') }
              : state,
          ]),
        ),
      },
    });
  });

  it('sends every transition that entered the Map to the reader instead', () => {
    // Prepare
    const before = transitions(original)
      .filter(([, to]) => to === MAP)
      .map(([from]) => from);
    const after = transitions(definition);
    // Assess
    expect(before).toStrictEqual(['Is Export Complete?']);
    expect(after.filter(([, to]) => to === READER).map(([from]) => from)).toStrictEqual(before);
    expect(after.filter(([, to]) => to === MAP)).toStrictEqual([[READER, MAP]]);
  });

  it('changes nothing else: every other state is the original with its ARN filled in and the Map redirected', () => {
    for (const [name, originalState] of Object.entries(original.States)) {
      if (name === MAP) continue;
      const state = JSON.parse(JSON.stringify(originalState).replaceAll(`"${MAP}"`, `"${READER}"`)) as Json;
      const expected =
        typeof state.Resource === 'string'
          ? { ...state, Resource: localFunctionArn(taskFunctions.get(name) ?? '?') }
          : state;
      expect(definition.States[name]).toStrictEqual(expected);
    }
    expect(Object.keys(definition.States)).toStrictEqual([
      ...Object.keys(original.States).slice(0, Object.keys(original.States).indexOf(MAP)),
      READER,
      ...Object.keys(original.States).slice(Object.keys(original.States).indexOf(MAP)),
    ]);
    expect(definition.StartAt).toBe('Prepare Export');
    expect(definition.Comment).toBe(original.Comment);
  });

  it('does not modify its input', () => {
    expect(original).toStrictEqual(loadDefinition());
  });

  it('is accepted by aws-local-stepfunctions', () => {
    // Act
    const machine = new StateMachine(definition as unknown as LibraryDefinition, {
      validationOptions: { checkArn: false },
    });
    // Assess
    expect(machine).toBeInstanceOf(StateMachine);
  });
});

describe('the ASL file itself', () => {
  it('passes asl-validator', () => {
    // Act
    const output = execFileSync('node_modules/.bin/asl-validator', ['--json-path', DEFINITION_PATH], {
      encoding: 'utf8',
    });
    // Assess
    expect(output.trim()).toBe(`✓ State machine definition "${DEFINITION_PATH}" is valid`);
  });

  it('lists its Wait states', () => {
    expect(waitStateNames(loadDefinition())).toStrictEqual([
      'Wait Before Retrying Kick-Off',
      'Wait For Export',
    ]);
  });

  it('lists its retrying states, nested ones included', () => {
    expect(retryingStateNames(loadDefinition())).toStrictEqual([
      'Prepare Export',
      'Mint Token For Kick-Off',
      'Kick Off Export',
      'Mint Token For Status',
      'Poll Export Status',
      'Mint Token For File',
      'Download File',
      'Mint Token For Finalize',
      'Finalize Export',
      'Mint Token For Clean-Up',
      'Clean Up Failed Export',
    ]);
  });

  it('keeps the same Wait and retrying states after adaptation', () => {
    // Prepare
    const original = loadDefinition();
    // Act
    const { definition } = adaptDefinitionForLocalRun(original);
    // Assess
    expect(waitStateNames(definition)).toStrictEqual(waitStateNames(original));
    expect(retryingStateNames(definition)).toStrictEqual(retryingStateNames(original));
  });
});

describe('adaptDefinitionForLocalRun on small definitions', () => {
  const task = (fn: string, extra: Json = {}): Json => ({
    Type: 'Task',
    Resource: substitution(`${fn}FunctionArn`),
    ...extra,
  });
  const readerMap = (extra: Json = {}): Json => ({
    Type: 'Map',
    ItemReader: {
      Resource: 'arn:aws:states:::s3:getObject',
      Parameters: { Bucket: 'b', 'Key.$': '$.key' },
    },
    ItemProcessor: {
      ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' },
      StartAt: 'Work',
      States: { Work: task('Work', { End: true }) },
    },
    Label: 'Files',
    ToleratedFailureCount: 0,
    ...extra,
  });

  it('redirects StartAt, Default and Catch into the Map, and defaults ReaderConfig to {}', () => {
    // Prepare
    const machine = {
      StartAt: 'Files',
      States: {
        Files: readerMap({ Catch: [{ ErrorEquals: ['States.ALL'], Next: 'Recover' }], Next: 'Done' }),
        Recover: task('Recover', { Catch: [{ ErrorEquals: ['States.ALL'], Next: 'Files' }], Next: 'Route' }),
        Route: {
          Type: 'Choice',
          Choices: [{ Variable: '$.x', BooleanEquals: true, Next: 'Files' }],
          Default: 'Files',
        },
        Done: { Type: 'Succeed' },
      },
    };
    // Act
    const { definition, taskFunctions } = adaptDefinitionForLocalRun(machine);
    // Assess
    expect(definition).toStrictEqual({
      StartAt: 'Files [ItemReader]',
      States: {
        'Files [ItemReader]': {
          Type: 'Task',
          Resource: localFunctionArn(LOCAL_ITEM_READER_FUNCTION),
          Parameters: { Bucket: 'b', 'Key.$': '$.key', ReaderConfig: {} },
          ResultPath: '$.__itemReader',
          Catch: [{ ErrorEquals: ['States.ALL'], Next: 'Recover' }],
          Next: 'Files',
        },
        Files: {
          Type: 'Map',
          ItemProcessor: {
            StartAt: 'Work',
            States: { Work: { Type: 'Task', Resource: localFunctionArn('Work'), End: true } },
          },
          Catch: [{ ErrorEquals: ['States.ALL'], Next: 'Recover' }],
          Next: 'Done',
          ItemsPath: '$.__itemReader',
        },
        Recover: {
          Type: 'Task',
          Resource: localFunctionArn('Recover'),
          Catch: [{ ErrorEquals: ['States.ALL'], Next: 'Files [ItemReader]' }],
          Next: 'Route',
        },
        Route: {
          Type: 'Choice',
          Choices: [{ Variable: '$.x', BooleanEquals: true, Next: 'Files [ItemReader]' }],
          Default: 'Files [ItemReader]',
        },
        Done: { Type: 'Succeed' },
      },
    });
    expect(Object.fromEntries(taskFunctions)).toStrictEqual({
      'Files [ItemReader]': LOCAL_ITEM_READER_FUNCTION,
      Work: 'Work',
      Recover: 'Recover',
    });
  });

  it('gives a reader no Catch when the Map has none', () => {
    // Act
    const { definition } = adaptDefinitionForLocalRun({
      StartAt: 'Files',
      States: { Files: readerMap({ End: true }) },
    });
    // Assess
    expect(Object.keys(definition.States['Files [ItemReader]'] ?? {})).toStrictEqual([
      'Type',
      'Resource',
      'Parameters',
      'ResultPath',
      'Next',
    ]);
  });

  it('turns a legacy Iterator into an ItemProcessor and maps its tasks', () => {
    // Prepare
    const machine = {
      StartAt: 'Each',
      States: {
        Each: {
          Type: 'Map',
          Iterator: { StartAt: 'Step', States: { Step: task('Step', { End: true }) } },
          End: true,
        },
      },
    };
    // Act
    const { definition, taskFunctions } = adaptDefinitionForLocalRun(machine);
    // Assess
    expect(definition.States.Each).toStrictEqual({
      Type: 'Map',
      ItemProcessor: {
        StartAt: 'Step',
        States: { Step: { Type: 'Task', Resource: localFunctionArn('Step'), End: true } },
      },
      End: true,
    });
    expect(Object.fromEntries(taskFunctions)).toStrictEqual({ Step: 'Step' });
  });

  it('bridges a reader Map nested inside another Map', () => {
    // Prepare
    const machine = {
      StartAt: 'Outer',
      States: {
        Outer: {
          Type: 'Map',
          ItemProcessor: { StartAt: 'Inner', States: { Inner: readerMap({ End: true }) } },
          End: true,
        },
      },
    };
    // Act
    const { definition, taskFunctions } = adaptDefinitionForLocalRun(machine);
    // Assess
    const processor = (definition.States.Outer as { ItemProcessor: Definition }).ItemProcessor;
    expect(processor.StartAt).toBe('Inner [ItemReader]');
    expect(Object.keys(processor.States)).toStrictEqual(['Inner [ItemReader]', 'Inner']);
    expect([...taskFunctions.keys()]).toStrictEqual(['Work', 'Inner [ItemReader]']);
  });

  it.each([
    [
      'an unknown substitution',
      { StartAt: 'A', States: { A: { Type: 'Pass', Result: substitution('BucketName'), End: true } } },
      `the definition has a substitution the local runner cannot fill: ${substitution('BucketName')}`,
    ],
    [
      'a substitution that is not a function ARN',
      { StartAt: 'A', States: { A: { Type: 'Task', Resource: substitution('KickOffRoleArn'), End: true } } },
      `the definition has a substitution the local runner cannot fill: ${substitution('KickOffRoleArn')}`,
    ],
    [
      'a Task calling another service',
      {
        StartAt: 'Notify',
        States: { Notify: { Type: 'Task', Resource: 'arn:aws:states:::sns:publish', End: true } },
      },
      'Task state "Notify" calls arn:aws:states:::sns:publish; the local runner only runs our Lambda handlers',
    ],
    [
      'a Task calling a real Lambda ARN',
      {
        StartAt: 'Real',
        States: {
          Real: {
            Type: 'Task',
            Resource: 'arn:aws:lambda:us-east-1:123456789012:function:KickOff',
            End: true,
          },
        },
      },
      'Task state "Real" calls arn:aws:lambda:us-east-1:123456789012:function:KickOff; the local runner only runs our Lambda handlers',
    ],
    [
      'a nested Task calling another service',
      {
        StartAt: 'Each',
        States: {
          Each: {
            Type: 'Map',
            ItemProcessor: {
              StartAt: 'Put',
              States: { Put: { Type: 'Task', Resource: 'arn:aws:states:::dynamodb:putItem', End: true } },
            },
            End: true,
          },
        },
      },
      'Task state "Put" calls arn:aws:states:::dynamodb:putItem; the local runner only runs our Lambda handlers',
    ],
    [
      'an ItemReader that lists objects',
      {
        StartAt: 'Files',
        States: {
          Files: {
            Type: 'Map',
            ItemReader: { Resource: 'arn:aws:states:::s3:listObjectsV2', Parameters: { Bucket: 'b' } },
            ItemProcessor: { StartAt: 'P', States: { P: { Type: 'Pass', End: true } } },
            End: true,
          },
        },
      },
      'Map state "Files" reads items with arn:aws:states:::s3:listObjectsV2; only s3:getObject is bridged locally',
    ],
  ])('refuses %s', (_, machine, message) => {
    // Act
    const error = thrown(() => adaptDefinitionForLocalRun(machine));
    // Assess
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toBe(message);
  });
});
