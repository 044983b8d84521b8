import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RequestLogEntry } from '../../scripts/sandbox/index.js';
import { type MatrixEnvironment, requestsOf, runScenario, startMatrixEnvironment } from './support/matrix.js';
import { peakInProgress } from './support/request-timeline.js';
import { assertZeroLoss } from './support/zero-loss.js';

/**
 * Wiring between the state machine and its handlers that only a whole run
 * shows: a handler's `forceTokenRefresh` must reach Mint Token and make it
 * mint, and the Map must honour the source's `maxConcurrency`. The sandbox's
 * request log is the witness: which token each request carried, which one
 * each token request issued, and when each file download was in progress.
 */

const TOKEN = /\/auth\/token$/;
const KICK_OFF = /\/\$export$/;
const STATUS = /^\/export-status\//;
const FILES = /^\/files\//;

const matching = (requests: readonly RequestLogEntry[], path: RegExp, method = 'GET') =>
  requests.filter((entry) => entry.method === method && path.test(entry.path));

/**
 * Revokes the client's tokens just before the first invocation of `stateName`, so that
 * invocation meets a 401 with the token it was handed. A state invoked more than `limit`
 * times fails, so a 401 that keeps coming back ends the run instead of looping.
 */
function revokeTokensBefore(env: MatrixEnvironment, clientId: string, stateName: string, limit: number) {
  let invocations = 0;
  return ({ stateName: name }: { stateName: string }) => {
    if (name !== stateName) return;
    invocations += 1;
    if (invocations === 1 && env.sandbox.revokeAccessTokens(clientId) !== 1) {
      throw new Error(`expected the one token minted before ${stateName} to be revoked`);
    }
    if (invocations > limit) {
      throw new Error(`${stateName} invoked ${invocations} times: the 401 keeps coming back`);
    }
  };
}

describe.concurrent('a 401 is followed by exactly one fresh token, then the same request with it', () => {
  let env: MatrixEnvironment;
  beforeAll(async () => {
    env = await startMatrixEnvironment();
  }, 60_000);
  afterAll(async () => {
    await env?.close();
  }, 60_000);

  const register = async () =>
    (await env.sandbox.registerClient({ jwks: { keys: [env.key.publicJwk] } })).clientId;

  it('kick-off answered 401 (token revoked) → one re-mint, the kick-off again with the new token, success', async () => {
    const clientId = await register();
    const run = await runScenario(env, {
      name: 'kick-off 401',
      clientId,
      beforeInvocation: revokeTokensBefore(env, clientId, 'Kick Off Export', 3),
    });

    await assertZeroLoss(env, run, { outcome: 'succeeded' });
    const requests = await requestsOf(env, clientId);
    const tokens = matching(requests, TOKEN, 'POST');
    const kickOffs = matching(requests, KICK_OFF);
    // The whole run minted twice: the first token, and the one after the 401.
    expect(tokens.map((entry) => [entry.status, entry.issuedToken])).toEqual([
      [200, 1],
      [200, 2],
    ]);
    expect(kickOffs.map((entry) => [entry.status, entry.presentedToken])).toEqual([
      [401, 1],
      [202, 2],
    ]);
    expect(tokens[1]!.startMs).toBeGreaterThan(kickOffs[0]!.endMs);
    expect(kickOffs[1]!.startMs).toBeGreaterThan(tokens[1]!.endMs);
    expect(matching(requests, STATUS).every((entry) => entry.presentedToken === 2)).toBe(true);
  }, 60_000);

  it('status answered 401 (token revoked) → one re-mint, the poll again with the new token, success', async () => {
    const clientId = await register();
    const run = await runScenario(env, {
      name: 'status 401',
      clientId,
      beforeInvocation: revokeTokensBefore(env, clientId, 'Poll Export Status', 20),
    });

    await assertZeroLoss(env, run, { outcome: 'succeeded' });
    const requests = await requestsOf(env, clientId);
    const tokens = matching(requests, TOKEN, 'POST');
    const polls = matching(requests, STATUS);
    expect(tokens.map((entry) => [entry.status, entry.issuedToken])).toEqual([
      [200, 1],
      [200, 2],
    ]);
    expect([polls[0]!.status, polls[0]!.presentedToken]).toEqual([401, 1]);
    expect(polls.slice(1).map((entry) => entry.presentedToken)).toEqual(polls.slice(1).map(() => 2));
    expect(polls.at(-1)!.status).toBe(200);
    expect(tokens[1]!.startMs).toBeGreaterThan(polls[0]!.endMs);
    expect(polls[1]!.startMs).toBeGreaterThan(tokens[1]!.endMs);
  }, 60_000);

  it('file download answered 401 (token revoked) → one re-mint, the same file again with the new token, success', async () => {
    const clientId = await register();
    const run = await runScenario(env, {
      name: 'file 401 revoked',
      clientId,
      // One file at a time: only the first download holds the revoked token.
      source: { maxConcurrency: 1 },
      beforeInvocation: revokeTokensBefore(env, clientId, 'Download Batch', 100),
    });

    await assertZeroLoss(env, run, { outcome: 'succeeded' });
    const requests = await requestsOf(env, clientId);
    const tokens = matching(requests, TOKEN, 'POST');
    const files = matching(requests, FILES);
    expect(tokens.map((entry) => [entry.status, entry.issuedToken])).toEqual([
      [200, 1],
      [200, 2],
    ]);
    const [refused, retried] = files;
    expect([refused!.status, refused!.presentedToken]).toEqual([401, 1]);
    expect([retried!.path, retried!.status, retried!.presentedToken]).toEqual([refused!.path, 200, 2]);
    expect(tokens[1]!.startMs).toBeGreaterThan(refused!.endMs);
    expect(retried!.startMs).toBeGreaterThan(tokens[1]!.endMs);
    expect(files.slice(1).every((entry) => entry.status === 200 && entry.presentedToken === 2)).toBe(true);
  }, 60_000);

  it('every file answered 401 once (file401=1) → each file is fetched again with a token minted after its 401', async () => {
    const run = await runScenario(env, { name: 'file401 every file', faults: { file401: 1 } });

    await assertZeroLoss(env, run, { outcome: 'succeeded' });
    const requests = await requestsOf(env, run.clientId);
    const tokens = matching(requests, TOKEN, 'POST');
    const files = matching(requests, FILES);
    const paths = [...new Set(files.map((entry) => entry.path))];
    expect(paths.length).toBeGreaterThan(10);
    for (const path of paths) {
      const [refused, retried, ...rest] = files.filter((entry) => entry.path === path);
      expect([refused!.status, retried!.status, rest.length], path).toEqual([401, 200, 0]);
      // The retry carried a newer token than the one refused, from a token request still under
      // way when this 401 came (files refused at once share one re-mint).
      expect(retried!.presentedToken, path).toBeGreaterThan(refused!.presentedToken!);
      const issuer = tokens.find((entry) => entry.issuedToken === retried!.presentedToken);
      expect(issuer?.endMs, `${path}: the token request of its retry`).toBeGreaterThan(refused!.startMs);
      expect(retried!.startMs, path).toBeGreaterThan(issuer!.endMs);
    }
  }, 60_000);
});

describe.concurrent("the Download Files Map runs at most the source's maxConcurrency files at once", () => {
  let env: MatrixEnvironment;
  beforeAll(async () => {
    env = await startMatrixEnvironment();
  }, 60_000);
  afterAll(async () => {
    await env?.close();
  }, 60_000);

  for (const maxConcurrency of [2, 3]) {
    it(`maxConcurrency ${maxConcurrency}, nine slow files in batches of two → downloads overlap ${maxConcurrency} at a time, never more`, async () => {
      const run = await runScenario(env, {
        name: `max concurrency ${maxConcurrency}`,
        // 346 Observations of the cohort, 40 a file: nine files, each stalled 0.7 s after its first
        // byte, so no download can end sooner (a file sent whole before a stall could).
        faults: { resourcesPerFile: 40, slowFile: { stallAfterBytes: 1, stallMs: 700 } },
        // Five batches: enough to fill the Map; a batch lands its files one at a time, so the
        // files in flight are the batches in flight.
        source: {
          maxConcurrency,
          filesPerBatch: 2,
          export: { level: 'group', groupId: 'cohort', types: ['Observation'] },
        },
      });

      await assertZeroLoss(env, run, { outcome: 'succeeded', types: ['Observation'] });
      const downloads = matching(await requestsOf(env, run.clientId), FILES);
      expect(downloads.map((entry) => entry.status)).toEqual(Array(9).fill(200));
      expect(peakInProgress(downloads)).toBe(maxConcurrency);
    }, 60_000);
  }
});
