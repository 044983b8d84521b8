import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createPollStatusHandler } from '../../../lambdas/handlers/poll-status.js';
import { sealContext } from '../../../lambdas/runtime.js';
import type { ExportContext } from '../../../lambdas/state.js';
import { createLocalRuntime, type LocalRuntime } from '../../../scripts/local/runtime.js';
import { registryOf } from '../../support/source-registry.js';

/**
 * A paged manifest whose next page is refused for now (429) is a transient
 * status error like any other: counted, logged with its wait, and read again
 * at the next poll. It used to fail the whole export.
 */
let server: Server | undefined;
let local: LocalRuntime | undefined;
afterEach(async () => {
  await new Promise<void>((resolve) => {
    if (!server) return resolve();
    server.close(() => resolve());
    server.closeAllConnections();
  });
  await local?.close();
  server = undefined;
  local = undefined;
});

describe('Poll Export Status with a paged manifest', () => {
  it('waits out a 429 on a next page as a transient error, logged at warn with its Retry-After', async () => {
    // Prepare: a status URL whose manifest has a second page that answers 429.
    server = createServer((req, res) => {
      const origin = `http://${req.headers.host}`;
      if (req.url === '/status') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            transactionTime: '2026-01-01T00:00:00Z',
            request: `${origin}/fhir/$export`,
            requiresAccessToken: true,
            output: [],
            link: [{ relation: 'next', url: `${origin}/status?page=2` }],
          }),
        );
        return;
      }
      res.writeHead(429, { 'content-type': 'application/fhir+json', 'retry-after': '7' });
      res.end(
        JSON.stringify({
          resourceType: 'OperationOutcome',
          issue: [{ severity: 'error', code: 'throttled', diagnostics: 'slow down' }],
        }),
      );
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const logLines: string[] = [];
    const source = {
      id: 'paged',
      fhirBaseUrl: `http://127.0.0.1:${port}/fhir`,
      clientId: 'c',
      privateKeyFile: 'unused.json',
      allowInsecureHttp: true,
    };
    local = createLocalRuntime({
      sources: [{ raw: source }],
      s3ClientConfig: {},
      bucket: 'unused',
      onLogLine: (line) => logLines.push(line),
    });
    const runtime = { ...local.runtime, sources: registryOf(source) };
    const context = {
      sourceId: 'paged',
      executionName: 'paged-1',
      deadline: '2999-01-01T00:00:00.000Z',
    } as Pick<ExportContext, 'sourceId' | 'executionName' | 'deadline'> as ExportContext;
    const sealedToken = await runtime.sealer.seal('access-token', sealContext('paged', 'paged-1'));
    // Act
    const state = await createPollStatusHandler(runtime)({
      export: context,
      statusUrl: `http://127.0.0.1:${port}/status`,
      sealedToken,
      poll: {
        attempt: 2,
        consecutiveTransientErrors: 0,
        waitSeconds: 5,
        forceTokenRefresh: false,
        historyEvents: 100,
        kickOffAttempts: 1,
      },
    });
    // Assess
    expect(state).toEqual({
      outcome: 'in-progress',
      attempt: 3,
      consecutiveTransientErrors: 1,
      forceTokenRefresh: false,
      waitSeconds: 7,
      // One more poll cycle of the execution's history.
      historyEvents: 114,
      kickOffAttempts: 1,
    });
    const warnings = logLines.map((line) => JSON.parse(line)).filter((line) => line.level === 'warn');
    expect(warnings).toEqual([
      expect.objectContaining({
        message: 'transient status error',
        sourceId: 'paged',
        consecutive: 1,
        reason: 'manifest page 2: status answered 429: error throttled slow down',
        retryAfterSeconds: 7,
        waitSeconds: 7,
      }),
    ]);
  });
});
