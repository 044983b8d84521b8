import { Aws, CfnOutput, Duration, Names, Stack } from 'aws-cdk-lib';
import * as athena from 'aws-cdk-lib/aws-athena';
import type * as events from 'aws-cdk-lib/aws-events';
import * as glue from 'aws-cdk-lib/aws-glue';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { DELETED_TABLE, warehousePrefix } from '../../lambdas/warehouse/layout.js';
import { createLatestViewSql, missingLatestColumns } from '../../lambdas/warehouse/sql.js';
import { GLUE_TYPES, warehouseType } from '../../lambdas/warehouse/types.js';
import type { CompiledView } from '../../lambdas/warehouse/view-definition/index.js';
import { viewsFor } from '../../lambdas/warehouse/views.js';
import type { WarehouseFunctionName } from '../lambda-bundles.js';
import { acknowledgeWildcards, type ExplainedStatement } from '../nag-findings.js';
import { createMarkerTrigger, createStageFunctions, createStageStateMachine } from './downstream-stage.js';
import { dataKeyStatement, type PipelineContext, PipelinePart, viaS3 } from './shared.js';
import { registryPrefix } from './source-registry.js';
import { EVENT_SOURCE } from './task-functions.js';

/** The load stage's ASL (state-machines/load-warehouse.asl.json). */
export const WAREHOUSE_ASL_FILE = 'load-warehouse.asl.json';

export type { WarehouseFunctionName } from '../lambda-bundles.js';

/** Athena stops a query past this many bytes scanned, unless the pipeline says otherwise: 10 GB, $0.05 at $5/TB. */
export const DEFAULT_BYTES_SCANNED_CUTOFF = 10_000_000_000;
/** Athena's own floor for a workgroup's per-query cutoff (10 MB). */
export const MIN_BYTES_SCANNED_CUTOFF = 10_000_000;

/** How long Athena's results stay in a bucket the pipeline created. */
export const ATHENA_RESULTS_EXPIRATION = Duration.days(30);

/** The Athena results prefix under the pipeline's prefix: beside the exports, never inside one. */
export const athenaResultsPrefix = (prefix: string) => `${prefix}_athena-results/`;

/**
 * Memory and timeouts. Plan Load streams the receipt's file index into the Map's items; Load Warehouse
 * Files turns one NDJSON file into one Parquet part per table that reads its type: single-threaded and
 * CPU-bound (FHIRPath), its heap bounded by one row group per table (the warehouse bench: 354 MB peak RSS
 * over 129 MB of NDJSON), so it gets 1,769 MB, where Lambda gives one full vCPU, and no more; Write Load
 * Marker merges the per-file results.
 */
const WAREHOUSE_FUNCTIONS: readonly {
  readonly name: WarehouseFunctionName;
  readonly description: string;
  readonly memorySize: number;
  readonly timeout: Duration;
}[] = [
  {
    name: 'PlanLoad',
    description:
      'Reads a complete (validated) export’s receipt and file index, writes the files to load as Parquet',
    memorySize: 1024,
    timeout: Duration.minutes(5),
  },
  {
    name: 'LoadWarehouseFiles',
    description:
      'Runs the SQL on FHIR views over NDJSON data files and writes one Parquet part per table they feed',
    memorySize: 1769,
    timeout: Duration.minutes(15),
  },
  {
    name: 'WriteLoadMarker',
    description: 'Merges the files’ results, writes _LOADED.json last, announces the load',
    memorySize: 512,
    timeout: Duration.minutes(15),
  },
];

/** At most this many files load at once per export (the MaxConcurrency of the ASL's Map, when it sets none). */
export const LOAD_FILES_AT_ONCE = 20;

/** Glue's names for a Parquet table (Hive's Parquet SerDe and formats, as Athena documents them). */
export const PARQUET_FORMAT = {
  serializationLibrary: 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe',
  inputFormat: 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat',
  outputFormat: 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat',
} as const;

/** One Glue column: a name and its Hive type. */
export interface WarehouseColumn {
  readonly name: string;
  readonly type: string;
}

/** A Glue table: its columns, and the FHIR resource type its view reads (none for `deleted`). */
export interface WarehouseTable {
  readonly resource?: string;
  readonly columns: readonly WarehouseColumn[];
}

/**
 * The tables of a deployment: one per default view, one per view a declared source adds, and `deleted`.
 * A source's view that replaces a default (same name) shares its table: the table takes the default's
 * columns and then the new ones, since one Glue table serves every source; a column two views type
 * differently cannot be one Glue column, and fails the synth here rather than a query later.
 */
export function warehouseTables(
  sourceViews: readonly { readonly sourceId: string; readonly views: readonly unknown[] }[],
): ReadonlyMap<string, WarehouseTable> {
  const tables = new Map<string, { resource?: string; columns: WarehouseColumn[] }>();
  const addView = (table: string, view: CompiledView, where: string) => {
    const { columns } = tables.get(table) ?? { columns: [] };
    for (const column of view.columns) {
      const type = GLUE_TYPES[warehouseType(column)];
      const name = column.name.toLowerCase();
      const existing = columns.find((c) => c.name === name);
      if (existing === undefined) columns.push({ name, type });
      else if (existing.type !== type) {
        throw new Error(
          `BulkExportPipeline: ${where}: the view "${table}" types column ${name} as ${type}, but another view of the table "${table}" types it as ${existing.type}; expected one type per column (one Glue table serves every source)`,
        );
      }
    }
    tables.set(table, { resource: view.view.resource, columns });
  };
  for (const [table, view] of viewsFor()) addView(table, view, 'the default views');
  for (const { sourceId, views } of sourceViews) {
    for (const [table, view] of viewsFor(views)) addView(table, view, `source "${sourceId}"`);
  }
  tables.set(DELETED_TABLE, {
    columns: [
      { name: 'resource_type', type: 'string' },
      { name: 'id', type: 'string' },
    ],
  });
  return tables;
}

export interface WarehouseStageProps {
  readonly context: PipelineContext;
  readonly bucket: s3.IBucket;
  readonly dataKey?: kms.IKey;
  /** Only its ARN goes into the functions' environment (the shared runtime reads it); they are not granted it. */
  readonly sealingKey: kms.IKey;
  readonly eventBus?: events.IEventBus;
  readonly bundleRoot: string;
  readonly stateMachineDirectory: string;
  readonly metricNamespace: string;
  /** For unique log group, database and workgroup names. */
  readonly nameScope: Construct;
  /** As the pipeline reserves it (undefined: none): loads run at most one per export at once. */
  readonly concurrency?: { readonly exports: number };
  /** The validation stage is on: a load starts on `_VALIDATED.json`, otherwise on `_SUCCESS.json`. */
  readonly afterValidation: boolean;
  /** The views the declared sources add (`settings.warehouse.views`): their tables exist from the deploy on. */
  readonly sourceViews: readonly { readonly sourceId: string; readonly views: readonly unknown[] }[];
  /** Athena's per-query cutoff, in bytes scanned. */
  readonly bytesScannedCutoffPerQuery: number;
}

/**
 * The warehouse load (issue 18) on AWS: the three functions and the state machine from
 * load-warehouse.asl.json, the rule that starts it on each `_VALIDATED.json` (or `_SUCCESS.json` without
 * validation), and what reads the result: a Glue database with one Parquet table per view, partition
 * projection on `source` (injected: no crawler, no MSCK REPAIR, nothing to register when a source is
 * added), and an Athena workgroup whose results are encrypted with the data key. It writes only under
 * `<prefix>warehouse/`, `_LOADED.json` of an export folder and `_work/warehouse/`; it never writes the data.
 */
export class WarehouseStage extends PipelinePart {
  public readonly functions: Readonly<Record<WarehouseFunctionName, lambda.Function>>;
  public readonly stateMachine: sfn.StateMachine;
  public readonly rule: events.Rule;
  /** Where the rule puts a marker event it could not start a load with. */
  public readonly triggerDeadLetterQueue: sqs.IQueue;
  public readonly database: glue.CfnDatabase;
  public readonly databaseName: string;
  /** The Glue tables by name (the views' names, and `deleted`). */
  public readonly tables: ReadonlyMap<string, glue.CfnTable>;
  public readonly workGroup: athena.CfnWorkGroup;
  public readonly workGroupName: string;
  /** Attach to whoever queries the warehouse in Athena (or use `grantQuery`). */
  public readonly queryPolicy: iam.ManagedPolicy;
  /** `create <table>_latest` per table that has id and last_updated columns (not `deleted`). */
  public readonly namedQueries: ReadonlyMap<string, athena.CfnNamedQuery>;

  private readonly props: WarehouseStageProps;

  constructor(scope: Construct, id: string, props: WarehouseStageProps) {
    super(scope, id);
    this.props = props;
    const { context, bucket } = props;

    // Glue and Athena names: lower case, digits and _ (Athena quotes nothing else unasked).
    const baseName = Names.uniqueResourceName(props.nameScope, { maxLength: 80, separator: '_' })
      .toLowerCase()
      .replace(/[^a-z0-9_]/g, '_');
    this.databaseName = `${baseName}_warehouse`;
    this.workGroupName = `${baseName}-warehouse`;
    this.database = new glue.CfnDatabase(this, 'WarehouseDatabase', {
      catalogId: Aws.ACCOUNT_ID,
      databaseInput: {
        name: this.databaseName,
        description:
          'FHIR bulk exports as SQL on FHIR views (Parquet), one table per view; query with WHERE source = …',
      },
    });
    const tables = warehouseTables(props.sourceViews);
    this.tables = this.createTables(tables);
    this.workGroup = this.createWorkGroup();
    // Query results can hold PHI and nobody reads them twice: the created bucket expires them (a bucket you
    // bring keeps its own lifecycle).
    if (bucket instanceof s3.Bucket) {
      bucket.addLifecycleRule({
        id: 'expire-athena-results',
        prefix: athenaResultsPrefix(context.exportPrefix),
        expiration: ATHENA_RESULTS_EXPIRATION,
        noncurrentVersionExpiration: Duration.days(1),
      });
    }
    const queryStatements = this.queryStatements();
    this.queryPolicy = new iam.ManagedPolicy(this, 'WarehouseQueryPolicy', {
      description: `Queries the FHIR warehouse in Athena workgroup ${this.workGroupName} (Glue database ${this.databaseName})`,
      statements: queryStatements.map((entry) => entry.statement),
    });
    acknowledgeWildcards(this.queryPolicy, queryStatements);
    this.namedQueries = this.createNamedQueries(tables);

    const exports = props.concurrency?.exports;
    const functions = createStageFunctions(this, props, {
      specs: WAREHOUSE_FUNCTIONS,
      stage: 'warehouse load',
      policies: this.grants(),
      reserved:
        exports === undefined
          ? undefined
          : {
              PlanLoad: exports + 2,
              LoadWarehouseFiles: LOAD_FILES_AT_ONCE * exports,
              WriteLoadMarker: exports + 2,
            },
    });
    this.functions = functions;
    this.stateMachine = this.createStateMachine();
    const trigger = this.createTrigger();
    this.rule = trigger.rule;
    this.triggerDeadLetterQueue = trigger.deadLetterQueue;

    new CfnOutput(this, 'WarehouseDatabaseName', {
      description: 'Glue database of the FHIR warehouse tables (one per view, and deleted)',
      value: this.databaseName,
    });
    new CfnOutput(this, 'WarehouseWorkGroupName', {
      description: 'Athena workgroup to query the FHIR warehouse in (results encrypted with the data key)',
      value: this.workGroupName,
    });
    new CfnOutput(this, 'WarehouseQueryPolicyArn', {
      description: 'Managed policy that lets a role query the FHIR warehouse in its workgroup',
      value: this.queryPolicy.managedPolicyArn,
    });
  }

  /** `s3://<bucket>/<prefix>warehouse/view=<table>/` */
  public tableLocation(table: string): string {
    return `s3://${this.props.bucket.bucketName}/${warehousePrefix(this.props.context.exportPrefix)}view=${table}/`;
  }

  /**
   * Lets `grantee` query the warehouse: the statements of `queryPolicy`, added to its own policy (for a
   * principal that is not a role, or when the managed policy should not be attached).
   */
  public grantQuery(grantee: iam.IGrantable): iam.Grant {
    const statements = this.queryStatements();
    let grant: iam.Grant | undefined;
    for (const { statement } of statements) {
      const json = statement.toStatementJson() as { Condition?: Record<string, Record<string, unknown>> };
      const next = iam.Grant.addToPrincipal({
        grantee,
        actions: statement.actions,
        resourceArns: statement.resources,
        ...(json.Condition ? { conditions: json.Condition } : {}),
      });
      grant = grant ? grant.combine(next) : next;
    }
    const principal = grantee.grantPrincipal;
    const scope = Construct.isConstruct(principal)
      ? principal
      : Construct.isConstruct(grantee)
        ? grantee
        : undefined;
    if (scope) acknowledgeWildcards(scope, statements);
    return grant!;
  }

  private createTables(tables: ReadonlyMap<string, WarehouseTable>): Map<string, glue.CfnTable> {
    const created = new Map<string, glue.CfnTable>();
    for (const [name, { columns }] of tables) {
      const location = this.tableLocation(name);
      const table = new glue.CfnTable(this, `WarehouseTable-${name}`, {
        catalogId: Aws.ACCOUNT_ID,
        databaseName: this.databaseName,
        tableInput: {
          name,
          description:
            name === DELETED_TABLE
              ? 'Ids the exports’ deleted files list (Bulk Data deleted[]), per source and export'
              : `SQL on FHIR view ${name}, one Parquet folder per source and export`,
          tableType: 'EXTERNAL_TABLE',
          partitionKeys: [{ name: 'source', type: 'string', comment: 'The source id (source=<id>)' }],
          parameters: {
            EXTERNAL: 'TRUE',
            classification: 'parquet',
            // Sources are registered without a deploy and export tokens are millisecond timestamps: neither
            // an enum nor a date range can list them, so the query names its sources (injected), and Athena
            // reads every export=<token>/ folder under a source's location ("$path" names the export).
            'projection.enabled': 'true',
            'projection.source.type': 'injected',
            'storage.location.template': `${location}source=\${source}/`,
          },
          storageDescriptor: {
            location,
            columns: columns.map((column) => ({ name: column.name, type: column.type })),
            inputFormat: PARQUET_FORMAT.inputFormat,
            outputFormat: PARQUET_FORMAT.outputFormat,
            serdeInfo: {
              serializationLibrary: PARQUET_FORMAT.serializationLibrary,
              parameters: { 'serialization.format': '1' },
            },
            compressed: true,
          },
        },
      });
      table.node.addDependency(this.database);
      created.set(name, table);
    }
    return created;
  }

  private createWorkGroup(): athena.CfnWorkGroup {
    const { bucket, dataKey, context } = this.props;
    return new athena.CfnWorkGroup(this, 'WarehouseWorkGroup', {
      name: this.workGroupName,
      description: 'Queries of the FHIR warehouse (Glue tables of SQL on FHIR views)',
      // Holds no data (results are in S3): its saved queries go with it.
      recursiveDeleteOption: true,
      workGroupConfiguration: {
        // A client cannot send results elsewhere or unencrypted.
        enforceWorkGroupConfiguration: true,
        publishCloudWatchMetricsEnabled: true,
        bytesScannedCutoffPerQuery: this.props.bytesScannedCutoffPerQuery,
        engineVersion: { selectedEngineVersion: 'Athena engine version 3' },
        resultConfiguration: {
          outputLocation: `s3://${bucket.bucketName}/${athenaResultsPrefix(context.exportPrefix)}`,
          // An imported bucket without its key: S3-managed keys, as the bucket's own encryption is.
          encryptionConfiguration: dataKey
            ? { encryptionOption: 'SSE_KMS', kmsKey: dataKey.keyArn }
            : { encryptionOption: 'SSE_S3' },
        },
      },
    });
  }

  /**
   * Athena keeps a view's SQL in Glue, which CloudFormation cannot write in Athena's form: a named query per
   * table, run once (and again after a view's columns change), creates `<table>_latest`.
   */
  private createNamedQueries(tables: ReadonlyMap<string, WarehouseTable>): Map<string, athena.CfnNamedQuery> {
    const created = new Map<string, athena.CfnNamedQuery>();
    for (const [table, { resource, columns }] of tables) {
      const names = columns.map((column) => column.name);
      if (resource === undefined || missingLatestColumns(names).length > 0) continue;
      const queryString = createLatestViewSql(table, names, 'athena', {
        resourceType: resource,
        database: this.databaseName,
      });
      const query = new athena.CfnNamedQuery(this, `WarehouseLatestView-${table}`, {
        name: `create ${table}_latest`,
        description: `Creates the view ${table}_latest: the newest version of each id across exports, without deleted ids`,
        database: this.databaseName,
        workGroup: this.workGroupName,
        queryString,
      });
      query.node.addDependency(this.workGroup, this.database);
      created.set(table, query);
    }
    return created;
  }

  /** Athena on this workgroup only, Glue reads of this database, S3 reads of the tables, results read/write. */
  private queryStatements(): ExplainedStatement[] {
    const { bucket, dataKey, context } = this.props;
    const stack = Stack.of(this);
    const tables = warehousePrefix(context.exportPrefix);
    const results = athenaResultsPrefix(context.exportPrefix);
    const statements: ExplainedStatement[] = [
      {
        statement: new iam.PolicyStatement({
          actions: [
            'athena:StartQueryExecution',
            'athena:StopQueryExecution',
            'athena:GetQueryExecution',
            'athena:GetQueryResults',
            'athena:GetQueryRuntimeStatistics',
            'athena:BatchGetQueryExecution',
            'athena:ListQueryExecutions',
            'athena:GetWorkGroup',
            'athena:GetNamedQuery',
            'athena:BatchGetNamedQuery',
            'athena:ListNamedQueries',
          ],
          resources: [
            stack.formatArn({ service: 'athena', resource: 'workgroup', resourceName: this.workGroupName }),
          ],
        }),
      },
      {
        statement: new iam.PolicyStatement({
          actions: [
            'glue:GetDatabase',
            'glue:GetTable',
            'glue:GetTables',
            'glue:GetPartition',
            'glue:GetPartitions',
          ],
          resources: [
            stack.formatArn({ service: 'glue', resource: 'catalog' }),
            stack.formatArn({ service: 'glue', resource: 'database', resourceName: this.databaseName }),
            stack.formatArn({ service: 'glue', resource: 'table', resourceName: `${this.databaseName}/*` }),
          ],
        }),
        wildcardReason:
          'The tables of the warehouse database only: its views’ tables and the <table>_latest views created in it by its named queries.',
      },
      {
        statement: new iam.PolicyStatement({
          actions: ['s3:GetObject'],
          resources: [bucket.arnForObjects(`${tables}*`)],
        }),
        wildcardReason:
          'Parquet parts are written per view, source and export at run time (warehouse/view=<t>/source=<id>/export=<token>/); read only, never the NDJSON exports.',
      },
      {
        statement: new iam.PolicyStatement({
          actions: ['s3:ListBucket', 's3:GetBucketLocation'],
          resources: [bucket.bucketArn],
          conditions: { StringLike: { 's3:prefix': [`${tables}*`, `${results}*`] } },
        }),
      },
      {
        statement: new iam.PolicyStatement({
          actions: ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'],
          resources: [bucket.arnForObjects(`${results}*`)],
        }),
        wildcardReason:
          'Athena writes each query’s results under the workgroup’s result location, one object per query id.',
      },
    ];
    if (dataKey) {
      statements.push({
        statement: new iam.PolicyStatement({
          actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
          resources: [dataKey.keyArn],
          conditions: viaS3(),
        }),
      });
    }
    return statements;
  }

  /** By what each handler calls. All read the export's objects and their work objects; a 404 needs ListBucket. */
  private grants(): Record<
    WarehouseFunctionName,
    { description: string; statements: (ExplainedStatement | undefined)[] }
  > {
    const { bucket, dataKey, context } = this.props;
    const prefix = context.exportPrefix;
    const readExports: ExplainedStatement = {
      statement: new iam.PolicyStatement({
        actions: ['s3:GetObject'],
        resources: [bucket.arnForObjects(`${prefix}source=*`)],
      }),
      wildcardReason:
        'Export folders are source=<id>/export=<transactionTime>/, named at run time; the load reads their markers, receipt, file index and data files.',
    };
    const work = (...actions: string[]): ExplainedStatement => ({
      statement: new iam.PolicyStatement({
        actions,
        resources: [bucket.arnForObjects(`${prefix}_work/warehouse/*`)],
      }),
      wildcardReason:
        'The load’s items and per-file results are written per export under _work/warehouse/source=<id>/export=<…>/, named at run time.',
    });
    const writeTables: ExplainedStatement = {
      statement: new iam.PolicyStatement({
        actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
        resources: [bucket.arnForObjects(`${warehousePrefix(prefix)}*`)],
      }),
      wildcardReason:
        'Parquet parts go to warehouse/view=<t>/source=<id>/export=<token>/part-NNNN.parquet, named per export at run time; never the exports.',
    };
    const listBucket: ExplainedStatement = {
      statement: new iam.PolicyStatement({ actions: ['s3:ListBucket'], resources: [bucket.bucketArn] }),
    };
    const eventBusArn =
      this.props.eventBus?.eventBusArn ??
      Stack.of(this).formatArn({ service: 'events', resource: 'event-bus', resourceName: 'default' });
    return {
      PlanLoad: {
        description:
          'Reads the markers, receipt, file index and the source’s registration; writes the items, clears a re-run’s leftovers',
        statements: [
          readExports,
          {
            statement: new iam.PolicyStatement({
              actions: ['s3:GetObject'],
              resources: [bucket.arnForObjects(`${registryPrefix(prefix)}*`)],
            }),
            wildcardReason:
              'Source registrations (with their views) are one object per source id under _registry/sources/, registered without a deploy.',
          },
          work('s3:GetObject', 's3:PutObject', 's3:DeleteObject'),
          // A re-run starts clean: the earlier load's marker and the parts it left in this export's partitions.
          {
            statement: new iam.PolicyStatement({
              actions: ['s3:DeleteObject'],
              resources: [
                bucket.arnForObjects(`${warehousePrefix(prefix)}*`),
                bucket.arnForObjects(`${prefix}source=*/_LOADED.json`),
              ],
            }),
            wildcardReason:
              'A re-run of a load removes the parts an earlier run left in this export’s partitions (warehouse/view=<t>/source=<id>/export=<token>/) and its _LOADED.json, named at run time; never the exports’ data.',
          },
          listBucket,
          dataKeyStatement(dataKey, 'kms:GenerateDataKey', 'kms:Decrypt'),
        ],
      },
      LoadWarehouseFiles: {
        // The views come in the plan Plan Load wrote, not from the registry.
        description: 'Reads data files and the plan, writes Parquet parts and per-file results',
        statements: [
          readExports,
          work('s3:GetObject', 's3:PutObject'),
          writeTables,
          listBucket,
          dataKeyStatement(dataKey, 'kms:GenerateDataKey', 'kms:Decrypt'),
        ],
      },
      WriteLoadMarker: {
        description: 'Merges the per-file results, writes _LOADED.json, announces the load',
        statements: [
          readExports,
          work('s3:GetObject', 's3:PutObject', 's3:DeleteObject'),
          {
            statement: new iam.PolicyStatement({
              actions: ['s3:PutObject'],
              resources: [bucket.arnForObjects(`${prefix}source=*/_LOADED.json`)],
            }),
            wildcardReason:
              'The marker is written inside each export folder (source=<id>/export=<…>/_LOADED.json), named at run time; never the data.',
          },
          listBucket,
          dataKeyStatement(dataKey, 'kms:GenerateDataKey', 'kms:Decrypt'),
          {
            statement: new iam.PolicyStatement({
              actions: ['events:PutEvents'],
              resources: [eventBusArn],
              conditions: { StringEquals: { 'events:source': EVENT_SOURCE } },
            }),
          },
        ],
      },
    };
  }

  private createStateMachine(): sfn.StateMachine {
    return createStageStateMachine(this, this.props, {
      idPrefix: 'Warehouse',
      aslFile: WAREHOUSE_ASL_FILE,
      functions: this.functions,
      stage: 'the warehouse stage',
      logSuffix: 'warehouse',
      roleDescription: 'FHIR bulk export warehouse load state machine',
      policyDescription: 'Invokes the load functions, reads the items',
      workPrefix: '_work/warehouse/',
      itemReaderReason:
        'The Map’s ItemReader reads the items written per export under _work/warehouse/source=<id>/export=<…>/, known only at run time.',
      mapPolicyDescription: 'Lets the load’s Map start and stop its child executions',
      mapReason:
        'The load’s Distributed Map describes and stops the child executions it starts; their ARNs carry the Map Run label and a generated name, under this state machine only.',
    });
  }

  /**
   * The export bucket's Object Created events of the markers a load starts from. With the validation stage
   * deployed, both `_VALIDATED.json` and `_SUCCESS.json`: a source whose own validation is off never gets a
   * `_VALIDATED.json`, and Plan Load ignores the `_SUCCESS.json` of a source that validates.
   */
  private createTrigger(): { rule: events.Rule; deadLetterQueue: sqs.IQueue } {
    const { afterValidation } = this.props;
    return createMarkerTrigger(this, this.props, {
      idPrefix: 'Warehouse',
      stateMachine: this.stateMachine,
      markers: afterValidation ? ['_VALIDATED.json', '_SUCCESS.json'] : ['_SUCCESS.json'],
      ruleDescription: afterValidation
        ? 'A FHIR bulk export was validated (_VALIDATED.json), or completed for a source that does not validate (_SUCCESS.json): load it into the warehouse'
        : 'A FHIR bulk export completed (its _SUCCESS.json landed): load it into the warehouse',
      roleDescription: 'Starts the warehouse load of a completed FHIR bulk export',
      policyDescription: 'Starts the warehouse load state machine',
      ruleName: 'the warehouse rule',
    });
  }
}
