import { S3Client } from '@aws-sdk/client-s3';
import { Agent } from 'undici';
import { afterAll, beforeAll } from 'vitest';
import {
  type TransferCheckpoint,
  type TransferFileDeps,
  type TransferFileInput,
  type TransferOutcome,
  transferFile,
} from '../../../../lambdas/services/transfer-file.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../../../scripts/local/embedded-s3.js';

/** What a transferFile test runs against: the embedded S3 with one bucket, a client, a download pool. */
export interface TransferBed {
  readonly s3: EmbeddedS3;
  readonly client: S3Client;
  readonly agent: Agent;
}

/**
 * Starts the bed before the file's tests and stops it after them. Read its
 * fields inside tests (they exist once `beforeAll` has run).
 */
export function useTransferBed(bucket: string, agentOptions: Agent.Options): TransferBed {
  const bed = {} as { s3: EmbeddedS3; client: S3Client; agent: Agent };
  beforeAll(async () => {
    bed.s3 = await startEmbeddedS3();
    await bed.s3.createBucket(bucket);
    bed.client = new S3Client(bed.s3.clientConfig);
    bed.agent = new Agent(agentOptions);
  });
  afterAll(async () => {
    bed.client.destroy();
    await bed.agent.close();
    await bed.s3.close();
  });
  return bed;
}

/** Calls transferFile until it completes, passing each checkpoint through JSON as the state machine would. */
export async function untilComplete(
  first: TransferFileInput,
  dependencies: (invocation: number) => TransferFileDeps,
  maxInvocations = 10,
): Promise<{ outcome: TransferOutcome; checkpoints: TransferCheckpoint[] }> {
  const checkpoints: TransferCheckpoint[] = [];
  let current = first;
  for (let invocation = 0; invocation < maxInvocations; invocation++) {
    const outcome = await transferFile(current, dependencies(invocation));
    if (outcome.status === 'complete') return { outcome, checkpoints };
    const checkpoint = JSON.parse(JSON.stringify(outcome.checkpoint)) as TransferCheckpoint;
    checkpoints.push(checkpoint);
    current = { ...current, checkpoint };
  }
  throw new Error(`did not complete in ${maxInvocations} invocations`);
}
