import { Agent, type Dispatcher } from 'undici';
import { ConfigurationError, TransientServerError } from '../errors.js';

/**
 * How long the pipeline waits on an HTTP server, and how slowly it lets one
 * send: one definition for every connection pool (file downloads and the
 * FHIR API, on AWS and locally). Left to undici's defaults, a server that
 * accepts the connection and never answers holds a request for 300 s, and one
 * that sends a byte every 20 s holds it forever: no read is ever idle for long.
 */
export interface HttpTimeouts {
  /** To open the connection (TCP and TLS). @default 10 s */
  readonly connectTimeoutMs: number;
  /** From the request sent to the response's headers; a Bulk Data file server may be slow to start. @default 60 s */
  readonly headersTimeoutMs: number;
  /** Longest silence while reading a body (an idle-read timeout, not a total). @default 60 s */
  readonly bodyIdleTimeoutMs: number;
  /**
   * The minimum throughput: a body must bring at least this many bytes in every
   * `throughputWindowMs` spent waiting for it, else the request fails as transient.
   * Time during which the reader is behind (undici has paused the socket) does
   * not count: a slow upload is not the server's fault. @default 16 KiB
   */
  readonly minBytesPerWindow: number;
  /** @default 60 s */
  readonly throughputWindowMs: number;
  /** How long an unused keep-alive connection is kept. @default 30 s */
  readonly keepAliveTimeoutMs: number;
}

export const DEFAULT_HTTP_TIMEOUTS: HttpTimeouts = Object.freeze({
  connectTimeoutMs: 10_000,
  headersTimeoutMs: 60_000,
  bodyIdleTimeoutMs: 60_000,
  minBytesPerWindow: 16 * 1024,
  throughputWindowMs: 60_000,
  keepAliveTimeoutMs: 30_000,
});

/** The defaults with these overrides, each checked: a misspelt or nonsensical setting fails here, not mid-run. */
export function resolveHttpTimeouts(overrides: Partial<HttpTimeouts> = {}): HttpTimeouts {
  for (const [name, value] of Object.entries(overrides)) {
    if (!(name in DEFAULT_HTTP_TIMEOUTS)) {
      throw new ConfigurationError(
        `unknown HTTP timeout setting "${name}"; expected one of ${Object.keys(DEFAULT_HTTP_TIMEOUTS).join(', ')}`,
      );
    }
    if (value !== undefined && !(Number.isSafeInteger(value) && (value as number) > 0)) {
      throw new ConfigurationError(
        `HTTP timeout setting "${name}" must be a positive integer, got ${String(value)}`,
      );
    }
  }
  const defined = Object.entries(overrides).filter(([, value]) => value !== undefined);
  return { ...DEFAULT_HTTP_TIMEOUTS, ...Object.fromEntries(defined) };
}

/** A keep-alive pool with the pipeline's timeouts and the minimum-throughput rule on every response. */
export function createHttpAgent(overrides: Partial<HttpTimeouts> = {}): Agent {
  return new GuardedAgent(resolveHttpTimeouts(overrides));
}

let sharedAgent: Agent | undefined;
/** One pool per Lambda container, for callers that are not given one. */
export function sharedHttpAgent(): Agent {
  sharedAgent ??= createHttpAgent();
  return sharedAgent;
}

class GuardedAgent extends Agent {
  readonly #timeouts: HttpTimeouts;

  constructor(timeouts: HttpTimeouts) {
    super({
      connect: { timeout: timeouts.connectTimeoutMs },
      headersTimeout: timeouts.headersTimeoutMs,
      bodyTimeout: timeouts.bodyIdleTimeoutMs,
      keepAliveTimeout: timeouts.keepAliveTimeoutMs,
    });
    this.#timeouts = timeouts;
  }

  override dispatch(options: Agent.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return super.dispatch(options, new ThroughputGuard(handler, this.#timeouts, options));
  }
}

/**
 * Wraps one request's handler: enforces the minimum throughput, and says in a
 * timeout's message which limit it was and how long (undici says only
 * "Headers Timeout Error").
 */
class ThroughputGuard implements Dispatcher.DispatchHandler {
  readonly #handler: Dispatcher.DispatchHandler;
  readonly #minBytes: number;
  readonly #windowMs: number;
  readonly #limits: { readonly connectMs: number; readonly headersMs: number; readonly bodyIdleMs: number };
  #controller: Dispatcher.DispatchController | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** When the current window began, and the bytes it has brought; no window while the reader is behind. */
  #windowStartedAt = 0;
  #bytesInWindow = 0;
  #measuring = false;

  constructor(
    handler: Dispatcher.DispatchHandler,
    timeouts: HttpTimeouts,
    options: Dispatcher.DispatchOptions,
  ) {
    this.#handler = handler;
    this.#minBytes = timeouts.minBytesPerWindow;
    this.#windowMs = timeouts.throughputWindowMs;
    // A request may shorten the pool's timeouts for itself (the FHIR API's small requests do).
    this.#limits = {
      connectMs: timeouts.connectTimeoutMs,
      headersMs: options.headersTimeout ?? timeouts.headersTimeoutMs,
      bodyIdleMs: options.bodyTimeout ?? timeouts.bodyIdleTimeoutMs,
    };
  }

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.#controller = controller;
    this.#handler.onRequestStart?.(controller, context);
  }

  onRequestUpgrade(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Parameters<NonNullable<Dispatcher.DispatchHandler['onRequestUpgrade']>>[2],
    socket: Parameters<NonNullable<Dispatcher.DispatchHandler['onRequestUpgrade']>>[3],
  ): void {
    this.#handler.onRequestUpgrade?.(controller, statusCode, headers, socket);
  }

  onResponseStarted(): void {
    this.#handler.onResponseStarted?.();
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseStart']>>[2],
    statusMessage?: string,
  ): void {
    this.#handler.onResponseStart?.(controller, statusCode, headers, statusMessage);
    // 1xx answers come before the real one; its body is what is measured.
    if (statusCode >= 200 && !controller.paused) this.#startWindow();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    // Data after a pause: the reader has caught up, and from now on we wait for the server again.
    if (!this.#measuring) this.#startWindow();
    this.#bytesInWindow += chunk.length;
    this.#handler.onResponseData?.(controller, chunk);
    if (controller.paused) this.#stopWindow();
    else if (this.#bytesInWindow >= this.#minBytes) {
      // Met: a new window starts here. The timer is left as it is and re-armed when it fires.
      this.#windowStartedAt = performance.now();
      this.#bytesInWindow = 0;
    }
  }

  onResponseEnd(
    controller: Dispatcher.DispatchController,
    trailers: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseEnd']>>[1],
  ): void {
    this.#stopWindow();
    this.#handler.onResponseEnd?.(controller, trailers);
  }

  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    this.#stopWindow();
    this.#handler.onResponseError?.(controller, this.#explained(error));
  }

  onBodySent(chunk: Buffer): void {
    this.#handler.onBodySent?.(chunk);
  }

  onRequestSent(): void {
    this.#handler.onRequestSent?.();
  }

  #startWindow(): void {
    this.#measuring = true;
    this.#windowStartedAt = performance.now();
    this.#bytesInWindow = 0;
    this.#arm(this.#windowMs);
  }

  #stopWindow(): void {
    this.#measuring = false;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(delayMs: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#windowEnded(), delayMs);
    // A pending window must not keep a process alive on its own.
    this.#timer.unref();
  }

  #windowEnded(): void {
    this.#timer = undefined;
    const controller = this.#controller;
    if (!this.#measuring || controller === undefined || controller.aborted) return;
    if (controller.paused) {
      this.#measuring = false;
      return;
    }
    const elapsedMs = performance.now() - this.#windowStartedAt;
    if (elapsedMs < this.#windowMs) {
      this.#arm(Math.ceil(this.#windowMs - elapsedMs));
      return;
    }
    this.#measuring = false;
    controller.abort(
      new TransientServerError(
        `too slow: ${this.#bytesInWindow} bytes in ${seconds(this.#windowMs)}, under the minimum throughput of ` +
          `${this.#minBytes} bytes per ${seconds(this.#windowMs)} (HTTP settings minBytesPerWindow, throughputWindowMs)`,
      ),
    );
  }

  #explained(error: Error): Error {
    const code = (error as { code?: unknown }).code;
    const limit =
      code === 'UND_ERR_CONNECT_TIMEOUT'
        ? `no connection within ${seconds(this.#limits.connectMs)} (connect timeout)`
        : code === 'UND_ERR_HEADERS_TIMEOUT'
          ? `no response headers within ${seconds(this.#limits.headersMs)} (headers timeout)`
          : code === 'UND_ERR_BODY_TIMEOUT'
            ? `the body went silent for ${seconds(this.#limits.bodyIdleMs)} (idle-read timeout)`
            : undefined;
    return limit === undefined
      ? error
      : new TransientServerError(`${limit}, ${code}`, undefined, { cause: error });
  }
}

const seconds = (ms: number) => `${ms / 1000} s`;
