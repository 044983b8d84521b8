import { appendFileSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { KMSClient } from '@aws-sdk/client-kms';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { AccessTokenProvider } from '../../lambdas/adapters/access-token-provider.js';
import { createFhirHttp } from '../../lambdas/adapters/fhir-http.js';
import { createHttpAgent, type HttpTimeouts } from '../../lambdas/adapters/http-agent.js';
import { createLocalSealer, generateLocalSealingKey } from '../../lambdas/adapters/local-sealer.js';
import { createS3Store } from '../../lambdas/adapters/s3-store.js';
import { createSourceAccessTokens } from '../../lambdas/adapters/source-access-tokens.js';
import {
  createSourceRegistry,
  registrationRecord,
  type SourceRegistry,
} from '../../lambdas/adapters/source-registry.js';
import { parseSourceSettings, type SourceSettings } from '../../lambdas/config.js';
import { parseLocalSourceAuth } from '../../lambdas/core/auth/client-config.js';
import { registrationKey } from '../../lambdas/core/layout.js';
import { createLogger, type Logger } from '../../lambdas/logger.js';
import { createRecordingMetrics, type RecordingMetrics } from '../../lambdas/observability/metrics.js';
import type { EventSink, ProgressEvent, Runtime } from '../../lambdas/runtime.js';

export interface LocalSource {
  /** The source file's JSON. */
  readonly raw: unknown;
  /** Directory that relative `privateKeyFile` paths resolve against. */
  readonly baseDir?: string;
  /** For messages: where the source came from. */
  readonly origin?: string;
}

export interface LocalRuntimeOptions {
  readonly sources: readonly LocalSource[];
  readonly s3ClientConfig: S3ClientConfig;
  readonly bucket: string;
  /** @default '' */
  readonly prefix?: string;
  /** Log lines go here (JSON, redacted). @default discarded */
  readonly logFile?: string;
  /** Receives every log line too (tests scan them for secrets). */
  readonly onLogLine?: (line: string) => void;
  readonly progress?: (event: ProgressEvent) => void;
  readonly now?: () => Date;
  /**
   * The HTTP timeouts and minimum throughput, over the defaults that the AWS
   * runtime uses too (lambdas/adapters/http-agent.ts). Tests shorten them to
   * meet a stall in milliseconds rather than a minute.
   */
  readonly httpTimeouts?: Partial<HttpTimeouts>;
  /** Shorthand for `httpTimeouts.bodyIdleTimeoutMs`, which it overrides. */
  readonly fileIdleTimeoutMs?: number;
  /**
   * Where events go besides `emittedEvents` (EventBridge's stand-in): a test
   * gives one that fails, as PutEvents can. @default records them only
   */
  readonly eventSink?: EventSink;
  /** Transfer tuning, e.g. small parts to exercise multipart uploads with small files (see Runtime.transfer). */
  readonly transfer?: Runtime['transfer'];
  /** History events before an execution continues in a new one (tests cross a small one). */
  readonly historyEventBudget?: number;
  /** The validation stage's tuning (Runtime.validation): tests force checkpoints with it. */
  readonly validation?: Runtime['validation'];
}

export interface LocalRuntime {
  readonly runtime: Runtime;
  readonly sources: ReadonlyMap<string, SourceSettings>;
  /** Every metric record, in order (also written to the log as EMF lines). */
  readonly metrics: RecordingMetrics;
  /**
   * Writes the source files' settings to the registry in the bucket, as
   * `npm run sources -- put` does on AWS; the handlers read them from there
   * through the same registry code. The runtime's first registry read waits
   * for it; a run calls it first so that a failed write fails before the run.
   */
  publishSources(): Promise<void>;
  /** Every event emitted, in order (EventBridge stands in here). */
  readonly emittedEvents: { detailType: string; detail: Record<string, unknown> }[];
  close(): Promise<void>;
}

/** A Runtime for running the real handlers on a laptop: local keys, a per-run sealing key, any S3 endpoint. */
export function createLocalRuntime(options: LocalRuntimeOptions): LocalRuntime {
  const sources = new Map<string, SourceSettings>();
  const records: { id: string; clientSecret: string; settings: Record<string, unknown> }[] = [];
  const auth = new Map<string, ReturnType<typeof parseLocalSourceAuth>>();
  for (const [index, source] of options.sources.entries()) {
    const where = source.origin ?? `sources[${index}]`;
    const settings = parseSourceSettings(source.raw, where);
    sources.set(settings.id, settings);
    records.push(
      registrationRecord({
        id: settings.id,
        // Locally the credentials are the source file's keys, kept in this process; never in the bucket.
        clientSecret: `local:${where}`,
        // Parsed settings are valid settings again (the schema's round trip): no credentials, defaults filled.
        settings: { ...settings },
      }),
    );
    auth.set(
      settings.id,
      parseLocalSourceAuth(source.raw, {
        path: where,
        ...(source.baseDir ? { baseDir: source.baseDir } : {}),
      }),
    );
  }
  if (options.logFile) mkdirSync(dirname(options.logFile), { recursive: true });
  const write = (line: string) => {
    if (options.logFile) appendFileSync(options.logFile, `${line}\n`);
    options.onLogLine?.(line);
  };
  // Our own logger, not Powertools': no Lambda context here, and concurrent invocations share one process.
  const logger: Logger = createLogger({ level: 'debug', write });
  const metrics = createRecordingMetrics({ write, ...(options.now ? { now: options.now } : {}) });
  const s3 = new S3Client(options.s3ClientConfig);
  const store = createS3Store({ s3, bucket: options.bucket });
  const fileDispatcher = createHttpAgent({
    ...options.httpTimeouts,
    ...(options.fileIdleTimeoutMs === undefined ? {} : { bodyIdleTimeoutMs: options.fileIdleTimeoutMs }),
  });
  const prefix = options.prefix ?? '';
  let published: Promise<void> | undefined;
  const publishSources = () => {
    published ??= Promise.all(
      records.map((record) => store.putJson(registrationKey(prefix, record.id), record)),
    ).then(() => undefined);
    published.catch(() => {
      published = undefined;
    });
    return published;
  };
  const registry = createSourceRegistry({ store, prefix, ...(options.now ? { now: options.now } : {}) });
  const registryAfterPublishing: SourceRegistry = {
    get: async (sourceId) => {
      await publishSources();
      return registry.get(sourceId);
    },
    registration: async (sourceId) => {
      await publishSources();
      return registry.registration(sourceId);
    },
  };
  const emittedEvents: LocalRuntime['emittedEvents'] = [];
  const events: EventSink = {
    async emit(detailType, detail) {
      await options.eventSink?.emit(detailType, detail);
      emittedEvents.push({ detailType, detail });
      logger.info('event emitted', { detailType, detail });
    },
  };
  const providers = new Map<string, Promise<AccessTokenProvider>>();
  let kms: KMSClient | undefined;

  const runtime: Runtime = {
    now: options.now ?? (() => new Date()),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    random: Math.random,
    logger,
    metrics,
    s3,
    store,
    prefix,
    sources: registryAfterPublishing,
    // A fresh key per run: sealed tokens in the local history open nowhere else.
    sealer: createLocalSealer({ key: generateLocalSealingKey() }),
    fhir: createFhirHttp({ dispatcher: fileDispatcher }),
    fileDispatcher,
    events,
    accessTokens: (sourceId) => {
      let provider = providers.get(sourceId);
      if (!provider) {
        const settings = sources.get(sourceId);
        const credentials = auth.get(sourceId);
        if (!settings || !credentials) throw new Error(`no local source ${sourceId}`);
        if (credentials.authMethod === 'private_key_jwt' && credentials.signingKey.kind === 'kms')
          kms ??= new KMSClient({});
        provider = createSourceAccessTokens(credentials, settings, {
          ...(kms ? { kms } : {}),
          logger,
          ...(options.now ? { now: options.now } : {}),
        });
        providers.set(sourceId, provider);
        provider.catch(() => providers.delete(sourceId));
      }
      return provider;
    },
    ...(options.progress ? { progress: options.progress } : {}),
    ...(options.transfer ? { transfer: options.transfer } : {}),
    // Locks name this process: a later run tells a killed export (dead process) from a running one.
    localProcess: { pid: process.pid, host: hostname() },
    ...(options.historyEventBudget ? { historyEventBudget: options.historyEventBudget } : {}),
    ...(options.validation ? { validation: options.validation } : {}),
  };
  return {
    runtime,
    sources,
    metrics,
    publishSources,
    emittedEvents,
    async close() {
      s3.destroy();
      kms?.destroy();
      await fileDispatcher.close();
    },
  };
}
