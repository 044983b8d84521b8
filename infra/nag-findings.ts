import { Stack, Validations } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';

/**
 * cdk-nag 3 names each wildcard of an IAM policy as its own finding, such as
 * `AwsSolutions-IAM5[Resource::<ExportBucket1234.Arn>/*]`, and only an exact
 * id acknowledges it. These helpers compute those ids from the statements we
 * write, so every acknowledgement sits next to the statement it excuses and
 * a new wildcard cannot slip in without a reason.
 *
 * The flattening mirrors cdk-nag's `flattenCfnReference` (not exported by the
 * package): Ref → `<Id>`, Fn::GetAtt → `<Id.Attr>`, Fn::Join joined,
 * `${…}` → `<…>`.
 */
export function flattenCfnReference(node: unknown): string {
  if (node === undefined) return '';
  if (typeof node === 'string') return node.replace(/\$\{/g, '<').replace(/}/g, '>');
  if (node !== null && typeof node === 'object') {
    const object = node as Record<string, unknown>;
    if (object['Fn::Join']) {
      const [delimiter, items] = object['Fn::Join'] as [string, unknown[]];
      return items.map(flattenCfnReference).join(delimiter);
    }
    if (object['Fn::Sub']) return flattenCfnReference(object['Fn::Sub']);
    if (object['Fn::GetAtt']) {
      const [resource, attribute] = object['Fn::GetAtt'] as [unknown, unknown];
      return `<${flattenCfnReference(resource)}.${flattenCfnReference(attribute)}>`;
    }
    if (object['Fn::ImportValue']) return flattenCfnReference(object['Fn::ImportValue']);
    if (object.Ref) return `<${flattenCfnReference(object.Ref)}>`;
  }
  return JSON.stringify(node);
}

const asArray = (value: unknown): unknown[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

/** The `AwsSolutions-IAM5[…]` finding ids that an Allow statement raises, in cdk-nag's spelling. */
export function wildcardFindingIds(scope: IConstruct, statement: iam.PolicyStatement): string[] {
  const json = Stack.of(scope).resolve(statement.toStatementJson()) as Record<string, unknown>;
  if (json.Effect !== 'Allow') return [];
  const actions = asArray(json.Action)
    .filter((action): action is string => typeof action === 'string' && action.includes('*'))
    .map((action) => `AwsSolutions-IAM5[Action::${action}]`);
  const resources = asArray(json.Resource)
    .map(flattenCfnReference)
    .filter((resource) => resource.includes('*'))
    .map((resource) => `AwsSolutions-IAM5[Resource::${resource}]`);
  return [...new Set([...actions, ...resources])];
}

/** A statement together with why its wildcards, if any, are the narrowest grant that works. */
export interface ExplainedStatement {
  readonly statement: iam.PolicyStatement;
  /** Required when the statement has a wildcard action or resource. */
  readonly wildcardReason?: string;
}

/**
 * Acknowledges the wildcard findings of each statement on `scope` (the policy
 * that holds them), with that statement's reason. Throws when a statement has
 * a wildcard and no reason: that is a bug in this construct, not a user error.
 */
export function acknowledgeWildcards(scope: IConstruct, statements: readonly ExplainedStatement[]): void {
  acknowledged.set(scope, [...(acknowledged.get(scope) ?? []), ...statements]);
  for (const { statement, wildcardReason } of statements) {
    const ids = wildcardFindingIds(scope, statement);
    if (ids.length === 0) continue;
    if (!wildcardReason) {
      throw new Error(`${scope.node.path}: statement with ${ids.join(', ')} needs a wildcardReason`);
    }
    Validations.of(scope).acknowledge(...ids.map((id) => ({ id, reason: wildcardReason })));
  }
}

/** What each scope was told to accept, so the ids can be computed again once logical ids change. */
const acknowledged = new WeakMap<IConstruct, readonly ExplainedStatement[]>();

/**
 * Finding ids embed logical ids (`<ExportBucket1234.Arn>/*`). After logical
 * ids are overridden (BulkExportPipeline keeps its flat ones), the ids
 * computed at construction no longer match: acknowledge again under `root`.
 */
export function reacknowledgeWildcards(root: IConstruct): void {
  for (const scope of root.node.findAll()) {
    const statements = acknowledged.get(scope);
    if (!statements) continue;
    const ids = statements.flatMap(({ statement, wildcardReason }) =>
      wildcardFindingIds(scope, statement).map((id) => ({ id, reason: wildcardReason! })),
    );
    if (ids.length > 0) Validations.of(scope).acknowledge(...ids);
  }
}
