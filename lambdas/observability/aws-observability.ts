import type { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import type middy from '@middy/core';
import { type Logger, parseLogLevel } from '../logger.js';
import { invocationKeys } from './invocation-keys.js';
import {
  type ExportMetrics,
  METRICS_NAMESPACE,
  type MetricRecord,
  metricsPublishingTo,
  SERVICE_NAME,
} from './metrics.js';
import { createPowertoolsLogger, overPowertools } from './powertools-logger.js';

type Middleware = middy.MiddlewareObj<unknown, unknown, Error, unknown>;

/**
 * Logger, Metrics and Tracer of a Lambda container (Powertools for AWS
 * Lambda), and the middy middlewares that scope them to an invocation.
 */
export interface AwsObservability {
  readonly logger: Logger;
  readonly metrics: ExportMetrics;
  readonly tracer: Tracer;
  /** Traces an AWS SDK v3 client's calls (a no-op where tracing is off: outside Lambda, or POWERTOOLS_TRACE_ENABLED=false). */
  traced<T>(client: T): T;
  /** In `use` order: Lambda context and keys first, so that every line of the invocation carries them. */
  readonly middlewares: readonly Middleware[];
}

/**
 * - `LOG_LEVEL`: debug, info (default), warn or error, in any case (parseLogLevel)
 * - `POWERTOOLS_SERVICE_NAME` (default `fhir-bulk-export`), `POWERTOOLS_METRICS_NAMESPACE`
 *   (default `FhirBulkExport`); Powertools reads its other variables itself
 */
export function createAwsObservability(env: NodeJS.ProcessEnv = process.env): AwsObservability {
  const level = parseLogLevel(env.LOG_LEVEL);
  const serviceName = env.POWERTOOLS_SERVICE_NAME?.trim() || SERVICE_NAME;
  const powertoolsLogger = createPowertoolsLogger(level, serviceName);
  const logger = overPowertools(powertoolsLogger);
  const powertoolsMetrics = new Metrics({
    namespace: env.POWERTOOLS_METRICS_NAMESPACE?.trim() || METRICS_NAMESPACE,
    serviceName,
  });
  const tracer = new Tracer({ serviceName });
  return {
    logger,
    metrics: metricsPublishingTo((record) => {
      try {
        storeRecord(powertoolsMetrics, record);
      } catch (error) {
        logger.warn('could not record a metric', {
          error: (error as Error).name,
          message: (error as Error).message,
        });
      }
    }),
    tracer,
    traced: (client) => tracer.captureAWSv3Client(client),
    middlewares: [
      // Never the event: it holds sealed tokens and, for some Tasks, identifiers.
      injectLambdaContext(powertoolsLogger, { resetKeys: true, logEvent: false }) as Middleware,
      // No response either: Mint Token's is a sealed token.
      captureLambdaHandler(tracer, { captureResponse: false }) as Middleware,
      invocationKeysMiddleware(powertoolsLogger, tracer),
      flushMetrics(powertoolsMetrics),
    ],
  };
}

/**
 * One EMF document carries one set of dimensions for all its metrics, so an
 * event whose dimensions differ from those stored flushes them first. A Task
 * reports one event per invocation, which is then flushed once, at its end.
 */
export function storeRecord(metrics: Metrics, record: MetricRecord): void {
  if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
  for (const set of record.dimensionSets) {
    metrics.addDimensions(Object.fromEntries(set.map((name) => [name, record.dimensions[name] ?? ''])));
  }
  for (const metric of record.metrics) metrics.addMetric(metric.name, metric.unit, metric.value);
}

/**
 * Publishes what the invocation recorded, and nothing when it recorded
 * nothing: Powertools' own `logMetrics` would log a warning for every
 * invocation of the Tasks that never report (Prepare, Kick Off…).
 */
export function flushMetrics(metrics: Metrics): Middleware {
  const flush = () => {
    if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
  };
  return { after: flush, onError: flush };
}

function invocationKeysMiddleware(logger: PowertoolsLogger, tracer: Tracer): Middleware {
  return {
    before: (request) => {
      const keys = invocationKeys(request.event);
      logger.appendKeys(keys);
      if (keys.sourceId) tracer.putAnnotation('sourceId', keys.sourceId);
      if (keys.executionId) tracer.putAnnotation('executionId', keys.executionId);
    },
  };
}
