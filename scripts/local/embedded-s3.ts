import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CreateBucketCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';

export interface EmbeddedS3 {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  /** Folder the objects live in (deleted on close unless it was given). */
  readonly directory: string;
  /** The S3 server's process. It ends when this process ends, however that happens. */
  readonly pid: number;
  /** Client settings that make the AWS SDK talk to s3rver correctly. */
  readonly clientConfig: S3ClientConfig;
  createBucket(name: string): Promise<void>;
  close(): Promise<void>;
}

export interface EmbeddedS3Options {
  /** Where objects are stored. @default a fresh temporary folder, removed on close */
  readonly directory?: string;
  /** @default 0 (any free port) */
  readonly port?: number;
}

/**
 * The S3 SDK settings s3rver needs. Without the two checksum options the SDK
 * sends streamed bodies with aws-chunked framing, which s3rver stores
 * verbatim: the object would silently be corrupt.
 */
export function embeddedS3ClientConfig(endpoint: string): S3ClientConfig {
  return {
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
}

export async function startEmbeddedS3(options: EmbeddedS3Options = {}): Promise<EmbeddedS3> {
  const ownsDirectory = options.directory === undefined;
  const directory = options.directory ?? (await mkdtemp(join(tmpdir(), 'embedded-s3-')));
  const require = createRequire(import.meta.url);
  const child = spawn(
    process.execPath,
    [
      '--openssl-legacy-provider',
      require.resolve('./s3rver-process.cjs'),
      directory,
      '127.0.0.1',
      String(options.port ?? 0),
    ],
    // Its stdin is a pipe we never write to: when this process ends, even killed, the pipe
    // closes and the server stops (see s3rver-process.cjs), so it never outlives us. Its own
    // process group: a Ctrl-C in the terminal reaches the command, which still needs S3 to
    // clean up, and not the server.
    { stdio: ['pipe', 'pipe', 'pipe'], detached: true },
  );
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  let closing = false;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('exit', (code, signal) => {
    // Not asked to stop: every request from now on is refused; say why, once, where it is seen.
    if (!closing)
      process.stderr.write(
        `embedded S3 (pid ${child.pid}) exited unexpectedly (${signal ?? `code ${code}`}): ${stderr.trim().slice(-2000)}\n`,
      );
  });
  const stop = async () => {
    closing = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.stdin.end();
      await exited;
    }
  };
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout });
      lines.once('line', (line) => {
        try {
          resolve((JSON.parse(line) as { port: number }).port);
        } catch {
          reject(new Error(`embedded S3 did not say its port (said ${JSON.stringify(line.slice(0, 200))})`));
        }
      });
      child.once('exit', (code) =>
        reject(new Error(`embedded S3 exited with code ${code}: ${stderr.trim()}`)),
      );
      child.once('error', reject);
    });
  } catch (error) {
    await stop();
    throw error;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  const clientConfig = embeddedS3ClientConfig(endpoint);
  const admin = new S3Client(clientConfig);
  return {
    endpoint,
    directory,
    pid: child.pid!,
    clientConfig,
    async createBucket(name) {
      try {
        await admin.send(new CreateBucketCommand({ Bucket: name }));
      } catch (error) {
        // A bucket kept from an earlier run: s3rver says BucketAlreadyExists where S3 says
        // BucketAlreadyOwnedByYou. Either way it is ours: the server is this checkout's alone.
        const code = (error as { name?: string }).name;
        if (code !== 'BucketAlreadyOwnedByYou' && code !== 'BucketAlreadyExists') throw error;
      }
    },
    async close() {
      admin.destroy();
      await stop();
      if (ownsDirectory) await rm(directory, { recursive: true, force: true });
    },
  };
}
