import {
  GetSecretValueCommand,
  ResourceNotFoundException,
  SecretsManagerServiceException,
} from '@aws-sdk/client-secrets-manager';
import { describe, expect, it } from 'vitest';
import { createSecretReader } from '../../../lambdas/adapters/secrets.js';

const SECRET = JSON.stringify({ clientId: 'abc', kmsKeyId: 'alias/k' });

/** Secrets Manager stand-in: answers GetSecretValue for known ids, as the SDK would otherwise. */
function secretsStandIn(values: Record<string, string | { binary: Uint8Array }>) {
  const calls: Array<Record<string, unknown>> = [];
  const failures: Error[] = [];
  return {
    calls,
    failNext: (error: Error) => failures.push(error),
    async send(command: unknown) {
      if (!(command instanceof GetSecretValueCommand))
        throw new Error('stand-in only implements GetSecretValue');
      calls.push({ ...command.input });
      const failure = failures.shift();
      if (failure) throw failure;
      const value = values[command.input.SecretId ?? ''];
      if (value === undefined) {
        throw new ResourceNotFoundException({
          message: "Secrets Manager can't find the specified secret.",
          $metadata: {},
        });
      }
      return typeof value === 'string'
        ? { SecretString: value, $metadata: {} }
        : { SecretBinary: value.binary, $metadata: {} };
    },
  };
}

describe('createSecretReader', () => {
  it('reads a secret once and serves it from memory within the TTL', async () => {
    let clock = new Date('2026-03-01T12:00:00Z');
    const client = secretsStandIn({ 'fhir/epic': SECRET });
    const reader = createSecretReader({ client, ttlMs: 60_000, now: () => clock });
    expect(await reader.getSecretString('fhir/epic')).toBe(SECRET);
    clock = new Date(clock.getTime() + 59_999);
    expect(await reader.getSecretString('fhir/epic')).toBe(SECRET);
    expect(client.calls).toStrictEqual([{ SecretId: 'fhir/epic' }]);
    clock = new Date(clock.getTime() + 1);
    await reader.getSecretString('fhir/epic');
    expect(client.calls).toHaveLength(2);
  });

  it('shares one request between concurrent readers', async () => {
    const client = secretsStandIn({ s: SECRET });
    const reader = createSecretReader({ client });
    await Promise.all([
      reader.getSecretString('s'),
      reader.getSecretString('s'),
      reader.getSecretString('s'),
    ]);
    expect(client.calls).toHaveLength(1);
  });

  it('names a missing secret without any value', async () => {
    const reader = createSecretReader({ client: secretsStandIn({}) });
    await expect(reader.getSecretString('fhir/missing')).rejects.toMatchObject({
      name: 'ConfigurationError',
      message: 'secret fhir/missing was not found',
    });
  });

  it('does not cache a failure', async () => {
    const client = secretsStandIn({ s: SECRET });
    client.failNext(
      new SecretsManagerServiceException({
        name: 'InternalServiceError',
        $fault: 'server',
        $metadata: {},
        message: 'boom',
      }),
    );
    const reader = createSecretReader({ client });
    await expect(reader.getSecretString('s')).rejects.toMatchObject({
      name: 'TransientServerError',
      message: 'secret s cannot be read right now: InternalServiceError',
    });
    expect(await reader.getSecretString('s')).toBe(SECRET);
  });

  it('refuses access denied as configuration, and a binary secret', async () => {
    const client = secretsStandIn({ bin: { binary: new Uint8Array([1]) } });
    client.failNext(
      new SecretsManagerServiceException({
        name: 'AccessDeniedException',
        $fault: 'client',
        $metadata: {},
        message: 'no',
      }),
    );
    const reader = createSecretReader({ client });
    await expect(reader.getSecretString('bin')).rejects.toThrow(
      'secret bin cannot be read: AccessDeniedException',
    );
    await expect(reader.getSecretString('bin')).rejects.toThrow(
      'secret bin has no SecretString; store the client configuration as JSON text',
    );
  });

  it('forgets on invalidate', async () => {
    const client = secretsStandIn({ s: SECRET });
    const reader = createSecretReader({ client });
    await reader.getSecretString('s');
    reader.invalidate('s');
    await reader.getSecretString('s');
    expect(client.calls).toHaveLength(2);
  });
});
