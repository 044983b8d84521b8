import { createHash } from 'node:crypto';
import { putObjectBytes } from '../../lambdas/adapters/s3-multipart.js';
import { mapInOrder } from '../../lambdas/core/concurrency.js';
import {
  type ExportLocation,
  exportRoot,
  fileKey,
  resultKey,
  workPrefix,
} from '../../lambdas/core/layout.js';
import type { Runtime } from '../../lambdas/runtime.js';
import { landingKey } from '../../lambdas/services/publish-export.js';
import type { ExportContext, FileItem, FileResult, ManifestSummary } from '../../lambdas/state.js';

/**
 * An export whose every file has landed, as Download File leaves it (a staged
 * object with its sha256 metadata and a result per file), without a server or
 * a download: what Verify Files, Publish Files and Finalize Export start from.
 * The huge-manifest bench and the finalization tests seed it.
 */
export interface LandedExport {
  readonly context: ExportContext;
  readonly manifest: ManifestSummary;
  readonly items: readonly FileItem[];
}

const TYPES = ['Patient', 'Observation', 'Encounter'] as const;

export function landedExportContext(
  runtime: Runtime,
  sourceId: string,
  executionName: string,
): ExportContext {
  const startedAt = runtime.now().toISOString();
  return {
    sourceId,
    executionName,
    bucket: runtime.store.bucket,
    workPrefix: workPrefix(runtime.prefix, sourceId, executionName),
    request: { types: [...TYPES], level: 'system' } as unknown as ExportContext['request'],
    sinceFrom: 'none',
    advancesWatermark: false,
    startedAt,
    deadline: new Date(Date.parse(startedAt) + 3600_000).toISOString(),
    maxConcurrency: 4,
  };
}

/** The file list: output files of three types in turn, every 50th an error file. */
/** The summary Poll Export Status would have handed on for a landed export of `files` files. */
export function landedManifestSummary(
  context: ExportContext,
  transactionTime: string,
  files: number,
  root: string,
): ManifestSummary {
  return {
    transactionTime,
    requiresAccessToken: false,
    filesKey: `${context.workPrefix}files.json`,
    urlsKey: `${context.workPrefix}urls.json`,
    manifestKey: `${context.workPrefix}manifest.json`,
    // Finalize reads no download batches; the key names where Poll Export Status would put them.
    batchesKey: `${context.workPrefix}file-batches.json`,
    batchCount: 0,
    fileCount: files,
    exportRoot: root,
  };
}

export function landedFileItems(location: ExportLocation, files: number): FileItem[] {
  const ordinals = new Map<string, number>();
  return Array.from({ length: files }, (_, index) => {
    const error = index % 50 === 49;
    const type = error ? 'OperationOutcome' : TYPES[index % TYPES.length]!;
    const ordinal = (ordinals.get(type) ?? 0) + 1;
    ordinals.set(type, ordinal);
    const kind = error ? 'error' : 'output';
    return { index, kind, type, resourceType: type, key: fileKey(location, kind, type, ordinal), count: 1 };
  });
}

/** The body of file `index`: one tiny resource (an Oracle Health split file at its smallest). */
export const landedBody = (item: FileItem) =>
  Buffer.from(`{"resourceType":"${item.resourceType}","id":"r${item.index}"}\n`);

export async function seedLandedExport(
  runtime: Runtime,
  {
    sourceId = 'huge',
    executionName = 'huge-run',
    files,
    concurrency = 32,
    onProgress,
  }: {
    sourceId?: string;
    executionName?: string;
    files: number;
    concurrency?: number;
    onProgress?: (done: number) => void;
  },
): Promise<LandedExport> {
  const context = landedExportContext(runtime, sourceId, executionName);
  const transactionTime = '2026-12-01T00:00:00.000Z';
  const location: ExportLocation = { prefix: runtime.prefix, sourceId, transactionTime };
  const root = exportRoot(location);
  const items = landedFileItems(location, files);
  const manifest = landedManifestSummary(context, transactionTime, files, root);
  await runtime.store.putJson(manifest.filesKey, items);
  await runtime.store.putJson(manifest.manifestKey, { transactionTime });
  let done = 0;
  await mapInOrder(items, concurrency, async (item) => {
    const body = landedBody(item);
    const sha256 = createHash('sha256').update(body).digest('hex');
    const landed = landingKey(item);
    await putObjectBytes(runtime.s3, { bucket: context.bucket, key: landed }, body, {
      metadata: { sha256, lines: '1' },
    });
    const result: FileResult = {
      index: item.index,
      kind: item.kind,
      type: item.type,
      key: landed,
      bytes: body.length,
      lines: 1,
      blankLines: 0,
      invalidLines: 0,
      sha256,
      invocations: 1,
    };
    await runtime.store.putJson(resultKey(context.workPrefix, item.index), result);
    done += 1;
    if (done % 1000 === 0) onProgress?.(done);
  });
  return { context, manifest, items };
}
