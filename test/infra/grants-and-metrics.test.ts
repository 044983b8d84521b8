import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BulkExportStack } from '../../infra/bulk-export-stack.js';
import {
  actionsOf,
  grants,
  identityPolicies,
  type SynthesizedPipeline,
  synthesize,
} from './pipeline-fixture.js';

/** The construct's API for other stacks: who may start exports, who may read them, what to alarm on. */
let synth: SynthesizedPipeline;
let roles: { allSources: iam.Role; oneSource: iam.Role; starter: iam.Role };
beforeAll(() => {
  synth = synthesize(
    {},
    {
      configure: (app) => {
        const stack = app.node.findChild('Test') as BulkExportStack;
        const role = (id: string) => new iam.Role(stack, id, { assumedBy: new iam.AccountRootPrincipal() });
        roles = { allSources: role('Warehouse'), oneSource: role('EpicEtl'), starter: role('Starter') };
        stack.pipeline.grantReadExports(roles.allSources);
        stack.pipeline.grantReadExports(roles.oneSource, 'epic-prod');
        stack.pipeline.grantStartExport(roles.starter);
      },
    },
  );
});

const statementsOf = (role: iam.Role) =>
  identityPolicies(synth.template)
    .filter((policy) => policy.roles.includes(synth.logicalId(role)))
    .flatMap((policy) => policy.statements);
const bucketArn = () => ({ 'Fn::GetAtt': [synth.logicalId(synth.stack.pipeline.bucket), 'Arn'] });
const objects = (under: string) => ({ 'Fn::Join': ['', [bucketArn(), `/${under}`]] });

describe('grantReadExports', () => {
  it('reads every source’s published data, lists only under source=, decrypts through S3', () => {
    expect(statementsOf(roles.allSources)).toEqual([
      expect.objectContaining({ Action: 's3:GetObject', Resource: objects('source=*') }),
      expect.objectContaining({
        Action: 's3:ListBucket',
        Resource: bucketArn(),
        Condition: { StringLike: { 's3:prefix': ['source=*'] } },
      }),
      expect.objectContaining({
        Action: 'kms:Decrypt',
        Resource: { 'Fn::GetAtt': [synth.logicalId(synth.stack.pipeline.dataKey!), 'Arn'] },
        Condition: { StringEquals: { 'kms:ViaService': expect.anything() } },
      }),
    ]);
  });

  it('with a source id, that source’s data only', () => {
    const statements = statementsOf(roles.oneSource);
    expect(statements[0]).toMatchObject({ Action: 's3:GetObject', Resource: objects('source=epic-prod/*') });
    expect(statements[1]!.Condition).toEqual({ StringLike: { 's3:prefix': ['source=epic-prod/*'] } });
  });

  it('never reaches the pipeline’s own objects (_work/, _state/, _registry/, _failures/)', () => {
    for (const role of [roles.allSources, roles.oneSource]) {
      const text = JSON.stringify(statementsOf(role));
      expect(text).not.toMatch(/_work|_state|_registry|_failures|"\/\*"/);
    }
  });
});

describe('grantStartExport', () => {
  it('is StartExecution on the export state machine, nothing else', () => {
    expect(statementsOf(roles.starter)).toEqual([
      expect.objectContaining({
        Action: 'states:StartExecution',
        Resource: { Ref: synth.logicalId(synth.stack.pipeline.stateMachine) },
      }),
    ]);
  });
});

describe('metric helpers', () => {
  const resolved = (metric: { toMetricConfig(): unknown }) =>
    Stack.of(synth.stack).resolve(metric.toMetricConfig()) as {
      metricStat: { namespace: string; metricName: string; statistic: string; dimensions: unknown[] };
    };
  const dimensions = (metric: { toMetricConfig(): unknown }) =>
    new Set(resolved(metric).metricStat.dimensions as { name: string; value: string }[]);

  it('name the EMF metrics the functions emit, with exactly one of their dimension sets', () => {
    const pipeline = synth.stack.pipeline;
    expect(resolved(pipeline.metricExportsSucceeded()).metricStat).toMatchObject({
      namespace: 'FhirBulkExport',
      metricName: 'ExportsSucceeded',
      statistic: 'Sum',
    });
    expect(dimensions(pipeline.metricExportsSucceeded())).toEqual(
      new Set([{ name: 'service', value: 'fhir-bulk-export' }]),
    );
    expect(
      dimensions(pipeline.metricExportsFailed({ sourceId: 'epic-prod', errorCategory: 'timeout' })),
    ).toEqual(
      new Set([
        { name: 'service', value: 'fhir-bulk-export' },
        { name: 'SourceId', value: 'epic-prod' },
        { name: 'ErrorCategory', value: 'timeout' },
      ]),
    );
    expect(resolved(pipeline.metricExportDuration()).metricStat).toMatchObject({
      metricName: 'ExportDuration',
      statistic: 'Average',
    });
    expect(resolved(pipeline.metricFileSize({ statistic: 'p50' })).metricStat).toMatchObject({
      metricName: 'FileSize',
      statistic: 'p50',
    });
    for (const [metric, name] of [
      [pipeline.metricResourcesExported(), 'ResourcesExported'],
      [pipeline.metricBytesExported(), 'BytesExported'],
      [pipeline.metricFileRetries(), 'FileRetries'],
      [pipeline.metricCheckpoints(), 'Checkpoints'],
    ] as const)
      expect(resolved(metric).metricStat.metricName).toBe(name);
  });

  it('grants nothing through metrics: no role may put metrics but through the functions’ logs (EMF)', () => {
    const putters = identityPolicies(synth.template).filter((policy) =>
      policy.statements.some((statement) =>
        actionsOf(statement).some((action) => grants(action, 'cloudwatch:PutMetricData')),
      ),
    );
    expect(putters).toEqual([]);
  });
});
