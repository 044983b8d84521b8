/** Every request either origin served, so tests can assert what a client actually sent. */
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface RequestLogEntry {
  /** When the request arrived (ISO instant, from the sandbox clock). */
  readonly time: string;
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
  /** The client, when the request identified one (token, assertion or job). */
  readonly clientId?: string;
  /** The injected fault that shaped this response, if any. */
  readonly fault?: string;
  /** False when the connection closed before the response was complete. */
  readonly completed: boolean;
}

/** Filled in by handlers while they work on a request. */
export interface RequestInfo {
  clientId?: string;
  fault?: string;
}

export class RequestLog {
  readonly #entries: RequestLogEntry[] = [];
  #inFlight = 0;
  #idle: (() => void)[] = [];

  constructor(private readonly limit: number) {}

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
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    this.#inFlight++;
    res.once('close', () => {
      if (this.#entries.length >= this.limit) this.#entries.shift();
      this.#entries.push({
        time,
        origin,
        method: req.method ?? 'GET',
        path: q === -1 ? target : target.slice(0, q),
        query: q === -1 ? '' : target.slice(q + 1),
        status: res.statusCode,
        hasAuthorization: req.headers.authorization !== undefined,
        ...(info.clientId !== undefined ? { clientId: info.clientId } : {}),
        ...(info.fault !== undefined ? { fault: info.fault } : {}),
        completed: res.writableFinished,
      });
      if (--this.#inFlight === 0) for (const resolve of this.#idle.splice(0)) resolve();
    });
    return info;
  }
}
