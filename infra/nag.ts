import { Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks, HIPAASecurityChecks } from 'cdk-nag';
import type { Construct } from 'constructs';

/**
 * The rule packs every synth runs (cdk-nag 3: CDK validation plugins). Any
 * unacknowledged finding fails the synth; acknowledgements live in the
 * construct, each next to the resource it excuses.
 */
export function nagPacks(app: Construct) {
  return [new AwsSolutionsChecks(app), new HIPAASecurityChecks(app)] as const;
}

export function addNagChecks(app: Construct): void {
  Validations.of(app).addPlugins(...nagPacks(app));
}
