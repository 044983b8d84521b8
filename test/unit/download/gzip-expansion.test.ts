import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { createGzip } from 'node:zlib';
import { HeadObjectCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openFile } from '../../../lambdas/adapters/file-http.js';
import { ConfigurationError, FileDownloadError } from '../../../lambdas/errors.js';
import { createLogger } from '../../../lambdas/logger.js';
import { transferFile } from '../../../lambdas/services/transfer-file.js';
import { type FileServer, startFileServer } from './support/file-server.js';
import { patientNdjson } from './support/ndjson-body.js';
import { useTransferBed } from './support/transfer-bed.js';

/**
 * A gzip body may decode to at most `maxGzipExpansion` times its compressed
 * size (counted as at least 1 MiB). Met here by a real gzip bomb served over
 * loopback: endless blank lines, compressed as they are sent, about 1,000 to 1.
 */
const BUCKET = 'gzip-expansion';
const NOW = new Date('2026-03-01T12:00:00Z');
const MiB = 1024 * 1024;

interface Bomb {
  readonly path: string;
  /** Resolves when the client has hung up: the bomb stops only then. */
  readonly hungUp: Promise<void>;
}

/** A route that sends `prefix`, then blank lines until the client hangs up, gzipped on the fly. */
function serveBomb(server: FileServer, path: string, prefix: Buffer = Buffer.alloc(0)): Bomb {
  let hangUp = () => {};
  const hungUp = new Promise<void>((resolve) => {
    hangUp = resolve;
  });
  server.route(path, (_headers, response: ServerResponse) => {
    response.writeHead(200, { 'content-type': 'application/fhir+ndjson', 'content-encoding': 'gzip' });
    const gzip = createGzip();
    gzip.pipe(response);
    response.on('close', () => {
      gzip.destroy();
      hangUp();
    });
    const blankLines = Buffer.alloc(MiB, '\n');
    void (async () => {
      if (prefix.length > 0 && !gzip.write(prefix)) await drained(gzip, response);
      while (!response.destroyed) {
        if (!gzip.write(blankLines)) await drained(gzip, response);
      }
    })();
  });
  return { path, hungUp };
}

function drained(gzip: NodeJS.WritableStream, response: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      gzip.off('drain', done);
      response.off('close', done);
      resolve();
    };
    gzip.on('drain', done);
    response.on('close', done);
  });
}

describe('openFile and a gzip body that expands without limit', () => {
  let agent: Agent;
  let server: FileServer;
  beforeAll(async () => {
    agent = new Agent({ bodyTimeout: 5_000, headersTimeout: 5_000 });
    server = await startFileServer({ body: patientNdjson(10) });
  });
  afterAll(async () => {
    await server.close();
    await agent.close();
  });

  const open = (path: string, maxGzipExpansion?: number) =>
    openFile(
      {
        url: `${server.origin}${path}`,
        requiresAccessToken: false,
        allowInsecureHttp: true,
        ...(maxGzipExpansion === undefined ? {} : { maxGzipExpansion }),
      },
      { dispatcher: agent, now: () => NOW },
    );

  it('stops an endless bomb at the floor (the limit times 1 MiB), for good, and hangs up', async () => {
    // Prepare
    const bomb = serveBomb(server, '/bomb');
    const response = await open(bomb.path, 2);
    let decodedBytes = 0;
    // Act
    let failure: unknown;
    try {
      for await (const chunk of response.body) decodedBytes += chunk.length;
    } catch (error) {
      failure = error;
    }
    // Assess
    expect(failure).toBeInstanceOf(FileDownloadError);
    expect((failure as Error).message).toMatch(
      new RegExp(
        `^GET ${server.origin.replaceAll('.', '\\.')}/bomb: the gzip body decoded to \\d+ bytes from \\d+ compressed ` +
          '\\(\\d+×\\), over the limit of 2× \\(maxGzipExpansion; at least 2097152 bytes always pass\\): ' +
          'a gzip bomb, or data far more repetitive than FHIR NDJSON$',
      ),
    );
    // Nothing past the limit reached the reader.
    expect(decodedBytes).toBeLessThanOrEqual(2 * MiB);
    expect(decodedBytes).toBeGreaterThan(MiB);
    await bomb.hungUp;
  });

  it('holds a body that turns into a bomb after an ordinary start to the ratio, past the floor', async () => {
    // Prepare: 3 MiB that gzip cannot shrink, then blank lines. The floor (2 MiB) is passed
    // by then; from there the limit is twice the compressed bytes (just over 3 MiB so far).
    const bomb = serveBomb(server, '/late-bomb', randomBytes(3 * MiB));
    const response = await open(bomb.path, 2);
    let decodedBytes = 0;
    // Act
    const reading = (async () => {
      for await (const chunk of response.body) decodedBytes += chunk.length;
    })();
    // Assess
    await expect(reading).rejects.toBeInstanceOf(FileDownloadError);
    const [, decoded, compressed] = /decoded to (\d+) bytes from (\d+) compressed/.exec(
      ((await reading.catch((error: unknown) => error)) as Error).message,
    )!;
    expect(Number(compressed)).toBeGreaterThan(3 * MiB);
    expect(Number(decoded)).toBeGreaterThan(2 * Number(compressed));
    expect(decodedBytes).toBeGreaterThan(3 * MiB);
    expect(decodedBytes).toBeLessThanOrEqual(2 * Number(compressed));
    await bomb.hungUp;
  });

  it('decodes ordinary NDJSON under the default limit', async () => {
    // Prepare: FHIR-shaped lines, about 16 to 1 gzipped, four times the default floor's 1 MiB base.
    const body = patientNdjson(4_000);
    const plain = await startFileServer({ body, gzip: true });
    try {
      const response = await openFile(
        { url: plain.url, requiresAccessToken: false, allowInsecureHttp: true },
        { dispatcher: agent, now: () => NOW },
      );
      // Act
      const chunks: Buffer[] = [];
      for await (const chunk of response.body) chunks.push(chunk);
      // Assess
      expect(response.contentEncoding).toBe('gzip');
      expect(Buffer.concat(chunks).equals(body)).toBe(true);
    } finally {
      await plain.close();
    }
  });

  it.each([0, 0.5, Number.NaN, Number.POSITIVE_INFINITY])('refuses maxGzipExpansion %s', async (value) => {
    // Act
    const opening = open('/files/data.ndjson', value);
    // Assess
    await expect(opening).rejects.toThrow(
      new ConfigurationError(
        `maxGzipExpansion must be a number of at least 1 (decoded bytes per compressed byte), got ${value}`,
      ),
    );
  });
});

describe('transferFile and a gzip bomb', () => {
  const bed = useTransferBed(BUCKET, { bodyTimeout: 5_000, headersTimeout: 5_000 });

  it('fails the file for good, without a retry, and leaves nothing behind', async () => {
    // Prepare
    const server = await startFileServer({ body: patientNdjson(10) });
    const bomb = serveBomb(server, '/files/bomb.ndjson');
    const key = 'source=test/export=1/type=Patient/part-0001.ndjson';
    // Act
    const transfer = transferFile(
      {
        url: `${server.origin}${bomb.path}`,
        resourceType: 'Patient',
        kind: 'output',
        requiresAccessToken: false,
        allowInsecureHttp: true,
        bucket: BUCKET,
        key,
      },
      {
        s3: bed.client,
        http: bed.agent,
        now: () => NOW,
        remainingTimeMs: () => 900_000,
        sleep: async () => {},
        random: () => 0.5,
        logger: createLogger({ level: 'error', write: () => {}, now: () => NOW }),
        settings: { minPartSizeBytes: 64 * 1024, maxGzipExpansion: 2 },
      },
    );
    // Assess
    await expect(transfer).rejects.toBeInstanceOf(FileDownloadError);
    await expect(transfer).rejects.toThrow(
      /the gzip body decoded to \d+ bytes .* over the limit of 2× \(maxGzipExpansion/,
    );
    expect(server.requests.map((request) => request.url)).toEqual([bomb.path]);
    await bomb.hungUp;
    await expect(bed.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))).rejects.toMatchObject({
      name: 'NotFound',
    });
    const uploads = await bed.client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
    expect(uploads.Uploads ?? []).toEqual([]);
    await server.close();
  });
});
