/**
 * A FHIR Bulk Data sandbox server (Bulk Data IG v2 + SMART Backend Services), with per-client
 * and per-export fault injection. It shares no code with `lambdas/`: it must not agree with our
 * client's bugs.
 *
 * Per-export faults: put `/fault/<spec>` before `/fhir` in the base URL (the smart-configuration
 * found there advertises a token endpoint under the same prefix), or send an `X-Sandbox-Fault:
 * <spec>` header with the kick-off. `<spec>` is `name[=value](;name[=value])*` (values are
 * JSON when they parse, a bare name means true or 1) or a JSON object, percent-encoded in the
 * path. It overrides the client's registered faults for that export. See `FaultPlan`.
 */
import { mkdtemp } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClientRegistration } from './auth/clients.js';
import { SandboxState } from './context.js';
import { createDataset } from './data/dataset.js';
import type { Dataset } from './data/types.js';
import { collect, stream } from './export/file-source.js';
import type { JobState } from './export/jobs.js';
import type { NonConformantResources } from './export/non-conformance.js';
import type { FaultPlan } from './faults.js';
import { resolveOptions, type SandboxOptions } from './options.js';
import { RequestLog, type RequestLogEntry } from './request-log.js';
import { handleMainRequest, handleSecondRequest } from './server.js';

export type { ClientRegistration } from './auth/clients.js';
export type { JobState } from './export/jobs.js';
export type {
  NonConformanceKindName,
  NonConformantPlan,
  NonConformantResources,
} from './export/non-conformance.js';
export { FAULT_NAMES, type FaultPlan, parseFaultSpec } from './faults.js';
export type { SandboxOptions } from './options.js';
export type { RequestLogEntry } from './request-log.js';
export { FAULT_HEADER } from './server.js';

export interface SandboxJob {
  readonly id: string;
  readonly statusUrl: string;
  readonly clientId: string;
  readonly state: JobState;
  /** The kick-off URL, as in the manifest's `request`. */
  readonly request: string;
  readonly transactionTime: string;
  readonly faults: FaultPlan;
  /** What the server understood of the kick-off's parameters, so a test can assert what a client sent. */
  readonly received: {
    readonly types: readonly string[];
    readonly since?: string;
    readonly until?: string;
    /** `_typeFilter` queries per resource type. */
    readonly typeFilters: Readonly<Record<string, readonly string[]>>;
    /** Patient ids of the `patient` parameter, when given. */
    readonly patients?: readonly string[];
    readonly includeAssociatedData: readonly string[];
  };
}

export interface FileContentOptions {
  /** The bytes as served (with the malformedLine fault applied) rather than the true content. @default false */
  readonly served?: boolean;
}

export interface Sandbox {
  /** Main origin, e.g. `http://127.0.0.1:PORT`. */
  readonly origin: string;
  /** FHIR base URL: `${origin}/fhir`. */
  readonly baseUrl: string;
  /** Token endpoint: `${origin}/auth/token` (the exact `aud` of a client assertion). */
  readonly tokenUrl: string;
  /** `POST` a registration here: `{jwks | jwks_url, scope?, faults?, client_id?}` → `{client_id}`. */
  readonly registrationUrl: string;
  /** The other listener: an S3-like host for presigned file URLs. */
  readonly secondOrigin: string;
  readonly dataset: Dataset;
  /** A base URL whose exports all meet `faults` (on top of the client's). */
  faultBaseUrl(faults: FaultPlan): string;
  registerClient(registration: ClientRegistration): Promise<{ clientId: string }>;
  /** Every request both origins served, in completion order. */
  readonly requestLog: readonly RequestLogEntry[];
  clearRequestLog(): void;
  /**
   * Resolves once every request received so far is answered and logged. A client can see a
   * whole response a moment before the server is done with it: await this before reading the log.
   */
  settled(): Promise<void>;
  /** The exact uncompressed, fault-free bytes of a manifest file URL (any of its forms). Throws for an unknown URL. */
  fileContent(fileUrl: string, options?: FileContentOptions): Buffer;
  /** The same, streamed, for files too large for one Buffer. */
  fileContentStream(fileUrl: string, options?: FileContentOptions): AsyncIterable<Buffer>;
  jobs(): readonly SandboxJob[];
  /**
   * The ids the nonConformant fault broke in an export (by its id or status URL), by kind, in
   * export order; every list is empty without the fault. Throws for an unknown export.
   */
  nonConformantResources(exportIdOrStatusUrl: string): NonConformantResources;
  /**
   * Every access token issued to the client and every client assertion it presented (accepted ones),
   * for tests that prove none of them leaks into logs, state or S3.
   */
  credentialsOf(clientId: string): readonly string[];
  /**
   * Revokes every access token issued to the client so far (an administrator revoking them, or
   * a server restarting and forgetting them): each is answered 401 `invalid_token` from now on.
   * Tokens issued afterwards work. Returns how many live tokens were revoked.
   */
  revokeAccessTokens(clientId: string): number;
  /**
   * Every file that matches (by its URL name, e.g. `Patient.1.ndjson`, or its type) is answered
   * 403 from now on, in every export, until the returned function repairs it: a file the server
   * cannot serve for a while (a storage node down, a permission being fixed).
   */
  breakFiles(matches: (file: { readonly name: string; readonly type: string }) => boolean): () => void;
  close(): Promise<void>;
}

function listen(server: Server, port: number, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const address = server.address() as AddressInfo;
      const hostPart = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      resolve(`http://${hostPart}:${address.port}`);
    });
  });
}

/**
 * Starts both origins. Register a client (`registerClient` or `POST /register`), get a token
 * at `tokenUrl` with a signed assertion, then kick off at `baseUrl`.
 */
export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const resolved = resolveOptions(options);
  const dataset =
    resolved.dataset ?? createDataset({ seed: resolved.seed, patientCount: resolved.patientCount });
  const spoolDirectory = await mkdtemp(join(resolved.spoolDirectory ?? tmpdir(), 'fhir-sandbox-'));
  const state = new SandboxState(resolved, dataset, spoolDirectory);
  const log = new RequestLog(resolved.requestLogLimit);
  const time = () => resolved.now().toISOString();

  const serverOptions = { keepAliveTimeout: 10_000, highWaterMark: 256 * 1024 };
  const main = createServer(serverOptions, (req, res) => {
    handleMainRequest(state, req, res, log.track(state.mainOrigin, req, res, time()));
  });
  const second = createServer(serverOptions, (req, res) => {
    handleSecondRequest(state, req, res, log.track(state.secondOrigin, req, res, time()));
  });
  state.mainOrigin = await listen(main, resolved.port, resolved.host);
  try {
    state.secondOrigin = await listen(second, resolved.secondPort, resolved.host);
  } catch (error) {
    main.close();
    throw error;
  }

  const fileFor = (fileUrl: string, contentOptions: FileContentOptions = {}) => {
    const url = new URL(fileUrl);
    const [, files, jobId, name] = url.pathname.split('/');
    const job = files === 'files' && jobId ? state.jobs.get(decodeURIComponent(jobId)) : undefined;
    const file = job && name ? job.file(decodeURIComponent(name)) : undefined;
    if (!file) throw new Error(`not a file URL of this sandbox: ${fileUrl}`);
    return contentOptions.served ? file.servedSource : file.source;
  };

  return {
    origin: state.mainOrigin,
    baseUrl: `${state.mainOrigin}/fhir`,
    tokenUrl: `${state.mainOrigin}/auth/token`,
    registrationUrl: `${state.mainOrigin}/register`,
    secondOrigin: state.secondOrigin,
    dataset,
    faultBaseUrl: (faults) => `${state.mainOrigin}/fault/${encodeURIComponent(JSON.stringify(faults))}/fhir`,
    registerClient: async (registration) => ({ clientId: state.register(registration).clientId }),
    get requestLog() {
      return log.entries;
    },
    clearRequestLog: () => log.clear(),
    settled: () => log.settled(),
    fileContent: (fileUrl, contentOptions) => collect(fileFor(fileUrl, contentOptions)),
    fileContentStream: (fileUrl, contentOptions) => stream(fileFor(fileUrl, contentOptions)),
    credentialsOf: (clientId) => state.tokens.secretsOf(clientId),
    revokeAccessTokens: (clientId) => state.tokens.revoke(clientId, state.nowMs()),
    breakFiles: (matches) => {
      state.brokenFiles.add(matches);
      return () => state.brokenFiles.delete(matches);
    },
    nonConformantResources: (exportIdOrStatusUrl) => {
      const id = exportIdOrStatusUrl.includes('/')
        ? decodeURIComponent(new URL(exportIdOrStatusUrl).pathname.split('/').at(-1) ?? '')
        : exportIdOrStatusUrl;
      const job = state.jobs.get(id);
      if (!job)
        throw new Error(
          `no export ${JSON.stringify(exportIdOrStatusUrl)} (expected an export id or status URL)`,
        );
      return job.nonConformantResources();
    },
    jobs: () => {
      const now = state.nowMs();
      return [...state.jobs.values()].map((job) => ({
        id: job.id,
        statusUrl: job.init.statusUrl,
        clientId: job.clientId,
        state: job.state(now),
        request: job.init.requestUrl,
        transactionTime: job.transactionTime,
        faults: job.init.faults,
        received: {
          types: job.init.types,
          ...(job.init.since !== undefined ? { since: job.init.since } : {}),
          ...(job.init.until !== undefined ? { until: job.init.until } : {}),
          typeFilters: Object.fromEntries(job.init.typeFilters),
          ...(job.init.patientIds !== undefined ? { patients: job.init.patientIds } : {}),
          includeAssociatedData: job.init.includeAssociatedData,
        },
      }));
    },
    close: async () => {
      await Promise.all(
        [main, second].map(
          (server) =>
            new Promise<void>((resolve) => {
              server.close(() => resolve());
              server.closeAllConnections();
            }),
        ),
      );
      await state.close();
    },
  };
}
