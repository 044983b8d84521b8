import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { Receipt } from '../../../lambdas/core/receipt.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../../scripts/local/embedded-s3.js';
import {
  type LocalExportOptions,
  type LocalExportResult,
  runLocalExport,
} from '../../../scripts/local/local-export.js';
import { ensureLocalKeyPair, type LocalKeyPair } from '../../../scripts/local/local-keys.js';
import {
  type FaultPlan,
  type Sandbox,
  type SandboxOptions,
  startSandbox,
} from '../../../scripts/sandbox/index.js';
import { listAllKeys } from './s3-keys.js';

/**
 * The real parts, wired for workflow tests: the sandbox FHIR server over real
 * HTTP, the embedded S3 server, the real ASL file and handlers. Waits and
 * retry pauses are shortened; nothing else is.
 */
export interface Harness {
  readonly sandbox: Sandbox;
  readonly s3: EmbeddedS3;
  readonly client: S3Client;
  readonly bucket: string;
  readonly key: LocalKeyPair;
  /** Registers a fresh client (with faults) and runs one export for a fresh source id. */
  exportWith(options?: ExportScenario): Promise<ScenarioResult>;
  getText(key: string): Promise<string | undefined>;
  getBytes(key: string): Promise<Buffer | undefined>;
  listKeys(prefix: string): Promise<string[]>;
  close(): Promise<void>;
}

export interface ExportScenario {
  readonly faults?: FaultPlan;
  readonly sourceId?: string;
  readonly input?: Record<string, unknown>;
  /** Source file fields on top of the defaults. */
  readonly source?: Record<string, unknown>;
  /** Reuse a client registered earlier (same clientId across runs). */
  readonly clientId?: string;
  readonly invocationTimeoutMs?: number | ((functionName: string) => number);
  readonly waitOverrideMs?: number;
  /** Transfer tuning, e.g. small parts so a slow file checkpoints with parts uploaded. */
  readonly transfer?: LocalExportOptions['transfer'];
  /** Run the validation stage after the export (issue 17), and its tuning. */
  readonly validate?: boolean;
  readonly validation?: LocalExportOptions['validation'];
  /** Run the warehouse load after the validation, or the export (issue 18). */
  readonly load?: boolean;
}

export interface ScenarioResult extends LocalExportResult {
  readonly sourceId: string;
  readonly clientId: string;
  readonly logLines: readonly string[];
}

let scenarioCounter = 0;

export async function startHarness(options: SandboxOptions = {}): Promise<Harness> {
  const sandbox = await startSandbox({
    patientCount: 60,
    jobDurationMs: 300,
    resourcesPerFile: 200,
    ...options,
  });
  const s3 = await startEmbeddedS3();
  const bucket = 'workflow-tests';
  await s3.createBucket(bucket);
  const client = new S3Client(s3.clientConfig);
  const key = await ensureLocalKeyPair(await mkdtemp(join(tmpdir(), 'workflow-keys-')));

  const getBytes = async (objectKey: string) => {
    try {
      const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: objectKey }));
      return Buffer.from(await response.Body!.transformToByteArray());
    } catch (error) {
      if ((error as { name?: string }).name === 'NoSuchKey') return undefined;
      throw error;
    }
  };

  return {
    sandbox,
    s3,
    client,
    bucket,
    key,
    getBytes,
    async getText(objectKey) {
      return (await getBytes(objectKey))?.toString('utf8');
    },
    listKeys: (prefix) => listAllKeys(client, bucket, prefix),
    async exportWith(scenario = {}) {
      scenarioCounter += 1;
      const sourceId = scenario.sourceId ?? `src-${scenarioCounter}`;
      const clientId =
        scenario.clientId ??
        (
          await sandbox.registerClient({
            jwks: { keys: [key.publicJwk] },
            ...(scenario.faults ? { faults: scenario.faults } : {}),
          })
        ).clientId;
      const logLines: string[] = [];
      const result = await runLocalExport({
        sources: [
          {
            raw: {
              id: sourceId,
              fhirBaseUrl: sandbox.baseUrl,
              clientId,
              privateKeyFile: key.privateKeyFile,
              allowInsecureHttp: true,
              export: { level: 'group', groupId: 'cohort' },
              ...scenario.source,
            },
          },
        ],
        input: { sourceId, since: 'auto', ...scenario.input },
        s3ClientConfig: s3.clientConfig,
        bucket,
        onLogLine: (line) => logLines.push(line),
        waitOverrideMs: scenario.waitOverrideMs ?? 150,
        retryOverrideMs: 20,
        ...(scenario.invocationTimeoutMs === undefined
          ? {}
          : { invocationTimeoutMs: scenario.invocationTimeoutMs }),
        ...(scenario.transfer ? { transfer: scenario.transfer } : {}),
        ...(scenario.validate ? { validate: true } : {}),
        ...(scenario.validation ? { validation: scenario.validation } : {}),
        ...(scenario.load ? { load: true } : {}),
      });
      return { ...result, sourceId, clientId, logLines };
    },
    async close() {
      client.destroy();
      await s3.close();
      await sandbox.close();
    },
  };
}

export interface StoredManifest {
  readonly transactionTime: string;
  readonly files: readonly { kind: string; type: string; url: string; count?: number }[];
}

/** The manifest the run stored in its work area, with the file URLs. */
export async function storedManifest(
  harness: Harness,
  sourceId: string,
  executionName: string,
): Promise<StoredManifest> {
  const text = await harness.getText(`_work/source=${sourceId}/execution=${executionName}/manifest.json`);
  if (!text) throw new Error(`no stored manifest for ${sourceId}/${executionName}`);
  return JSON.parse(text) as StoredManifest;
}

export function receiptOf(result: LocalExportResult): Receipt {
  if (!result.receipt) throw new Error(`export did not succeed: ${result.run.error}: ${result.run.cause}`);
  return result.receipt;
}
