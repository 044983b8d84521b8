import type { S3ClientConfig } from '@aws-sdk/client-s3';
import type { Receipt } from '../../lambdas/core/receipt.js';
import type { ProgressEvent } from '../../lambdas/runtime.js';
import { type EventLog, type LocalRunOptions, type LocalRunResult, runExportLocally } from './runner.js';
import {
  createLocalRuntime,
  type LocalRuntime,
  type LocalRuntimeOptions,
  type LocalSource,
} from './runtime.js';

export interface LocalExportOptions {
  readonly sources: readonly LocalSource[];
  readonly input: Record<string, unknown>;
  readonly s3ClientConfig: S3ClientConfig;
  readonly bucket: string;
  readonly prefix?: string;
  readonly executionName?: string;
  readonly logFile?: string;
  readonly onLogLine?: (line: string) => void;
  readonly progress?: (event: ProgressEvent) => void;
  readonly onEvent?: (event: EventLog) => void;
  readonly waitOverrideMs?: number;
  readonly retryOverrideMs?: number;
  readonly invocationTimeoutMs?: number | ((functionName: string) => number);
  readonly killInvocation?: LocalRunOptions['killInvocation'];
  readonly beforeInvocation?: LocalRunOptions['beforeInvocation'];
  readonly fileIdleTimeoutMs?: number;
  readonly transfer?: LocalRuntimeOptions['transfer'];
}

export interface LocalExportResult {
  readonly run: LocalRunResult;
  /** The run receipt, read back from S3, when the export succeeded. */
  readonly receipt?: Receipt;
  readonly emittedEvents: LocalRuntime['emittedEvents'];
}

/** One export, start to finish, with the real ASL and handlers: what `npm run export` and `npm run demo` do. */
export async function runLocalExport(options: LocalExportOptions): Promise<LocalExportResult> {
  const local = createLocalRuntime({
    sources: options.sources,
    s3ClientConfig: options.s3ClientConfig,
    bucket: options.bucket,
    ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
    ...(options.logFile ? { logFile: options.logFile } : {}),
    ...(options.onLogLine ? { onLogLine: options.onLogLine } : {}),
    ...(options.progress ? { progress: options.progress } : {}),
    ...(options.fileIdleTimeoutMs === undefined ? {} : { fileIdleTimeoutMs: options.fileIdleTimeoutMs }),
    ...(options.transfer ? { transfer: options.transfer } : {}),
  });
  try {
    const run = await runExportLocally({
      runtime: local.runtime,
      input: options.input,
      ...(options.executionName ? { executionName: options.executionName } : {}),
      ...(options.onEvent ? { onEvent: options.onEvent } : {}),
      ...(options.waitOverrideMs === undefined ? {} : { waitOverrideMs: options.waitOverrideMs }),
      ...(options.retryOverrideMs === undefined ? {} : { retryOverrideMs: options.retryOverrideMs }),
      ...(options.invocationTimeoutMs === undefined
        ? {}
        : { invocationTimeoutMs: options.invocationTimeoutMs }),
      ...(options.killInvocation ? { killInvocation: options.killInvocation } : {}),
      ...(options.beforeInvocation ? { beforeInvocation: options.beforeInvocation } : {}),
    });
    let receipt: Receipt | undefined;
    const output = run.output as { receiptKey?: string } | undefined;
    if (run.status === 'SUCCEEDED' && output?.receiptKey) {
      receipt = await local.runtime.store.getJson<Receipt>(output.receiptKey);
    }
    return { run, ...(receipt ? { receipt } : {}), emittedEvents: local.emittedEvents };
  } finally {
    await local.close();
  }
}
