import { describe, expect, it } from 'vitest';
import type { JsonStore } from '../../../lambdas/adapters/s3-store.js';
import { StorageError } from '../../../lambdas/errors.js';
import { createLogger } from '../../../lambdas/logger.js';
import {
  countExportFailure,
  countExportSuccess,
  failureCountedKey,
  successCountedKey,
} from '../../../lambdas/observability/export-outcomes.js';
import { createRecordingMetrics } from '../../../lambdas/observability/metrics.js';

/** S3 as the store sees it: a conditional PUT of an existing key is refused (412). */
function memoryStore(options: { failWrites?: boolean; failReads?: boolean } = {}) {
  const objects = new Map<string, unknown>();
  const store: Pick<JsonStore, 'putJson' | 'getJson'> = {
    async putJson(key, value, put = {}) {
      if (options.failWrites) throw new StorageError(`S3 PutObject of ${key} failed: 503 SlowDown`);
      if (put.ifNoneMatch && objects.has(key))
        throw new StorageError(`S3 PutObject of ${key} failed: 412 PreconditionFailed`);
      objects.set(key, value);
    },
    async getJson<T>(key: string) {
      if (options.failReads) throw new StorageError(`S3 GetObject of ${key} failed: 503 SlowDown`);
      return objects.get(key) as T | undefined;
    },
  };
  return { store: store as JsonStore, objects };
}

function runtimeWith(store: JsonStore) {
  const lines: string[] = [];
  const metrics = createRecordingMetrics();
  return {
    runtime: {
      store,
      prefix: 'exports/',
      metrics,
      logger: createLogger({ write: (line) => lines.push(line) }),
      now: () => new Date('2026-03-01T12:00:00Z'),
    },
    metrics,
    lines,
  };
}

const FAILURE = {
  sourceId: 'epic-prod',
  executionName: 'epic-prod-auto-open',
  error: 'TokenRequestError',
  outcome: 'failed',
};

describe('countExportFailure', () => {
  it('counts a failed export once, however many clean-ups end it', async () => {
    // Prepare
    const { store, objects } = memoryStore();
    const { runtime, metrics } = runtimeWith(store);
    // Act: the Catch's clean-up, then the clean-up of the ended execution (its lock release had failed)
    await countExportFailure(runtime, { ...FAILURE, kickedOff: false });
    await countExportFailure(runtime, { ...FAILURE, error: 'States.Runtime', outcome: 'FAILED' });
    // Assess
    expect(metrics.records.map((record) => record.dimensions)).toEqual([
      { SourceId: 'epic-prod', ErrorCategory: 'auth' },
    ]);
    expect(objects.get(failureCountedKey('exports/', 'epic-prod', 'epic-prod-auto-open'))).toEqual({
      error: 'TokenRequestError',
      category: 'auth',
      countedAt: '2026-03-01T12:00:00.000Z',
    });
    expect(failureCountedKey('exports/', 'epic-prod', 'epic-prod-auto-open')).toBe(
      'exports/_work/source=epic-prod/execution=epic-prod-auto-open/failure-counted.json',
    );
  });

  it('counts each execution of a source on its own', async () => {
    const { store } = memoryStore();
    const { runtime, metrics } = runtimeWith(store);
    await countExportFailure(runtime, FAILURE);
    await countExportFailure(runtime, { ...FAILURE, executionName: 'epic-prod-auto-open-2' });
    expect(metrics.countOf('ExportsFailed', 'epic-prod')).toBe(2);
  });

  it('counts the failure when S3 can tell neither way, and says so', async () => {
    // Prepare
    const { store } = memoryStore({ failWrites: true, failReads: true });
    const { runtime, metrics, lines } = runtimeWith(store);
    // Act
    await countExportFailure(runtime, { ...FAILURE, error: 'StorageError' });
    // Assess
    expect(metrics.records.map((record) => record.dimensions)).toEqual([
      { SourceId: 'epic-prod', ErrorCategory: 'storage' },
    ]);
    expect(lines.map((line) => JSON.parse(line).message)).toEqual([
      'could not tell whether the export was counted; counting it',
    ]);
  });

  it('counts an input that never named a valid source under "unknown", without a marker', async () => {
    // Prepare
    const { store, objects } = memoryStore();
    const { runtime, metrics } = runtimeWith(store);
    // Act
    await countExportFailure(runtime, {
      sourceId: 'Not A Source; Bearer abc',
      executionName: 'x',
      error: 'InvalidExecutionInputError',
    });
    await countExportFailure(runtime, { sourceId: undefined, executionName: 'y', error: 'States.Runtime' });
    // Assess
    expect(metrics.records.map((record) => record.dimensions)).toEqual([
      { SourceId: 'unknown', ErrorCategory: 'validation' },
      { SourceId: 'unknown', ErrorCategory: 'other' },
    ]);
    expect(objects.size).toBe(0);
  });
});

describe('countExportSuccess', () => {
  const SUCCESS = {
    sourceId: 'epic-prod',
    executionName: 'epic-prod-20260301',
    durationSeconds: 42,
    resources: 1_000,
    bytes: 2_048,
  };

  it('counts a completed export once, however often Complete Export runs for it', async () => {
    // Prepare
    const { store, objects } = memoryStore();
    const { runtime, metrics } = runtimeWith(store);
    // Act
    await countExportSuccess(runtime, SUCCESS);
    await countExportSuccess(runtime, SUCCESS);
    // Assess
    expect(
      metrics.records.flatMap((record) => record.metrics.map((metric) => [metric.name, metric.value])),
    ).toEqual([
      ['ExportsSucceeded', 1],
      ['ExportDuration', 42],
      ['ResourcesExported', 1_000],
      ['BytesExported', 2_048],
    ]);
    expect([...objects.keys()]).toEqual([successCountedKey('exports/', 'epic-prod', 'epic-prod-20260301')]);
  });

  it('counts when S3 cannot tell whether it was counted, and says so', async () => {
    // Prepare
    const { store } = memoryStore({ failWrites: true, failReads: true });
    const { runtime, metrics, lines } = runtimeWith(store);
    // Act
    await countExportSuccess(runtime, SUCCESS);
    // Assess
    expect(metrics.records).toHaveLength(1);
    expect(lines.map((line) => JSON.parse(line).message)).toEqual([
      'could not tell whether the export was counted; counting it',
    ]);
  });
});
