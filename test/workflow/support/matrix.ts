import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import type { Watermark } from '../../../lambdas/services/watermark.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../../scripts/local/embedded-s3.js';
import {
  type LocalExportOptions,
  type LocalExportResult,
  runLocalExport,
} from '../../../scripts/local/local-export.js';
import { ensureLocalKeyPair, type LocalKeyPair } from '../../../scripts/local/local-keys.js';
import type { EventLog } from '../../../scripts/local/runner.js';
import {
  type FaultPlan,
  type Sandbox,
  type SandboxOptions,
  startSandbox,
} from '../../../scripts/sandbox/index.js';
import { listAllKeys } from './s3-keys.js';

/**
 * The real parts for the fault matrix: the sandbox FHIR server over HTTP, the
 * embedded S3 server (restartable on the same port and folder, to take it
 * away mid-export), the real ASL and handlers. Scenarios share one of each
 * and run side by side, each with its own client and source id.
 */
export interface MatrixEnvironment {
  readonly sandbox: Sandbox;
  readonly s3: EmbeddedS3;
  readonly client: S3Client;
  readonly bucket: string;
  readonly key: LocalKeyPair;
  /** Patient indexes of the Group every scenario exports. */
  readonly cohort: readonly number[];
  getBytes(key: string): Promise<Buffer | undefined>;
  getText(key: string): Promise<string | undefined>;
  getJson<T>(key: string): Promise<T | undefined>;
  listKeys(prefix: string): Promise<string[]>;
  /** Open multipart uploads (ListMultipartUploads, which the embedded S3 serves). */
  openUploads(prefix: string): Promise<{ key: string; uploadId: string }[]>;
  /** Stops the S3 server; its data stays in its folder. */
  stopS3(): Promise<void>;
  /** Starts it again on the same port and folder. */
  startS3(): Promise<void>;
  /**
   * Stops the S3 server, then brings it back once someone has tried to reach it: the first
   * connection to its port is reset, later ones are refused until it serves again. Resolves
   * once S3 is down, with `back`: resolves once S3 serves again.
   */
  takeS3AwayUntilTried(): Promise<S3Outage>;
  close(): Promise<void>;
}

export interface S3Outage {
  /** Whether anyone has tried to reach S3 since it went down. */
  readonly tried: boolean;
  readonly back: Promise<void>;
}

export const GROUP_ID = 'cohort';

/**
 * Parts of 32 KiB (S3 wants 5 MiB; the embedded S3 does not), so that a file
 * of this small cohort is a multipart upload and every fault meets one.
 * Short in-transfer backoffs keep the matrix fast; the logic is the same.
 */
export const MATRIX_TRANSFER: NonNullable<LocalExportOptions['transfer']> = {
  partSizeBytes: 32 * 1024,
  settings: { minPartSizeBytes: 16 * 1024, baseBackoffMs: 50, maxBackoffMs: 400 },
};

export async function startMatrixEnvironment(options: SandboxOptions = {}): Promise<MatrixEnvironment> {
  const sandbox = await startSandbox({
    patientCount: 50,
    jobDurationMs: 300,
    resourcesPerFile: 100,
    ...options,
  });
  const directory = await mkdtemp(join(tmpdir(), 'fault-matrix-s3-'));
  let s3 = await startEmbeddedS3({ directory });
  const port = Number(new URL(s3.endpoint).port);
  const bucket = 'fault-matrix';
  await s3.createBucket(bucket);
  const client = new S3Client(s3.clientConfig);
  const key = await ensureLocalKeyPair(await mkdtemp(join(tmpdir(), 'fault-matrix-keys-')));
  const cohort = sandbox.dataset.groups.find((group) => group.id === GROUP_ID)!.patientIndexes;

  const getBytes = async (objectKey: string) => {
    try {
      const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: objectKey }));
      return Buffer.from(await response.Body!.transformToByteArray());
    } catch (error) {
      if ((error as { name?: string }).name === 'NoSuchKey') return undefined;
      throw error;
    }
  };
  let stopped = false;
  const stopS3 = async () => {
    stopped = true;
    await s3.close();
  };
  const watchers = new Set<Server>();
  const closeWatcher = (watcher: Server) =>
    new Promise<void>((resolve) => {
      watchers.delete(watcher);
      watcher.close(() => resolve());
    });
  const startS3 = async () => {
    s3 = await startEmbeddedS3({ directory, port });
    stopped = false;
  };
  return {
    sandbox,
    get s3() {
      return s3;
    },
    client,
    bucket,
    key,
    cohort,
    getBytes,
    async getText(objectKey) {
      return (await getBytes(objectKey))?.toString('utf8');
    },
    async getJson<T>(objectKey: string) {
      const bytes = await getBytes(objectKey);
      return bytes === undefined ? undefined : (JSON.parse(bytes.toString('utf8')) as T);
    },
    listKeys: (prefix) => listAllKeys(client, bucket, prefix),
    async openUploads(prefix) {
      const page = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
      return (page.Uploads ?? []).map((upload) => ({ key: upload.Key!, uploadId: upload.UploadId! }));
    },
    stopS3,
    startS3,
    async takeS3AwayUntilTried() {
      await stopS3();
      const watcher = createServer((socket) => socket.destroy());
      watchers.add(watcher);
      let tried = false;
      const firstTry = new Promise<void>((resolve) =>
        watcher.once('connection', () => {
          tried = true;
          resolve();
        }),
      );
      await new Promise<void>((resolve, reject) => {
        watcher.once('error', reject);
        watcher.listen(port, '127.0.0.1', () => resolve());
      });
      const back = firstTry.then(() => closeWatcher(watcher)).then(startS3);
      return {
        get tried() {
          return tried;
        },
        back,
      };
    },
    async close() {
      client.destroy();
      await Promise.all([...watchers].map(closeWatcher));
      if (!stopped) await s3.close();
      await sandbox.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

export interface Scenario {
  /** The test's name, and the base of the source id. */
  readonly name: string;
  /** Registered with a fresh client (ignored when `clientId` is given). */
  readonly faults?: FaultPlan;
  /** Source-file fields on top of the defaults (Group `cohort`, loopback http allowed). */
  readonly source?: Record<string, unknown>;
  /** Execution input fields on top of `{ sourceId, since: 'auto' }`. */
  readonly input?: Record<string, unknown>;
  readonly clientId?: string;
  readonly sourceId?: string;
  readonly executionName?: string;
  readonly waitOverrideMs?: number;
  readonly retryOverrideMs?: number;
  readonly invocationTimeoutMs?: LocalExportOptions['invocationTimeoutMs'];
  readonly killInvocation?: LocalExportOptions['killInvocation'];
  readonly beforeInvocation?: LocalExportOptions['beforeInvocation'];
  readonly fileIdleTimeoutMs?: number;
  readonly transfer?: LocalExportOptions['transfer'];
  readonly onEvent?: (event: EventLog) => void;
  readonly signal?: AbortSignal;
  readonly redrive?: LocalExportOptions['redrive'];
  readonly eventSink?: LocalExportOptions['eventSink'];
  /** History events before an execution continues in a new one. */
  readonly historyEventBudget?: number;
}

export interface ScenarioRun {
  readonly scenario: Scenario;
  readonly sourceId: string;
  readonly clientId: string;
  readonly result: LocalExportResult;
  readonly logLines: readonly string[];
  /** The source's watermark before the run. */
  readonly watermarkBefore: Watermark | undefined;
  /** Keys under `source=<id>/` before the run (earlier exports of the same source). */
  readonly keysBefore: readonly string[];
}

let sourceCounter = 0;

/** A lower-case source id from a scenario name, unique within the process. */
export function sourceIdFor(name: string): string {
  sourceCounter += 1;
  const slug = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 48);
  return `${slug || 'scenario'}-${sourceCounter}`;
}

export async function runScenario(env: MatrixEnvironment, scenario: Scenario): Promise<ScenarioRun> {
  const sourceId = scenario.sourceId ?? sourceIdFor(scenario.name);
  const clientId =
    scenario.clientId ??
    (
      await env.sandbox.registerClient({
        jwks: { keys: [env.key.publicJwk] },
        ...(scenario.faults ? { faults: scenario.faults } : {}),
      })
    ).clientId;
  const watermarkBefore = await env.getJson<Watermark>(`_state/source=${sourceId}/watermark.json`);
  const keysBefore = await env.listKeys(`source=${sourceId}/`);
  const logLines: string[] = [];
  const result = await runLocalExport({
    sources: [
      {
        raw: {
          id: sourceId,
          fhirBaseUrl: env.sandbox.baseUrl,
          clientId,
          privateKeyFile: env.key.privateKeyFile,
          allowInsecureHttp: true,
          export: { level: 'group', groupId: GROUP_ID },
          ...scenario.source,
        },
      },
    ],
    input: { sourceId, since: 'auto', ...scenario.input },
    s3ClientConfig: env.s3.clientConfig,
    bucket: env.bucket,
    onLogLine: (line) => logLines.push(line),
    waitOverrideMs: scenario.waitOverrideMs ?? 100,
    retryOverrideMs: scenario.retryOverrideMs ?? 20,
    fileIdleTimeoutMs: scenario.fileIdleTimeoutMs ?? 10_000,
    transfer: scenario.transfer ?? MATRIX_TRANSFER,
    ...(scenario.executionName ? { executionName: scenario.executionName } : {}),
    ...(scenario.invocationTimeoutMs === undefined
      ? {}
      : { invocationTimeoutMs: scenario.invocationTimeoutMs }),
    ...(scenario.killInvocation ? { killInvocation: scenario.killInvocation } : {}),
    ...(scenario.beforeInvocation ? { beforeInvocation: scenario.beforeInvocation } : {}),
    ...(scenario.onEvent ? { onEvent: scenario.onEvent } : {}),
    ...(scenario.signal ? { signal: scenario.signal } : {}),
    ...(scenario.redrive ? { redrive: scenario.redrive } : {}),
    ...(scenario.eventSink ? { eventSink: scenario.eventSink } : {}),
    ...(scenario.historyEventBudget ? { historyEventBudget: scenario.historyEventBudget } : {}),
  });
  return { scenario, sourceId, clientId, result, logLines, watermarkBefore, keysBefore };
}

/** The status URL the run's kick-off was given, from the execution history. */
export function statusUrlOf(run: ScenarioRun): string | undefined {
  for (const event of run.result.run.events) {
    if (event.type !== 'StateExited' || event.state?.name !== 'Kick Off Export') continue;
    const kickoff = (event.state.output as { kickoff?: { outcome?: string; statusUrl?: string } }).kickoff;
    if (kickoff?.outcome === 'accepted' && kickoff.statusUrl) return kickoff.statusUrl;
  }
  return undefined;
}

/** `waitSeconds` each time the execution entered this Wait state. */
export function waitSecondsOf(
  run: ScenarioRun,
  waitState: 'Wait For Export' | 'Wait Before Retrying Kick-Off',
) {
  const path = waitState === 'Wait For Export' ? 'poll' : 'kickoff';
  return run.result.run.events
    .filter((event) => event.type === 'StateEntered' && event.state?.name === waitState)
    .map((event) => (event.state!.input as Record<string, { waitSeconds: number }>)[path]!.waitSeconds);
}

/** The sandbox's log of this client's requests, once every request was answered. */
export async function requestsOf(env: MatrixEnvironment, clientId: string) {
  await env.sandbox.settled();
  return env.sandbox.requestLog.filter((entry) => entry.clientId === clientId);
}
