import { describe, expect, it } from 'vitest';
import { ConfigurationError } from '../../../lambdas/errors.js';
import { createLogger, type LogLevel, parseLogLevel } from '../../../lambdas/logger.js';
import { thrown } from '../../support/thrown.js';

describe('parseLogLevel', () => {
  it.each([
    [undefined, 'info'],
    ['', 'info'],
    ['  ', 'info'],
    ['debug', 'debug'],
    ['WARN', 'warn'],
    ['Error', 'error'],
    [' info\n', 'info'],
  ] as const)('%j → %s', (raw, level) => {
    expect(parseLogLevel(raw)).toBe(level);
  });

  it.each([
    [
      'Warning',
      'environment variable LOG_LEVEL must be one of debug, info, warn, error (in any case); got "Warning"',
    ],
    [
      'trace',
      'environment variable LOG_LEVEL must be one of debug, info, warn, error (in any case); got "trace"',
    ],
    [
      'x'.repeat(41),
      'environment variable LOG_LEVEL must be one of debug, info, warn, error (in any case); got a string of 41 characters',
    ],
  ])('refuses %j, naming the accepted values', (raw, message) => {
    // Act
    const error = thrown(() => parseLogLevel(raw));
    // Assess
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toBe(message);
  });
});

describe('createLogger', () => {
  it('writes only lines at or above its level', () => {
    // Prepare
    const lines: string[] = [];
    const logger = createLogger({
      level: parseLogLevel('WARN'),
      write: (line) => lines.push(line),
      now: () => new Date('2026-01-01T00:00:00Z'),
    });
    // Act
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    // Assess
    expect(lines.map((line) => JSON.parse(line).message)).toEqual(['w', 'e']);
  });

  it('refuses a level that is not one (a cast that escaped the type checker)', () => {
    const error = thrown(() => createLogger({ level: 'Warning' as LogLevel }));
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toBe('log level must be one of debug, info, warn, error (got Warning)');
  });
});
