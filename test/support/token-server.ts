import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A tiny real HTTP server for token endpoint tests: each request is recorded
 * and answered by a scripted handler, so retries, bodies and headers are
 * exercised over an actual socket rather than a mocked fetch.
 */

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  readonly form: URLSearchParams;
}

export type ScriptedResponse =
  | { readonly status: number; readonly headers?: Record<string, string>; readonly body?: string | object }
  /** Drop the connection without answering: a network error for the client. */
  | 'destroy';

export interface TokenServer {
  readonly baseUrl: string;
  readonly tokenUrl: string;
  readonly requests: RecordedRequest[];
  requestsTo(path: string): RecordedRequest[];
  close(): Promise<void>;
}

export async function startTokenServer(
  handler: (request: RecordedRequest, index: number) => ScriptedResponse | Promise<ScriptedResponse>,
): Promise<TokenServer> {
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const recorded: RecordedRequest = {
        method: req.method ?? '',
        path: new URL(req.url ?? '/', 'http://localhost').pathname,
        headers: req.headers,
        body,
        form: new URLSearchParams(body),
      };
      requests.push(recorded);
      const answer = await handler(recorded, requests.length - 1);
      if (answer === 'destroy') {
        req.socket.destroy();
        return;
      }
      const text =
        typeof answer.body === 'string'
          ? answer.body
          : answer.body === undefined
            ? ''
            : JSON.stringify(answer.body);
      res.writeHead(answer.status, {
        'content-type': typeof answer.body === 'object' ? 'application/json' : 'text/plain',
        ...answer.headers,
      });
      res.end(text);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}`;
  return {
    baseUrl,
    tokenUrl: `${baseUrl}/auth/token`,
    requests,
    requestsTo: (path) => requests.filter((request) => request.path === path),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
