import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type MatrixEnvironment,
  runScenario,
  type ScenarioRun,
  startMatrixEnvironment,
} from './support/matrix.js';
import { assertZeroLoss } from './support/zero-loss.js';

/**
 * A whole export, real ASL and real handlers, of a source that authenticates like CMS BCDA:
 * client_secret_basic with the secret in a file, against a sandbox that accepts nothing else.
 * The server refuses the first file's token, so the run mints twice with the secret.
 */

const SECRET = 'bcda-workflow-secret-4d2c8b1e9f';

describe('an export with auth client_secret_basic', () => {
  let env: MatrixEnvironment;
  let secretDir: string;
  let run: ScenarioRun;
  beforeAll(async () => {
    env = await startMatrixEnvironment({
      patientCount: 30,
      jobDurationMs: 0,
      retryAfterSeconds: 0,
      tokenEndpointAuthMethods: ['client_secret_basic'],
    });
    secretDir = await mkdtemp(join(tmpdir(), 'bcda-secret-'));
    const secretFile = join(secretDir, 'bcda.secret');
    await writeFile(secretFile, `${SECRET}\n`, { mode: 0o600 });
    const { clientId } = await env.sandbox.registerClient({
      clientSecret: SECRET,
      faults: { tokenExpiresInAsString: true, file401: 1 },
    });
    run = await runScenario(env, {
      name: 'client secret basic',
      clientId,
      source: {
        privateKeyFile: undefined,
        auth: 'client_secret_basic',
        clientSecretFile: secretFile,
      },
    });
  }, 90_000);
  afterAll(async () => {
    await env?.close();
    if (secretDir) await rm(secretDir, { recursive: true, force: true });
  }, 60_000);

  it('lands every resource the server exported', async () => {
    await assertZeroLoss(env, run, { outcome: 'succeeded' });
  });

  it('authenticated with Basic only, and minted again after the refused token', () => {
    const tokenRequests = env.sandbox.requestLog.filter(
      (entry) => entry.clientId === run.clientId && entry.path.endsWith('/auth/token'),
    );
    expect(tokenRequests.length).toBeGreaterThanOrEqual(2);
    expect(tokenRequests.every((entry) => entry.status === 200)).toBe(true);
    expect(
      env.sandbox.requestLog.some((entry) => entry.clientId === run.clientId && entry.status === 401),
    ).toBe(true);
  });

  it('never puts the secret, its Basic header or a token in logs, state, output or events', () => {
    const credentials = [
      ...env.sandbox.credentialsOf(run.clientId),
      Buffer.from(`${run.clientId}:${SECRET}`).toString('base64'),
    ];
    expect(credentials).toContain(SECRET);
    const places = [
      { where: 'logs', text: run.logLines.join('\n') },
      { where: 'execution history', text: JSON.stringify(run.result.run.events) },
      {
        where: 'output and cause',
        text: JSON.stringify([run.result.run.output, run.result.run.error, run.result.run.cause]),
      },
      { where: 'events', text: JSON.stringify(run.result.emittedEvents) },
    ];
    expect(run.logLines.length).toBeGreaterThan(10);
    for (const credential of credentials)
      for (const place of places)
        expect(place.text.includes(credential), `${place.where} leaks a credential`).toBe(false);
  });
});
