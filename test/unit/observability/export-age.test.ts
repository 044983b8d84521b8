import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { JsonStore } from '../../../lambdas/adapters/s3-store.js';
import { createPollStatusHandler } from '../../../lambdas/handlers/poll-status.js';
import { sealContext } from '../../../lambdas/runtime.js';
import type { JobRecord } from '../../../lambdas/services/export-lifecycle.js';
import type { ExportContext } from '../../../lambdas/state.js';
import { createLocalRuntime, type LocalRuntime } from '../../../scripts/local/runtime.js';
import { registryOf } from '../../support/source-registry.js';

/**
 * Each answered status poll leaves what `npm run status` and the dashboard
 * show of a running export: its last poll and X-Progress in the job record
 * (beside what Kick Off wrote there), and one ExportAge gauge per source,
 * with chunk progress when the job record has chunks.
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

const WORK = '_work/source=slow/execution=slow-1/';
const STARTED = new Date(Date.now() - 90_000).toISOString();

function memoryStore(objects: Map<string, unknown>, { failWrites = false } = {}): JsonStore {
  return {
    bucket: 'memory',
    getJson: async <T>(key: string) => structuredClone(objects.get(key)) as T | undefined,
    putJson: async (key, value) => {
      if (failWrites) throw new Error('S3 is down');
      objects.set(key, structuredClone(value));
    },
    head: async () => undefined,
    delete: async (key) => void objects.delete(key),
    abortUploads: async () => 0,
    listKeys: async (prefix) => [...objects.keys()].filter((key) => key.startsWith(prefix)).sort(),
  };
}

async function poll(objects: Map<string, unknown>, options: { failWrites?: boolean } = {}) {
  server ??= await new Promise<Server>((resolve) => {
    const started = createServer((_req, res) => {
      res.writeHead(202, { 'x-progress': 'Exporting Observation (40%)', 'retry-after': '5' });
      res.end();
    });
    started.listen(0, '127.0.0.1', () => resolve(started));
  });
  const { port } = server.address() as AddressInfo;
  const source = {
    id: 'slow',
    fhirBaseUrl: `http://127.0.0.1:${port}/fhir`,
    clientId: 'c',
    privateKeyFile: 'unused.json',
    allowInsecureHttp: true,
  };
  const logLines: string[] = [];
  local ??= createLocalRuntime({
    sources: [{ raw: source }],
    s3ClientConfig: {},
    bucket: 'unused',
    onLogLine: (line) => logLines.push(line),
  });
  const runtime = { ...local.runtime, sources: registryOf(source), store: memoryStore(objects, options) };
  const context = {
    sourceId: 'slow',
    executionName: 'slow-1',
    workPrefix: WORK,
    startedAt: STARTED,
    deadline: '2999-01-01T00:00:00.000Z',
  } as Pick<
    ExportContext,
    'sourceId' | 'executionName' | 'workPrefix' | 'startedAt' | 'deadline'
  > as ExportContext;
  const state = await createPollStatusHandler(runtime)({
    export: context,
    statusUrl: `http://127.0.0.1:${port}/status/1`,
    sealedToken: await runtime.sealer.seal('access-token', sealContext('slow', 'slow-1')),
    poll: { attempt: 0, consecutiveTransientErrors: 0, waitSeconds: 5, forceTokenRefresh: false },
  });
  return { state, logLines, metrics: local.metrics };
}

describe('an answered status poll', () => {
  it('records its time and X-Progress in the job record, keeping what Kick Off wrote, and emits ExportAge once', async () => {
    // Prepare: the record Kick Off leaves, with the chunks a chunked export keeps there.
    const objects = new Map<string, unknown>([
      [
        `${WORK}job.json`,
        { sourceId: 'slow', executionName: 'slow-1', statusUrl: 'kept', chunks: { total: 4, done: 1 } },
      ],
    ]);
    const before = Date.now();
    // Act
    const { state, metrics } = await poll(objects);
    // Assess
    expect(state).toMatchObject({ outcome: 'in-progress', progress: 'Exporting Observation (40%)' });
    const job = objects.get(`${WORK}job.json`) as JobRecord;
    expect(job).toMatchObject({
      sourceId: 'slow',
      executionName: 'slow-1',
      chunks: { total: 4, done: 1 },
      lastPoll: { progress: 'Exporting Observation (40%)' },
    });
    expect(Date.parse(job.lastPoll!.at)).toBeGreaterThanOrEqual(before - 1000);
    expect(metrics.records).toHaveLength(1);
    expect(metrics.records[0]!.dimensionSets).toEqual([['SourceId']]);
    const values = Object.fromEntries(metrics.records[0]!.metrics.map(({ name, value }) => [name, value]));
    expect(Object.keys(values)).toEqual(['ExportAge', 'ChunksDone', 'ChunksTotal']);
    expect(values.ExportAge).toBeGreaterThanOrEqual(89);
    expect(values.ExportAge).toBeLessThan(150);
    expect({ done: values.ChunksDone, total: values.ChunksTotal }).toEqual({ done: 1, total: 4 });
  });

  it('emits no chunk gauges for an export in one piece, and still answers when the job record cannot be written', async () => {
    // Act
    const { state, metrics, logLines } = await poll(new Map(), { failWrites: true });
    // Assess
    expect(state).toMatchObject({ outcome: 'in-progress' });
    expect(metrics.records.map((record) => record.metrics.map(({ name }) => name))).toEqual([['ExportAge']]);
    expect(logLines.map((line) => JSON.parse(line))).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          level: 'warn',
          message: 'could not record the poll in the job record',
          reason: 'S3 is down',
        }),
      ]),
    );
  });
});
