import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  clampedRetryAfter,
  type FileRequest,
  isPossiblyTransientNotFound,
  openFile,
} from '../../../lambdas/adapters/file-http.js';
import { USER_AGENT } from '../../../lambdas/core/user-agent.js';
import {
  AccessTokenRejectedError,
  ConfigurationError,
  FileDownloadError,
  FileLinkExpiredError,
  InvalidManifestError,
  TransientServerError,
} from '../../../lambdas/errors.js';
import { type FileServer, startFileServer } from './support/file-server.js';
import { patientNdjson } from './support/ndjson-body.js';

const NOW = new Date('2026-03-01T12:00:00Z');
const TOKEN = 'test-access-token';
const body = patientNdjson(50);

async function readAll(iterable: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of iterable) chunks.push(chunk);
  return Buffer.concat(chunks);
}

describe('openFile', () => {
  let agent: Agent;
  let origin: FileServer;
  let other: FileServer;
  const open = (request: Partial<FileRequest> & { url: string }) =>
    openFile(
      {
        requiresAccessToken: false,
        allowInsecureHttp: true,
        // The file server stands for the FHIR server: its origin may receive the token.
        tokenAudience: { fhirBaseUrl: origin.url, trustedOrigins: [] },
        ...request,
      },
      { dispatcher: agent, now: () => NOW },
    );

  beforeAll(async () => {
    agent = new Agent({ bodyTimeout: 300, headersTimeout: 5_000 });
    origin = await startFileServer({ body, gzip: true });
    other = await startFileServer({ body });
    const redirect =
      (to: () => string, status = 307) =>
      (_headers: unknown, response: import('node:http').ServerResponse) =>
        response.writeHead(status, { location: to() }).end();
    origin.route(
      '/to-other',
      redirect(() => `${other.url}?X-Amz-Signature=secret`),
    );
    origin.route(
      '/to-same',
      redirect(() => '/files/data.ndjson', 302),
    );
    origin.route(
      '/loop',
      redirect(() => '/loop'),
    );
    origin.route(
      '/to-insecure',
      redirect(() => 'http://files.example.org/data.ndjson'),
    );
    other.route(
      '/back-to-origin',
      redirect(() => origin.url),
    );
    origin.route(
      '/to-other-and-back',
      redirect(() => `${other.origin}/back-to-origin`),
    );
  });
  afterAll(async () => {
    await origin.close();
    await other.close();
    await agent.close();
  });

  it('asks for NDJSON, accepts gzip, and sends the token when the manifest requires one', async () => {
    // Act
    const response = await open({ url: origin.url, requiresAccessToken: true, accessToken: TOKEN });
    const bytes = await readAll(response.body);
    // Assess
    expect(origin.requests.at(-1)?.headers).toMatchObject({
      accept: 'application/fhir+ndjson',
      'accept-encoding': 'gzip',
      authorization: `Bearer ${TOKEN}`,
    });
    expect(response).toMatchObject({
      status: 200,
      contentEncoding: 'gzip',
      acceptsRanges: true,
      redirects: 0,
    });
    expect(bytes.equals(body)).toBe(true);
  });

  it('names the product and version in a User-Agent on every hop', async () => {
    // Prepare
    const before = { origin: origin.requests.length, other: other.requests.length };
    // Act
    const response = await open({
      url: `${origin.origin}/to-other`,
      requiresAccessToken: true,
      accessToken: TOKEN,
    });
    await readAll(response.body);
    // Assess
    const hops = [...origin.requests.slice(before.origin), ...other.requests.slice(before.other)];
    expect(hops.map((request) => request.headers['user-agent'])).toEqual([USER_AGENT, USER_AGENT]);
  });

  it('refuses a file that needs the token on an origin the token may not go to, before sending anything', async () => {
    // Prepare
    const before = other.requests.length;
    // Act
    const opening = open({
      url: `${other.url}?X-Amz-Signature=secret`,
      requiresAccessToken: true,
      accessToken: TOKEN,
    });
    // Assess
    await expect(opening).rejects.toThrow(
      new ConfigurationError(
        `the file (the manifest says requiresAccessToken: true) ${other.origin}/files/data.ndjson is on origin ${other.origin}, ` +
          `which may not receive the access token (it goes only to the FHIR server's origin ${origin.origin}); ` +
          `if that host belongs to the FHIR server, add "${other.origin}" to the source's trustedOrigins`,
      ),
    );
    expect(other.requests.length).toBe(before);
  });

  it('sends the token to a file on one of the trustedOrigins', async () => {
    // Act
    const response = await open({
      url: other.url,
      requiresAccessToken: true,
      accessToken: TOKEN,
      tokenAudience: { fhirBaseUrl: origin.url, trustedOrigins: [other.origin] },
    });
    await readAll(response.body);
    // Assess
    expect(other.requests.at(-1)?.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it('sends no token when the manifest does not require one, even if it has one', async () => {
    // Act
    const response = await open({ url: other.url, requiresAccessToken: false, accessToken: TOKEN });
    await readAll(response.body);
    // Assess
    expect(other.requests.at(-1)?.headers.authorization).toBeUndefined();
    expect(response.contentEncoding).toBe('identity');
  });

  it('drops Authorization when a redirect leaves the origin (presigned S3 URLs)', async () => {
    // Act
    const response = await open({
      url: `${origin.origin}/to-other`,
      requiresAccessToken: true,
      accessToken: TOKEN,
    });
    const bytes = await readAll(response.body);
    // Assess
    expect(origin.requests.at(-1)?.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(other.requests.at(-1)?.url).toBe('/files/data.ndjson?X-Amz-Signature=secret');
    expect(other.requests.at(-1)?.headers.authorization).toBeUndefined();
    expect(response.redirects).toBe(1);
    expect(bytes.equals(body)).toBe(true);
  });

  it('does not send the token again after a cross-origin hop, even back on the first origin', async () => {
    // Prepare
    const before = origin.requests.length;
    // Act
    const response = await open({
      url: `${origin.origin}/to-other-and-back`,
      requiresAccessToken: true,
      accessToken: TOKEN,
    });
    await readAll(response.body);
    // Assess
    const sent = origin.requests.slice(before).map((request) => request.headers.authorization);
    expect(sent).toEqual([`Bearer ${TOKEN}`, undefined]);
    expect(response.redirects).toBe(2);
  });

  it('keeps Authorization on a same-origin redirect', async () => {
    // Prepare
    const before = origin.requests.length;
    // Act
    const response = await open({
      url: `${origin.origin}/to-same`,
      requiresAccessToken: true,
      accessToken: TOKEN,
    });
    await readAll(response.body);
    // Assess
    const sent = origin.requests.slice(before).map((request) => request.headers.authorization);
    expect(sent).toEqual([`Bearer ${TOKEN}`, `Bearer ${TOKEN}`]);
  });

  it.each<[string, Partial<FileRequest> & { url: string }, Error]>([
    [
      'plain http to a remote host',
      { url: 'http://files.example.org/data.ndjson' },
      new InvalidManifestError('File URL uses http: on a non-loopback host; only https is allowed'),
    ],
    [
      'plain http to loopback without allowInsecureHttp',
      { url: 'http://127.0.0.1:9/data.ndjson', allowInsecureHttp: false },
      new InvalidManifestError(
        'File URL uses http:, allowed only for loopback hosts with allowInsecureHttp: true',
      ),
    ],
    [
      'an ftp URL',
      { url: 'ftp://files.example.org/data.ndjson' },
      new InvalidManifestError('File URL uses the ftp: scheme; only https is allowed'),
    ],
    [
      'a missing token the manifest requires',
      { url: 'https://files.example.org/data.ndjson', requiresAccessToken: true },
      new ConfigurationError('The manifest requires an access token for its files, but none was given'),
    ],
  ])('refuses %s before sending anything', async (_name, request, expected) => {
    // Act
    const opening = open(request);
    // Assess
    await expect(opening).rejects.toThrow(expected);
    await expect(opening).rejects.toBeInstanceOf(expected.constructor);
  });

  it('allows loopback http (localhost and 127.0.0.0/8) only with allowInsecureHttp', async () => {
    // Prepare
    const localhost = other.url.replace('127.0.0.1', 'localhost');
    // Act
    const response = await open({ url: localhost, allowInsecureHttp: true });
    const bytes = await readAll(response.body);
    // Assess
    expect(bytes.equals(body)).toBe(true);
  });

  it('refuses a redirect to a non-https URL', async () => {
    // Act
    const opening = open({ url: `${origin.origin}/to-insecure` });
    // Assess
    await expect(opening).rejects.toThrow(
      new FileDownloadError(
        `GET ${origin.origin}/to-insecure redirected to http://files.example.org, which uses http: on a non-loopback host; only https is allowed`,
      ),
    );
  });

  it('gives up after 5 redirects', async () => {
    // Act
    const opening = open({ url: `${origin.origin}/loop` });
    // Assess
    await expect(opening).rejects.toThrow(
      new FileDownloadError(`GET ${origin.origin}/loop redirected more than 5 times`),
    );
  });

  it('hands over everything zlib can decode from a gzip body cut mid-stream, then the network error', async () => {
    // Prepare
    const cutting = await startFileServer({
      body,
      gzip: true,
      faults: [{ kind: 'drop', afterBytes: 3_000 }],
    });
    const response = await open({ url: cutting.url });
    const received: Buffer[] = [];
    // Act
    let failure: unknown;
    try {
      for await (const chunk of response.body) received.push(chunk);
    } catch (error) {
      failure = error;
    }
    // Assess
    const decoded = Buffer.concat(received);
    expect(decoded.length).toBeGreaterThan(3_000);
    expect(decoded.equals(body.subarray(0, decoded.length))).toBe(true);
    // The socket's reason, not zlib's "unexpected end of file".
    expect((failure as { code?: string }).code).toBe('UND_ERR_SOCKET');
    await cutting.close();
  });

  it('resumes a gzip download undecoded with Range, naming the version by its Last-Modified date', async () => {
    // Prepare
    const first = await open({ url: origin.url });
    first.cancel();
    // The gzip body's ETag names the gzip bytes; the date names the file.
    expect(first).toMatchObject({ contentEncoding: 'gzip', strongEtag: expect.stringMatching(/-gzip"$/) });
    const date = first.strongLastModified!;
    expect(date).toBe('Wed, 01 Jan 2025 00:00:00 GMT');
    // Act
    const response = await open({ url: origin.url, resumeFrom: { offset: 100, validator: date } });
    const bytes = await readAll(response.body);
    // Assess
    expect(origin.requests.at(-1)?.headers).toMatchObject({
      range: 'bytes=100-',
      'if-range': date,
      'accept-encoding': 'identity',
    });
    expect(response).toMatchObject({
      status: 206,
      rangeStart: 100,
      totalBytes: body.length,
      contentEncoding: 'identity',
    });
    expect(bytes.equals(body.subarray(100))).toBe(true);
  });

  it('reports 416 with the file size when resuming at the very end', async () => {
    // Prepare
    const first = await open({ url: other.url });
    first.cancel();
    const strongEtag = first.strongEtag;
    // Act
    const response = await open({
      url: other.url,
      resumeFrom: { offset: body.length, validator: strongEtag! },
    });
    // Assess
    expect(response).toMatchObject({ status: 416, totalBytes: body.length });
    expect((await readAll(response.body)).length).toBe(0);
  });

  it.each<[number, Record<string, string>, Error, number | undefined]>([
    [401, {}, new AccessTokenRejectedError('GET {origin}/files/data.ndjson answered 401'), undefined],
    [
      404,
      {},
      new FileLinkExpiredError(
        'GET {origin}/files/data.ndjson answered 404: the file is not (or no longer) there',
      ),
      undefined,
    ],
    [
      410,
      {},
      new FileLinkExpiredError('GET {origin}/files/data.ndjson answered 410: the file link has expired'),
      undefined,
    ],
    [429, { 'retry-after': '7' }, new TransientServerError('GET {origin}/files/data.ndjson answered 429'), 7],
    [
      503,
      { 'retry-after': '100000' },
      new TransientServerError('GET {origin}/files/data.ndjson answered 503'),
      120,
    ],
    [
      503,
      { 'retry-after': 'Sun, 01 Mar 2026 12:00:30 GMT' },
      new TransientServerError('GET {origin}/files/data.ndjson answered 503'),
      30,
    ],
    [500, {}, new TransientServerError('GET {origin}/files/data.ndjson answered 500'), undefined],
    [403, {}, new FileDownloadError('GET {origin}/files/data.ndjson answered 403'), undefined],
  ])('maps %i to the pipeline error', async (status, headers, expected, retryAfter) => {
    // Prepare
    const server = await startFileServer({ body, faults: [{ kind: 'status', status, headers }] });
    try {
      // Act
      const error = await open({ url: `${server.url}?sig=secret` }).catch((caught: unknown) => caught);
      // Assess
      expect(error).toBeInstanceOf(expected.constructor);
      expect((error as Error).message).toBe(expected.message.replace('{origin}', server.origin));
      expect((error as TransientServerError).retryAfterSeconds).toBe(retryAfter);
      expect(isPossiblyTransientNotFound(error)).toBe(status === 404);
    } finally {
      await server.close();
    }
  });

  it('turns a refused connection into a TransientServerError', async () => {
    // Prepare
    const server = await startFileServer({ body });
    const url = server.url;
    await server.close();
    // Act
    const error = await open({ url }).catch((caught: unknown) => caught);
    // Assess
    expect(error).toBeInstanceOf(TransientServerError);
    expect((error as Error).message).toMatch(
      /^GET http:\/\/127\.0\.0\.1:\d+\/files\/data\.ndjson failed: ECONNREFUSED/,
    );
  });

  it('ends a silent body with the idle-read timeout instead of hanging', async () => {
    // Prepare
    const server = await startFileServer({ body, faults: [{ kind: 'stall', afterBytes: 1000 }] });
    try {
      const response = await open({ url: server.url });
      // Act
      const error = await readAll(response.body).catch((caught: unknown) => caught);
      // Assess
      expect((error as { code?: string }).code).toBe('UND_ERR_BODY_TIMEOUT');
    } finally {
      await server.close();
    }
  });

  it.each([
    [undefined, undefined],
    ['0', 1],
    ['45', 45],
    ['121', 120],
    ['Sun, 01 Mar 2026 11:00:00 GMT', 1],
    ['soon', undefined],
  ])('clamps Retry-After %s to %s seconds', (value, seconds) => {
    // Act
    const clamped = clampedRetryAfter(value, NOW);
    // Assess
    expect(clamped).toBe(seconds);
  });
});
