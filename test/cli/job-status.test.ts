import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import {
  DescribeExecutionCommand,
  ExecutionDoesNotExist,
  ListExecutionsCommand,
  type SFNClient,
} from '@aws-sdk/client-sfn';
import { describe, expect, it } from 'vitest';
import type { JsonStore } from '../../lambdas/adapters/s3-store.js';
import type { JobRecord } from '../../lambdas/services/export-lifecycle.js';
import type { SourceLock } from '../../lambdas/services/source-lock.js';
import { phaseOf, readStatuses, render, type StateReader } from '../../scripts/local/job-status.js';

const NOW = new Date('2026-12-06T12:00:00.000Z');
const ARN = 'arn:aws:states:eu-west-1:123456789012:execution:fhir-bulk-export:epic-20261206T100000Z-auto';
const MACHINE = 'arn:aws:states:eu-west-1:123456789012:stateMachine:fhir-bulk-export';

/** A bucket in memory: the store the pipeline's readers use, and ListObjectsV2 with a delimiter. */
function bucketOf(objects: Record<string, unknown>): Pick<StateReader, 's3' | 'store' | 'bucket'> {
  const keys = () => Object.keys(objects).sort();
  const store: JsonStore = {
    bucket: 'b',
    getJson: async <T>(key: string) => objects[key] as T | undefined,
    head: async (key) => (key in objects ? { size: 1, metadata: {} } : undefined),
    listKeys: async (prefix) => keys().filter((key) => key.startsWith(prefix)),
    putJson: async () => {
      throw new Error('status writes nothing');
    },
    delete: async () => {
      throw new Error('status writes nothing');
    },
    abortUploads: async () => {
      throw new Error('status writes nothing');
    },
  };
  const s3 = {
    send: async (command: unknown) => {
      if (!(command instanceof ListObjectsV2Command)) throw new Error('only ListObjectsV2');
      const prefix = command.input.Prefix ?? '';
      const folders = new Set<string>();
      const contents: { Key: string; LastModified: Date }[] = [];
      for (const key of keys().filter((name) => name.startsWith(prefix))) {
        const slash = key.indexOf('/', prefix.length);
        if (slash >= 0) folders.add(key.slice(0, slash + 1));
        else {
          const at = (objects[key] as { failedAt?: string }).failedAt;
          contents.push({ Key: key, LastModified: new Date(at ?? 0) });
        }
      }
      return {
        CommonPrefixes: [...folders].map((folder) => ({ Prefix: folder })),
        Contents: contents,
        IsTruncated: false,
      };
    },
  } as unknown as S3Client;
  return { s3, store, bucket: 'b' };
}

/** Step Functions with one RUNNING execution per entry, named by its input's sourceId. */
function stepFunctions(running: Record<string, string>): SFNClient {
  return {
    send: async (command: unknown) => {
      if (command instanceof ListExecutionsCommand) {
        expect(command.input).toMatchObject({ stateMachineArn: MACHINE, statusFilter: 'RUNNING' });
        return { executions: Object.keys(running).map((executionArn) => ({ executionArn })) };
      }
      if (command instanceof DescribeExecutionCommand) {
        const arn = command.input.executionArn!;
        if (!(arn in running))
          throw new ExecutionDoesNotExist({ message: 'no such execution', $metadata: {} });
        return { status: 'RUNNING', input: JSON.stringify({ sourceId: running[arn] }) };
      }
      throw new Error('unexpected command');
    },
  } as unknown as SFNClient;
}

const lock = (state: SourceLock['state'], extra: Partial<SourceLock> = {}): SourceLock => ({
  lockVersion: 2,
  executionName: 'epic-20261206T100000Z-auto',
  executionArn: ARN,
  acquiredAt: '2026-12-06T10:00:00.000Z',
  expiresAt: '2026-12-08T10:00:00.000Z',
  state,
  ...extra,
});
const WORK = '_work/source=epic-prod/execution=epic-20261206T100000Z-auto/';
const job = (extra: Partial<JobRecord> = {}): JobRecord => ({
  sourceId: 'epic-prod',
  executionName: 'epic-20261206T100000Z-auto',
  export: { startedAt: '2026-12-06T09:59:58.000Z' } as JobRecord['export'],
  ...extra,
});
const MANIFEST = { fileCount: 3 } as NonNullable<JobRecord['manifest']>;

describe('how far an export got', () => {
  it.each([
    ['running', undefined, 0, 'kicking off'],
    ['running', job(), 0, 'kicking off'],
    ['running', job({ statusUrl: 'https://ehr/status/1' }), 0, 'waiting for the server'],
    ['running', job({ chunks: { total: 3, done: 1 } }), 0, 'exporting chunks'],
    ['running', job({ chunks: { total: 3, done: 3 }, manifest: MANIFEST }), 1, 'downloading'],
    ['running', job({ statusUrl: 'https://ehr/status/1', manifest: MANIFEST }), 2, 'downloading'],
    ['running', job({ statusUrl: 'https://ehr/status/1', manifest: MANIFEST }), 3, 'finalizing'],
    ['stopping', job({ statusUrl: 'https://ehr/status/1', manifest: MANIFEST }), 1, 'stopping'],
    ['resumable', job({ statusUrl: 'https://ehr/status/1', manifest: MANIFEST }), 1, 'failed, resumable'],
  ] as const)('lock %s, job %j, %i landed: %s', (state, record, landed, phase) => {
    expect(phaseOf(state, record, landed)).toBe(phase);
  });
});

describe('the status of a source on AWS (state machine and bucket)', () => {
  it('shows a chunked export downloading, its holder alive by DescribeExecution, and an execution not yet holding a lock', async () => {
    // Prepare
    const bucket = bucketOf({
      '_registry/sources/epic-prod.json': { id: 'epic-prod' },
      '_state/source=epic-prod/lock.json': lock('running'),
      [`${WORK}job.json`]: job({
        statusUrl: 'https://ehr/status/1',
        manifest: MANIFEST,
        lastPoll: { at: '2026-12-06T11:59:30.000Z', progress: 'Exporting Observation 80%' },
        chunks: { total: 40, done: 7 },
      }),
      [`${WORK}results/000000.json`]: {},
      [`${WORK}results/000001.json`]: {},
    });
    const second = 'arn:aws:states:eu-west-1:123456789012:execution:fhir-bulk-export:cerner-1';
    // Act
    const statuses = await readStatuses(
      { ...bucket, prefix: '', now: NOW, sfn: stepFunctions({ [ARN]: 'epic-prod', [second]: 'cerner' }) },
      { stateMachineArn: MACHINE },
    );
    // Assess
    expect(statuses).toStrictEqual([
      { sourceId: 'cerner', registered: false, executions: [second] },
      {
        sourceId: 'epic-prod',
        registered: true,
        executions: [ARN],
        running: {
          executionName: 'epic-20261206T100000Z-auto',
          phase: 'downloading',
          startedAt: '2026-12-06T09:59:58.000Z',
          ageSeconds: 7202,
          serverProgress: 'Exporting Observation 80%',
          lastPollAt: '2026-12-06T11:59:30.000Z',
          files: { landed: 2, total: 3 },
          chunks: { done: 7, total: 40 },
          lock: {
            holder: ARN,
            state: 'running',
            liveness: 'alive',
            acquiredAt: '2026-12-06T10:00:00.000Z',
          },
        },
      },
    ]);
    const text = render('s3://b', statuses, undefined, NOW.getTime());
    expect(text).toContain(
      'Running:       epic-20261206T100000Z-auto: downloading, age 120 min 2 s (started 2026-12-06T09:59:58.000Z)\n' +
        '                 2 of 3 files landed; chunks: 7 of 40\n' +
        '                 server progress: "Exporting Observation 80%" (polled 30 s ago)\n' +
        `                 lock: ${ARN}, alive, running since 2026-12-06T10:00:00.000Z`,
    );
    expect(text).toContain(
      `Source cerner (not registered)\n  Running:       none\n  Executions:    ${second}`,
    );
  });

  it('names the executions an export continued in (history budget), the last one holding the lock', async () => {
    // Prepare
    const continuation = `${ARN}-cont-2`;
    const bucket = bucketOf({
      '_registry/sources/epic-prod.json': { id: 'epic-prod' },
      '_state/source=epic-prod/lock.json': { ...lock('running'), executionArn: continuation },
      [`${WORK}job.json`]: job({
        statusUrl: 'https://ehr/status/1',
        executions: [
          { executionName: 'epic-20261206T100000Z-auto-cont-1', startedAt: '2026-12-06T10:40:00.000Z' },
          { executionName: 'epic-20261206T100000Z-auto-cont-2', startedAt: '2026-12-06T11:20:00.000Z' },
        ],
      }),
    });
    // Act
    const statuses = await readStatuses({ ...bucket, prefix: '', now: NOW }, {});
    // Assess
    expect(statuses[0]?.running?.continuedIn).toStrictEqual([
      'epic-20261206T100000Z-auto-cont-1',
      'epic-20261206T100000Z-auto-cont-2',
    ]);
    expect(render('s3://b', statuses, undefined, NOW.getTime())).toContain(
      '                 continued in: epic-20261206T100000Z-auto-cont-1, epic-20261206T100000Z-auto-cont-2 (each took over when the one before spent its history budget)\n' +
        `                 lock: ${continuation}, unknown, running since 2026-12-06T10:00:00.000Z`,
    );
  });

  it('marks a holder whose execution is gone dead, and shows the newest failure with how long it stays resumable', async () => {
    // Prepare
    const bucket = bucketOf({
      '_state/source=epic-prod/lock.json': lock('resumable', {
        resumableUntil: '2026-12-07T10:00:00.000Z',
        reason: 'FileDownloadError',
      }),
      [`${WORK}job.json`]: job({ statusUrl: 'https://ehr/status/1', manifest: MANIFEST }),
      '_failures/source=epic-prod/old.json': {
        executionName: 'old',
        status: 'cancelled',
        error: 'ExportCancelled',
        cause: 'cancelled with npm run cancel',
        failedAt: '2026-12-01T00:00:00.000Z',
        resumable: false,
      },
      '_failures/source=epic-prod/epic-20261206T100000Z-auto.json': {
        executionName: 'epic-20261206T100000Z-auto',
        status: 'failed',
        error: 'FileDownloadError',
        cause: '1 file(s) did not land',
        failedAt: '2026-12-06T11:00:00.000Z',
        resumable: true,
        resumableUntil: '2026-12-07T10:00:00.000Z',
      },
    });
    // Act
    const [status] = await readStatuses(
      { ...bucket, prefix: '', now: NOW, sfn: stepFunctions({}) },
      { only: 'epic-prod', stateMachineArn: MACHINE },
    );
    // Assess
    expect(status!.running).toMatchObject({
      phase: 'failed, resumable',
      files: { landed: 0, total: 3 },
      lock: { liveness: 'dead', state: 'resumable', resumableUntil: '2026-12-07T10:00:00.000Z' },
    });
    expect(status!.lastFailure).toStrictEqual({
      executionName: 'epic-20261206T100000Z-auto',
      at: '2026-12-06T11:00:00.000Z',
      outcome: 'failed',
      error: 'FileDownloadError',
      cause: '1 file(s) did not land',
      resumable: true,
      resumableUntil: '2026-12-07T10:00:00.000Z',
      receiptKey: '_failures/source=epic-prod/epic-20261206T100000Z-auto.json',
    });
    const text = render('s3://b', [status!], 'epic-prod', NOW.getTime());
    expect(text).toContain('chunks: —');
    expect(text).toContain(
      'Last failure:  2026-12-06T11:00:00.000Z (60 min ago), epic-20261206T100000Z-auto failed: FileDownloadError: 1 file(s) did not land\n' +
        '                 resumable until 2026-12-07T10:00:00.000Z',
    );
  });

  it('without --state-machine-arn cannot tell whether an AWS holder runs: unknown', async () => {
    const bucket = bucketOf({ '_state/source=epic-prod/lock.json': lock('running') });
    const [status] = await readStatuses({ ...bucket, prefix: '', now: NOW }, {});
    expect(status).toMatchObject({
      sourceId: 'epic-prod',
      registered: false,
      running: { phase: 'kicking off', lock: { liveness: 'unknown' } },
    });
  });
});
