/** Every request either origin served, so tests can assert what a client actually sent. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';

export interface RequestLogEntry {
  /** When the request arrived (ISO instant, from the sandbox clock). */
  readonly time: string;
  /**
   * When the request arrived and when its response finished or its connection closed, in ms on
   * the sandbox process's monotonic clock: compare them with each other only (which requests
   * were in progress at once), never with wall time. A hand-moved sandbox clock leaves them be.
   */
  readonly startMs: number;
  readonly endMs: number;
  /** `sandbox.origin` or `sandbox.secondOrigin`. */
  readonly origin: string;
  readonly method: string;
  /** Path without the query string, percent-encoding kept as sent. */
  readonly path: string;
  /** The raw query string without `?` ('' when none). */
  readonly query: string;
  /** Status sent (a dropped connection keeps the status that had been sent). */
  readonly status: number;
  /** Whether an `Authorization` header was present (its value is never logged). */
  readonly hasAuthorization: boolean;
  /** The Host the client addressed (`localhost:PORT` and `127.0.0.1:PORT` are two origins of one listener). */
  readonly host?: string;
  /** The `User-Agent` header as sent, when there was one. */
  readonly userAgent?: string;
  /** The client, when the request identified one (token, assertion or job). */
  readonly clientId?: string;
  /**
   * Which of the client's access tokens the request carried (1 = the first issued to it), when
   * the sandbox knew the token, even expired or revoked. The token itself is never logged.
   */
  readonly presentedToken?: number;
  /** On a token response: which of the client's access tokens it issued. */
  readonly issuedToken?: number;
  /** The injected fault that shaped this response, if any. */
  readonly fault?: string;
  /** False when the connection closed before the response was complete. */
  readonly completed: boolean;
}

/** Filled in by handlers while they work on a request. */
export interface RequestInfo {
  clientId?: string;
  presentedToken?: number;
  issuedToken?: number;
  fault?: string;
}

export class RequestLog {
  readonly #entries: RequestLogEntry[] = [];
  #inFlight = 0;
  #idle: (() => void)[] = [];

  constructor(
    private readonly limit: number,
    /** The monotonic clock of `startMs`/`endMs`. */
    private readonly monotonicMs: () => number = () => performance.now(),
  ) {}

  get entries(): readonly RequestLogEntry[] {
    return this.#entries;
  }

  clear(): void {
    this.#entries.length = 0;
  }

  /** Resolves once every request received so far has been answered (and logged). */
  settled(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Records the request once its response is finished or its connection closed. */
  track(origin: string, req: IncomingMessage, res: ServerResponse, time: string): RequestInfo {
    const info: RequestInfo = {};
    const startMs = this.monotonicMs();
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    this.#inFlight++;
    res.once('close', () => {
      if (this.#entries.length >= this.limit) this.#entries.shift();
      this.#entries.push({
        time,
        startMs,
        endMs: this.monotonicMs(),
        origin,
        method: req.method ?? 'GET',
        path: q === -1 ? target : target.slice(0, q),
        query: q === -1 ? '' : target.slice(q + 1),
        status: res.statusCode,
        hasAuthorization: req.headers.authorization !== undefined,
        ...(req.headers.host !== undefined ? { host: req.headers.host } : {}),
        ...(req.headers['user-agent'] !== undefined ? { userAgent: req.headers['user-agent'] } : {}),
        ...(info.clientId !== undefined ? { clientId: info.clientId } : {}),
        ...(info.presentedToken !== undefined ? { presentedToken: info.presentedToken } : {}),
        ...(info.issuedToken !== undefined ? { issuedToken: info.issuedToken } : {}),
        ...(info.fault !== undefined ? { fault: info.fault } : {}),
        completed: res.writableFinished,
      });
      if (--this.#inFlight === 0) for (const resolve of this.#idle.splice(0)) resolve();
    });
    return info;
  }
}
