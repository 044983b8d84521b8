import { beforeAll, describe, expect, it } from 'vitest';
import {
  REGISTRY_READERS,
  reservedConcurrency,
  TaskFunctions,
} from '../../infra/constructs/task-functions.js';
import {
  actionsOf,
  grants,
  identityPolicies,
  type SynthesizedPipeline,
  synthesize,
} from './pipeline-fixture.js';

let synth: SynthesizedPipeline;
beforeAll(() => {
  synth = synthesize();
});

describe('TaskFunctions', () => {
  it('is the part that holds the thirteen Task functions and the source access role', () => {
    const part = synth.stack.pipeline.node.findChild('TaskFunctions');
    expect(part).toBeInstanceOf(TaskFunctions);
    expect(Object.keys((part as TaskFunctions).functions)).toHaveLength(13);
    expect((part as TaskFunctions).sourceAccessRole).toBe(synth.stack.pipeline.sourceAccessRole);
  });

  it('lets every registry reader get a source registration, and only those and the ending functions', () => {
    const registration = 'arn:aws:s3:::bucket/_registry/sources/epic-prod.json';
    const readers = Object.entries(synth.stack.pipeline.functions)
      .filter(([, fn]) =>
        identityPolicies(synth.template)
          .filter((policy) => policy.roles.includes(synth.logicalId(fn.role!)))
          .flatMap((policy) => policy.statements)
          .some(
            (statement) =>
              actionsOf(statement).some((action) => grants(action, 's3:GetObject')) &&
              [statement.Resource]
                .flat()
                .some((resource) =>
                  grants(
                    JSON.stringify(resource).replace(/.*"\/(.*)"\]\]\}$/, 'arn:aws:s3:::bucket/$1'),
                    registration,
                  ),
                ),
          ),
      )
      .map(([name]) => name)
      .sort();
    // Verify Files, Finalize, Complete and Merge Chunks read everything under the prefix for their own reasons; CheckFiles and CleanUp only _work/ or nothing.
    expect(readers).toEqual(
      [
        ...REGISTRY_READERS,
        'CleanUp',
        'CompleteExport',
        'FinalizeExport',
        'MergeChunks',
        'VerifyFiles',
      ].sort(),
    );
  });

  it('lets Poll Status read back the folder claim and the job record it writes, and see a missing receipt as 404', () => {
    // A conditional PUT of _claim.json that finds one reads it back; recording the last poll reads job.json first.
    const statements = identityPolicies(synth.template)
      .filter((policy) =>
        policy.roles.includes(synth.logicalId(synth.stack.pipeline.functions.PollStatus.role!)),
      )
      .flatMap((policy) => policy.statements);
    const actions = statements.flatMap(actionsOf);
    expect(actions).toEqual(expect.arrayContaining(['s3:GetObject', 's3:PutObject', 's3:ListBucket']));
    const readsWork = statements.some(
      (statement) =>
        actionsOf(statement).includes('s3:GetObject') &&
        grants(
          JSON.stringify(statement.Resource).replace(/.*"\/(.*)"\]\]\}$/, 'arn:aws:s3:::bucket/$1'),
          'arn:aws:s3:::bucket/_work/source=epic-prod/execution=x/job.json',
        ),
    );
    expect(readsWork).toBe(true);
  });

  it('sizes reserved concurrency from the pipeline’s exports and downloads, never from the sources', () => {
    expect(reservedConcurrency({ exports: 5, downloads: 20 })).toMatchObject({
      PrepareExport: 7,
      DownloadFile: 20,
      MintToken: 32,
      Jwks: 5,
    });
    expect(reservedConcurrency(undefined)).toEqual({});
  });
});
