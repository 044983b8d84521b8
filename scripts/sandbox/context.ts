/** The sandbox's state, shared by its handlers, and the bits every protected endpoint needs. */
import { rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { type AccessGrant, AccessTokenStore } from './auth/access-tokens.js';
import { type ClientRegistration, ClientRegistry, type RegisteredClient } from './auth/clients.js';
import { scopesAllowExport } from './auth/scopes.js';
import { JtiReplayCache, KeyResolver } from './auth/token-request.js';
import type { Dataset } from './data/types.js';
import { gzipSpool, type SpooledFile, spool } from './export/file-source.js';
import type { ExportFile, ExportJob } from './export/jobs.js';
import { LinkSigner } from './export/signed-links.js';
import { FaultCounter, type FaultPlan } from './faults.js';
import { bearerToken, sendOutcome } from './http.js';
import type { ResolvedOptions } from './options.js';
import type { RequestInfo } from './request-log.js';

/** One request after routing: where it came in, and any per-export fault plan it carries. */
export interface Routed {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly info: RequestInfo;
  /** Path segments after the fault prefix, percent-decoded. */
  readonly segments: readonly string[];
  /** The raw query string ('' when none). */
  readonly query: string;
  /** `/fault/<spec>` as sent, or ''. */
  readonly prefix: string;
  /** Faults chosen for this request by the path prefix and the X-Sandbox-Fault header. */
  readonly faults: FaultPlan;
  /** Identifies the per-request fault choice, so its count faults are counted apart. */
  readonly faultKey: string;
}

export class SandboxState {
  readonly clients = new ClientRegistry();
  readonly tokens = new AccessTokenStore();
  readonly replay = new JtiReplayCache();
  readonly signer = new LinkSigner();
  readonly keys: KeyResolver;
  readonly jobs = new Map<string, ExportJob>();
  readonly #spooled = new Map<string, Promise<SpooledFile>>();
  /** Gzipped copies of spooled files, being made or made; and the made ones, for a synchronous look. */
  readonly #gzipped = new Map<string, Promise<SpooledFile>>();
  readonly #gzippedReady = new Map<string, SpooledFile>();
  readonly #compressedOnTheFly = new Set<string>();
  readonly #counters = new Map<string, FaultCounter>();
  readonly #closing = new AbortController();
  #patientIds: Map<string, number> | undefined;
  mainOrigin = '';
  secondOrigin = '';
  /** Files answered 403 while they match (a file the server cannot serve for now); see Sandbox.breakFiles. */
  readonly brokenFiles = new Set<(file: { readonly name: string; readonly type: string }) => boolean>();

  constructor(
    readonly options: ResolvedOptions,
    readonly dataset: Dataset,
    /** Where served files are spooled; removed on close. */
    readonly spoolDirectory: string,
  ) {
    this.keys = new KeyResolver(options.fetch, () => this.nowMs());
  }

  nowMs(): number {
    return this.options.now().getTime();
  }

  /** Registers (or replaces) a client; a replaced client's count faults start afresh. */
  register(registration: ClientRegistration): RegisteredClient {
    const ehr = registration.ehr ?? this.options.ehr;
    const client = this.clients.register(ehr === undefined ? registration : { ...registration, ehr });
    for (const key of this.#counters.keys()) {
      if (key.startsWith(`${client.clientId}\n`)) this.#counters.delete(key);
    }
    return client;
  }

  /** Count faults of a client outside any export (token, kick-off), per fault choice. */
  counterFor(clientId: string, faultKey: string): FaultCounter {
    const key = `${clientId}\n${faultKey}`;
    let counter = this.#counters.get(key);
    if (!counter) {
      counter = new FaultCounter();
      this.#counters.set(key, counter);
    }
    return counter;
  }

  /** The file as served, generated once into the spool directory. */
  spooled(job: ExportJob, file: ExportFile): Promise<SpooledFile> {
    const key = `${job.id}/${file.name}`;
    let spooled = this.#spooled.get(key);
    if (!spooled) {
      const path = join(this.spoolDirectory, `${job.id}-${file.name}`);
      spooled = spool(file.servedSource, path, AbortSignal.any([job.signal, this.#closing.signal]));
      spooled.catch(() => this.#spooled.delete(key));
      this.#spooled.set(key, spooled);
    }
    return spooled;
  }

  /** The file's gzipped copy on disk, made once from its spool. */
  gzipped(job: ExportJob, file: ExportFile): Promise<SpooledFile> {
    const key = `${job.id}/${file.name}`;
    let gzipped = this.#gzipped.get(key);
    if (!gzipped) {
      const path = join(this.spoolDirectory, `${job.id}-${file.name}.gz`);
      const signal = AbortSignal.any([job.signal, this.#closing.signal]);
      gzipped = this.spooled(job, file).then((identity) => gzipSpool(identity, path, signal));
      gzipped.then(
        (made) => this.#gzippedReady.set(key, made),
        () => this.#gzipped.delete(key),
      );
      this.#gzipped.set(key, gzipped);
    }
    return gzipped;
  }

  /**
   * The gzipped copy if it is already made. If not, answers undefined and the caller compresses
   * on the fly rather than keep a client waiting for a whole file; the background pass then
   * skips the file, so a file fetched before its copy was made is not compressed twice at once.
   */
  gzippedIfReady(job: ExportJob, file: ExportFile, method: string): SpooledFile | undefined {
    const key = `${job.id}/${file.name}`;
    const ready = this.#gzippedReady.get(key);
    if (!ready && method !== 'HEAD') this.#compressedOnTheFly.add(key);
    return ready;
  }

  /**
   * Generates a new export's files in the background while it is "in progress", as a real
   * server does, so that its first download needs no generation pass of its own.
   */
  prepare(job: ExportJob): void {
    setImmediate(async () => {
      try {
        for (const file of job.files()) {
          if (job.signal.aborted || this.#closing.signal.aborted) return;
          await this.spooled(job, file);
        }
        // Then the gzipped copies, once every file can already be served.
        for (const file of job.files()) {
          if (job.signal.aborted || this.#closing.signal.aborted) return;
          if (this.#compressedOnTheFly.has(`${job.id}/${file.name}`)) continue;
          await this.gzipped(job, file);
        }
      } catch {
        // Aborted (deleted export, closing sandbox); a request spools what it needs itself.
      }
    });
  }

  /** DELETE: the export's spooled files go (downloads under way keep their open file). */
  async discard(job: ExportJob): Promise<void> {
    for (const spools of [this.#spooled, this.#gzipped]) {
      for (const [key, spooled] of spools) {
        if (!key.startsWith(`${job.id}/`)) continue;
        spools.delete(key);
        this.#gzippedReady.delete(key);
        this.#compressedOnTheFly.delete(key);
        const file = await spooled.catch(() => undefined);
        if (file) await rm(file.path, { force: true });
      }
    }
  }

  /** Stops background work and removes the spool directory. */
  async close(): Promise<void> {
    this.#closing.abort();
    await Promise.allSettled([...this.#spooled.values(), ...this.#gzipped.values()]);
    await rm(this.spoolDirectory, { recursive: true, force: true });
  }

  /**
   * The dataset index of a Patient id. Sandbox ids end with the patient index (`pt-17`), so
   * that index is checked first; any other id falls back to one scan of all patients.
   */
  patientIndex(id: string): number | undefined {
    const idOf = (index: number): string | undefined => {
      for (const line of this.dataset.lines({ type: 'Patient', patientIndexes: [index] }, 0, 1)) {
        return (JSON.parse(line) as { id: string }).id;
      }
      return undefined;
    };
    const trailing = /(\d+)$/.exec(id);
    const guess = trailing ? Number(trailing[1]) : -1;
    if (guess >= 0 && guess < this.dataset.options.patientCount && idOf(guess) === id) return guess;
    if (!this.#patientIds) {
      const ids = new Map<string, number>();
      for (let i = 0; i < this.dataset.options.patientCount; i++) {
        const found = idOf(i);
        if (found !== undefined) ids.set(found, i);
      }
      this.#patientIds = ids;
    }
    return this.#patientIds.get(id);
  }

  /**
   * The caller's grant, or undefined after answering 401 (no token; an unknown, expired or revoked one).
   * RFC 6750: a bad token is `invalid_token` in WWW-Authenticate.
   */
  authenticate(routed: Routed): AccessGrant | undefined {
    const { req, res, info } = routed;
    const token = bearerToken(req);
    if (token === undefined) {
      sendOutcome(res, 401, 'login', 'an Authorization: Bearer access token is required', {
        'www-authenticate': 'Bearer realm="fhir-sandbox"',
      });
      return undefined;
    }
    const lookup = this.tokens.lookup(token, this.nowMs());
    if ('grant' in lookup) {
      // A refused token still names its client, so its 401 shows in that client's requests.
      info.clientId = lookup.grant.clientId;
      info.presentedToken = lookup.grant.serial;
    }
    if (!lookup.ok) {
      const description = {
        expired: 'the access token expired',
        revoked: 'the access token was revoked',
        unknown: 'the access token is not valid',
      }[lookup.reason];
      sendOutcome(res, 401, 'login', description, {
        'www-authenticate': `Bearer realm="fhir-sandbox", error="invalid_token", error_description="${description}"`,
      });
      return undefined;
    }
    return lookup.grant;
  }

  /** IG: status and file requests need a token whose scopes cover every exported type. */
  coversJob(grant: AccessGrant, job: ExportJob): boolean {
    return job.init.types.every((type) => scopesAllowExport(grant.scopes, type));
  }
}
