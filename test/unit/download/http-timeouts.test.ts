import { setTimeout as sleep } from 'node:timers/promises';
import type { Agent, Dispatcher } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFhirHttp } from '../../../lambdas/adapters/fhir-http.js';
import { openFile } from '../../../lambdas/adapters/file-http.js';
import {
  createHttpAgent,
  DEFAULT_HTTP_TIMEOUTS,
  type HttpTimeouts,
  resolveHttpTimeouts,
} from '../../../lambdas/adapters/http-agent.js';
import { ConfigurationError, TransientServerError } from '../../../lambdas/errors.js';
import { createLogger } from '../../../lambdas/logger.js';
import { createAwsRuntime } from '../../../lambdas/runtime-aws.js';
import {
  type TransferFileDeps,
  type TransferFileInput,
  transferFile,
} from '../../../lambdas/services/transfer-file.js';
import { createLocalRuntime } from '../../../scripts/local/runtime.js';
import { type Fault, startFileServer } from './support/file-server.js';
import { patientNdjson } from './support/ndjson-body.js';
import { useTransferBed } from './support/transfer-bed.js';

/**
 * The HTTP timeouts and the minimum-throughput rule (lambdas/adapters/http-agent.ts),
 * met by real loopback servers that take a request and never answer, or that
 * trickle a body: every limit is shortened to milliseconds through the same
 * options the runtimes take, so that each test meets it at once.
 */
const BUCKET = 'http-timeouts';
const NOW = new Date('2026-03-01T12:00:00Z');
const BODY = patientNdjson(200);
const LINES = 200;

async function readAll(iterable: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of iterable) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** A trickle far under any minimum: a few bytes now and then, never silent for long. */
const TRICKLE: Fault = { kind: 'trickle', bytesPerWrite: 2, intervalMs: 40 };

describe('the HTTP timeout settings', () => {
  it('are 10 s to connect, 60 s to the headers, 60 s of silence, 16 KiB per 60 s, 30 s keep-alive', () => {
    // Act
    const timeouts = resolveHttpTimeouts();
    // Assess: the values docs/downloader.md states.
    expect(timeouts).toEqual({
      connectTimeoutMs: 10_000,
      headersTimeoutMs: 60_000,
      bodyIdleTimeoutMs: 60_000,
      minBytesPerWindow: 16 * 1024,
      throughputWindowMs: 60_000,
      keepAliveTimeoutMs: 30_000,
    });
    expect(resolveHttpTimeouts({ headersTimeoutMs: 250 })).toEqual({
      ...DEFAULT_HTTP_TIMEOUTS,
      headersTimeoutMs: 250,
    });
  });

  it.each<[string, Record<string, unknown>, string]>([
    [
      'an unknown setting',
      { headerTimeoutMs: 5 },
      'unknown HTTP timeout setting "headerTimeoutMs"; expected one of connectTimeoutMs, headersTimeoutMs, bodyIdleTimeoutMs, minBytesPerWindow, throughputWindowMs, keepAliveTimeoutMs',
    ],
    [
      'zero',
      { bodyIdleTimeoutMs: 0 },
      'HTTP timeout setting "bodyIdleTimeoutMs" must be a positive integer, got 0',
    ],
    [
      'a fraction',
      { throughputWindowMs: 1.5 },
      'HTTP timeout setting "throughputWindowMs" must be a positive integer, got 1.5',
    ],
    [
      'a string',
      { minBytesPerWindow: '16k' },
      'HTTP timeout setting "minBytesPerWindow" must be a positive integer, got 16k',
    ],
  ])('refuse %s with a message naming it', (_name, overrides, message) => {
    // Act
    const creating = () => createHttpAgent(overrides as Partial<HttpTimeouts>);
    // Assess
    expect(creating).toThrow(new ConfigurationError(message));
    expect(creating).toThrow(ConfigurationError);
  });
});

describe('a file server that never answers, or trickles', () => {
  const bed = useTransferBed(BUCKET, {});
  let keyCounter = 0;
  const agents: Agent[] = [];
  afterAll(async () => {
    await Promise.all(agents.map((agent) => agent.close()));
  });

  function agent(overrides: Partial<HttpTimeouts>): Agent {
    const created = createHttpAgent(overrides);
    agents.push(created);
    return created;
  }

  function deps(http: Dispatcher, warnings: string[] = [], maxAttempts = 5): TransferFileDeps {
    return {
      s3: bed.client,
      http,
      now: () => NOW,
      remainingTimeMs: () => 900_000,
      sleep: async () => {},
      random: () => 0.5,
      logger: createLogger({ level: 'warn', write: (line) => warnings.push(line), now: () => NOW }),
      settings: { minPartSizeBytes: 64 * 1024, maxAttempts },
    };
  }

  function input(url: string): TransferFileInput {
    keyCounter++;
    return {
      url,
      resourceType: 'Patient',
      kind: 'output',
      requiresAccessToken: false,
      allowInsecureHttp: true,
      bucket: BUCKET,
      key: `source=test/export=1/type=Patient/t${keyCounter}/part-0001.ndjson`,
      expectedCount: LINES,
    };
  }

  it('retries a request the server took and never answered, after the headers timeout, and lands the file', async () => {
    // Prepare: the first request gets no answer at all; the pool waits 200 ms for headers.
    const server = await startFileServer({ body: BODY, faults: [{ kind: 'no-answer' }] });
    const warnings: string[] = [];
    // Act
    const outcome = await transferFile(input(server.url), deps(agent({ headersTimeoutMs: 200 }), warnings));
    // Assess
    expect(outcome).toMatchObject({ status: 'complete', lines: LINES, bytes: BODY.length });
    expect(server.requests.map((request) => request.status)).toEqual([undefined, 200]);
    const retry = JSON.parse(warnings.find((line) => line.includes('will retry'))!);
    expect(retry.error.message).toBe(
      `GET ${server.url} failed: no response headers within 0.2 s (headers timeout), UND_ERR_HEADERS_TIMEOUT`,
    );
    await server.close();
  });

  it('cuts a trickling body by the minimum throughput, retries, then fails naming the rule', async () => {
    // Prepare: every answer trickles 2 bytes per 40 ms (never silent for the 60 s idle timeout);
    // the rule asks for 1,024 bytes in every 300 ms.
    const server = await startFileServer({ body: BODY, faults: [TRICKLE, TRICKLE, TRICKLE, TRICKLE] });
    const http = agent({ minBytesPerWindow: 1024, throughputWindowMs: 300 });
    // Act
    const transfer = transferFile(input(server.url), deps(http, [], 3));
    // Assess
    await expect(transfer).rejects.toBeInstanceOf(TransientServerError);
    await expect(transfer).rejects.toThrow(
      new RegExp(
        `^Reading ${server.url.replaceAll('.', '\\.')} failed at byte \\d+: too slow: \\d+ bytes in 0\\.3 s, ` +
          'under the minimum throughput of 1024 bytes per 0\\.3 s \\(HTTP settings minBytesPerWindow, throughputWindowMs\\)$',
      ),
    );
    expect(server.requests).toHaveLength(3);
    await server.close();
  });

  it('does not count the time the reader is behind: a paused download is not a slow server', async () => {
    // Prepare: a fast server, a rule asking for 1 MiB in every 100 ms, and a reader that stops
    // for five windows after its first chunk (as when S3 holds the upload back).
    const body = patientNdjson(6000);
    const server = await startFileServer({ body });
    const http = agent({ minBytesPerWindow: 1024 * 1024, throughputWindowMs: 100 });
    const response = await openFile(
      { url: server.url, requiresAccessToken: false, allowInsecureHttp: true },
      {
        dispatcher: http,
        now: () => NOW,
      },
    );
    const chunks = response.body[Symbol.asyncIterator]();
    // Act
    const first = await chunks.next();
    await sleep(500);
    const rest = await readAll({ [Symbol.asyncIterator]: () => chunks });
    // Assess
    expect(Buffer.concat([first.value as Buffer, rest]).equals(body)).toBe(true);
    await server.close();
  });
});

describe('the FHIR API client and a server that never answers, or trickles', () => {
  const status = Buffer.from('{"transactionTime":"2026-03-01T12:00:00Z","request":"x","output":[]}');
  let http: Agent;
  beforeAll(() => {
    http = createHttpAgent({ headersTimeoutMs: 200 });
  });
  afterAll(async () => {
    await http.close();
  });

  it('fails a request with no answer after the pool’s headers timeout, as transient', async () => {
    // Prepare
    const server = await startFileServer({ body: status, faults: [{ kind: 'no-answer' }] });
    const fhir = createFhirHttp({ dispatcher: http });
    // Act
    const sending = fhir.send(
      { method: 'GET', url: `${server.url}?token=secret`, headers: {} },
      { accessToken: 'access-token', audience: { fhirBaseUrl: server.url, trustedOrigins: [] } },
    );
    // Assess
    await expect(sending).rejects.toThrow(
      new TransientServerError(
        `GET ${server.url} failed: no response headers within 0.2 s (headers timeout), UND_ERR_HEADERS_TIMEOUT`,
      ),
    );
    await expect(sending).rejects.toBeInstanceOf(TransientServerError);
    await server.close();
  });

  it('cuts a trickled answer at its deadline, with the deadline as the reason', async () => {
    // Prepare: the status answer comes 2 bytes per 40 ms; the whole exchange may take 300 ms.
    const server = await startFileServer({ body: status, faults: [TRICKLE] });
    const fhir = createFhirHttp({ dispatcher: http, deadlineMs: 300 });
    // Act
    const sending = fhir.send({ method: 'GET', url: server.url, headers: {} }, undefined);
    // Assess
    await expect(sending).rejects.toThrow(
      new TransientServerError(
        `GET ${server.url} did not finish within 0.3 s (the deadline of one FHIR API request)`,
      ),
    );
    await server.close();
  });

  it.each([
    [{ deadlineMs: 0 }, 'FHIR HTTP option deadlineMs must be a positive integer, got 0'],
    [{ maxBodyBytes: -1 }, 'FHIR HTTP option maxBodyBytes must be a positive integer, got -1'],
  ])('refuses the option %o', (options, message) => {
    // Act
    const creating = () => createFhirHttp(options);
    // Assess
    expect(creating).toThrow(new ConfigurationError(message));
  });
});

/**
 * Both runtimes build their pool from the one definition: shortening a setting
 * through the runtime's option shortens what its file downloads and its FHIR
 * requests meet. A pool built any other way would wait undici's 300 s here.
 */
describe.each([
  [
    'the local runtime',
    (httpTimeouts: Partial<HttpTimeouts>) => {
      const local = createLocalRuntime({
        sources: [{ raw: source('local') }],
        s3ClientConfig: { region: 'us-east-1', endpoint: 'http://127.0.0.1:9', forcePathStyle: true },
        bucket: BUCKET,
        httpTimeouts,
      });
      return { runtime: local.runtime, close: () => local.close() };
    },
  ],
  [
    'the AWS runtime',
    (httpTimeouts: Partial<HttpTimeouts>) => {
      const runtime = createAwsRuntime(
        {
          EXPORT_BUCKET: BUCKET,
          SEALING_KMS_KEY_ID: 'alias/sealing',
          LOG_LEVEL: 'error',
        },
        { httpTimeouts },
      );
      return { runtime, close: () => runtime.fileDispatcher!.close() };
    },
  ],
])('%s', (_name, create) => {
  it('gives its file downloads and its FHIR requests the headers timeout it was configured with', async () => {
    // Prepare
    const server = await startFileServer({
      body: BODY,
      faults: [{ kind: 'no-answer' }, { kind: 'no-answer' }],
    });
    const { runtime, close } = create({ headersTimeoutMs: 200 });
    const expected = `GET ${server.url} failed: no response headers within 0.2 s (headers timeout), UND_ERR_HEADERS_TIMEOUT`;
    try {
      // Act
      const opening = openFile(
        { url: server.url, requiresAccessToken: false, allowInsecureHttp: true },
        { dispatcher: runtime.fileDispatcher!, now: () => NOW },
      );
      const sending = runtime.fhir.send({ method: 'GET', url: server.url, headers: {} }, undefined);
      // Assess
      await expect(opening).rejects.toThrow(new TransientServerError(expected));
      await expect(sending).rejects.toThrow(new TransientServerError(expected));
    } finally {
      await close();
      await server.close();
    }
  });

  it('cuts a trickling file body with the minimum throughput it was configured with', async () => {
    // Prepare
    const server = await startFileServer({ body: BODY, faults: [TRICKLE] });
    const { runtime, close } = create({ minBytesPerWindow: 1024, throughputWindowMs: 200 });
    try {
      const response = await openFile(
        { url: server.url, requiresAccessToken: false, allowInsecureHttp: true },
        { dispatcher: runtime.fileDispatcher!, now: () => NOW },
      );
      // Act
      const reading = readAll(response.body);
      // Assess
      await expect(reading).rejects.toThrow(
        /^too slow: \d+ bytes in 0\.2 s, under the minimum throughput of 1024 bytes per 0\.2 s/,
      );
    } finally {
      await close();
      await server.close();
    }
  });
});

function source(id: string): Record<string, unknown> {
  return {
    id,
    fhirBaseUrl: 'http://127.0.0.1:9/fhir',
    clientId: 'client',
    kmsKeyId: 'alias/signing',
    allowInsecureHttp: true,
  };
}
