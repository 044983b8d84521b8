import { App, Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { CfnRole } from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct, IConstruct } from 'constructs';
import type { BulkExportSourceProps } from '../../infra/bulk-export-pipeline.js';
import {
  BulkExportStack,
  type BulkExportStackProps,
  type ConfiguredSourceProps,
} from '../../infra/bulk-export-stack.js';

/**
 * A scheduled ES384 source and an unscheduled RS384 one whose secret is named,
 * not an ARN: as a config file names them (BulkExportStack imports the secrets).
 */
export const SOURCES: readonly ConfiguredSourceProps[] = [
  {
    id: 'epic-prod',
    clientSecret: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:fhir-bulk-export/epic-prod-AbC123',
    schedule: {
      expression: 'cron(0 2 * * ? *)',
      timeZone: 'America/Chicago',
      flexibleTimeWindow: Duration.minutes(30),
    },
    settings: {
      fhirBaseUrl: 'https://fhir.epic.example.org/api/FHIR/R4',
      export: { level: 'group', groupId: 'cohort-1', types: ['Patient', 'Observation'] },
      maxConcurrency: 6,
    },
  },
  {
    id: 'cerner-test',
    clientSecret: 'fhir-bulk-export/cerner-test',
    signingKeySpec: 'RSA_3072',
    settings: {
      fhirBaseUrl: 'https://fhir.cerner.example.org/r4/tenant',
      export: { level: 'group', groupId: 'g-2' },
      retryAfterCeilingSeconds: 3600,
    },
  },
];

/** SOURCES with their secrets imported into `scope`, for a BulkExportPipeline built without the stack. */
export function importedSources(scope: Construct): BulkExportSourceProps[] {
  return SOURCES.map((source) => ({
    ...source,
    clientSecret: (source.clientSecret as string).startsWith('arn:')
      ? secretsmanager.Secret.fromSecretCompleteArn(
          scope,
          `Secret-${source.id}`,
          source.clientSecret as string,
        )
      : secretsmanager.Secret.fromSecretNameV2(scope, `Secret-${source.id}`, source.clientSecret as string),
  }));
}

export interface SynthesizedPipeline {
  readonly app: App;
  readonly stack: BulkExportStack;
  readonly template: Template;
  /** Logical id of a construct's CloudFormation resource, resolved (never a hard-coded hash). */
  readonly logicalId: (construct: IConstruct) => string;
}

/**
 * The functions come prebundled from dist/lambdas (the global setup builds
 * them). Concurrency is sized for the two sources: two exports at once, the
 * sum of their maxConcurrency (6 + 4) plus one per source for downloads.
 */
export function synthesize(
  pipeline: Partial<BulkExportStackProps['pipeline']> = {},
  options: { readonly configure?: (app: App) => void } = {},
): SynthesizedPipeline {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new BulkExportStack(app, 'Test', {
    pipeline: { sources: SOURCES, maxConcurrentExports: 2, maxConcurrentDownloads: 12, ...pipeline },
  });
  options.configure?.(app);
  const template = Template.fromStack(stack);
  const logicalId = (construct: IConstruct) => {
    const resource = (construct.node.defaultChild ?? construct) as CfnRole;
    return Stack.of(construct).resolve(resource.logicalId) as string;
  };
  return { app, stack, template, logicalId };
}

export interface PolicyStatementJson {
  readonly Effect: string;
  readonly Action: string | string[];
  readonly Resource?: unknown;
  readonly Condition?: Record<string, Record<string, unknown>>;
}

/** Every identity policy in a template, wherever it lives, with the role logical ids it applies to. */
export function identityPolicies(
  template: Template,
): { roles: string[]; statements: PolicyStatementJson[] }[] {
  const resources = template.toJSON().Resources as Record<
    string,
    { Type: string; Properties: Record<string, unknown> }
  >;
  const roleRefs = (roles: unknown) =>
    ((roles as { Ref: string }[] | undefined) ?? []).map((role) => role.Ref);
  const found: { roles: string[]; statements: PolicyStatementJson[] }[] = [];
  for (const [id, resource] of Object.entries(resources)) {
    const props = resource.Properties;
    if (resource.Type === 'AWS::IAM::Policy' || resource.Type === 'AWS::IAM::ManagedPolicy') {
      const document = props.PolicyDocument as { Statement: PolicyStatementJson[] };
      found.push({ roles: roleRefs(props.Roles), statements: document.Statement });
    }
    if (resource.Type === 'AWS::IAM::Role') {
      for (const policy of (props.Policies as { PolicyDocument: { Statement: PolicyStatementJson[] } }[]) ??
        []) {
        found.push({ roles: [id], statements: policy.PolicyDocument.Statement });
      }
    }
  }
  return found;
}

export const actionsOf = (statement: PolicyStatementJson) =>
  Array.isArray(statement.Action) ? statement.Action : [statement.Action];

/** Whether an IAM action pattern (`kms:*`, `*`, `kms:Sign`) grants `action`. */
export function grants(pattern: string, action: string): boolean {
  const regex = new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`, 'i');
  return regex.test(action);
}
