import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createFhirHttp } from '../../../lambdas/adapters/fhir-http.js';
import { ResponseTooLargeError } from '../../../lambdas/errors.js';
import { createPollStatusHandler } from '../../../lambdas/handlers/poll-status.js';
import { sealContext } from '../../../lambdas/runtime.js';
import type { ExportContext } from '../../../lambdas/state.js';
import { createLocalRuntime, type LocalRuntime } from '../../../scripts/local/runtime.js';
import { registryOf } from '../../support/source-registry.js';

/**
 * A status body is a manifest, never data: one over the limit is refused at
 * once, as a failure, because asking again fetches the same bytes (it used to
 * be a TransientServerError, polled again for as long as the retries lasted).
 */
const LIMIT = 1024;

interface FakeServer {
  readonly url: string;
  close(): Promise<void>;
}

let servers: FakeServer[] = [];
let locals: LocalRuntime[] = [];
afterEach(async () => {
  await Promise.all(servers.map((server) => server.close()));
  await Promise.all(locals.map((local) => local.close()));
  servers = [];
  locals = [];
});

/** A server answering every request 200 with a JSON body of `bytes` bytes, with or without Content-Length. */
async function serveBody(bytes: number, withLength: boolean): Promise<FakeServer> {
  const body = JSON.stringify({ padding: 'x'.repeat(bytes - 14) });
  const server: Server = createServer((_req, res) => {
    res.writeHead(200, {
      'content-type': 'application/json',
      ...(withLength ? { 'content-length': Buffer.byteLength(body) } : {}),
    });
    // Written in pieces, so a body without Content-Length arrives chunked.
    for (let at = 0; at < body.length; at += 256) res.write(body.slice(at, at + 256));
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const fake = {
    url: `http://127.0.0.1:${port}/export-status/1`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  servers.push(fake);
  return fake;
}

describe('FHIR HTTP response limit', () => {
  it.each([
    [true, '4096 bytes'],
    [false, `more than ${LIMIT} bytes`],
  ])(
    'refuses a body over the limit (Content-Length sent: %s), naming its size and the limit',
    async (withLength, size) => {
      // Prepare
      const server = await serveBody(4096, withLength);
      const fhir = createFhirHttp({ maxBodyBytes: LIMIT });
      // Act
      const error = await fhir
        .send({ method: 'GET', url: server.url, headers: {} }, undefined)
        .catch((e) => e);
      // Assess
      expect(error).toBeInstanceOf(ResponseTooLargeError);
      expect({ name: error.name, code: error.code, message: error.message }).toEqual({
        name: 'ResponseTooLargeError',
        code: 'ERR_RESPONSE_TOO_LARGE',
        message: `GET ${new URL(server.url).origin}/export-status/1 answered HTTP 200 with a body of ${size}; the limit for kick-off, status and manifest responses is ${LIMIT} bytes`,
      });
    },
  );

  it('returns a body at the limit whole', async () => {
    const server = await serveBody(LIMIT, false);
    const response = await createFhirHttp({ maxBodyBytes: LIMIT }).send(
      { method: 'GET', url: server.url, headers: {} },
      undefined,
    );
    expect({ status: response.status, bytes: Buffer.byteLength(response.body ?? '') }).toEqual({
      status: 200,
      bytes: LIMIT,
    });
  });

  it('fails the poll at once: Poll Export Status does not count it as a transient error', async () => {
    // Prepare: the real handler, the local runtime, a status URL answering an oversized manifest.
    const server = await serveBody(4096, true);
    const source = {
      id: 'big',
      // The status URL is on the FHIR server's origin: the token may go there.
      fhirBaseUrl: `${new URL(server.url).origin}/fhir`,
      clientId: 'c',
      privateKeyFile: 'unused.json',
      allowInsecureHttp: true,
    };
    const local = createLocalRuntime({ sources: [{ raw: source }], s3ClientConfig: {}, bucket: 'unused' });
    locals.push(local);
    const runtime = {
      ...local.runtime,
      sources: registryOf(source),
      fhir: createFhirHttp({ maxBodyBytes: LIMIT }),
    };
    const context = {
      sourceId: 'big',
      executionName: 'big-1',
      deadline: '2999-01-01T00:00:00.000Z',
    } as Pick<ExportContext, 'sourceId' | 'executionName' | 'deadline'> as ExportContext;
    const sealedToken = await runtime.sealer.seal('access-token', sealContext('big', 'big-1'));
    const poll = createPollStatusHandler(runtime);
    // Act
    const outcome = await poll({
      export: context,
      statusUrl: server.url,
      sealedToken,
      poll: { attempt: 0, consecutiveTransientErrors: 0, waitSeconds: 5, forceTokenRefresh: false },
    }).catch((error: Error) => error);
    // Assess
    expect(outcome).toBeInstanceOf(ResponseTooLargeError);
    expect((outcome as Error).message).toContain(
      `the limit for kick-off, status and manifest responses is ${LIMIT} bytes`,
    );
  });
});
