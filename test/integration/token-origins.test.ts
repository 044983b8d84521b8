import { S3Client } from '@aws-sdk/client-s3';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFhirHttp } from '../../lambdas/adapters/fhir-http.js';
import type { TokenAudience } from '../../lambdas/core/origins.js';
import { USER_AGENT } from '../../lambdas/core/user-agent.js';
import { ConfigurationError } from '../../lambdas/errors.js';
import { createLogger } from '../../lambdas/logger.js';
import { readManifestPages } from '../../lambdas/services/manifest-pages.js';
import { type TransferFileDeps, transferFile } from '../../lambdas/services/transfer-file.js';
import { type SandboxClient, startSandboxClient } from '../../scripts/bench/sandbox-source.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';

/**
 * Where the bearer token goes, against the sandbox over real HTTP: a manifest
 * page link and file URLs on another origin (the sandbox's own listener under
 * its other loopback name, `localhost` for `127.0.0.1`), each with and
 * without that origin in trustedOrigins. The status URL's case runs through
 * the whole workflow (test/workflow/token-origins.test.ts).
 */
const BUCKET = 'token-origins';

describe('the token goes only to trusted origins (sandbox)', () => {
  let s3: EmbeddedS3;
  let client: S3Client;
  let agent: Agent;
  let sandbox: SandboxClient;
  let other: string;
  let keys = 0;

  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    client = new S3Client(s3.clientConfig);
    agent = new Agent();
    sandbox = await startSandboxClient({ patientCount: 20, retryAfterSeconds: 0 });
    other = sandbox.sandbox.origin.replace('//127.0.0.1:', '//localhost:');
  });
  afterAll(async () => {
    await sandbox.close();
    await agent.close();
    client.destroy();
    await s3.close();
  });

  const audience = (trustedOrigins: readonly string[]): TokenAudience => ({
    fhirBaseUrl: sandbox.sandbox.baseUrl,
    trustedOrigins,
  });
  const requestsTo = (host: string) =>
    sandbox.sandbox.requestLog.filter((entry) => entry.host === new URL(host).host);
  const deps = (): TransferFileDeps => ({
    s3: client,
    http: agent,
    now: () => new Date(),
    remainingTimeMs: () => 900_000,
    sleep: async () => {},
    random: () => 0.5,
    logger: createLogger({ level: 'error', write: () => {} }),
    settings: { minPartSizeBytes: 64 * 1024 },
  });
  const transfer = (url: string, requiresAccessToken: boolean, trustedOrigins: readonly string[]) => {
    keys++;
    return transferFile(
      {
        url,
        resourceType: 'Patient',
        kind: 'output',
        requiresAccessToken,
        accessToken: sandbox.accessToken,
        tokenAudience: audience(trustedOrigins),
        allowInsecureHttp: true,
        bucket: BUCKET,
        key: `files/${keys}.ndjson`,
      },
      deps(),
    );
  };

  describe('a manifest page link on another origin', () => {
    const read = async (trustedOrigins: readonly string[]) => {
      const firstPage = await sandbox.exportFiles(['Patient', 'Observation'], { otherOriginFor: 'page' });
      await sandbox.sandbox.settled();
      sandbox.sandbox.clearRequestLog();
      const fhir = createFhirHttp({ dispatcher: agent });
      const bearer = { accessToken: sandbox.accessToken, audience: audience(trustedOrigins) };
      return { firstPage, reading: readManifestPages({ fhir }, firstPage, bearer, true, new Date()) };
    };

    it('is refused before it is fetched, naming the link, its origin and the fix', async () => {
      // Act
      const { firstPage, reading } = await read([]);
      // Assess
      const next = new URL((firstPage as unknown as { link: { url: string }[] }).link[0]!.url);
      expect(next.origin).toBe(other);
      await expect(reading).rejects.toThrow(
        new ConfigurationError(
          `manifest page 1's link to the next page ${other}${next.pathname} is on origin ${other}, which may not receive ` +
            `the access token (it goes only to the FHIR server's origin ${sandbox.sandbox.origin}); ` +
            `if that host belongs to the FHIR server, add "${other}" to the source's trustedOrigins`,
        ),
      );
      await sandbox.sandbox.settled();
      expect(sandbox.sandbox.requestLog).toEqual([]);
    });

    it('is followed with the token when its origin is trusted', async () => {
      // Act
      const { firstPage, reading } = await read([other]);
      const manifest = await reading;
      // Assess
      await sandbox.sandbox.settled();
      expect(manifest.files.length).toBeGreaterThan(firstPage.output.length);
      expect(
        requestsTo(other).map(({ query, hasAuthorization, userAgent }) => ({
          query,
          hasAuthorization,
          userAgent,
        })),
      ).toEqual([{ query: 'page=2', hasAuthorization: true, userAgent: USER_AGENT }]);
    });
  });

  describe('a file on another origin', () => {
    it('is refused, not fetched, when the manifest says it needs the token', async () => {
      // Prepare
      const manifest = await sandbox.exportFiles(['Patient'], { otherOriginFor: 'files' });
      const url = manifest.output[0]!.url;
      sandbox.sandbox.clearRequestLog();
      // Act
      const transferring = transfer(url, manifest.requiresAccessToken, []);
      // Assess
      expect(manifest.requiresAccessToken).toBe(true);
      await expect(transferring).rejects.toThrow(ConfigurationError);
      await expect(transferring).rejects.toThrow(
        `the file (the manifest says requiresAccessToken: true) ${other}${new URL(url).pathname} is on origin ${other}`,
      );
      await sandbox.sandbox.settled();
      expect(sandbox.sandbox.requestLog).toEqual([]);
    });

    it('is fetched with the token when its origin is trusted', async () => {
      // Prepare
      const manifest = await sandbox.exportFiles(['Patient'], { otherOriginFor: 'files' });
      sandbox.sandbox.clearRequestLog();
      // Act
      const outcome = await transfer(manifest.output[0]!.url, manifest.requiresAccessToken, [other]);
      // Assess
      expect(outcome).toMatchObject({ status: 'complete', lines: manifest.output[0]!.count });
      await sandbox.sandbox.settled();
      expect(
        requestsTo(other).map(({ hasAuthorization, userAgent }) => ({ hasAuthorization, userAgent })),
      ).toEqual([{ hasAuthorization: true, userAgent: USER_AGENT }]);
    });

    it.each([
      ['untrusted', false],
      ['trusted', true],
    ])(
      'is fetched without the token when the manifest says it needs none (%s origin)',
      async (_name, trust) => {
        // Prepare: presigned links on the sandbox's second origin, requiresAccessToken false.
        const manifest = await sandbox.exportFiles(['Patient'], { filesFromSecondOrigin: true });
        const second = sandbox.sandbox.secondOrigin;
        sandbox.sandbox.clearRequestLog();
        // Act
        const outcome = await transfer(
          manifest.output[0]!.url,
          manifest.requiresAccessToken,
          trust ? [second] : [],
        );
        // Assess
        expect(manifest.requiresAccessToken).toBe(false);
        expect(outcome).toMatchObject({ status: 'complete', lines: manifest.output[0]!.count });
        await sandbox.sandbox.settled();
        expect(
          sandbox.sandbox.requestLog.map(({ origin, hasAuthorization, userAgent }) => ({
            origin,
            hasAuthorization,
            userAgent,
          })),
        ).toEqual([{ origin: second, hasAuthorization: false, userAgent: USER_AGENT }]);
      },
    );
  });
});
