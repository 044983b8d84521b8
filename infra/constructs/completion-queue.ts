import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { encryptedQueue, type PipelineContext, PipelinePart } from './shared.js';

/**
 * The example downstream: completion markers (written last, after the
 * receipt) feed an encrypted queue with a dead-letter queue.
 */
export class CompletionQueue extends PipelinePart {
  public readonly queue: sqs.Queue;

  constructor(
    scope: Construct,
    id: string,
    props: { readonly context: PipelineContext; readonly eventPattern: events.EventPattern },
  ) {
    super(scope, id);
    const key = props.context.operationsKey;
    const deadLetterQueue = encryptedQueue(this, 'CompletionDeadLetterQueue', key, {
      retentionPeriod: Duration.days(14),
    });
    this.queue = encryptedQueue(this, 'CompletionQueue', key, {
      retentionPeriod: Duration.days(4),
      visibilityTimeout: Duration.minutes(15),
      deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount: 5 },
    });
    new events.Rule(this, 'CompletionMarkerRule', {
      description:
        'A FHIR bulk export completed: its _SUCCESS.json marker landed (example trigger for downstream ETL)',
      eventPattern: props.eventPattern,
      targets: [new eventsTargets.SqsQueue(this.queue, { deadLetterQueue, retryAttempts: 10 })],
    });
  }
}
