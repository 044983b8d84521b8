import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { describe, expect, it } from 'vitest';
import { parsePipelineConfig, stackPropsFromConfig } from '../../infra/config.js';
import {
  DEFAULT_BYTES_SCANNED_CUTOFF,
  WarehouseStage,
  warehouseTables,
} from '../../infra/constructs/warehouse-stage.js';
import { addNagChecks, nagPacks } from '../../infra/nag.js';
import { GLUE_TYPES, warehouseType } from '../../lambdas/warehouse/types.js';
import { compiledView } from '../../lambdas/warehouse/view-definition/index.js';
import { actionsOf, type PolicyStatementJson, synthesize } from './pipeline-fixture.js';

type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>;

/** The default views as a user sees them: the JSON files under warehouse/views/, typed as the contract says. */
const VIEWS_DIR = fileURLToPath(new URL('../../warehouse/views/', import.meta.url));
const EXPECTED_TABLES = new Map(
  readdirSync(VIEWS_DIR)
    .filter((file) => file.endsWith('.json'))
    .map((file) => {
      const view = compiledView(JSON.parse(readFileSync(join(VIEWS_DIR, file), 'utf8')));
      return [
        file.replace(/\.json$/, ''),
        view.columns.map((column) => ({ Name: column.name, Type: GLUE_TYPES[warehouseType(column)] })),
      ] as const;
    }),
);

/** A role granted the warehouse's query policy, and a principal given `grantQuery`: both must pass cdk-nag. */
function withQuerier(app: import('aws-cdk-lib').App): void {
  addNagChecks(app);
  const stack = app.node.children.find((child) => child instanceof Stack) as Stack;
  const analysts = new iam.Role(stack, 'Analysts', { assumedBy: new iam.AccountRootPrincipal() });
  // The stack's pipeline, found by type: the fixture builds it.
  const pipeline = stack.node.findAll().find((c) => c instanceof WarehouseStage) as WarehouseStage;
  analysts.addManagedPolicy(pipeline.queryPolicy);
  const notebook = new iam.Role(stack, 'Notebook', { assumedBy: new iam.AccountRootPrincipal() });
  pipeline.grantQuery(notebook);
  Validations.of(notebook).acknowledge({
    id: 'HIPAA.Security-IAMNoInlinePolicy',
    reason: 'CDK grants land in the role’s default policy.',
  });
}

describe('WarehouseStage (issue 18)', () => {
  const { stack, template, logicalId } = synthesize();
  const part = stack.pipeline.warehouse!;
  const resources = template.toJSON().Resources as Resources;
  const ofType = (type: string) => Object.values(resources).filter((resource) => resource.Type === type);
  const bucket = { Ref: logicalId(stack.pipeline.bucket) };
  const dataKeyArn = { 'Fn::GetAtt': [logicalId(stack.pipeline.dataKey as never), 'Arn'] };

  it('is on by default: its state machine, three arm64 functions, trigger, database and workgroup', () => {
    expect(part).toBeInstanceOf(WarehouseStage);
    expect(Object.keys(part.functions).sort()).toEqual(['LoadWarehouseFiles', 'PlanLoad', 'WriteLoadMarker']);
    for (const fn of Object.values(part.functions)) {
      expect(resources[logicalId(fn)]!.Properties).toMatchObject({
        Architectures: ['arm64'],
        Runtime: 'nodejs24.x',
        Handler: 'index.handler',
      });
    }
    const substitutions = resources[logicalId(part.stateMachine)]!.Properties.DefinitionSubstitutions;
    expect(Object.keys(substitutions as object).sort()).toEqual([
      'LoadWarehouseFilesFunctionArn',
      'PlanLoadFunctionArn',
      'WriteLoadMarkerFunctionArn',
    ]);
    expect(ofType('AWS::Glue::Database')).toHaveLength(1);
    expect(ofType('AWS::Athena::WorkGroup')).toHaveLength(1);
  });

  it('has one Parquet table per default view, typed as the view declares, plus deleted', () => {
    const tables = new Map(
      ofType('AWS::Glue::Table').map((table) => {
        const input = table.Properties.TableInput as { Name: string };
        return [input.Name, input as Record<string, unknown>] as const;
      }),
    );
    expect([...tables.keys()].sort()).toEqual([...EXPECTED_TABLES.keys(), 'deleted'].sort());
    expect(EXPECTED_TABLES.size).toBe(9);
    for (const [name, columns] of [
      ...EXPECTED_TABLES,
      [
        'deleted',
        [
          { Name: 'resource_type', Type: 'string' },
          { Name: 'id', Type: 'string' },
        ],
      ] as const,
    ]) {
      const table = tables.get(name) as {
        TableType: string;
        PartitionKeys: unknown[];
        Parameters: Record<string, unknown>;
        StorageDescriptor: Record<string, unknown> & { Columns: unknown[] };
      };
      expect(table.TableType, name).toBe('EXTERNAL_TABLE');
      expect(table.StorageDescriptor.Columns, name).toEqual(columns);
      expect(table.PartitionKeys).toEqual([{ Name: 'source', Type: 'string', Comment: expect.any(String) }]);
      const location = (tail: string) => ({
        'Fn::Join': ['', ['s3://', bucket, `/warehouse/view=${name}/${tail}`]],
      });
      expect(table.StorageDescriptor.Location, name).toEqual(location(''));
      expect(table.Parameters, name).toMatchObject({
        'projection.enabled': 'true',
        'projection.source.type': 'injected',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: Athena fills ${source} in, not JavaScript
        'storage.location.template': location('source=${source}/'),
      });
      expect(table.StorageDescriptor).toMatchObject({
        InputFormat: 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat',
        OutputFormat: 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat',
        SerdeInfo: { SerializationLibrary: 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe' },
      });
    }
    // A value[x] split into typed columns keeps its types: a number is a double, a boolean a boolean.
    const observation = EXPECTED_TABLES.get('observation')!;
    expect(observation.find((c) => c.Name === 'value_quantity_value')?.Type).toBe('double');
    expect(observation.find((c) => c.Name === 'value_boolean')?.Type).toBe('boolean');
  });

  it('encrypts Athena results with the data key, in a workgroup whose settings clients cannot override', () => {
    const [workGroup] = ofType('AWS::Athena::WorkGroup');
    const configuration = workGroup!.Properties.WorkGroupConfiguration as Record<string, unknown>;
    expect(configuration).toMatchObject({
      EnforceWorkGroupConfiguration: true,
      PublishCloudWatchMetricsEnabled: true,
      BytesScannedCutoffPerQuery: DEFAULT_BYTES_SCANNED_CUTOFF,
      ResultConfiguration: {
        OutputLocation: { 'Fn::Join': ['', ['s3://', bucket, '/_athena-results/']] },
        EncryptionConfiguration: { EncryptionOption: 'SSE_KMS', KmsKey: dataKeyArn },
      },
    });
    expect(workGroup!.Properties.Name).toBe(part.workGroupName);
    const rules = (
      resources[logicalId(stack.pipeline.bucket)]!.Properties.LifecycleConfiguration as {
        Rules: { Id: string }[];
      }
    ).Rules;
    expect(rules.find((rule) => rule.Id === 'expire-athena-results')).toMatchObject({
      Prefix: '_athena-results/',
      ExpirationInDays: 30,
      Status: 'Enabled',
    });
    const outputs = Object.values(template.toJSON().Outputs as Record<string, { Value: unknown }>).map(
      (output) => output.Value,
    );
    expect(outputs).toEqual(expect.arrayContaining([part.workGroupName, part.databaseName]));
  });

  it('lets a querier use this workgroup and database only, read the tables (not the exports) and its results', () => {
    const policy = resources[logicalId(part.queryPolicy)]!.Properties.PolicyDocument as {
      Statement: PolicyStatementJson[];
    };
    const flat = JSON.stringify(policy.Statement);
    const withAction = (action: string) => policy.Statement.filter((s) => actionsOf(s).includes(action));
    expect(withAction('athena:StartQueryExecution').map((s) => JSON.stringify(s.Resource))).toEqual([
      expect.stringContaining(`:workgroup/${part.workGroupName}`),
    ]);
    const glue = JSON.stringify(withAction('glue:GetTable').map((s) => s.Resource));
    expect(glue).toContain(`:database/${part.databaseName}`);
    expect(glue).toContain(`:table/${part.databaseName}/*`);
    expect(glue).not.toMatch(/:database\/\*/);
    expect(JSON.stringify(withAction('s3:GetObject').map((s) => s.Resource))).not.toMatch(/source=/);
    expect(JSON.stringify(withAction('s3:PutObject').map((s) => s.Resource))).toContain('/_athena-results/*');
    expect(JSON.stringify(withAction('s3:PutObject').map((s) => s.Resource))).not.toContain('/warehouse/');
    expect(withAction('s3:ListBucket')[0]!.Condition).toEqual({
      StringLike: { 's3:prefix': ['warehouse/*', '_athena-results/*'] },
    });
    expect(withAction('kms:Decrypt')[0]!.Resource).toEqual(dataKeyArn);
    expect(flat).not.toMatch(/"(athena|glue|s3|kms):\*"|"\*"/);
  });

  it('saves one "create <table>_latest" query per view table in the workgroup, over its own columns', () => {
    const queries = ofType('AWS::Athena::NamedQuery').map((q) => q.Properties as Record<string, string>);
    expect(queries.map((q) => q.Name).sort()).toEqual(
      [...EXPECTED_TABLES.keys()].map((table) => `create ${table}_latest`).sort(),
    );
    for (const query of queries) {
      const table = query.Name!.replace(/^create (.*)_latest$/, '$1');
      expect(query.WorkGroup).toBe(part.workGroupName);
      expect(query.Database).toBe(part.databaseName);
      expect(query.QueryString).toContain(`CREATE OR REPLACE VIEW "${part.databaseName}"."${table}_latest"`);
      for (const column of EXPECTED_TABLES.get(table)!)
        expect(query.QueryString).toContain(`"${column.Name}"`);
      // Athena's tables have no export column: the token comes from the part's path.
      expect(query.QueryString).toContain(`regexp_extract(t."$path", '/export=([^/]+)/', 1)`);
    }
  });

  it('loads each export once it is validated (_VALIDATED.json), or complete for a source that does not validate (_SUCCESS.json), into the stage’s own DLQ when it cannot start', () => {
    const rule = resources[logicalId(part.rule)]!.Properties as {
      EventPattern: Record<string, unknown>;
      Targets: { Arn: unknown; DeadLetterConfig?: unknown }[];
    };
    expect(rule.EventPattern).toEqual({
      source: ['aws.s3'],
      'detail-type': ['Object Created'],
      detail: {
        bucket: { name: [bucket] },
        object: { key: [{ suffix: '_VALIDATED.json' }, { suffix: '_SUCCESS.json' }] },
      },
    });
    expect(rule.Targets[0]!.Arn).toEqual({ Ref: logicalId(part.stateMachine) });
    expect(rule.Targets[0]!.DeadLetterConfig).toEqual({
      Arn: { 'Fn::GetAtt': [logicalId(part.triggerDeadLetterQueue as never), 'Arn'] },
    });
  });

  it('pages when a load does not finish or cannot start', () => {
    const alarms = Object.entries(template.findResources('AWS::CloudWatch::Alarm'));
    const byId = (id: string) => alarms.find(([logical]) => logical.includes(id))?.[1];
    const failed = JSON.stringify(byId('WarehouseLoadFailedAlarm')?.Properties.Metrics);
    for (const metric of ['ExecutionsFailed', 'ExecutionsTimedOut', 'ExecutionsAborted'])
      expect(failed).toContain(metric);
    expect(failed).toContain(logicalId(part.stateMachine));
    expect(JSON.stringify(byId('WarehouseDeadLetterAlarm')?.Properties)).toContain(
      logicalId(part.triggerDeadLetterQueue as never),
    );
  });

  it('grants the functions least privilege: writes only tables, marker and work objects, never the data', () => {
    const policies = Object.values(resources).filter((r) => r.Type === 'AWS::IAM::ManagedPolicy');
    const statementsOf = (name: keyof WarehouseStage['functions']) => {
      const role = logicalId(part.node.findChild(`${name}Role`));
      return policies
        .filter((p) => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: role }]))
        .flatMap((p) => (p.Properties.PolicyDocument as { Statement: PolicyStatementJson[] }).Statement);
    };
    const puts = (name: keyof WarehouseStage['functions']) =>
      JSON.stringify(
        statementsOf(name)
          .filter((s) => actionsOf(s).includes('s3:PutObject'))
          .map((s) => s.Resource),
      );
    for (const name of ['PlanLoad', 'LoadWarehouseFiles', 'WriteLoadMarker'] as const) {
      expect(puts(name), name).not.toMatch(/source=\*"/);
      expect(
        statementsOf(name)
          .flatMap(actionsOf)
          .some((a) => a.endsWith(':*') || a === '*'),
      ).toBe(false);
    }
    expect(puts('LoadWarehouseFiles')).toContain('/warehouse/*');
    expect(puts('WriteLoadMarker')).toContain('/_LOADED.json');
    expect(puts('PlanLoad')).not.toContain('"/warehouse/*"');
    expect(statementsOf('WriteLoadMarker').flatMap(actionsOf)).toContain('events:PutEvents');
  });

  it('loads on _SUCCESS.json without validation, with the cutoff asked for, and cdk-nag finds nothing', () => {
    const off = synthesize(
      { validation: { enabled: false }, warehouse: { bytesScannedCutoffPerQuery: 50_000_000 } },
      { configure: withQuerier },
    );
    const warehouse = off.stack.pipeline.warehouse!;
    const rule = off.template.toJSON().Resources[off.logicalId(warehouse.rule)].Properties;
    expect(rule.EventPattern.detail.object).toEqual({ key: [{ suffix: '_SUCCESS.json' }] });
    off.template.hasResourceProperties('AWS::Athena::WorkGroup', {
      WorkGroupConfiguration: { BytesScannedCutoffPerQuery: 50_000_000 },
    });
    const findings = nagPacks(off.app).flatMap((pack) =>
      pack
        .validateScope(off.app)
        .violations.flatMap((v) => v.violatingResources.map((r) => `${v.ruleName} at ${r.constructPath}`)),
    );
    expect(findings).toEqual([]);
  });

  it('is left out with warehouse: { enabled: false }', () => {
    const off = synthesize({ warehouse: { enabled: false } });
    expect(off.stack.pipeline.warehouse).toBeUndefined();
    const json = off.template.toJSON() as { Resources: Resources };
    const types = Object.values(json.Resources).map((r) => r.Type);
    for (const type of ['AWS::Glue::Database', 'AWS::Glue::Table', 'AWS::Athena::WorkGroup'])
      expect(types).not.toContain(type);
    expect(types.filter((type) => type === 'AWS::StepFunctions::StateMachine')).toHaveLength(3);
    const alarms = Object.keys(off.template.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms.filter((id) => id.includes('Warehouse'))).toEqual([]);
  });
});

describe('warehouseTables: the Glue tables of the defaults and the declared sources’ views', () => {
  const view = (name: string, columns: { name: string; path: string; type: string }[]) => ({
    resourceType: 'ViewDefinition',
    name,
    status: 'active',
    resource: 'Patient',
    select: [{ column: columns }],
  });

  it('adds a table for a new view, and the new columns of a view that replaces a default', () => {
    const tables = warehouseTables([
      {
        sourceId: 'epic-prod',
        views: [
          view('patient', [
            { name: 'id', path: 'getResourceKey()', type: 'id' },
            { name: 'mrn', path: "identifier.where(type.text = 'MRN').value.first()", type: 'string' },
          ]),
          view('patient_flags', [
            { name: 'id', path: 'getResourceKey()', type: 'id' },
            { name: 'deceased', path: 'deceased.ofType(boolean)', type: 'boolean' },
          ]),
        ],
      },
    ]);
    const patient = tables.get('patient')!.columns;
    expect(patient.slice(0, -1)).toEqual(
      EXPECTED_TABLES.get('patient')!.map((c) => ({ name: c.Name, type: c.Type })),
    );
    expect(patient.at(-1)).toEqual({ name: 'mrn', type: 'string' });
    expect(tables.get('patient_flags')).toEqual({
      resource: 'Patient',
      columns: [
        { name: 'id', type: 'string' },
        { name: 'deceased', type: 'boolean' },
      ],
    });
  });

  it('refuses two types for one column of one table, naming the source, table and column', () => {
    expect(() =>
      warehouseTables([
        {
          sourceId: 'cerner-test',
          views: [view('patient', [{ name: 'gender', path: 'gender.count()', type: 'integer' }])],
        },
      ]),
    ).toThrow(/source "cerner-test".*"patient" types column gender as int.*as string/);
  });

  it('checks the Athena cutoff at synth, and reads warehouse from the deployment config', () => {
    expect(() => synthesize({ warehouse: { bytesScannedCutoffPerQuery: 1_000_000 } })).toThrow(
      /warehouse\.bytesScannedCutoffPerQuery must be .* at least 10000000/,
    );
    const config = parsePipelineConfig({
      sources: [
        {
          id: 'epic-prod',
          clientSecret: 'fhir-bulk-export/epic-prod',
          settings: { fhirBaseUrl: 'https://fhir.example.org/r4' },
        },
      ],
      warehouse: { enabled: false, bytesScannedCutoffPerQuery: 20_000_000 },
    });
    expect(stackPropsFromConfig(config).pipeline.warehouse).toEqual({
      enabled: false,
      bytesScannedCutoffPerQuery: 20_000_000,
    });
  });
});
