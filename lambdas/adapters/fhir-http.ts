import { Agent, type Dispatcher, request } from 'undici';
import type { HttpRequestSpec, HttpResponseView } from '../core/kickoff.js';
import { oneLine } from '../core/operation-outcome.js';
import { ResponseTooLargeError, TransientServerError } from '../errors.js';

/**
 * The small FHIR requests of the workflow: kick-off, status, manifest pages
 * and DELETE. Bodies are capped (a status response is a manifest, not data),
 * redirects are not followed (a status URL has no business redirecting and a
 * redirect would carry our token), and network failures become
 * TransientServerError so the state machine waits and retries.
 */
export interface FhirHttp {
  send(spec: HttpRequestSpec, accessToken: string | undefined): Promise<HttpResponseView>;
}

export interface FhirHttpOptions {
  readonly dispatcher?: Dispatcher;
  /** @default 64 MiB: paged manifests of ~20,000 Oracle Health files fit easily */
  readonly maxBodyBytes?: number;
  /** @default 30 s */
  readonly timeoutMs?: number;
}

let sharedAgent: Agent | undefined;
/** One keep-alive pool per container, reused by every invocation. */
export function sharedDispatcher(): Agent {
  sharedAgent ??= new Agent({ keepAliveTimeout: 30_000, connect: { timeout: 10_000 } });
  return sharedAgent;
}

export function createFhirHttp(options: FhirHttpOptions = {}): FhirHttp {
  const maxBodyBytes = options.maxBodyBytes ?? 64 * 1024 * 1024;
  const timeoutMs = options.timeoutMs ?? 30_000;
  return {
    async send(spec, accessToken) {
      const headers: Record<string, string> = { ...spec.headers };
      if (accessToken) headers.authorization = `Bearer ${accessToken}`;
      const target = new URL(spec.url);
      let response: Dispatcher.ResponseData;
      try {
        response = await request(spec.url, {
          method: spec.method,
          headers,
          ...(spec.body === undefined ? {} : { body: spec.body }),
          dispatcher: options.dispatcher ?? sharedDispatcher(),
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        });
      } catch (error) {
        throw new TransientServerError(
          oneLine(`${spec.method} ${target.origin}${target.pathname} failed: ${(error as Error).message}`),
          undefined,
          { cause: error },
        );
      }
      const tooLarge = (size: string) => {
        // Destroying an unread body emits an abort error; ours to ignore, not an unhandled one.
        response.body.on('error', () => {});
        response.body.destroy();
        return new ResponseTooLargeError(
          `${spec.method} ${target.origin}${target.pathname} answered HTTP ${response.statusCode} with a body of ${size}; the limit for kick-off, status and manifest responses is ${maxBodyBytes} bytes`,
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
        throw new TransientServerError(
          oneLine(
            `reading the response of ${spec.method} ${target.origin}${target.pathname} failed: ${(error as Error).message}`,
          ),
          undefined,
          { cause: error },
        );
      }
      const flat: Record<string, string | undefined> = {};
      for (const [name, value] of Object.entries(response.headers)) {
        flat[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
      }
      return { status: response.statusCode, headers: flat, body: Buffer.concat(chunks).toString('utf8') };
    },
  };
}
