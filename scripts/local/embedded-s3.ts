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
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => resolve((JSON.parse(line) as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`embedded S3 exited with code ${code}: ${stderr.trim()}`)));
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const clientConfig = embeddedS3ClientConfig(endpoint);
  const admin = new S3Client(clientConfig);
  return {
    endpoint,
    directory,
    clientConfig,
    async createBucket(name) {
      try {
        await admin.send(new CreateBucketCommand({ Bucket: name }));
      } catch (error) {
        if ((error as { name?: string }).name !== 'BucketAlreadyOwnedByYou') throw error;
      }
    },
    async close() {
      admin.destroy();
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      if (ownsDirectory) await rm(directory, { recursive: true, force: true });
    },
  };
}
