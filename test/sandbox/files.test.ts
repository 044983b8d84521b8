import { gunzipSync } from 'node:zlib';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  accessToken,
  exportAndWait,
  type Manifest,
  registerTestClient,
  startTestSandbox,
  type TestSandbox,
} from './support/sandbox.js';

describe('output files', () => {
  let t: TestSandbox;
  let token: string;
  let manifest: Manifest;
  /** The Observation file: over 1,024 lines, so a Range can start past the first line-index checkpoint. */
  let url: string;
  let content: Buffer;
  beforeAll(async () => {
    t = await startTestSandbox({ patientCount: 200 });
    const client = await registerTestClient(t.sandbox);
    token = await accessToken(t, client);
    ({ manifest } = await exportAndWait(t, token, `${t.sandbox.baseUrl}/$export?_type=Patient,Observation`));
    url = manifest.output.find((o) => o.type === 'Observation')!.url;
    content = t.sandbox.fileContent(url);
  });
  afterAll(() => t.sandbox.close());

  /** Raw HTTP (undici.request does not decompress), with the bearer token. */
  const get = (headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET', target = url) =>
    request(target, { method, headers: { authorization: `Bearer ${token}`, ...headers } });

  it('serves the exact file with Content-Length, a strong ETag and Accept-Ranges', async () => {
    // Act
    const response = await get();
    const body = Buffer.from(await response.body.arrayBuffer());
    // Assess
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toBe('application/fhir+ndjson');
    expect(response.headers['content-length']).toBe(String(content.length));
    expect(response.headers.etag).toMatch(/^"[^"]+"$/);
    expect(response.headers['accept-ranges']).toBe('bytes');
    expect(body.equals(content)).toBe(true);
    expect(content.toString().split('\n')).toHaveLength(
      manifest.output.find((o) => o.url === url)!.count! + 1,
    );
  });

  it('answers HEAD with the same headers and no body', async () => {
    const response = await get({}, 'HEAD');
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-length']).toBe(String(content.length));
    expect((await response.body.arrayBuffer()).byteLength).toBe(0);
  });

  it('answers 401 without a token when the manifest requires one', async () => {
    const response = await request(url);
    expect(response.statusCode).toBe(401);
    expect(response.headers['www-authenticate']).toBe('Bearer realm="fhir-sandbox"');
    await response.body.dump();
  });

  it.each([
    ['bytes=N- from deep in the file', (n: number) => `bytes=${n - 1000}-`, (n: number) => [n - 1000, n - 1]],
    ['bytes=N-M', () => 'bytes=100-199', () => [100, 199]],
    ['bytes=N-M past the end', (n: number) => `bytes=${n - 10}-${n + 1000}`, (n: number) => [n - 10, n - 1]],
    ['a suffix range bytes=-S', () => 'bytes=-500', (n: number) => [n - 500, n - 1]],
    ['bytes=0-0', () => 'bytes=0-0', () => [0, 0]],
  ])('answers %s with 206 and Content-Range', async (_name, range, expected) => {
    // Prepare
    const [start, end] = expected(content.length) as [number, number];
    // Act
    const response = await get({ range: range(content.length) });
    const body = Buffer.from(await response.body.arrayBuffer());
    // Assess
    expect(response.statusCode).toBe(206);
    expect(response.headers['content-range']).toBe(`bytes ${start}-${end}/${content.length}`);
    expect(response.headers['content-length']).toBe(String(end - start + 1));
    expect(body.equals(content.subarray(start, end + 1))).toBe(true);
  });

  it('answers 416 to a range past the end', async () => {
    const response = await get({ range: `bytes=${content.length}-` });
    expect(response.statusCode).toBe(416);
    expect(response.headers['content-range']).toBe(`bytes */${content.length}`);
    await response.body.dump();
  });

  it.each([
    ['several ranges', 'bytes=0-9,20-29'],
    ['a malformed range', 'lines=0-9'],
    ['an inverted range', 'bytes=50-10'],
  ])('ignores %s and serves the whole file', async (_name, range) => {
    const response = await get({ range });
    expect(response.statusCode).toBe(200);
    expect(Buffer.from(await response.body.arrayBuffer()).equals(content)).toBe(true);
  });

  it('honours If-Range: a matching ETag gets 206, another ETag the whole file', async () => {
    // Prepare
    const head = await get({}, 'HEAD');
    const etag = head.headers.etag as string;
    // Act
    const matching = await get({ range: 'bytes=10-', 'if-range': etag });
    const stale = await get({ range: 'bytes=10-', 'if-range': '"some-older-version"' });
    // Assess
    expect(matching.statusCode).toBe(206);
    expect(Buffer.from(await matching.body.arrayBuffer()).equals(content.subarray(10))).toBe(true);
    expect(stale.statusCode).toBe(200);
    expect(Buffer.from(await stale.body.arrayBuffer()).equals(content)).toBe(true);
  });

  it('gzips when Accept-Encoding allows it, from a stored copy with a Content-Length once it is made', async () => {
    // Prepare: the copy is made in the background; a HEAD shows when (and, unlike a GET, does
    // not make the sandbox give up the copy for a file it had to compress on the fly).
    const gzipHeaders = { 'accept-encoding': 'br;q=1.0, gzip;q=0.8' };
    for (let attempt = 0; attempt < 100; attempt++) {
      const head = await get(gzipHeaders, 'HEAD');
      await head.body.dump();
      if (head.headers['content-length'] !== undefined) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // Act
    const response = await get(gzipHeaders);
    const body = Buffer.from(await response.body.arrayBuffer());
    // Assess
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-encoding']).toBe('gzip');
    expect(response.headers['content-length']).toBe(String(body.length));
    expect(response.headers.vary).toBe('Accept-Encoding');
    expect(response.headers.etag).toMatch(/\.gz"$/);
    expect(gunzipSync(body).equals(content)).toBe(true);
  });

  it('does not gzip when gzip has q=0', async () => {
    const response = await get({ 'accept-encoding': 'gzip;q=0' });
    expect(response.headers['content-encoding']).toBeUndefined();
    expect(Buffer.from(await response.body.arrayBuffer()).equals(content)).toBe(true);
  });

  it('serves identity bytes to a Range request even when gzip is accepted', async () => {
    const response = await get({ 'accept-encoding': 'gzip', range: 'bytes=5-14' });
    expect(response.statusCode).toBe(206);
    expect(response.headers['content-encoding']).toBeUndefined();
    expect(Buffer.from(await response.body.arrayBuffer()).equals(content.subarray(5, 15))).toBe(true);
  });

  it('answers 404 to a file name the export does not have', async () => {
    const response = await get({}, 'GET', url.replace(/[^/]+$/, 'Claim.1.ndjson'));
    expect(response.statusCode).toBe(404);
    await response.body.dump();
  });

  it('serves files without a token when requiresAccessToken is false', async () => {
    // Prepare
    const open = await startTestSandbox({ requiresAccessToken: false });
    try {
      const client = await registerTestClient(open.sandbox);
      const openToken = await accessToken(open, client);
      const { manifest: openManifest } = await exportAndWait(
        open,
        openToken,
        `${open.sandbox.baseUrl}/$export?_type=Patient`,
      );
      // Act
      const response = await request(openManifest.output[0]!.url);
      // Assess
      expect(openManifest.requiresAccessToken).toBe(false);
      expect(response.statusCode).toBe(200);
      expect(
        Buffer.from(await response.body.arrayBuffer()).equals(
          open.sandbox.fileContent(openManifest.output[0]!.url),
        ),
      ).toBe(true);
    } finally {
      await open.sandbox.close();
    }
  });

  it('expires file links when fileLinkLifetimeMs is set: 410, and a fresh manifest read gives new links', async () => {
    // Prepare
    const expiring = await startTestSandbox({ fileLinkLifetimeMs: 60_000 });
    try {
      const client = await registerTestClient(expiring.sandbox);
      const expiringToken = await accessToken(expiring, client);
      const { statusUrl, manifest: first } = await exportAndWait(
        expiring,
        expiringToken,
        `${expiring.sandbox.baseUrl}/$export?_type=Patient`,
      );
      const auth = { authorization: `Bearer ${expiringToken}` };
      const before = await request(first.output[0]!.url, { headers: auth });
      await before.body.dump();
      // Act
      expiring.clock.advance(60_000);
      const after = await request(first.output[0]!.url, { headers: auth });
      const reread = (await (await fetch(statusUrl, { headers: auth })).json()) as Manifest;
      const refreshed = await request(reread.output[0]!.url, { headers: auth });
      // Assess
      expect(before.statusCode).toBe(200);
      expect(after.statusCode).toBe(410);
      expect(((await after.body.json()) as { issue: { code: string }[] }).issue[0]!.code).toBe('expired');
      expect(reread.output[0]!.url).not.toBe(first.output[0]!.url);
      expect(refreshed.statusCode).toBe(200);
      await refreshed.body.dump();
    } finally {
      await expiring.sandbox.close();
    }
  });
});
