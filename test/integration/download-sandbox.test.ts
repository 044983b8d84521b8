import { createHash } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidNdjsonError, VerificationError } from '../../lambdas/errors.js';
import { createLogger } from '../../lambdas/logger.js';
import {
  type TransferFileDeps,
  type TransferFileInput,
  type TransferOutcome,
  transferFile,
} from '../../lambdas/services/transfer-file.js';
import {
  type ManifestFile,
  type SandboxClient,
  startSandboxClient,
} from '../../scripts/bench/sandbox-source.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';
import type { FaultPlan } from '../../scripts/sandbox/index.js';

/**
 * transferFile against the sandbox FHIR server (its own code, its own idea of
 * the IG) and the embedded S3: what lands must be the sandbox's file, byte
 * for byte, whatever fault the sandbox injects.
 */
const BUCKET = 'sandbox-downloads';
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

describe('transferFile against the sandbox', () => {
  let s3: EmbeddedS3;
  let client: S3Client;
  let agent: Agent;
  let sandbox: SandboxClient;
  let keys = 0;

  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    client = new S3Client(s3.clientConfig);
    agent = new Agent({ bodyTimeout: 500 });
    sandbox = await startSandboxClient({ patientCount: 150, retryAfterSeconds: 2 });
  });
  afterAll(async () => {
    await sandbox.close();
    await agent.close();
    client.destroy();
    await s3.close();
  });

  function deps(overrides: Partial<TransferFileDeps> & { sleeps?: number[] } = {}): TransferFileDeps {
    const sleeps = overrides.sleeps ?? [];
    return {
      s3: client,
      http: agent,
      now: () => new Date(),
      remainingTimeMs: () => 900_000,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
      random: () => 0.5,
      logger: createLogger({ level: 'error', write: () => {} }),
      settings: { minPartSizeBytes: 64 * 1024 },
      ...overrides,
    };
  }

  function input(file: ManifestFile, requiresAccessToken: boolean): TransferFileInput {
    keys++;
    return {
      url: file.url,
      resourceType: file.type,
      kind: 'output',
      ...(file.count !== undefined ? { expectedCount: file.count } : {}),
      requiresAccessToken,
      accessToken: sandbox.accessToken,
      tokenAudience: { fhirBaseUrl: sandbox.sandbox.baseUrl, trustedOrigins: [] },
      allowInsecureHttp: true,
      bucket: BUCKET,
      key: `sandbox/${keys}/${file.type}.ndjson`,
      partSizeBytes: 256 * 1024,
    };
  }

  async function landed(key: string): Promise<Buffer> {
    const response = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from(await response.Body!.transformToByteArray());
  }

  async function exportOne(faults?: FaultPlan) {
    const manifest = await sandbox.exportFiles(['Observation'], faults);
    const file = manifest.output[0]!;
    return {
      file,
      requiresAccessToken: manifest.requiresAccessToken,
      content: sandbox.sandbox.fileContent(file.url),
    };
  }

  it.each<[string, FaultPlan | undefined, number]>([
    ['no fault (gzip on the wire)', undefined, 0],
    ['a dropped connection', { dropAfterBytes: { bytes: 40_000 } }, 1],
    ['5xx, 429 and a transient 404 before the file', { file5xx: 1, file429: 1, file404: 1 }, 3],
    ['files on a second origin (presigned, no token)', { filesFromSecondOrigin: true }, 0],
  ])('lands the sandbox file byte for byte despite %s', async (_name, faults, retries) => {
    // Prepare
    const { file, requiresAccessToken, content } = await exportOne(faults);
    const request = input(file, requiresAccessToken);
    const sleeps: number[] = [];
    // Act
    const outcome = await transferFile(request, deps({ sleeps }));
    // Assess
    expect(outcome).toMatchObject({
      status: 'complete',
      bytes: content.length,
      lines: file.count,
      sha256: sha256(content),
    });
    expect((await landed(request.key)).equals(content)).toBe(true);
    expect(sleeps).toHaveLength(retries);
  });

  it('resumes with Range after every stall that outlasts the idle timeout', async () => {
    // Prepare: the second origin serves identity bytes, and the sandbox stalls every response.
    const stallAfterBytes = 300_000;
    const { file, requiresAccessToken, content } = await exportOne({
      filesFromSecondOrigin: true,
      slowFile: { stallAfterBytes, stallMs: 3_000 },
    });
    const request = input(file, requiresAccessToken);
    const sleeps: number[] = [];
    sandbox.sandbox.clearRequestLog();
    // Act
    const outcome = await transferFile(request, deps({ sleeps }));
    // Assess
    expect(outcome).toMatchObject({ status: 'complete', sha256: sha256(content) });
    expect((await landed(request.key)).equals(content)).toBe(true);
    const statuses = sandbox.sandbox.requestLog.filter((entry) => entry.path.includes('Observation'));
    expect(statuses.map((entry) => entry.status)).toEqual([200, ...sleeps.map(() => 206)]);
    expect(sleeps.length).toBeGreaterThanOrEqual(Math.floor(content.length / stallAfterBytes));
  });

  it('follows a redirect to presigned S3-like URLs without forwarding the token', async () => {
    // Prepare
    const { file, requiresAccessToken, content } = await exportOne({ redirectFiles: true });
    const request = input(file, requiresAccessToken);
    sandbox.sandbox.clearRequestLog();
    // Act
    await transferFile(request, deps());
    // Assess
    const fileRequests = sandbox.sandbox.requestLog.filter((entry) => entry.path.includes('Observation'));
    expect(fileRequests.map((entry) => [entry.origin, entry.hasAuthorization])).toEqual([
      [sandbox.sandbox.origin, true],
      [sandbox.sandbox.secondOrigin, false],
    ]);
    expect((await landed(request.key)).equals(content)).toBe(true);
  });

  it('hands back on a 401 and finishes with the next call', async () => {
    // Prepare
    const { file, requiresAccessToken, content } = await exportOne({ file401: 1 });
    const request = input(file, requiresAccessToken);
    // Act
    const first = await transferFile(request, deps());
    const checkpoint = first.status === 'checkpoint' ? first.checkpoint : undefined;
    const second = await transferFile({ ...request, checkpoint }, deps());
    // Assess
    expect(first).toMatchObject({ status: 'checkpoint', reason: 'access-token-rejected' });
    expect(second).toMatchObject({ status: 'complete', sha256: sha256(content) });
  });

  it('resumes a gzip download across invocations with Range, byte for byte', async () => {
    // Prepare
    const { file, requiresAccessToken, content } = await exportOne();
    const request = input(file, requiresAccessToken);
    // Gzip bodies resume by the file's Last-Modified, a strong validator only once it is a
    // second older than the response (RFC 9110 §8.8.2.2); the export has only just been written.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    sandbox.sandbox.clearRequestLog();
    let calls = 0;
    // Act
    let outcome: TransferOutcome = await transferFile(
      request,
      deps({ remainingTimeMs: () => (++calls > 3 ? 0 : 900_000) }),
    );
    const checkpoint = outcome.status === 'checkpoint' ? outcome.checkpoint : undefined;
    outcome = await transferFile({ ...request, checkpoint: JSON.parse(JSON.stringify(checkpoint)) }, deps());
    // Assess
    expect(checkpoint?.byteOffset).toBeGreaterThan(0);
    expect(checkpoint?.resumeValidator).toMatch(/GMT$/);
    const fileRequests = sandbox.sandbox.requestLog.filter((entry) => entry.path.includes('Observation'));
    expect(fileRequests.map((entry) => entry.status)).toEqual([200, 206]);
    expect(outcome).toMatchObject({ status: 'complete', sha256: sha256(content) });
    expect((await landed(request.key)).equals(content)).toBe(true);
  });

  it('fails on a malformed line, leaving no object', async () => {
    // Prepare
    const { file, requiresAccessToken } = await exportOne({
      malformedLine: { type: 'Observation', line: 7 },
    });
    const request = input(file, requiresAccessToken);
    // Act
    const transfer = transferFile(request, deps());
    // Assess
    await expect(transfer).rejects.toBeInstanceOf(InvalidNdjsonError);
    await expect(transfer).rejects.toThrow(/^NDJSON line 7 \(byte offset \d+\) is invalid: /);
    await expect(client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: request.key }))).rejects.toThrow();
  });

  it('fails when the manifest count does not match the file, leaving no object', async () => {
    // Prepare
    const { file, requiresAccessToken, content } = await exportOne({
      countMismatch: { type: 'Observation', delta: 2 },
    });
    const request = input(file, requiresAccessToken);
    const lines = content.toString().split('\n').length - 1;
    // Act
    const transfer = transferFile(request, deps());
    // Assess
    await expect(transfer).rejects.toThrow(
      new VerificationError(
        `${new URL(file.url).origin}${new URL(file.url).pathname}: the manifest says ${lines + 2} resources, the file had ${lines}`,
      ),
    );
    await expect(client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: request.key }))).rejects.toThrow();
  });
});
