/**
 * A structured JSON logger whose only job beyond formatting is to make it hard
 * to leak secrets or PHI: attribute names that usually hold them are replaced
 * with `[redacted]`, and bearer tokens or JWT-shaped strings inside any string
 * value are masked. It is a seatbelt, not a licence: never log resource
 * content, tokens or assertions in the first place.
 */
import { ConfigurationError } from './errors.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogAttributes = Record<string, unknown>;

export interface Logger {
  debug(message: string, attributes?: LogAttributes): void;
  info(message: string, attributes?: LogAttributes): void;
  warn(message: string, attributes?: LogAttributes): void;
  error(message: string, attributes?: LogAttributes): void;
  /** A logger that adds these attributes to every line (for example sourceId, executionId). */
  child(attributes: LogAttributes): Logger;
}

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
export const LOG_LEVELS = Object.keys(LEVELS) as readonly LogLevel[];

const isLogLevel = (value: unknown): value is LogLevel =>
  typeof value === 'string' && Object.hasOwn(LEVELS, value);

/**
 * Reads a log level setting such as `LOG_LEVEL`, in any case (`WARN` is what
 * Lambda's own log-level setting spells). Unset or empty means `info`. Any
 * other value is refused: cast unchecked, it used to turn filtering off, so
 * `LOG_LEVEL=Warning` logged debug lines.
 */
export function parseLogLevel(raw: string | undefined, variable = 'LOG_LEVEL'): LogLevel {
  if (raw === undefined || raw.trim() === '') return 'info';
  const level = raw.trim().toLowerCase();
  if (isLogLevel(level)) return level;
  const got = raw.length <= 40 ? JSON.stringify(raw) : `a string of ${raw.length} characters`;
  throw new ConfigurationError(
    `environment variable ${variable} must be one of ${LOG_LEVELS.join(', ')} (in any case); got ${got}`,
  );
}

const SECRET_KEY =
  /token|assertion|authorization|secret|password|private|^d$|^p$|^q$|^dp$|^dq$|^qi$|^k$|resource|body|content/i;
const JWT_LIKE = /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*/g;
const BEARER = /\b(Bearer)\s+[A-Za-z0-9._~+/=-]+/gi;

const maskString = (value: string) =>
  value.replace(JWT_LIKE, '[redacted-jwt]').replace(BEARER, '$1 [redacted]');

/** A value under an attribute name that usually holds a secret or resource content; numbers and flags are harmless. */
const isSecretEntry = (key: string, value: unknown) =>
  SECRET_KEY.test(key) && value !== undefined && typeof value !== 'number' && typeof value !== 'boolean';

const describeError = (error: Error, mask: (value: unknown) => unknown) => ({
  name: error.name,
  message: mask(error.message),
  code: (error as { code?: unknown }).code,
});

export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return maskString(value);
  if (value instanceof Error) return describeError(value, (inner) => redact(inner, depth + 1));
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((item) => redact(item, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    out[key] = isSecretEntry(key, inner) ? '[redacted]' : redact(inner, depth + 1);
  }
  return out;
}

/**
 * The same rules as `redact`, as a `JSON.stringify` replacer: Powertools
 * Logger runs it on every key and value of a line it prints (its own keys,
 * persistent keys and each call's attributes), at any depth. An error keeps
 * its name, message and code, as with `redact`: no stack, no properties.
 */
export function redactingReplacer(key: string, value: unknown): unknown {
  if (key !== '' && isSecretEntry(key, value)) return '[redacted]';
  if (typeof value === 'string') return maskString(value);
  if (value instanceof Error) return describeError(value, (inner) => inner);
  return value;
}

export interface LoggerOptions {
  /** @default 'info' */
  readonly level?: LogLevel;
  /** Where lines go. @default one JSON line on stdout */
  readonly write?: (line: string) => void;
  /** @default () => new Date() */
  readonly now?: () => Date;
  readonly attributes?: LogAttributes;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level: unknown = options.level ?? 'info';
  if (!isLogLevel(level)) {
    throw new ConfigurationError(`log level must be one of ${LOG_LEVELS.join(', ')} (got ${String(level)})`);
  }
  const threshold = LEVELS[level];
  const write = options.write ?? ((line: string) => process.stdout.write(`${line}\n`));
  const now = options.now ?? (() => new Date());
  const base = options.attributes ?? {};
  const emit = (level: LogLevel, message: string, attributes?: LogAttributes) => {
    if (LEVELS[level] < threshold) return;
    const record = {
      level,
      time: now().toISOString(),
      message: redact(message),
      ...(redact({ ...base, ...attributes }) as object),
    };
    write(JSON.stringify(record));
  };
  return {
    debug: (m, a) => emit('debug', m, a),
    info: (m, a) => emit('info', m, a),
    warn: (m, a) => emit('warn', m, a),
    error: (m, a) => emit('error', m, a),
    child: (attributes) => createLogger({ ...options, attributes: { ...base, ...attributes } }),
  };
}
