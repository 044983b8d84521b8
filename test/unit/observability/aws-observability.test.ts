import { S3Client } from '@aws-sdk/client-s3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigurationError } from '../../../lambdas/errors.js';
import { type InvocationContext, wrapTaskHandler } from '../../../lambdas/middleware.js';
import {
  type AwsObservability,
  createAwsObservability,
} from '../../../lambdas/observability/aws-observability.js';
import { thrown } from '../../support/thrown.js';

/** What Powertools prints (its own Console on stdout and stderr, as in Lambda), one parsed JSON line each. */
function capturePrinted() {
  const lines: Record<string, unknown>[] = [];
  const intercept = (chunk: unknown) => {
    for (const line of String(chunk).split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line));
    return true;
  };
  const spies = [
    vi.spyOn(process.stdout, 'write').mockImplementation(intercept),
    vi.spyOn(process.stderr, 'write').mockImplementation(intercept),
  ];
  return {
    lines,
    emf: () => lines.filter((line) => '_aws' in line),
    logs: () => lines.filter((line) => !('_aws' in line)),
    restore: () => {
      for (const spy of spies) spy.mockRestore();
    },
  };
}

const lambdaContext = (requestId: string): InvocationContext & Record<string, unknown> => ({
  awsRequestId: requestId,
  functionName: 'fhir-bulk-export-CompleteExport',
  functionVersion: '$LATEST',
  invokedFunctionArn: 'arn:aws:lambda:eu-west-1:123456789012:function:fhir-bulk-export-CompleteExport',
  memoryLimitInMB: '256',
  getRemainingTimeInMillis: () => 60_000,
});

const EXPORT = { sourceId: 'epic-prod', executionName: 'epic-prod-auto-open' };

describe('the AWS observability stack (Powertools)', () => {
  let printed: ReturnType<typeof capturePrinted>;
  let observability: AwsObservability;
  beforeEach(() => {
    printed = capturePrinted();
    // As Lambda sets it for a container it starts on demand: Powertools reports cold starts only then.
    vi.stubEnv('AWS_LAMBDA_INITIALIZATION_TYPE', 'on-demand');
    observability = createAwsObservability({ LOG_LEVEL: 'DEBUG' });
  });
  afterEach(() => {
    printed.restore();
    vi.unstubAllEnvs();
  });

  /** A Task whose handler reports what `act` does, wrapped as aws-entry.ts wraps every Task. */
  const task = (act: (observability: AwsObservability) => void | Promise<void>) =>
    wrapTaskHandler(
      'CompleteExport',
      () => observability.logger,
      async () => {
        await act(observability);
        return { ok: true };
      },
      () => observability.middlewares,
    );

  it('publishes a success as one EMF document: the four metrics, per source and overall', async () => {
    // Act
    await task(({ metrics }) =>
      metrics.exportSucceeded({
        sourceId: 'epic-prod',
        durationSeconds: 754.5,
        resources: 1200,
        bytes: 987_654,
      }),
    )({ export: EXPORT }, lambdaContext('r-1'));
    // Assess
    expect(printed.emf()).toEqual([
      {
        _aws: {
          Timestamp: expect.any(Number),
          CloudWatchMetrics: [
            {
              Namespace: 'FhirBulkExport',
              Dimensions: [['service'], ['service', 'SourceId']],
              Metrics: [
                { Name: 'ExportsSucceeded', Unit: 'Count' },
                { Name: 'ExportDuration', Unit: 'Seconds' },
                { Name: 'ResourcesExported', Unit: 'Count' },
                { Name: 'BytesExported', Unit: 'Bytes' },
              ],
            },
          ],
        },
        service: 'fhir-bulk-export',
        SourceId: 'epic-prod',
        ExportsSucceeded: 1,
        ExportDuration: 754.5,
        ResourcesExported: 1200,
        BytesExported: 987_654,
      },
    ]);
  });

  it('publishes a failure with its error category, in the four dimension sets the alarms and dashboard read', async () => {
    // Act
    await task(({ metrics }) => metrics.exportFailed({ sourceId: 'epic-prod', category: 'auth' }))(
      { executionName: EXPORT.executionName, input: { sourceId: 'epic-prod' }, state: {} },
      lambdaContext('r-2'),
    );
    // Assess
    expect(printed.emf()).toEqual([
      {
        _aws: {
          Timestamp: expect.any(Number),
          CloudWatchMetrics: [
            {
              Namespace: 'FhirBulkExport',
              Dimensions: [
                ['service'],
                ['service', 'SourceId'],
                ['service', 'ErrorCategory'],
                ['service', 'SourceId', 'ErrorCategory'],
              ],
              Metrics: [{ Name: 'ExportsFailed', Unit: 'Count' }],
            },
          ],
        },
        service: 'fhir-bulk-export',
        SourceId: 'epic-prod',
        ErrorCategory: 'auth',
        ExportsFailed: 1,
      },
    ]);
  });

  it('publishes a landed file with its size, retries and checkpoints, also when the handler then fails', async () => {
    // Act
    const failing = task(({ metrics }) => {
      metrics.fileLanded({ sourceId: 'epic-prod', bytes: 5_000_000, retries: 2, checkpoints: 1 });
      throw new ConfigurationError('after the file landed');
    });
    await expect(failing({ export: EXPORT }, lambdaContext('r-3'))).rejects.toThrow('after the file landed');
    // Assess
    expect(printed.emf()).toEqual([
      expect.objectContaining({
        _aws: expect.objectContaining({
          CloudWatchMetrics: [
            {
              Namespace: 'FhirBulkExport',
              Dimensions: [['service'], ['service', 'SourceId']],
              Metrics: [
                { Name: 'FileSize', Unit: 'Bytes' },
                { Name: 'FileRetries', Unit: 'Count' },
                { Name: 'Checkpoints', Unit: 'Count' },
              ],
            },
          ],
        }),
        SourceId: 'epic-prod',
        FileSize: 5_000_000,
        FileRetries: 2,
        Checkpoints: 1,
      }),
    ]);
  });

  it("publishes a running export's age per source only, and chunk progress only when it runs in chunks", async () => {
    // Act
    await task(({ metrics }) => {
      metrics.exportInProgress({ sourceId: 'epic-prod', ageSeconds: 5400 });
      metrics.exportInProgress({ sourceId: 'cerner', ageSeconds: 90, chunks: { total: 40, done: 7 } });
    })({ export: EXPORT }, lambdaContext('r-3b'));
    // Assess
    const documents = printed.emf();
    expect(
      documents.map((document) => (document._aws as { CloudWatchMetrics: unknown }).CloudWatchMetrics),
    ).toEqual([
      [
        {
          Namespace: 'FhirBulkExport',
          Dimensions: [['service', 'SourceId']],
          Metrics: [{ Name: 'ExportAge', Unit: 'Seconds' }],
        },
      ],
      [
        {
          Namespace: 'FhirBulkExport',
          Dimensions: [['service', 'SourceId']],
          Metrics: [
            { Name: 'ExportAge', Unit: 'Seconds' },
            { Name: 'ChunksDone', Unit: 'Count' },
            { Name: 'ChunksTotal', Unit: 'Count' },
          ],
        },
      ],
    ]);
    expect(
      documents.map(({ SourceId, ExportAge, ChunksDone, ChunksTotal }) => ({
        SourceId,
        ExportAge,
        ChunksDone,
        ChunksTotal,
      })),
    ).toEqual([
      { SourceId: 'epic-prod', ExportAge: 5400, ChunksDone: undefined, ChunksTotal: undefined },
      { SourceId: 'cerner', ExportAge: 90, ChunksDone: 7, ChunksTotal: 40 },
    ]);
  });

  it('publishes nothing, not even a warning, for an invocation that reported nothing', async () => {
    await task(() => undefined)({ export: EXPORT }, lambdaContext('r-4'));
    expect(printed.emf()).toEqual([]);
    expect(printed.logs().map((line) => line.message)).toEqual(['task started', 'task finished']);
  });

  it('keeps two events of one invocation in two documents, each once', async () => {
    // Act
    await task(({ metrics }) => {
      metrics.exportFailed({ sourceId: 'epic-prod', category: 'timeout' });
      metrics.exportFailed({ sourceId: 'cerner', category: 'storage' });
    })({ export: EXPORT }, lambdaContext('r-5'));
    // Assess
    expect(
      printed
        .emf()
        .map(({ SourceId, ErrorCategory, ExportsFailed }) => ({ SourceId, ErrorCategory, ExportsFailed })),
    ).toEqual([
      { SourceId: 'epic-prod', ErrorCategory: 'timeout', ExportsFailed: 1 },
      { SourceId: 'cerner', ErrorCategory: 'storage', ExportsFailed: 1 },
    ]);
  });

  it('puts request id, cold start, sourceId and executionId on every line, for that invocation only', async () => {
    // Act
    const logging = task(({ logger }) => {
      logger.child({ index: 3 }).info('file landed');
    });
    await logging({ export: EXPORT }, lambdaContext('r-6'));
    await logging({ sourceId: 'cerner', executionName: 'cerner-1' }, lambdaContext('r-7'));
    await logging({}, lambdaContext('r-8'));
    // Assess
    const lines = printed.logs().map((line) => ({
      message: line.message,
      request: line.function_request_id,
      cold: line.cold_start,
      sourceId: line.sourceId,
      executionId: line.executionId,
    }));
    expect(lines).toEqual([
      { message: 'task started', request: 'r-6', cold: true, ...EXPORT_KEYS },
      { message: 'file landed', request: 'r-6', cold: true, ...EXPORT_KEYS },
      { message: 'task finished', request: 'r-6', cold: true, ...EXPORT_KEYS },
      ...['task started', 'file landed', 'task finished'].map((message) => ({
        message,
        request: 'r-7',
        cold: false,
        sourceId: 'cerner',
        executionId: 'cerner-1',
      })),
      ...['task started', 'file landed', 'task finished'].map((message) => ({
        message,
        request: 'r-8',
        cold: false,
        sourceId: undefined,
        executionId: undefined,
      })),
    ]);
    expect(printed.logs().find((line) => line.message === 'file landed')).toMatchObject({
      level: 'INFO',
      service: 'fhir-bulk-export',
      index: 3,
    });
  });

  it('masks tokens, assertions and resource content with our redaction, at any depth and in errors', async () => {
    // Prepare
    const jwt = 'eyJhbGciOiJSUzM4NCJ9.eyJpc3MiOiJjbGllbnQifQ.c2lnbmF0dXJl';
    // Act
    await task(({ logger }) => {
      logger.warn(`refused Bearer abc.def-123 and ${jwt}`, {
        accessToken: 'abc.def-123',
        response: { headers: { authorization: 'Bearer abc.def-123' }, body: '{"resourceType":"Patient"}' },
        nested: { l1: { l2: { l3: { l4: { l5: { l6: { l7: { clientAssertion: jwt } } } } } } } },
        error: new Error(`token endpoint answered ${jwt}`),
        message: 'kept under another name',
        lines: 12,
      });
    })({ export: EXPORT }, lambdaContext('r-9'));
    // Assess
    const text = printed.lines.map((line) => JSON.stringify(line)).join('\n');
    expect(text).not.toContain('abc.def-123');
    expect(text).not.toContain(jwt);
    expect(text).not.toContain('Patient');
    const line = printed.logs().find((entry) => entry.level === 'WARN');
    expect(line).toMatchObject({
      message: 'refused Bearer [redacted] and [redacted-jwt]',
      accessToken: '[redacted]',
      response: { headers: { authorization: '[redacted]' }, body: '[redacted]' },
      error: { name: 'Error', message: 'token endpoint answered [redacted-jwt]' },
      _message: 'kept under another name',
      lines: 12,
    });
    expect(JSON.stringify(line)).toContain('"clientAssertion":"[redacted]"');
  });

  it('logs at the LOG_LEVEL given in any case, and refuses one that is not a level', () => {
    // Act
    const quiet = createAwsObservability({ LOG_LEVEL: 'Warn' });
    quiet.logger.info('not printed');
    quiet.logger.warn('printed');
    // Assess
    expect(printed.logs().map((line) => line.message)).toEqual(['printed']);
    const error = thrown(() => createAwsObservability({ LOG_LEVEL: 'Warning' }));
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toContain('environment variable LOG_LEVEL must be one of debug, info, warn, error');
  });

  it('does not trace outside Lambda (no X-Ray daemon in tests): clients are left as they are', () => {
    // Prepare
    const client = new S3Client({ region: 'eu-west-1' });
    // Act
    const traced = observability.traced(client);
    // Assess
    expect(process.env.AWS_EXECUTION_ENV).toBeUndefined();
    expect(observability.tracer.isTracingEnabled()).toBe(false);
    expect(traced).toBe(client);
    client.destroy();
  });
});

const EXPORT_KEYS = { sourceId: EXPORT.sourceId, executionId: EXPORT.executionName };
