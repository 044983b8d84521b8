import { type InvocationContext, lazily, wrapTaskHandler } from '../middleware.js';
import { createAwsObservability } from '../observability/aws-observability.js';
import type { Runtime } from '../runtime.js';
import { createAwsRuntime } from '../runtime-aws.js';

/** Logger, Metrics and Tracer of the container: one each, whichever Task it runs. */
const observability = lazily(() => createAwsObservability());
/** One runtime per container, built on the first invocation (never at import time). */
const awsRuntime = lazily(() => createAwsRuntime(process.env, { observability: observability() }));

/** The Lambda entry point of a Task handler: the shared middy stack around the factory's function. */
export function awsTaskEntry<TEvent, TResult>(
  task: string,
  factory: (runtime: Runtime) => (event: TEvent, context: InvocationContext) => Promise<TResult>,
) {
  const taskHandler = lazily(() => factory(awsRuntime()));
  return wrapTaskHandler<TEvent, TResult>(
    task,
    () => awsRuntime().logger,
    (event, context) => taskHandler()(event, context),
    () => observability().middlewares,
  );
}
