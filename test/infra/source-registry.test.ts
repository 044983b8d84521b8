import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { describe, expect, it } from 'vitest';
import { BulkExportPipeline, type BulkExportSourceProps } from '../../infra/bulk-export-pipeline.js';
import { registration } from '../../infra/constructs/source-registry.js';
import { addNagChecks, nagPacks } from '../../infra/nag.js';
import { parseRegisteredSource } from '../../lambdas/config.js';
import { actionsOf, grants, identityPolicies, type PolicyStatementJson } from './pipeline-fixture.js';

/**
 * The source registry and per-source isolation: sources live in S3, not in
 * the functions, so a pipeline holds hundreds of them and adding one changes
 * no function; the token minter reaches a source's secret and key only in a
 * session tagged with that source's id.
 */

const ACCOUNT = '123456789012';

/** `count` sources the way an operator registers them at scale: secrets and keys made outside CDK, tagged. */
function generatedSources(stack: Stack, count: number): BulkExportSourceProps[] {
  return Array.from({ length: count }, (_, index) => {
    const id = `practice-${String(index).padStart(4, '0')}`;
    return {
      id,
      clientSecret: secretsmanager.Secret.fromSecretCompleteArn(
        stack,
        `Secret-${id}`,
        `arn:aws:secretsmanager:us-east-1:${ACCOUNT}:secret:fhir-bulk-export/${id}-AbC123`,
      ),
      signingKey: kms.Key.fromKeyArn(stack, `Key-${id}`, `arn:aws:kms:us-east-1:${ACCOUNT}:key/${index}`),
      settings: {
        fhirBaseUrl: `https://fhir.eclinicalworks.example.org/practice/${index}/fhir/r4`,
        export: { level: 'group', groupId: `group-${index}` },
        maxConcurrency: 2,
      },
    };
  });
}

function pipelineWith(count: number) {
  const app = new App();
  const stack = new Stack(app, 'Registry', { env: { account: ACCOUNT, region: 'us-east-1' } });
  const pipeline = new BulkExportPipeline(stack, 'Pipeline', { sources: generatedSources(stack, count) });
  return { app, stack, pipeline };
}

type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>;

/** Every Lambda function of the pipeline with what decides its behaviour, and its role's policies. */
function functionsOf(template: Template) {
  const resources = template.toJSON().Resources as Resources;
  const policies = identityPolicies(template);
  return Object.fromEntries(
    Object.entries(resources)
      .filter(([, resource]) => resource.Type === 'AWS::Lambda::Function')
      .map(([id, { Properties }]) => {
        const roleId = (Properties.Role as { 'Fn::GetAtt': [string] })['Fn::GetAtt'][0];
        return [
          id,
          {
            Code: Properties.Code,
            Environment: Properties.Environment,
            MemorySize: Properties.MemorySize,
            ReservedConcurrentExecutions: Properties.ReservedConcurrentExecutions,
            policies: policies
              .filter((policy) => policy.roles.includes(roleId))
              .map((policy) => policy.statements),
          },
        ];
      }),
  );
}

describe('a pipeline with 500 sources', () => {
  const { app, stack } = pipelineWith(500);

  it('synthesizes, and cdk-nag (AwsSolutions, HIPAA) finds nothing unacknowledged', () => {
    addNagChecks(app);
    const findings = nagPacks(app).flatMap((pack) =>
      pack.validateScope(app).violations.map((violation) => violation.ruleName),
    );
    expect(findings).toEqual([]);
    expect(() => app.synth()).not.toThrow();
  });

  it('stays within CloudFormation’s 500 resources, and publishes one registry object per source', () => {
    const template = Template.fromStack(stack);
    const resources = template.toJSON().Resources as Resources;
    expect(Object.keys(resources).length).toBeLessThan(200);
    const deployment = Object.values(resources).find(
      (resource) => resource.Type === 'Custom::CDKBucketDeployment',
    )!;
    expect((deployment.Properties.SourceObjectKeys as unknown[]).length).toBe(500);
  });
});

describe('adding a source', () => {
  it('changes no Lambda function: code, environment, memory, concurrency and role policies are identical for N and N+1', () => {
    const before = functionsOf(Template.fromStack(pipelineWith(3).stack));
    const after = functionsOf(Template.fromStack(pipelineWith(4).stack));
    expect(Object.keys(before)).toHaveLength(21);
    expect(after).toEqual(before);
  });
});

describe('the registry', () => {
  const { stack, pipeline } = pipelineWith(2);
  const template = Template.fromStack(stack);
  const resources = template.toJSON().Resources as Resources;
  const deployment = Object.values(resources).find(
    (resource) => resource.Type === 'Custom::CDKBucketDeployment',
  )!;

  it('is written under _registry/sources/, SSE-KMS with the data key, and never pruned or removed', () => {
    expect(deployment.Properties).toMatchObject({
      DestinationBucketKeyPrefix: '_registry/sources/',
      Prune: false,
      RetainOnDelete: true,
      SystemMetadata: {
        sse: 'aws:kms',
        'sse-kms-key-id': {
          Ref: stack.resolve((pipeline.dataKey!.node.defaultChild as kms.CfnKey).logicalId),
        },
      },
    });
  });

  it('holds { id, clientSecret, settings } per source: the secret by ARN, settings without credentials or the id', () => {
    const [first] = generatedSources(new Stack(new App(), 'Shape'), 1);
    const record = registration({ ...first!, settings: { ...first!.settings, id: first!.id } });
    expect(record).toEqual({
      id: 'practice-0000',
      clientSecret: `arn:aws:secretsmanager:us-east-1:${ACCOUNT}:secret:fhir-bulk-export/practice-0000-AbC123`,
      settings: first!.settings,
    });
    // What the construct writes is what the functions read: the same schema accepts it.
    expect(parseRegisteredSource(JSON.parse(JSON.stringify(record))).settings.fhirBaseUrl).toBe(
      first!.settings.fhirBaseUrl.replace(/\/+$/, ''),
    );
  });

  it('is published by a role that may write only the registry prefix, not read or delete exported data', () => {
    const statements = identityPolicies(template)
      .filter((policy) =>
        policy.roles.includes(
          stack.resolve((pipeline.sourceRegistry.role.node.defaultChild as kms.CfnKey).logicalId),
        ),
      )
      .flatMap((policy) => policy.statements);
    const onExportBucket = statements.filter((statement) =>
      JSON.stringify(statement.Resource).includes(
        stack.resolve((pipeline.bucket.node.defaultChild as kms.CfnKey).logicalId),
      ),
    );
    expect(onExportBucket.flatMap(actionsOf).sort()).toEqual(['s3:ListBucket', 's3:PutObject']);
    for (const statement of onExportBucket)
      expect(JSON.stringify(statement.Resource) + JSON.stringify(statement.Condition ?? {})).toContain(
        '_registry/sources/',
      );
  });
});

describe('per-source isolation (ABAC)', () => {
  const { stack, pipeline } = pipelineWith(2);
  const template = Template.fromStack(stack);
  const resources = template.toJSON().Resources as Resources;
  const idOf = (construct: { node: { defaultChild?: unknown } }) =>
    stack.resolve((construct.node.defaultChild as kms.CfnKey).logicalId) as string;
  const sourceRoleId = idOf(pipeline.sourceAccessRole);
  const mintRoleId = idOf(pipeline.functions.MintToken.role as never);
  const statementsOf = (roleId: string) =>
    identityPolicies(template)
      .filter((policy) => policy.roles.includes(roleId))
      .flatMap((policy) => policy.statements);
  const granting = (statements: PolicyStatementJson[], action: string) =>
    statements.filter((statement) => actionsOf(statement).some((pattern) => grants(pattern, action)));
  // biome-ignore lint/suspicious/noTemplateCurlyInString: an IAM policy variable, not a template
  const PRINCIPAL_TAG = '${aws:PrincipalTag/fhir-bulk-export-source}';

  it('lets the source access role read a secret only when the secret’s source tag equals the session’s', () => {
    const read = granting(statementsOf(sourceRoleId), 'secretsmanager:GetSecretValue');
    expect(read).toHaveLength(1);
    expect(read[0]!.Condition).toEqual({
      StringEquals: { 'secretsmanager:ResourceTag/fhir-bulk-export-source': PRINCIPAL_TAG },
    });
  });

  it('lets it sign only with a key whose source tag equals the session’s', () => {
    const sign = granting(statementsOf(sourceRoleId), 'kms:Sign');
    expect(sign).toHaveLength(1);
    expect(sign[0]!.Condition).toEqual({
      StringEquals: { 'aws:ResourceTag/fhir-bulk-export-source': PRINCIPAL_TAG },
    });
  });

  it('lets it decrypt a secret’s CMK only through Secrets Manager', () => {
    const decrypt = granting(statementsOf(sourceRoleId), 'kms:Decrypt');
    expect(decrypt.map((statement) => statement.Condition)).toEqual([
      {
        StringEquals: {
          'kms:ViaService': {
            'Fn::Join': ['', ['secretsmanager.', { Ref: 'AWS::Region' }, '.amazonaws.com']],
          },
        },
      },
    ]);
  });

  it('gives the token minter’s own role no secret, no kms:Sign: only assuming the source access role, with session tags', () => {
    const statements = statementsOf(mintRoleId);
    expect(granting(statements, 'secretsmanager:GetSecretValue')).toEqual([]);
    expect(granting(statements, 'kms:Sign')).toEqual([]);
    expect(granting(statements, 'sts:AssumeRole')).toEqual([
      expect.objectContaining({
        Action: ['sts:AssumeRole', 'sts:TagSession'],
        Resource: { 'Fn::GetAtt': [sourceRoleId, 'Arn'] },
      }),
    ]);
  });

  it('trusts only the token minter’s role, and only with the source tag in the request (and no other tag)', () => {
    const trust = resources[sourceRoleId]!.Properties.AssumeRolePolicyDocument as {
      Statement: PolicyStatementJson[];
    };
    expect(trust.Statement).toEqual([
      {
        Effect: 'Allow',
        Principal: { AWS: { 'Fn::GetAtt': [mintRoleId, 'Arn'] } },
        Action: ['sts:AssumeRole', 'sts:TagSession'],
        Condition: {
          StringLike: { 'aws:RequestTag/fhir-bulk-export-source': '?*' },
          'ForAllValues:StringEquals': { 'aws:TagKeys': ['fhir-bulk-export-source'] },
        },
      },
    ]);
  });

  it('names no source in any policy: nothing grows with the sources', () => {
    for (const { statements } of identityPolicies(template))
      expect(JSON.stringify(statements)).not.toMatch(/practice-000/);
  });
});
