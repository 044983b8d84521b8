import { App, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { PipelineContext } from '../../infra/constructs/shared.js';

/** A bare stack and the context a part needs, for testing one part without the pipeline. */
export function partStack(): { stack: Stack; context: PipelineContext } {
  const stack = new Stack(new App(), 'Part');
  return {
    stack,
    context: {
      removalPolicy: RemovalPolicy.RETAIN,
      logRetention: logs.RetentionDays.ONE_MONTH,
      operationsKey: new kms.Key(stack, 'Operations', { enableKeyRotation: true }),
      exportPrefix: 'fhir/',
      logLevel: 'info',
    },
  };
}
