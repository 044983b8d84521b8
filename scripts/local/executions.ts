/**
 * The local stand-in for Step Functions' execution history, as far as a
 * redrive needs it: one record per local execution, in
 * `.local/executions/<name>.json`, saying how it ended and, when it failed,
 * the state it failed in and that state's input (no resource content: state
 * never carries any; the sealed token in it opens only in the process that
 * sealed it). `npm run export -- --resume <name>` reads it back.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from './command.js';
import type { LocalRunResult, RedrivePoint } from './runner.js';

export interface LocalExecutionRecord {
  readonly executionName: string;
  /** `RUNNING` from the start, so that `npm run cancel` finds the source even after a hard exit. */
  readonly status: LocalRunResult['status'] | 'RUNNING';
  /** The source file, absolute: a resume reads the same settings. */
  readonly sourceFile: string;
  readonly input: Record<string, unknown>;
  /** Where the export wrote: a resume writes there too. */
  readonly target: {
    readonly bucket?: string;
    readonly s3Endpoint?: string;
    readonly awsS3?: boolean;
    readonly prefix?: string;
  };
  readonly error?: string;
  readonly cause?: string;
  readonly redrivePoint?: RedrivePoint;
  readonly endedAt?: string;
}

const NAME = /^[A-Za-z0-9_-]{1,80}$/;

export const executionRecordPath = (localDirectory: string, executionName: string) =>
  join(localDirectory, 'executions', `${executionName}.json`);

export async function saveExecutionRecord(
  localDirectory: string,
  record: LocalExecutionRecord,
): Promise<void> {
  await mkdir(join(localDirectory, 'executions'), { recursive: true });
  await writeFile(
    executionRecordPath(localDirectory, record.executionName),
    `${JSON.stringify(record, null, 2)}\n`,
  );
}

export async function readExecutionRecord(
  localDirectory: string,
  executionName: string,
): Promise<LocalExecutionRecord> {
  if (!NAME.test(executionName)) {
    throw new UsageError(
      `--resume takes the execution name an export printed (letters, digits, - and _), got ${JSON.stringify(executionName.slice(0, 80))}`,
    );
  }
  const path = executionRecordPath(localDirectory, executionName);
  try {
    return JSON.parse(await readFile(path, 'utf8')) as LocalExecutionRecord;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new UsageError(
        `no local execution ${executionName} in .local/executions: --resume takes the name a failed \`npm run export\` printed in this folder`,
      );
    }
    throw new Error(`cannot read ${path}: ${(error as Error).message}`);
  }
}
