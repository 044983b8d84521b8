import { AsyncLocalStorage } from 'node:async_hooks';
import type { Dispatcher } from 'undici';
import type { Runtime } from '../../lambdas/runtime.js';

/**
 * What a killed Lambda invocation can no longer do: locally, a timed-out
 * handler is still a live promise in our process, so it is fenced instead.
 * Every S3 command, FHIR request, file request and sleep it starts after the
 * kill fails with InvocationKilledError, and the file requests it has in
 * flight are aborted. So an orphan never writes, as on AWS, where the
 * sandbox of a timed-out function is frozen and torn down.
 */
export class InvocationKilledError extends Error {
  override readonly name = 'InvocationKilledError';
}

export class InvocationScope {
  #killed: string | undefined;
  readonly #onKill = new Set<() => void>();

  constructor(readonly label: string) {}

  get killed(): boolean {
    return this.#killed !== undefined;
  }

  kill(reason: string): void {
    if (this.#killed !== undefined) return;
    this.#killed = reason;
    for (const action of this.#onKill) action();
    this.#onKill.clear();
  }

  /** Runs `action` at the kill (at once when already killed); returns a function that forgets it. */
  onKill(action: () => void): () => void {
    if (this.#killed !== undefined) {
      action();
      return () => {};
    }
    this.#onKill.add(action);
    return () => this.#onKill.delete(action);
  }

  error(): InvocationKilledError {
    return new InvocationKilledError(`${this.label} was killed (${this.#killed}); it may not act any more`);
  }
}

const current = new AsyncLocalStorage<InvocationScope>();

export function runInScope<T>(scope: InvocationScope, action: () => Promise<T>): Promise<T> {
  return current.run(scope, action);
}

/** Throws when the calling code belongs to a killed invocation. */
export function assertNotKilled(): void {
  const scope = current.getStore();
  if (scope?.killed) throw scope.error();
}

const FENCE_NAME = 'localInvocationFence';

/**
 * The runtime the handlers get: the same clients, fenced. The S3 client gets
 * a middleware (it is shared with code outside any invocation, which passes).
 */
export function fenceRuntime(runtime: Runtime): Runtime {
  runtime.s3.middlewareStack.add(
    (next) => async (args) => {
      assertNotKilled();
      return next(args);
    },
    { step: 'initialize', name: FENCE_NAME, override: true },
  );
  return {
    ...runtime,
    sleep: async (ms) => {
      assertNotKilled();
      await runtime.sleep(ms);
      assertNotKilled();
    },
    fhir: {
      async send(spec, accessToken) {
        assertNotKilled();
        const response = await runtime.fhir.send(spec, accessToken);
        assertNotKilled();
        return response;
      },
    },
    ...(runtime.fileDispatcher ? { fileDispatcher: fenceDispatcher(runtime.fileDispatcher) } : {}),
  };
}

function fenceDispatcher(dispatcher: Dispatcher): Dispatcher {
  return dispatcher.compose((dispatch) => (options, handler) => {
    const scope = current.getStore();
    if (scope === undefined) return dispatch(options, handler);
    if (scope.killed) throw scope.error();
    let forget = () => {};
    const fenced = new Proxy(handler, {
      get(target, property) {
        const value = Reflect.get(target, property, target) as unknown;
        if (typeof value !== 'function') return value;
        if (property === 'onRequestStart') {
          return (controller: { abort(reason: Error): void }, context: unknown) => {
            forget = scope.onKill(() => controller.abort(scope.error()));
            return value.call(target, controller, context);
          };
        }
        if (property === 'onResponseEnd' || property === 'onResponseError') {
          return (...args: unknown[]) => {
            forget();
            return value.apply(target, args);
          };
        }
        return value.bind(target);
      },
    });
    return dispatch(options, fenced);
  });
}
