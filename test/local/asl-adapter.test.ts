import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { StateMachine } from 'aws-local-stepfunctions';
import { describe, expect, it } from 'vitest';
import {
  adaptDefinitionForLocalRun,
  batchItems,
  LOCAL_ITEM_READER_FUNCTION,
  LOCAL_START_EXECUTION_FUNCTION,
  localFunctionArn,
  retryingStateNames,
  waitStateNames,
} from '../../scripts/local/asl-adapter.js';
import { thrown } from '../support/thrown.js';

type Json = Record<string, unknown>;
type Definition = { StartAt: string; States: Record<string, Json>; [key: string]: unknown };
type LibraryDefinition = ConstructorParameters<typeof StateMachine>[0];

const DEFINITION_PATH = 'state-machines/bulk-export.asl.json';
const CLEAN_UP_DEFINITION_PATH = 'state-machines/clean-up-ended-export.asl.json';
const MAP = 'Download Files';
const READER = 'Download Files [ItemReader]';
const TOLERATED = 'Download Files [tolerated failure]';
const RETRY_MAP = 'Retry Failed Files';
const RETRY_READER = 'Retry Failed Files [ItemReader]';
const CHUNK_MAP = 'Export Chunks';
const CHUNK_READER = 'Export Chunks [ItemReader]';
const VERIFY_MAP = 'Verify Files';
const VERIFY_READER = 'Verify Files [ItemReader]';
const PUBLISH_MAP = 'Publish Files';
const PUBLISH_READER = 'Publish Files [ItemReader]';
const PARTIAL_MAP = 'Download Partial Files';
const PARTIAL_READER = 'Download Partial Files [ItemReader]';
const READERS: Readonly<Record<string, string>> = {
  [MAP]: READER,
  [PARTIAL_MAP]: PARTIAL_READER,
  [RETRY_MAP]: RETRY_READER,
  [CHUNK_MAP]: CHUNK_READER,
  [VERIFY_MAP]: VERIFY_READER,
  [PUBLISH_MAP]: PUBLISH_READER,
};

/** A CDK-style `${Name}` placeholder, as the ASL file spells it. */
const substitution = (name: string) => `\${${name}}`;

const loadDefinition = (path = DEFINITION_PATH): Definition =>
  JSON.parse(readFileSync(path, 'utf8')) as Definition;

/** What rule 3 appends to the Catch of every Task of a processor whose Map tolerates all failures. */
const toleratedCatch = (endName: string): Json => ({
  ErrorEquals: ['States.ALL'],
  ResultPath: '$.toleratedFailure',
  Next: endName,
});

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
      'Mint Token For Plan': 'MintToken',
      'Plan Chunks': 'PlanChunks',
      [CHUNK_READER]: LOCAL_ITEM_READER_FUNCTION,
      'Mint Token For Chunk': 'MintToken',
      'Kick Off Chunk': 'KickOff',
      'Mint Token For Chunk Status': 'MintToken',
      'Poll Chunk Status': 'PollStatus',
      'Merge Chunks': 'MergeChunks',
      'Mint Token For Kick-Off': 'MintToken',
      'Kick Off Export': 'KickOff',
      'Mint Token For Status': 'MintToken',
      'Poll Export Status': 'PollStatus',
      'Continue In A New Execution': LOCAL_START_EXECUTION_FUNCTION,
      'Mint Token For Partial Batch': 'MintToken',
      'Download Partial Batch': 'DownloadFile',
      [PARTIAL_READER]: LOCAL_ITEM_READER_FUNCTION,
      'Mint Token For Batch': 'MintToken',
      'Download Batch': 'DownloadFile',
      [READER]: LOCAL_ITEM_READER_FUNCTION,
      'Check Files': 'CheckFiles',
      'Mint Token For Retried Batch': 'MintToken',
      'Download Retried Batch': 'DownloadFile',
      [RETRY_READER]: LOCAL_ITEM_READER_FUNCTION,
      'Verify File Batch': 'VerifyFiles',
      [VERIFY_READER]: LOCAL_ITEM_READER_FUNCTION,
      'Publish File Batch': 'VerifyFiles',
      [PUBLISH_READER]: LOCAL_ITEM_READER_FUNCTION,
      'Finalize Export': 'FinalizeExport',
      'Mint Token For Completion': 'MintToken',
      'Complete Export': 'CompleteExport',
      'Mint Token For Clean-Up': 'MintToken',
      'Clean Up Failed Export': 'CleanUp',
    });
  });

  it('points every Task at the local ARN of its function', () => {
    // Prepare
    const processor = map.ItemProcessor as Definition;
    const retryProcessor = (definition.States[RETRY_MAP] as Json).ItemProcessor as Definition;
    const chunkProcessor = (definition.States[CHUNK_MAP] as Json).ItemProcessor as Definition;
    const verifyProcessor = (definition.States[VERIFY_MAP] as Json).ItemProcessor as Definition;
    const publishProcessor = (definition.States[PUBLISH_MAP] as Json).ItemProcessor as Definition;
    const partialProcessor = (definition.States[PARTIAL_MAP] as Json).ItemProcessor as Definition;
    const tasks = {
      ...partialProcessor.States,
      ...definition.States,
      ...processor.States,
      ...retryProcessor.States,
      ...chunkProcessor.States,
      ...verifyProcessor.States,
      ...publishProcessor.States,
    };
    // Assess
    expect(Object.keys(tasks)).toEqual(expect.arrayContaining([...taskFunctions.keys()]));
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
      'Key.$': '$.poll.manifest.batchesKey',
      ReaderConfig: { InputType: 'JSON' },
    });
    expect(originalMap.Catch).toStrictEqual([
      { ErrorEquals: ['States.ALL'], ResultPath: '$.failure', Next: 'Mint Token For Clean-Up' },
    ]);
  });

  it('bridges the retry pass the same way: a reader of the retry list, with no Catch since its Map has none', () => {
    // Prepare
    const retryMap = original.States[RETRY_MAP] as Json;
    const reader = retryMap.ItemReader as Json;
    // Assess
    expect(retryMap.Catch).toBeUndefined();
    expect(definition.States[RETRY_READER]).toStrictEqual({
      Type: 'Task',
      Resource: localFunctionArn(LOCAL_ITEM_READER_FUNCTION),
      Parameters: { ...(reader.Parameters as Json), ReaderConfig: reader.ReaderConfig },
      ResultPath: '$.__itemReader',
      Next: RETRY_MAP,
    });
    expect(definition.States[RETRY_READER]?.Parameters).toStrictEqual({
      'Bucket.$': '$.export.bucket',
      'Key.$': '$.check.retryBatchesKey',
      ReaderConfig: { InputType: 'JSON' },
    });
    expect(definition.States[RETRY_MAP]).not.toHaveProperty('ItemReader');
    expect(definition.States[RETRY_MAP]?.ItemsPath).toBe('$.__itemReader');
    // Only the retry pass tells Download File to keep a file that landed meanwhile (a redrive runs it again).
    const bridged = definition.States[RETRY_MAP] as Json;
    const download = (bridged.ItemProcessor as Definition).States['Download Retried Batch'] as Json;
    expect((bridged.ItemSelector as Json).pass).toBe('retry');
    expect((download.Parameters as Json)['pass.$']).toBe('$.pass');
    expect(map.ItemSelector as Json).not.toHaveProperty('pass');
  });

  it('turns the first pass into an inline Map whose Tasks end a failed item in a Succeed state, as its 100 % tolerance does on AWS', () => {
    // Prepare
    const {
      ItemReader: _reader,
      ToleratedFailurePercentage: tolerated,
      ItemProcessor: originalProcessor,
      ...kept
    } = originalMap;
    const { ProcessorConfig: _config, ...processor } = originalProcessor as Json;
    // Assess
    expect(tolerated).toBe(100);
    expect(map).toStrictEqual({
      ...kept,
      ItemsPath: '$.__itemReader',
      ItemProcessor: {
        ...processor,
        States: {
          ...Object.fromEntries(
            Object.entries((processor as Definition).States).map(([name, state]) => [
              name,
              typeof state.Resource === 'string'
                ? {
                    ...state,
                    Resource: localFunctionArn(taskFunctions.get(name) ?? '?'),
                    Catch: [toleratedCatch(TOLERATED)],
                  }
                : state,
            ]),
          ),
          [TOLERATED]: { Type: 'Succeed' },
        },
      },
    });
    const states = (map.ItemProcessor as Definition).States;
    expect(
      Object.entries(states)
        .filter(([, state]) => Array.isArray(state.Catch))
        .map(([name]) => name),
    ).toStrictEqual(['Mint Token For Batch', 'Download Batch']);
    expect(states['Is Batch Complete?']).toStrictEqual(
      (originalProcessor as Definition).States['Is Batch Complete?'],
    );
  });

  it('turns the retry pass into a plain inline Map: with 0 % tolerated, a file that fails fails the Map', () => {
    // Prepare
    const retryMap = original.States[RETRY_MAP] as Json;
    const {
      ItemReader: _reader,
      ToleratedFailurePercentage: tolerated,
      ItemProcessor: originalProcessor,
      ...kept
    } = retryMap;
    const { ProcessorConfig: _config, ...processor } = originalProcessor as Json;
    // Assess
    expect(tolerated).toBe(0);
    expect(definition.States[RETRY_MAP]).toStrictEqual({
      ...kept,
      Next: VERIFY_READER,
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
    expect(JSON.stringify(definition.States[RETRY_MAP])).not.toContain('tolerated failure');
  });

  it.each([
    [MAP, READER, ['Chunks Merged', 'Is Export Complete?']],
    [RETRY_MAP, RETRY_READER, ['Wait Before Retrying Files']],
    [CHUNK_MAP, CHUNK_READER, ['Continue The Chunks', 'Plan Chunks']],
    [VERIFY_MAP, VERIFY_READER, ['Did Every File Land?', 'Retry Failed Files']],
    [PUBLISH_MAP, PUBLISH_READER, ['Verify Files']],
  ])('sends every transition that entered %s to its reader instead', (mapName, readerName, entries) => {
    // Prepare
    const before = transitions(original)
      .filter(([, to]) => to === mapName)
      .map(([from]) => from);
    const after = transitions(definition);
    // Assess
    expect(before).toStrictEqual(entries);
    expect(after.filter(([, to]) => to === readerName).map(([from]) => from)).toStrictEqual(before);
    expect(after.filter(([, to]) => to === mapName)).toStrictEqual([[readerName, mapName]]);
  });

  it('changes nothing else: every other state is the original with its ARN filled in and the Maps redirected', () => {
    for (const [name, originalState] of Object.entries(original.States)) {
      if (name in READERS) continue;
      let json = JSON.stringify(originalState);
      for (const [mapName, readerName] of Object.entries(READERS)) {
        json = json.replaceAll(`"${mapName}"`, `"${readerName}"`);
      }
      const state = JSON.parse(json) as Json;
      const expected =
        typeof state.Resource === 'string'
          ? { ...state, Resource: localFunctionArn(taskFunctions.get(name) ?? '?') }
          : state;
      expect(definition.States[name]).toStrictEqual(expected);
    }
    expect(Object.keys(definition.States)).toStrictEqual(
      Object.keys(original.States).flatMap((name) => {
        const readerName = READERS[name];
        return readerName ? [readerName, name] : [name];
      }),
    );
    expect(Object.keys(definition.States)).toHaveLength(
      Object.keys(original.States).length + Object.keys(READERS).length,
    );
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

describe('adaptDefinitionForLocalRun on state-machines/clean-up-ended-export.asl.json', () => {
  const original = loadDefinition(CLEAN_UP_DEFINITION_PATH);
  const { definition, taskFunctions } = adaptDefinitionForLocalRun(original);
  /** The "Step Functions Execution Status Change" event EventBridge starts this machine with. */
  const statusChange = (detail: Json): Json => ({
    version: '0',
    id: 'b3c1d7e4-0000-4000-8000-000000000000',
    'detail-type': 'Step Functions Execution Status Change',
    source: 'aws.states',
    account: '123456789012',
    time: '2026-12-06T19:00:00Z',
    region: 'eu-west-1',
    resources: ['arn:aws:states:eu-west-1:123456789012:execution:bulk-export:epic-nightly'],
    detail: {
      executionArn: 'arn:aws:states:eu-west-1:123456789012:execution:bulk-export:epic-nightly',
      stateMachineArn: 'arn:aws:states:eu-west-1:123456789012:stateMachine:bulk-export',
      name: 'epic-nightly',
      startDate: 1_796_000_000_000,
      stopDate: 1_796_000_600_000,
      input: JSON.stringify({ sourceId: 'epic', since: 'auto' }),
      output: null,
      ...detail,
    },
  });

  it('fills every substitution and maps its Tasks to the minter and the clean-up', () => {
    // Assess
    expect(JSON.stringify(original)).toContain(substitution('CleanUpEndedExportFunctionArn'));
    expect(JSON.stringify(definition)).not.toContain('${');
    expect(Object.fromEntries(taskFunctions)).toStrictEqual({
      'Mint Token For Clean-Up': 'MintToken',
      'Clean Up Ended Export': 'CleanUpEndedExport',
    });
  });

  it('changes nothing but the ARNs: it has no Map to bridge', () => {
    // Prepare
    const expected = Object.fromEntries(
      Object.entries(original.States).map(([name, state]) => [
        name,
        typeof state.Resource === 'string'
          ? { ...state, Resource: localFunctionArn(taskFunctions.get(name) ?? '?') }
          : state,
      ]),
    );
    // Assess
    expect(definition).toStrictEqual({ ...original, States: expected });
    expect(definition.StartAt).toBe('Read Ended Execution');
  });

  it('runs in aws-local-stepfunctions: the minter gets the source from the ended input, the clean-up the ended execution and token', async () => {
    // Prepare
    const calls: Array<[string, unknown]> = [];
    const machine = new StateMachine(definition as unknown as LibraryDefinition, {
      validationOptions: { checkArn: false },
    });
    // Act
    const output = await machine.run(
      statusChange({
        status: 'FAILED',
        error: 'States.ExceedToleratedFailureThreshold',
        cause: 'The specified tolerated failure threshold was exceeded',
      }) as never,
      {
        overrides: {
          taskResourceLocalHandlers: {
            'Mint Token For Clean-Up': (input) => {
              calls.push(['MintToken', input]);
              return { sealedToken: 'sealed-1' };
            },
            'Clean Up Ended Export': (input) => {
              calls.push(['CleanUpEndedExport', input]);
              return { outcome: 'resumable' };
            },
          },
        },
      },
    ).result;
    // Assess
    expect(calls).toStrictEqual([
      ['MintToken', { sourceId: 'epic', executionName: 'epic-nightly', minValiditySeconds: 60 }],
      [
        'CleanUpEndedExport',
        {
          ended: {
            executionName: 'epic-nightly',
            executionArn: 'arn:aws:states:eu-west-1:123456789012:execution:bulk-export:epic-nightly',
            status: 'FAILED',
            error: 'States.ExceedToleratedFailureThreshold',
            cause: 'The specified tolerated failure threshold was exceeded',
            input: { sourceId: 'epic', since: 'auto' },
          },
          sealedToken: 'sealed-1',
        },
      ],
    ]);
    expect(output).toStrictEqual({ outcome: 'resumable' });
  });

  it('still cleans up a stopped export when no token can be minted, with a null token', async () => {
    // Prepare
    const cleanUps: unknown[] = [];
    const machine = new StateMachine(definition as unknown as LibraryDefinition, {
      validationOptions: { checkArn: false },
    });
    // Act
    const output = await machine.run(statusChange({ status: 'ABORTED', error: null, cause: null }) as never, {
      overrides: {
        taskResourceLocalHandlers: {
          'Mint Token For Clean-Up': () => {
            throw Object.assign(new Error('the token endpoint refused the client'), {
              name: 'AuthorizationError',
            });
          },
          'Clean Up Ended Export': (input) => {
            cleanUps.push(input);
            return { outcome: 'cancelled' };
          },
        },
      },
    }).result;
    // Assess
    expect(cleanUps).toStrictEqual([
      {
        ended: {
          executionName: 'epic-nightly',
          executionArn: 'arn:aws:states:eu-west-1:123456789012:execution:bulk-export:epic-nightly',
          status: 'ABORTED',
          error: null,
          cause: null,
          input: { sourceId: 'epic', since: 'auto' },
        },
        sealedToken: null,
      },
    ]);
    expect(output).toStrictEqual({ outcome: 'cancelled' });
  });
});

describe('the ASL file itself', () => {
  it.each([DEFINITION_PATH, CLEAN_UP_DEFINITION_PATH])('%s passes asl-validator', (path) => {
    // Act
    const output = execFileSync('node_modules/.bin/asl-validator', ['--json-path', path], {
      encoding: 'utf8',
    });
    // Assess
    expect(output.trim()).toBe(`✓ State machine definition "${path}" is valid`);
  });

  it('lists its Wait states', () => {
    expect(waitStateNames(loadDefinition())).toStrictEqual([
      'Wait Before Retrying Chunk Kick-Off',
      'Wait For Chunk',
      'Wait Before Retrying Kick-Off',
      'Wait For Export',
      'Wait Before Retrying Files',
    ]);
  });

  it('lists its retrying states, nested ones included', () => {
    expect(retryingStateNames(loadDefinition())).toStrictEqual([
      'Prepare Export',
      'Mint Token For Plan',
      'Plan Chunks',
      'Mint Token For Chunk',
      'Kick Off Chunk',
      'Mint Token For Chunk Status',
      'Poll Chunk Status',
      'Merge Chunks',
      'Mint Token For Kick-Off',
      'Kick Off Export',
      'Mint Token For Status',
      'Poll Export Status',
      'Mint Token For Partial Batch',
      'Download Partial Batch',
      'Continue In A New Execution',
      'Mint Token For Batch',
      'Download Batch',
      'Check Files',
      'Mint Token For Retried Batch',
      'Download Retried Batch',
      'Verify File Batch',
      'Publish File Batch',
      'Finalize Export',
      'Mint Token For Completion',
      'Complete Export',
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

  it('ends a failed item of a 100 % tolerant Map in a Succeed state: a Catch after its own on every Task of the processor', () => {
    // Prepare
    const machine = {
      StartAt: 'Files',
      States: {
        Files: readerMap({
          ToleratedFailurePercentage: 100,
          ItemProcessor: {
            ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' },
            StartAt: 'Mint',
            States: {
              Mint: task('Mint', {
                Catch: [{ ErrorEquals: ['TokenRefused'], ResultPath: '$.refused', Next: 'Note Refusal' }],
                Next: 'Work',
              }),
              Work: task('Work', { ResultPath: '$.transfer', Next: 'Done?' }),
              'Done?': {
                Type: 'Choice',
                Choices: [{ Variable: '$.transfer.status', StringEquals: 'complete', Next: 'Landed' }],
                Default: 'Mint',
              },
              'Note Refusal': { Type: 'Pass', End: true },
              Landed: { Type: 'Succeed' },
            },
          },
          End: true,
        }),
      },
    };
    // Act
    const { definition, taskFunctions } = adaptDefinitionForLocalRun(machine);
    // Assess
    expect(definition.States.Files).toStrictEqual({
      Type: 'Map',
      ItemProcessor: {
        StartAt: 'Mint',
        States: {
          Mint: {
            Type: 'Task',
            Resource: localFunctionArn('Mint'),
            Catch: [
              { ErrorEquals: ['TokenRefused'], ResultPath: '$.refused', Next: 'Note Refusal' },
              toleratedCatch('Files [tolerated failure]'),
            ],
            Next: 'Work',
          },
          Work: {
            Type: 'Task',
            Resource: localFunctionArn('Work'),
            ResultPath: '$.transfer',
            Next: 'Done?',
            Catch: [toleratedCatch('Files [tolerated failure]')],
          },
          'Done?': {
            Type: 'Choice',
            Choices: [{ Variable: '$.transfer.status', StringEquals: 'complete', Next: 'Landed' }],
            Default: 'Mint',
          },
          'Note Refusal': { Type: 'Pass', End: true },
          Landed: { Type: 'Succeed' },
          'Files [tolerated failure]': { Type: 'Succeed' },
        },
      },
      End: true,
      ItemsPath: '$.__itemReader',
    });
    expect(definition.States['Files [ItemReader]']?.Next).toBe('Files');
    expect(Object.fromEntries(taskFunctions)).toStrictEqual({
      Mint: 'Mint',
      Work: 'Work',
      'Files [ItemReader]': LOCAL_ITEM_READER_FUNCTION,
    });
  });

  it('leaves the processor of a Map that tolerates 0 % as it is, and drops the setting', () => {
    // Act
    const { definition } = adaptDefinitionForLocalRun({
      StartAt: 'Files',
      States: { Files: readerMap({ ToleratedFailurePercentage: 0, End: true }) },
    });
    // Assess
    expect(definition.States.Files).toStrictEqual({
      Type: 'Map',
      ItemProcessor: {
        StartAt: 'Work',
        States: { Work: { Type: 'Task', Resource: localFunctionArn('Work'), End: true } },
      },
      End: true,
      ItemsPath: '$.__itemReader',
    });
  });

  describe('run by aws-local-stepfunctions, a Map over three items whose second fails', () => {
    const eachItem = (extra: Json): Json => ({
      StartAt: 'Each',
      States: {
        Each: {
          Type: 'Map',
          ItemsPath: '$.items',
          ItemProcessor: {
            StartAt: 'Work',
            States: { Work: task('Work', { ResultPath: '$.result', End: true }) },
          },
          End: true,
          ...extra,
        },
      },
    });
    const run = (machine: Json) => {
      const { definition } = adaptDefinitionForLocalRun(machine);
      const library = new StateMachine(definition as unknown as LibraryDefinition, {
        validationOptions: { checkArn: false },
      });
      return library.run({ items: [{ n: 1 }, { n: 2 }, { n: 3 }] } as never, {
        overrides: {
          taskResourceLocalHandlers: {
            Work: (input) => {
              const { n } = input as { n: number };
              if (n === 2) throw Object.assign(new Error('the link has expired'), { name: 'FileGone' });
              return { landed: n };
            },
          },
        },
      }).result;
    };

    it('goes on past the failed item when it tolerates 100 %, which ends with its error at $.toleratedFailure', async () => {
      expect(await run(eachItem({ ToleratedFailurePercentage: 100 }))).toStrictEqual([
        { n: 1, result: { landed: 1 } },
        { n: 2, toleratedFailure: { Error: 'FileGone', Cause: 'the link has expired' } },
        { n: 3, result: { landed: 3 } },
      ]);
    });

    it('fails with the item when it tolerates 0 %', async () => {
      // Act
      const failure = await run(eachItem({ ToleratedFailurePercentage: 0 })).then(
        () => undefined,
        (error: unknown) => error as Error,
      );
      // Assess
      expect(failure).toBeInstanceOf(Error);
      expect(String((failure as Error & { cause?: unknown }).cause)).toBe('FileGone: the link has expired');
    });
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
    [
      'a Map that tolerates 50 % failures',
      { StartAt: 'Files', States: { Files: readerMap({ ToleratedFailurePercentage: 50, End: true }) } },
      'Map state "Files" tolerates 50 % failures; the local runner bridges only 0 and 100',
    ],
    [
      'a Map that tolerates 99.5 % failures',
      { StartAt: 'Files', States: { Files: readerMap({ ToleratedFailurePercentage: 99.5, End: true }) } },
      'Map state "Files" tolerates 99.5 % failures; the local runner bridges only 0 and 100',
    ],
    [
      'a nested Map that tolerates 1 % failures',
      {
        StartAt: 'Outer',
        States: {
          Outer: {
            Type: 'Map',
            ItemProcessor: {
              StartAt: 'Inner',
              States: { Inner: readerMap({ ToleratedFailurePercentage: 1, End: true }) },
            },
            End: true,
          },
        },
      },
      'Map state "Inner" tolerates 1 % failures; the local runner bridges only 0 and 100',
    ],
  ])('refuses %s', (_, machine, message) => {
    // Act
    const error = thrown(() => adaptDefinitionForLocalRun(machine));
    // Assess
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toBe(message);
  });
});

describe('the ItemBatcher bridge', () => {
  const batcherMap = (batcher: Json, extra: Json = {}): Json => ({
    Type: 'Map',
    ItemReader: {
      Resource: 'arn:aws:states:::s3:getObject',
      ReaderConfig: { InputType: 'JSON' },
      Parameters: { Bucket: 'b', 'Key.$': '$.key' },
    },
    ItemBatcher: batcher,
    ItemProcessor: {
      ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' },
      StartAt: 'Work',
      States: { Work: { Type: 'Task', Resource: localFunctionArn('Work'), End: true } },
    },
    End: true,
    ...extra,
  });

  it('hands the reader the batcher, its *Path fields as .$ fields, and drops it from the Map', () => {
    // Act
    const { definition } = adaptDefinitionForLocalRun({
      StartAt: 'Files',
      States: {
        Files: batcherMap({
          MaxItemsPerBatchPath: '$.perBatch',
          MaxInputBytesPerBatch: 1000,
          BatchInput: { 'export.$': '$.export', fixed: 1 },
        }),
      },
    });
    // Assess
    expect(definition.States['Files [ItemReader]']?.Parameters).toStrictEqual({
      Bucket: 'b',
      'Key.$': '$.key',
      ReaderConfig: { InputType: 'JSON' },
      ItemBatcher: {
        'MaxItemsPerBatch.$': '$.perBatch',
        MaxInputBytesPerBatch: 1000,
        BatchInput: { 'export.$': '$.export', fixed: 1 },
      },
    });
    expect(definition.States.Files).not.toHaveProperty('ItemBatcher');
    expect(definition.States.Files?.ItemsPath).toBe('$.__itemReader');
  });

  it('refuses an ItemSelector beside an ItemBatcher (AWS applies it per item, the bridge cannot)', () => {
    expect(
      thrown(() =>
        adaptDefinitionForLocalRun({
          StartAt: 'Files',
          States: {
            Files: batcherMap({ MaxItemsPerBatch: 2 }, { ItemSelector: { 'v.$': '$$.Map.Item.Value' } }),
          },
        }),
      ).message,
    ).toContain('both ItemSelector and ItemBatcher');
  });

  it('refuses ItemBatcher fields it does not know', () => {
    expect(
      thrown(() =>
        adaptDefinitionForLocalRun({ StartAt: 'Files', States: { Files: batcherMap({ MaxItems: 2 }) } }),
      ).message,
    ).toContain('MaxItems');
  });

  it('batches consecutive items by count, as { Items, BatchInput }', () => {
    expect(batchItems([1, 2, 3, 4, 5], { MaxItemsPerBatch: 2, BatchInput: { run: 'r' } })).toStrictEqual([
      { Items: [1, 2], BatchInput: { run: 'r' } },
      { Items: [3, 4], BatchInput: { run: 'r' } },
      { Items: [5], BatchInput: { run: 'r' } },
    ]);
    expect(batchItems([1, 2, 3], { MaxItemsPerBatch: 5 })).toStrictEqual([{ Items: [1, 2, 3] }]);
  });

  it('batches by bytes: each batch JSON, BatchInput included, at most MaxInputBytesPerBatch', () => {
    // Prepare
    const items = Array.from({ length: 40 }, (_, index) => ({ index, key: `type=Patient/part-${index}` }));
    const settings = { MaxInputBytesPerBatch: 300, BatchInput: { export: { sourceId: 'epic' } } };
    // Act
    const batches = batchItems(items, settings);
    // Assess
    expect(batches.length).toBeGreaterThan(5);
    expect(batches.flatMap((batch) => batch.Items as unknown[])).toStrictEqual(items);
    for (const batch of batches) expect(Buffer.byteLength(JSON.stringify(batch))).toBeLessThanOrEqual(300);
    // Each batch is full: the next item would not have fitted.
    for (const [at, batch] of batches.slice(0, -1).entries()) {
      const next = (batches[at + 1]!.Items as unknown[])[0];
      const grown = { ...batch, Items: [...(batch.Items as unknown[]), next] };
      expect(Buffer.byteLength(JSON.stringify(grown))).toBeGreaterThan(300);
    }
  });

  it('caps a batch at 256 KiB when no byte limit is given, and fails on an item that fits no batch', () => {
    // Prepare
    const big = 'x'.repeat(100 * 1024);
    // Act
    const batches = batchItems([big, big, big], {});
    // Assess
    expect(batches.map((batch) => (batch.Items as unknown[]).length)).toStrictEqual([2, 1]);
    const error = thrown(() => batchItems(['y'.repeat(500)], { MaxInputBytesPerBatch: 100 }));
    expect(error.name).toBe('States.ItemReaderFailed');
  });

  it('runs in aws-local-stepfunctions: one child per batch, its input { Items, BatchInput } from the Map input', async () => {
    // Prepare
    const { definition } = adaptDefinitionForLocalRun({
      StartAt: 'Files',
      States: {
        Files: batcherMap(
          { MaxItemsPerBatchPath: '$.perBatch', BatchInput: { 'run.$': '$.run' } },
          { ResultPath: '$.done' },
        ),
      },
    });
    const machine = new StateMachine(definition as unknown as LibraryDefinition, {
      validationOptions: { checkArn: false },
    });
    const seen: unknown[] = [];
    // Act
    const output = await machine.run({ key: 'files.json', perBatch: 2, run: 'r1' } as never, {
      overrides: {
        taskResourceLocalHandlers: {
          'Files [ItemReader]': (input) => {
            const { ItemBatcher } = input as unknown as { ItemBatcher: Parameters<typeof batchItems>[1] };
            return batchItems([{ i: 0 }, { i: 1 }, { i: 2 }], ItemBatcher) as never;
          },
          Work: (input) => {
            seen.push(input);
            return { first: (input as { Items: { i: number }[] }).Items[0]!.i };
          },
        },
      },
    }).result;
    // Assess
    expect(seen).toStrictEqual([
      { Items: [{ i: 0 }, { i: 1 }], BatchInput: { run: 'r1' } },
      { Items: [{ i: 2 }], BatchInput: { run: 'r1' } },
    ]);
    expect((output as Json).done).toStrictEqual([{ first: 0 }, { first: 2 }]);
  });
});
