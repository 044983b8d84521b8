import { readFileSync } from 'node:fs';
import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import type { TaskFunctionName } from '../../infra/bulk-export-pipeline.js';
import {
  actionsOf,
  grants,
  identityPolicies,
  type PolicyStatementJson,
  SOURCES,
  type SynthesizedPipeline,
  synthesize,
} from './pipeline-fixture.js';

let synth: SynthesizedPipeline;
let resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
beforeAll(() => {
  synth = synthesize();
  resources = synth.template.toJSON().Resources;
});

const pipeline = () => synth.stack.pipeline;
const ref = (construct: Parameters<SynthesizedPipeline['logicalId']>[0]) => ({
  Ref: synth.logicalId(construct),
});
const arnOf = (construct: Parameters<SynthesizedPipeline['logicalId']>[0]) => ({
  'Fn::GetAtt': [synth.logicalId(construct), 'Arn'],
});
const roleIdOf = (name: TaskFunctionName) => synth.logicalId(pipeline().functions[name].role!);
const environmentOf = (fn: Parameters<SynthesizedPipeline['logicalId']>[0]) =>
  (resources[synth.logicalId(fn)]!.Properties.Environment as { Variables: Record<string, unknown> })
    .Variables;
const functionEnvironment = (name: TaskFunctionName) => environmentOf(pipeline().functions[name]);
const statementsOfRole = (roleId: string) =>
  identityPolicies(synth.template)
    .filter((policy) => policy.roles.includes(roleId))
    .flatMap((policy) => policy.statements);
const rolesGranting = (action: string, resource?: unknown) =>
  identityPolicies(synth.template)
    .filter((policy) =>
      policy.statements.some(
        (statement) =>
          statement.Effect === 'Allow' &&
          actionsOf(statement).some((pattern) => grants(pattern, action)) &&
          (resource === undefined ||
            JSON.stringify(statement.Resource) === JSON.stringify(resource) ||
            (Array.isArray(statement.Resource) &&
              statement.Resource.some((entry) => JSON.stringify(entry) === JSON.stringify(resource)))),
      ),
    )
    .flatMap((policy) => policy.roles)
    .sort();

describe('export bucket', () => {
  it('is SSE-KMS with its own key and a bucket key, versioned, access-logged, sending EventBridge events', () => {
    synth.template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          {
            BucketKeyEnabled: true,
            ServerSideEncryptionByDefault: {
              SSEAlgorithm: 'aws:kms',
              KMSMasterKeyID: arnOf(pipeline().dataKey!),
            },
          },
        ],
      },
      VersioningConfiguration: { Status: 'Enabled' },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      LoggingConfiguration: { DestinationBucketName: ref(pipeline().accessLogBucket!) },
      NotificationConfiguration: { EventBridgeConfiguration: { EventBridgeEnabled: true } },
    });
  });

  it('refuses every request that is not TLS', () => {
    synth.template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: ref(pipeline().bucket),
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Action: 's3:*',
            Principal: { AWS: '*' },
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      },
    });
  });

  it('expires _work/ files, incomplete uploads and noncurrent versions', () => {
    synth.template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({ Prefix: '_work/', ExpirationInDays: 7, Status: 'Enabled' }),
          Match.objectLike({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 } }),
          Match.objectLike({
            NoncurrentVersionExpiration: { NoncurrentDays: 30 },
            ExpiredObjectDeleteMarker: true,
          }),
        ]),
      },
    });
  });

  it('logs access to a bucket that is itself encrypted, private and TLS-only', () => {
    const logBucket = resources[synth.logicalId(pipeline().accessLogBucket!)]!;
    expect(logBucket.Properties).toMatchObject({
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          {
            ServerSideEncryptionByDefault: {
              SSEAlgorithm: 'aws:kms',
              KMSMasterKeyID: arnOf(pipeline().operationsKey),
            },
          },
        ],
      },
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, RestrictPublicBuckets: true },
    });
  });
});

describe('KMS keys', () => {
  it.each([
    ['epic-prod', 'ECC_NIST_P384'],
    ['cerner-test', 'RSA_3072'],
  ])('source %s gets an asymmetric SIGN_VERIFY key of spec %s, behind an alias', (sourceId, keySpec) => {
    const key = resources[synth.logicalId(pipeline().signingKeys.get(sourceId)!)]!;
    expect(key.Properties).toMatchObject({ KeySpec: keySpec, KeyUsage: 'SIGN_VERIFY' });
    synth.template.hasResourceProperties('AWS::KMS::Alias', {
      AliasName: `alias/fhir-bulk-export/${sourceId}`,
      TargetKeyId: arnOf(pipeline().signingKeys.get(sourceId)!),
    });
  });

  it('denies kms:Sign on every signing key to every principal but the role the token minter assumes per source', () => {
    for (const key of pipeline().signingKeys.values()) {
      const policy = resources[synth.logicalId(key)]!.Properties.KeyPolicy as { Statement: unknown[] };
      expect(policy.Statement).toContainEqual(
        expect.objectContaining({
          Effect: 'Deny',
          Action: 'kms:Sign',
          Principal: { AWS: '*' },
          Condition: { ArnNotEquals: { 'aws:PrincipalArn': arnOf(pipeline().sourceAccessRole) } },
        }),
      );
    }
  });

  it('tags every signing key it creates with its source id, which the source access role matches on', () => {
    for (const [sourceId, key] of pipeline().signingKeys) {
      expect(resources[synth.logicalId(key)]!.Properties.Tags).toContainEqual({
        Key: 'fhir-bulk-export-source',
        Value: sourceId,
      });
    }
  });

  it('rotates the symmetric sealing, data and operations keys', () => {
    for (const key of [pipeline().sealingKey, pipeline().dataKey!, pipeline().operationsKey]) {
      expect(resources[synth.logicalId(key)]!.Properties).toMatchObject({ EnableKeyRotation: true });
    }
  });
});

describe('IAM least privilege', () => {
  it('uses no inline policies (HIPAA IAMNoInlinePolicy): every grant is a customer managed policy', () => {
    synth.template.resourceCountIs('AWS::IAM::Policy', 0);
    const unattached = identityPolicies(synth.template).filter((policy) => policy.roles.length !== 1);
    // All but the warehouse's query policy (issue 18), which the deployer attaches to whoever queries.
    expect(unattached.map((policy) => policy.roles)).toEqual([[]]);
    expect(unattached[0]!.statements.flatMap(actionsOf)).toContain('athena:StartQueryExecution');
  });

  it('grants kms:Sign to no role but the source access role, through any policy or wildcard', () => {
    expect(rolesGranting('kms:Sign')).toEqual([synth.logicalId(pipeline().sourceAccessRole)]);
  });

  it('lets no role but the source access role read client secrets', () => {
    expect(rolesGranting('secretsmanager:GetSecretValue')).toEqual([
      synth.logicalId(pipeline().sourceAccessRole),
    ]);
  });

  it('lets only the mint-token role seal (kms:Encrypt) and the handlers that call the server open (kms:Decrypt) tokens', () => {
    const sealingKey = arnOf(pipeline().sealingKey);
    expect(rolesGranting('kms:Encrypt', sealingKey)).toEqual([roleIdOf('MintToken')]);
    expect(rolesGranting('kms:Decrypt', sealingKey)).toEqual(
      (
        [
          'KickOff',
          'PollStatus',
          'PlanChunks',
          'DownloadFile',
          'CompleteExport',
          'CleanUp',
          'CleanUpEndedExport',
        ] as const
      )
        .map(roleIdOf)
        .sort(),
    );
  });

  it('binds sealing to the encryption context keys the sealer uses, with a condition that does not list sources', () => {
    const sealing = identityPolicies(synth.template)
      .flatMap((policy) => policy.statements)
      .filter(
        (statement) => JSON.stringify(statement.Resource) === JSON.stringify(arnOf(pipeline().sealingKey)),
      );
    expect(sealing).toHaveLength(8);
    for (const statement of sealing) {
      expect(statement.Condition).toEqual({
        'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': ['sourceId', 'executionId'] },
        Null: { 'kms:EncryptionContextKeys': 'false', 'kms:EncryptionContext:sourceId': 'false' },
      });
      expect(JSON.stringify(statement)).not.toMatch(/epic-prod|cerner-test/);
    }
  });

  it('gives download-file exactly the S3 actions of streaming multipart uploads, and the data key via S3', () => {
    const statements = statementsOfRole(roleIdOf('DownloadFile'));
    expect(statements).toContainEqual(
      expect.objectContaining({
        Action: [
          's3:GetObject',
          's3:PutObject',
          's3:PutObjectTagging',
          's3:DeleteObject',
          's3:AbortMultipartUpload',
          's3:ListMultipartUploadParts',
        ],
        Resource: { 'Fn::Join': ['', [arnOf(pipeline().bucket), '/*']] },
      }),
    );
    expect(statements).toContainEqual(
      expect.objectContaining({
        Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
        Resource: arnOf(pipeline().dataKey!),
        Condition: { StringEquals: { 'kms:ViaService': expect.anything() } },
      }),
    );
  });

  it('gives mint-token no S3 access but reading source registrations, and kick-off only that, the work area and the locks', () => {
    const s3StatementsOf = (name: 'KickOff' | 'MintToken') =>
      statementsOfRole(roleIdOf(name)).filter((statement) =>
        actionsOf(statement).some((action) => action.startsWith('s3:')),
      );
    const registryRead = expect.objectContaining({
      Action: 's3:GetObject',
      Resource: { 'Fn::Join': ['', [arnOf(pipeline().bucket), '/_registry/sources/*']] },
    });
    expect(s3StatementsOf('MintToken')).toEqual([registryRead]);
    // The job record, and a chunk's record and patient list: work objects only.
    expect(s3StatementsOf('KickOff')).toEqual([
      registryRead,
      expect.objectContaining({
        Action: ['s3:GetObject', 's3:PutObject'],
        Resource: { 'Fn::Join': ['', [arnOf(pipeline().bucket), '/_work/*']] },
      }),
      expect.objectContaining({
        Action: 's3:GetObject',
        Resource: { 'Fn::Join': ['', [arnOf(pipeline().bucket), '/_state/*']] },
      }),
      expect.objectContaining({ Action: 's3:ListBucket', Resource: arnOf(pipeline().bucket) }),
    ]);
  });

  it('lets only the handlers that remove staged copies delete object versions and list them', () => {
    const removers = (['PrepareExport', 'CompleteExport', 'CleanUp', 'CleanUpEndedExport'] as const)
      .map(roleIdOf)
      .sort();
    expect(rolesGranting('s3:DeleteObjectVersion')).toEqual(removers);
    expect(rolesGranting('s3:ListBucketVersions')).toEqual(removers);
  });

  it('lets only the handlers that end an export put fhir.bulk-export events (Prepare: a dead holder it takes over)', () => {
    expect(rolesGranting('events:PutEvents')).toEqual(
      [
        ...(['PrepareExport', 'CompleteExport', 'CleanUp', 'CleanUpEndedExport'] as const).map(roleIdOf),
        // The validation stage announces its outcome (issue 17).
        synth.logicalId(pipeline().validationFunctions!.WriteValidationReport.role!),
        // And the warehouse load its end (issue 18).
        synth.logicalId(pipeline().warehouse!.functions.WriteLoadMarker.role!),
      ].sort(),
    );
    const putEvents = identityPolicies(synth.template)
      .flatMap((policy) => policy.statements)
      .filter((statement: PolicyStatementJson) => actionsOf(statement).includes('events:PutEvents'));
    for (const statement of putEvents)
      expect(statement.Condition).toEqual({ StringEquals: { 'events:source': 'fhir.bulk-export' } });
  });
});

describe('state machine', () => {
  const machine = () => resources[synth.logicalId(pipeline().stateMachine)]!.Properties;

  it('is the ASL file itself, with a substitution for every placeholder and none left after them', () => {
    const definition = machine().DefinitionString as string;
    expect(definition).toBe(
      readFileSync(new URL('../../state-machines/bulk-export.asl.json', import.meta.url), 'utf8'),
    );
    const substitutions = machine().DefinitionSubstitutions as Record<string, unknown>;
    const placeholders = [
      ...new Set([...definition.matchAll(/\$\{([A-Za-z]+)\}/g)].map((match) => match[1])),
    ];
    expect(placeholders.sort()).toEqual(Object.keys(substitutions).sort());
    const substituted = definition.replace(/\$\{([A-Za-z]+)\}/g, (_, name: string) =>
      JSON.stringify(substitutions[name]),
    );
    expect(substituted).not.toContain('${');
  });

  it('references every Task function by its ARN', () => {
    const substitutions = machine().DefinitionSubstitutions as Record<string, unknown>;
    const names: TaskFunctionName[] = [
      'MintToken',
      'PrepareExport',
      'KickOff',
      'PollStatus',
      'DownloadFile',
      'CheckFiles',
      'VerifyFiles',
      'FinalizeExport',
      'CompleteExport',
      'CleanUp',
    ];
    for (const name of names)
      expect(substitutions[`${name}FunctionArn`]).toEqual(arnOf(pipeline().functions[name]));
  });

  it('is STANDARD, traced, and logs every event to an encrypted log group without execution data', () => {
    expect(machine()).toMatchObject({
      StateMachineType: 'STANDARD',
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: { Level: 'ALL', IncludeExecutionData: false },
    });
    const logGroupArn = (
      machine().LoggingConfiguration as {
        Destinations: { CloudWatchLogsLogGroup: { LogGroupArn: { 'Fn::GetAtt': [string] } } }[];
      }
    ).Destinations[0]!.CloudWatchLogsLogGroup.LogGroupArn['Fn::GetAtt'][0];
    expect(resources[logGroupArn]!.Properties).toMatchObject({
      KmsKeyId: arnOf(pipeline().operationsKey),
      LogGroupName: expect.stringMatching(/^\/aws\/vendedlogs\/states\//),
    });
  });

  it('may invoke the functions, start its own Distributed Map children, and read the file list', () => {
    const roleArn = machine().RoleArn as { 'Fn::GetAtt': [string, string] };
    const statements = statementsOfRole(roleArn['Fn::GetAtt'][0]);
    expect(statements).toContainEqual(
      expect.objectContaining({ Action: 'states:StartExecution', Resource: ref(pipeline().stateMachine) }),
    );
    expect(statements).toContainEqual(
      expect.objectContaining({
        Action: 's3:GetObject',
        Resource: { 'Fn::Join': ['', [arnOf(pipeline().bucket), '/_work/*']] },
      }),
    );
    const invoke = statements.find((statement) => statement.Action === 'lambda:InvokeFunction');
    const { CleanUpEndedExport: _otherMachine, ...own } = pipeline().functions;
    expect(new Set(invoke?.Resource as unknown[])).toEqual(new Set(Object.values(own).map(arnOf)));
  });
});

describe('functions', () => {
  it('run Node.js 24 on arm64 with JSON logging into encrypted log groups with retention', () => {
    const functions = Object.values(resources).filter(
      (resource) => resource.Type === 'AWS::Lambda::Function',
    );
    // Thirteen Task functions, the three of the validation stage, the three of the warehouse load and the
    // JWKS function; and CDK's registry publisher (Python), checked in source-registry.test.ts.
    expect(functions).toHaveLength(21);
    const ours = new Set(
      [
        ...Object.values(pipeline().functions),
        ...Object.values(pipeline().validationFunctions ?? {}),
        pipeline().jwksFunction,
      ].map(synth.logicalId),
    );
    expect(ours.size).toBe(17);
    for (const fn of Object.entries(resources)
      .filter(([id]) => ours.has(id))
      .map(([, resource]) => resource)) {
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        LoggingConfig: { LogFormat: 'JSON' },
      });
      expect(fn.Properties.ReservedConcurrentExecutions).toBeGreaterThan(0);
    }
    const logGroups = Object.values(resources).filter((resource) => resource.Type === 'AWS::Logs::LogGroup');
    for (const logGroup of logGroups)
      expect(logGroup.Properties).toMatchObject({
        KmsKeyId: arnOf(pipeline().operationsKey),
        RetentionInDays: 365,
      });
  });

  it('give download-file 15 minutes and 1024 MB, and reserve its concurrency from maxConcurrentDownloads', () => {
    expect(resources[synth.logicalId(pipeline().functions.DownloadFile)]!.Properties).toMatchObject({
      Timeout: 900,
      MemorySize: 1024,
      // the fixture's maxConcurrentDownloads
      ReservedConcurrentExecutions: 12,
    });
    // Every download mints a token; each export mints for its kick-off and its clean-up.
    expect(resources[synth.logicalId(pipeline().functions.MintToken)]!.Properties).toMatchObject({
      ReservedConcurrentExecutions: 12 + 2 * 2 + 2,
    });
    expect(resources[synth.logicalId(pipeline().functions.KickOff)]!.Properties).toMatchObject({
      Timeout: 60,
    });
  });

  it("give download-file the memory the pipeline's maxLineBytes needs, and tell it the ceiling: 256 MiB gets 1920 MB", () => {
    expect(functionEnvironment('DownloadFile').MAX_LINE_BYTES).toBe(String(64 * 1024 * 1024));
    const raised = synthesize({ maxLineBytes: 256 * 1024 * 1024 });
    const fn =
      raised.template.toJSON().Resources[raised.logicalId(raised.stack.pipeline.functions.DownloadFile)];
    expect(fn.Properties.MemorySize).toBe(1920);
    expect(fn.Properties.Environment.Variables.MAX_LINE_BYTES).toBe(String(256 * 1024 * 1024));
  });

  it('get the runtime environment and Powertools settings, and no sources at all', () => {
    const env = functionEnvironment('PrepareExport');
    expect(env).toEqual({
      EXPORT_BUCKET: ref(pipeline().bucket),
      EXPORT_PREFIX: '',
      DATA_KMS_KEY_ID: arnOf(pipeline().dataKey!),
      SEALING_KMS_KEY_ID: arnOf(pipeline().sealingKey),
      EVENT_BUS_NAME: 'default',
      LOG_LEVEL: 'info',
      POWERTOOLS_SERVICE_NAME: 'fhir-bulk-export',
      POWERTOOLS_METRICS_NAMESPACE: 'FhirBulkExport',
      NODE_OPTIONS: '--enable-source-maps',
    });
    for (const fn of [...Object.values(pipeline().functions), pipeline().jwksFunction]) {
      const variables = environmentOf(fn);
      expect(variables).not.toHaveProperty('SOURCES');
      expect(variables).not.toHaveProperty('SOURCE_SECRET_ARNS');
      expect(JSON.stringify(variables)).not.toMatch(/epic-prod|cerner-test|fhir\.epic|secret/i);
    }
  });

  it('are traced (X-Ray active), with the tracing permissions in their managed runtime policy', () => {
    for (const [name, fn] of [
      ...Object.entries(pipeline().functions),
      ['Jwks', pipeline().jwksFunction] as const,
    ]) {
      expect(resources[synth.logicalId(fn)]!.Properties.TracingConfig).toEqual({ Mode: 'Active' });
      expect(statementsOfRole(synth.logicalId(fn.role!)).flatMap(actionsOf), name).toEqual(
        expect.arrayContaining(['xray:PutTraceSegments', 'xray:PutTelemetryRecords']),
      );
    }
  });

  it('tell only mint-token which role to assume per source', () => {
    expect(functionEnvironment('MintToken').SOURCE_ACCESS_ROLE_ARN).toEqual(
      arnOf(pipeline().sourceAccessRole),
    );
    for (const name of [
      'PrepareExport',
      'KickOff',
      'PollStatus',
      'DownloadFile',
      'CheckFiles',
      'VerifyFiles',
      'FinalizeExport',
      'CompleteExport',
      'CleanUp',
      'CleanUpEndedExport',
    ] as const)
      expect(functionEnvironment(name)).not.toHaveProperty('SOURCE_ACCESS_ROLE_ARN');
  });
});

describe('schedules', () => {
  it('start {"sourceId","since":"auto"} in the source time zone within a flexible window, with retries and a DLQ', () => {
    synth.template.resourceCountIs('AWS::Scheduler::Schedule', 1);
    synth.template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(0 2 * * ? *)',
      ScheduleExpressionTimezone: 'America/Chicago',
      FlexibleTimeWindow: { Mode: 'FLEXIBLE', MaximumWindowInMinutes: 30 },
      Target: {
        Arn: ref(pipeline().stateMachine),
        Input: '{"sourceId":"epic-prod","since":"auto"}',
        DeadLetterConfig: { Arn: arnOf(pipeline().scheduleDeadLetterQueue) },
        RetryPolicy: { MaximumRetryAttempts: 5, MaximumEventAgeInSeconds: 3600 },
      },
    });
  });

  it('send failed starts to an encrypted queue', () => {
    expect(resources[synth.logicalId(pipeline().scheduleDeadLetterQueue)]!.Properties).toMatchObject({
      KmsMasterKeyId: arnOf(pipeline().operationsKey),
    });
  });
});

describe('JWKS, alarms, downstream', () => {
  it('publishes the JWKS on a public HTTPS Function URL and outputs its URL', () => {
    synth.template.hasResourceProperties('AWS::Lambda::Url', {
      AuthType: 'NONE',
      TargetFunctionArn: arnOf(pipeline().jwksFunction),
    });
    // Found by alias at request time: a key created outside CDK is published without a deploy.
    expect(environmentOf(pipeline().jwksFunction).JWKS_KEY_ALIAS_PREFIX).toBe('alias/fhir-bulk-export/');
    const jwksStatements = statementsOfRole(synth.logicalId(pipeline().jwksFunction.role!));
    expect(jwksStatements).toContainEqual(
      expect.objectContaining({
        Action: 'kms:GetPublicKey',
        Condition: { Null: { 'aws:ResourceTag/fhir-bulk-export-source': 'false' } },
      }),
    );
    expect(
      jwksStatements
        .flatMap(actionsOf)
        .filter((action) => action.startsWith('kms:'))
        .sort(),
    ).toEqual(['kms:GetPublicKey', 'kms:ListAliases']);
    synth.template.hasOutput('JwksUrl', {
      Value: {
        'Fn::Join': [
          '',
          [Match.objectLike({ 'Fn::GetAtt': Match.arrayWith(['FunctionUrl']) }), '.well-known/jwks.json'],
        ],
      },
    });
  });

  it.each([
    ['ExecutionsFailed', 'Sum', 1],
    ['ExecutionsTimedOut', 'Sum', 1],
    ['ExecutionsAborted', 'Sum', 1],
  ])('alarms on %s to the encrypted alarm topic', (metricName, statistic, threshold) => {
    synth.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/States',
      MetricName: metricName,
      Statistic: statistic,
      Threshold: threshold,
      AlarmActions: [ref(pipeline().alarmTopic)],
    });
  });

  it('alarms on long exports (ExecutionTime p99) and download-file errors', () => {
    synth.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ExecutionTime',
      ExtendedStatistic: 'p99',
      Threshold: 24 * 3600 * 1000,
    });
    synth.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: ref(pipeline().functions.DownloadFile) }],
    });
    synth.template.hasResourceProperties('AWS::SNS::Topic', {
      KmsMasterKeyId: arnOf(pipeline().operationsKey),
    });
  });

  it("alarms on auth failures from the functions' ExportsFailed metric (dimension set [service, ErrorCategory])", () => {
    synth.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'FhirBulkExport',
      MetricName: 'ExportsFailed',
      Dimensions: [
        { Name: 'ErrorCategory', Value: 'auth' },
        { Name: 'service', Value: 'fhir-bulk-export' },
      ],
      Statistic: 'Sum',
      Threshold: 1,
      AlarmActions: [ref(pipeline().alarmTopic)],
    });
  });

  it("counts outcomes from the functions' metrics (EMF), no longer from log metric filters", () => {
    synth.template.resourceCountIs('AWS::Logs::MetricFilter', 0);
    const body = JSON.stringify(resources[synth.logicalId(pipeline().dashboard)]!.Properties.DashboardBody);
    for (const title of [
      'Export success rate',
      'Average export duration (seconds)',
      'File size trend (bytes)',
      'Failed exports by error category',
    ])
      expect(body).toContain(title);
    for (const statistic of ['p50', 'p90', 'Maximum']) expect(body).toContain(`"stat\\":\\"${statistic}`);
    // Nothing per source: the dashboard does not change as sources are added.
    for (const source of SOURCES) expect(body).not.toContain(source.id);
  });

  it('feeds completion markers (Object Created, key suffix _SUCCESS.json) into an encrypted example queue', () => {
    synth.template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.s3'],
        'detail-type': ['Object Created'],
        detail: {
          bucket: { name: [ref(pipeline().bucket)] },
          object: { key: [{ suffix: '_SUCCESS.json' }] },
        },
      },
      Targets: [Match.objectLike({ Arn: arnOf(pipeline().completionQueue!) })],
    });
    expect(resources[synth.logicalId(pipeline().completionQueue!)]!.Properties).toMatchObject({
      KmsMasterKeyId: arnOf(pipeline().operationsKey),
    });
  });
});
