import { GetSecretValueCommand, type GetSecretValueCommandOutput } from '@aws-sdk/client-secrets-manager';
import { ConfigurationError, TransientServerError } from '../errors.js';

/**
 * Reads a source's client secret from Secrets Manager. Values are cached for a
 * few minutes per container: a mint must not cost a Secrets Manager call, yet
 * a rotated secret must be picked up without a redeploy. Errors name the
 * secret id and never its value.
 */

/** The part of `SecretsManagerClient` we use; a real client fits, and so does a test stand-in. */
export interface SecretsClientLike {
  send(command: unknown): Promise<unknown>;
}

export interface SecretReaderOptions {
  readonly client: SecretsClientLike;
  /** How long a value is reused. @default 300000 (5 minutes) */
  readonly ttlMs?: number;
  /** @default () => new Date() */
  readonly now?: () => Date;
}

export interface SecretReader {
  getSecretString(secretId: string): Promise<string>;
  /** Forgets one secret (e.g. after its credentials were refused) or all of them. */
  invalidate(secretId?: string): void;
}

const DEFAULT_TTL_MS = 5 * 60 * 1000;

/** Refusals that retrying cannot fix: wrong id, missing grant, undecryptable. */
const CONFIGURATION_FAILURES = new Set([
  'ResourceNotFoundException',
  'AccessDeniedException',
  'DecryptionFailure',
  'InvalidParameterException',
  'InvalidRequestException',
  'ValidationException',
  'UnrecognizedClientException',
]);

export function createSecretReader(options: SecretReaderOptions): SecretReader {
  const { client } = options;
  const ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
  if (!Number.isFinite(ttlMs) || ttlMs < 0)
    throw new ConfigurationError(`ttlMs must be a non-negative number`);
  const now = options.now ?? (() => new Date());
  const cache = new Map<string, { value: Promise<string>; fetchedAt: number }>();

  const fetchSecret = async (secretId: string): Promise<string> => {
    let output: GetSecretValueCommandOutput;
    try {
      output = (await client.send(
        new GetSecretValueCommand({ SecretId: secretId }),
      )) as GetSecretValueCommandOutput;
    } catch (error) {
      const name = error instanceof Error ? error.name : 'Error';
      if (name === 'ResourceNotFoundException') {
        throw new ConfigurationError(`secret ${secretId} was not found`, { cause: error });
      }
      if (CONFIGURATION_FAILURES.has(name)) {
        throw new ConfigurationError(`secret ${secretId} cannot be read: ${name}`, { cause: error });
      }
      throw new TransientServerError(`secret ${secretId} cannot be read right now: ${name}`, undefined, {
        cause: error,
      });
    }
    if (typeof output.SecretString !== 'string' || output.SecretString === '') {
      throw new ConfigurationError(
        `secret ${secretId} has no SecretString; store the client configuration as JSON text`,
      );
    }
    return output.SecretString;
  };

  return {
    getSecretString(secretId) {
      if (typeof secretId !== 'string' || secretId.trim() === '') {
        return Promise.reject(new ConfigurationError('secretId must be a non-empty string (name or ARN)'));
      }
      const at = now().getTime();
      const entry = cache.get(secretId);
      if (entry && at - entry.fetchedAt < ttlMs) return entry.value;
      const value = fetchSecret(secretId);
      cache.set(secretId, { value, fetchedAt: at });
      value.catch(() => {
        if (cache.get(secretId)?.value === value) cache.delete(secretId);
      });
      return value;
    },
    invalidate(secretId) {
      if (secretId === undefined) cache.clear();
      else cache.delete(secretId);
    },
  };
}
