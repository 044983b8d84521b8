import { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import { type LogAttributes, type Logger, type LogLevel, redactingReplacer } from '../logger.js';
import { SERVICE_NAME } from './metrics.js';

/** Attribute names Powertools keeps for itself and drops (with a warning line) from a call's attributes. */
const RESERVED = new Set(['level', 'message', 'sampling_rate', 'service', 'timestamp']);

const POWERTOOLS_LEVELS = { debug: 'DEBUG', info: 'INFO', warn: 'WARN', error: 'ERROR' } as const;

/**
 * One Powertools Logger per container, with our redaction as its JSON
 * replacer. Request id and cold start come from its `injectLambdaContext`
 * middleware, `sourceId` and `executionId` from `appendKeys` per invocation
 * (see aws-observability.ts).
 */
export function createPowertoolsLogger(level: LogLevel, serviceName = SERVICE_NAME): PowertoolsLogger {
  return new PowertoolsLogger({
    serviceName,
    logLevel: POWERTOOLS_LEVELS[level],
    jsonReplacerFn: redactingReplacer,
  });
}

/**
 * Our Logger over a Powertools Logger. A child is a view with more
 * attributes over the same instance, not a Powertools child: a Powertools
 * child copies the Lambda context when it is made, so a child made in one
 * invocation would print the request id of that one in the next.
 */
export function overPowertools(powertools: PowertoolsLogger, base: LogAttributes = {}): Logger {
  const attributes = (extra: LogAttributes | undefined) => {
    const merged: LogAttributes = {};
    for (const [key, value] of Object.entries({ ...base, ...extra })) {
      // Kept under another name rather than dropped: `message` is how callers pass an error's message.
      merged[RESERVED.has(key) ? `_${key}` : key] = value;
    }
    return merged;
  };
  return {
    debug: (message, extra) => powertools.debug(message, attributes(extra)),
    info: (message, extra) => powertools.info(message, attributes(extra)),
    warn: (message, extra) => powertools.warn(message, attributes(extra)),
    error: (message, extra) => powertools.error(message, attributes(extra)),
    child: (extra) => overPowertools(powertools, { ...base, ...extra }),
  };
}
