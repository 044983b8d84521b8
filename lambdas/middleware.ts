import middy from '@middy/core';
import type { Logger } from './logger.js';

/** The part of the Lambda context our handlers use; the local runner provides the same. */
export interface InvocationContext {
  readonly awsRequestId: string;
  getRemainingTimeInMillis(): number;
}

export type TaskHandler<TEvent, TResult> = (event: TEvent, context: InvocationContext) => Promise<TResult>;

export type TaskMiddleware = middy.MiddlewareObj<unknown, unknown, Error, unknown>;

/**
 * The one middy stack every Task handler is wrapped in: the observability
 * middlewares first (Lambda context, keys, tracing, metrics; built on first
 * use, like the runtime), then a log line when a task starts and ends (names
 * and sizes, never payloads: they may hold sealed tokens or identifiers) and
 * a structured line for every error, whose `name` the state machine matches on.
 */
export function wrapTaskHandler<TEvent, TResult>(
  task: string,
  logger: () => Logger,
  handler: TaskHandler<TEvent, TResult>,
  middlewares: () => readonly TaskMiddleware[] = () => [],
) {
  const wrapped = middy<TEvent, TResult>(async (event: TEvent, context: unknown) =>
    handler(event, context as InvocationContext),
  );
  return wrapped.use(inOrder(middlewares) as middy.MiddlewareObj<TEvent, TResult>).use({
    before: (request) => {
      logger().info('task started', {
        task,
        requestId: (request.context as { awsRequestId?: string }).awsRequestId,
      });
    },
    after: () => {
      logger().info('task finished', { task });
    },
    onError: (request) => {
      const error = request.error as (Error & { code?: string }) | undefined;
      logger().error('task failed', { task, error: error?.name, code: error?.code, message: error?.message });
    },
  });
}

/**
 * Middlewares known only on first use, as one: befores in order, afters and
 * error handlers in reverse, as middy runs those it is given.
 */
function inOrder(middlewares: () => readonly TaskMiddleware[]): TaskMiddleware {
  const reversed = () => [...middlewares()].reverse();
  return {
    before: async (request) => {
      for (const middleware of middlewares()) await middleware.before?.(request);
    },
    after: async (request) => {
      for (const middleware of reversed()) await middleware.after?.(request);
    },
    onError: async (request) => {
      for (const middleware of reversed()) await middleware.onError?.(request);
    },
  };
}

/** Builds a value once, on first use: no configuration is read and no client created at import time. */
export function lazily<T>(build: () => T): () => T {
  let value: T | undefined;
  let built = false;
  return () => {
    if (!built) {
      value = build();
      built = true;
    }
    return value as T;
  };
}
