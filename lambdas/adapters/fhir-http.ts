import { type Dispatcher, request } from 'undici';
import type { HttpRequestSpec, HttpResponseView } from '../core/kickoff.js';
import { oneLine } from '../core/operation-outcome.js';
import { assertTokenMayGoTo, type TokenAudience } from '../core/origins.js';
import { USER_AGENT } from '../core/user-agent.js';
import { ConfigurationError, ResponseTooLargeError, TransientServerError } from '../errors.js';
import { sharedHttpAgent } from './http-agent.js';

/**
 * The small FHIR requests of the workflow: kick-off, status, manifest pages
 * and DELETE. Bodies are capped (a status response is a manifest, not data),
 * redirects are not followed (a status URL has no business redirecting and a
 * redirect would carry our token), and network failures become
 * TransientServerError so the state machine waits and retries. The pool's
 * timeouts and minimum throughput are http-agent.ts's; each request here also
 * has a deadline of its own (kick-off and status run in Lambdas of one minute).
 */
export interface FhirHttp {
  /**
   * Sends one request, with the bearer token when one is given. The token goes only to an
   * origin of its audience (the FHIR base URL's and the source's trustedOrigins): a URL
   * elsewhere is refused with ConfigurationError before anything is sent.
   */
  send(spec: HttpRequestSpec, bearer: Bearer | undefined): Promise<HttpResponseView>;
}

/** The access token and where it may go: the source's settings are an audience. */
export interface Bearer {
  readonly accessToken: string;
  readonly audience: TokenAudience;
}

export interface FhirHttpOptions {
  /** @default the container's shared pool (http-agent.ts) */
  readonly dispatcher?: Dispatcher;
  /** @default 64 MiB: paged manifests of ~20,000 Oracle Health files fit easily */
  readonly maxBodyBytes?: number;
  /**
   * The whole exchange, headers and body. Kick-off and status run in Lambdas of one minute: a
   * server that trickles its answer is cut here, with a reason, before Lambda kills the
   * invocation without one. @default 45 s
   */
  readonly deadlineMs?: number;
}

export function createFhirHttp(options: FhirHttpOptions = {}): FhirHttp {
  const maxBodyBytes = options.maxBodyBytes ?? 64 * 1024 * 1024;
  const deadlineMs = options.deadlineMs ?? 45_000;
  for (const [name, value] of Object.entries({ maxBodyBytes, deadlineMs })) {
    if (!(Number.isSafeInteger(value) && value > 0)) {
      throw new ConfigurationError(
        `FHIR HTTP option ${name} must be a positive integer, got ${String(value)}`,
      );
    }
  }
  return {
    async send(spec, bearer) {
      const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...spec.headers };
      const target = new URL(spec.url);
      const what = `${spec.method} ${target.origin}${target.pathname}`;
      if (bearer) {
        assertTokenMayGoTo(target, bearer.audience, spec.method);
        headers.authorization = `Bearer ${bearer.accessToken}`;
      }
      const deadline = new AbortController();
      const timer = setTimeout(
        () =>
          deadline.abort(
            new TransientServerError(
              `${what} did not finish within ${deadlineMs / 1000} s (the deadline of one FHIR API request)`,
            ),
          ),
        deadlineMs,
      );
      try {
        return await exchange();
      } finally {
        clearTimeout(timer);
      }

      async function exchange(): Promise<HttpResponseView> {
        // Past the deadline, whatever undici reports is its consequence: say the cause.
        const reason = (error: unknown, doing: string) =>
          deadline.signal.aborted
            ? (deadline.signal.reason as TransientServerError)
            : new TransientServerError(oneLine(`${doing} failed: ${(error as Error).message}`), undefined, {
                cause: error,
              });
        let response: Dispatcher.ResponseData;
        try {
          response = await request(spec.url, {
            method: spec.method,
            headers,
            ...(spec.body === undefined ? {} : { body: spec.body }),
            dispatcher: options.dispatcher ?? sharedHttpAgent(),
            signal: deadline.signal,
          });
        } catch (error) {
          throw reason(error, what);
        }
        // A body over the limit is no passing trouble: reading it again would only fail again.
        const tooLarge = (size: string) => {
          // Destroying an unread body emits an abort error; ours to ignore, not an unhandled one.
          response.body.on('error', () => {});
          response.body.destroy();
          return new ResponseTooLargeError(
            `${what} answered HTTP ${response.statusCode} with a body of ${size}; the limit for kick-off, status and manifest responses is ${maxBodyBytes} bytes`,
          );
        };
        const declared = Number(response.headers['content-length']);
        if (declared > maxBodyBytes) throw tooLarge(`${declared} bytes`);
        const chunks: Buffer[] = [];
        let size = 0;
        try {
          for await (const chunk of response.body) {
            size += (chunk as Buffer).length;
            if (size > maxBodyBytes) throw tooLarge(`more than ${maxBodyBytes} bytes`);
            chunks.push(chunk as Buffer);
          }
        } catch (error) {
          if (error instanceof ResponseTooLargeError) throw error;
          throw reason(error, `reading the response of ${what}`);
        }
        return view(response, chunks);
      }
    },
  };
}

function view(response: Dispatcher.ResponseData, chunks: Buffer[]): HttpResponseView {
  const flat: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(response.headers)) {
    flat[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return { status: response.statusCode, headers: flat, body: Buffer.concat(chunks).toString('utf8') };
}
