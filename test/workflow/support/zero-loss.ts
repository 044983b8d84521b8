import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import { type ExportClaim, exportPartition } from '../../../lambdas/core/layout.js';
import type { Receipt, ReceiptFile } from '../../../lambdas/core/receipt.js';
import type { FailureReceipt } from '../../../lambdas/services/export-lifecycle.js';
import { landingKey } from '../../../lambdas/services/publish-export.js';
import type { Watermark } from '../../../lambdas/services/watermark.js';
import type { FileItem, ManifestSummary } from '../../../lambdas/state.js';
import { EXPORTABLE_TYPES, type ExportableType } from '../../../scripts/sandbox/data/types.js';
import { type MatrixEnvironment, requestsOf, type ScenarioRun, statusUrlOf } from './matrix.js';

/**
 * The zero-loss invariant, checked the same way after every scenario. What
 * counts as "what the server exported" is the sandbox's own truth (its
 * dataset and `fileContent`), never our receipt.
 */
export interface ZeroLossExpectation {
  /**
   * `succeeded`, or the execution's Error name and words its Cause must hold.
   * A `resumable` failure (files that still failed after the retry pass) is
   * the failing file's error and cause, as the failure receipt names them:
   * the execution itself fails in the retry pass's Map.
   */
  readonly outcome:
    | 'succeeded'
    /**
     * Landed under serverFileErrors "accept" although the server's error[] reported failed files:
     * every line the server delivered landed once; each data file short of its manifest count is
     * on the receipt with `missing` = count − delivered and the server's reasons; `_PARTIAL.json`
     * instead of `_SUCCESS.json`; the watermark stays; the event is `Bulk Export Partial`.
     */
    | 'partial'
    | { readonly error: string; readonly cause: string | RegExp; readonly resumable?: boolean };
  /** The selection's types. @default every exportable type */
  readonly types?: readonly ExportableType[];
  /** `_since` of the selection, for a delta export. */
  readonly since?: string;
  /** Invalid lines the quarantine policy set aside, per type (they are not in the data files). */
  readonly quarantined?: Readonly<Partial<Record<ExportableType, number>>>;
  /**
   * What became of the server's job: DELETEd (`deleted`); expired, so the
   * DELETE could only be attempted (`delete-attempted`); never kicked off
   * (`none`). @default 'deleted'
   */
  readonly serverJob?: 'deleted' | 'delete-attempted' | 'none' | 'kept';
  /** Whether a success moves the watermark (not for a window or a narrower scope). @default true */
  readonly watermarkAdvances?: boolean;
}

export interface StoredManifest {
  readonly transactionTime: string;
  readonly files: readonly { kind: string; type: string; url: string; count?: number }[];
}

/** The folder Poll Export Status claimed for the run, from its execution history. */
export function exportRootOf(run: ScenarioRun): string | undefined {
  for (const event of run.result.run.events) {
    // A chunked export's one manifest comes from Merge Chunks.
    if (event.type !== 'StateExited') continue;
    if (event.state?.name !== 'Poll Export Status' && event.state?.name !== 'Merge Chunks') continue;
    const manifest = (event.state.output as { poll?: { manifest?: ManifestSummary } }).poll?.manifest;
    if (manifest) return manifest.exportRoot;
  }
  return undefined;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const linesOf = (bytes: Buffer) =>
  bytes
    .toString('utf8')
    .split('\n')
    .filter((line) => line !== '');
/** Carry objects, part lists and quarantine segments of unfinished transfers. */
const SCRATCH = /\/_[^/]+\.(carry-\d+|parts\.json|segment-\d+)$/;

export async function assertZeroLoss(
  env: MatrixEnvironment,
  run: ScenarioRun,
  expectation: ZeroLossExpectation,
): Promise<void> {
  const { sourceId, result } = run;
  // The export's name (its first execution's): an export that continued in new executions keeps it.
  const executionName = result.run.exportName;
  const label = `${run.scenario.name} (${sourceId}/${executionName})`;
  const workPrefix = `_work/source=${sourceId}/execution=${executionName}/`;
  const manifest = await env.getJson<StoredManifest>(`${workPrefix}manifest.json`);
  const items = (await env.getJson<FileItem[]>(`${workPrefix}files.json`)) ?? [];
  const before = new Set(run.keysBefore);
  const newKeys = (await env.listKeys(`source=${sourceId}/`)).filter((key) => !before.has(key));
  const watermark = await env.getJson<Watermark>(`_state/source=${sourceId}/watermark.json`);
  const failureReceipt = await env.getJson<{ status: string; error: string }>(
    `_failures/source=${sourceId}/${executionName}.json`,
  );
  const statusUrl = statusUrlOf(run);
  const serverJob = statusUrl ? env.sandbox.jobs().find((job) => job.statusUrl === statusUrl) : undefined;

  // Never a scratch object, an open upload or a held lock, whatever happened.
  expect(
    newKeys.filter((key) => SCRATCH.test(key)),
    `${label}: scratch objects left`,
  ).toEqual([]);
  expect(await env.openUploads(`source=${sourceId}/`), `${label}: open multipart uploads`).toEqual([]);
  expect(await env.listKeys(`${workPrefix}in-flight/`), `${label}: download leases left`).toEqual([]);
  const resumable = typeof expectation.outcome === 'object' && expectation.outcome.resumable === true;
  if (resumable) {
    // Kept for a resume: a later run finds its holder dead and takes it over.
    expect(
      await env.getJson<{ executionName: string; state: string }>(`_state/source=${sourceId}/lock.json`),
      `${label}: lock kept resumable`,
    ).toMatchObject({ executionName, state: 'resumable' });
  } else {
    expect(
      await env.getText(`_state/source=${sourceId}/lock.json`),
      `${label}: lock left held`,
    ).toBeUndefined();
  }

  if (expectation.outcome === 'succeeded' || expectation.outcome === 'partial') {
    const partial = expectation.outcome === 'partial';
    const markerName = partial ? '_PARTIAL.json' : '_SUCCESS.json';
    expect(
      { status: result.run.status, error: result.run.error, cause: result.run.cause },
      `${label}: outcome`,
    ).toEqual({ status: 'SUCCEEDED', error: undefined, cause: undefined });
    expect(Array.isArray(manifest?.files), `${label}: stored manifest with a file list`).toBe(true);
    const receipt = result.receipt as Receipt;
    expect({ status: receipt?.status, complete: receipt?.complete }, `${label}: receipt`).toEqual(
      partial ? { status: 'partial', complete: false } : { status: 'succeeded', complete: true },
    );
    // Its own folder: the transactionTime's, or, when another execution holds that, one naming this execution.
    const partition = exportPartition(manifest!.transactionTime);
    const root = exportRootOf(run)!;
    expect(
      [`source=${sourceId}/export=${partition}/`, `source=${sourceId}/export=${partition}_${executionName}/`],
      `${label}: export folder`,
    ).toContain(root);
    expect(
      await env.getJson<ExportClaim>(`${root}_claim.json`),
      `${label}: the folder's claim`,
    ).toMatchObject({
      sourceId,
      executionName,
      transactionTime: manifest!.transactionTime,
    });
    expect(items, `${label}: file list`).toHaveLength(manifest!.files.length);

    // Every data file byte-identical to the server's; the receipt says what S3 holds.
    const expectedKeys = new Set([
      `${root}_claim.json`,
      `${root}_receipt.json`,
      `${root}_receipt.files.ndjson`,
      `${root}${markerName}`,
    ]);
    // The file index is the receipt's list of files; inline `files` (small exports only) must say the same.
    const indexText = (await env.getText(receipt.fileIndex.key)) ?? '';
    expect(receipt.fileIndex.key, `${label}: the file index beside the receipt`).toBe(
      `${root}_receipt.files.ndjson`,
    );
    expect(sha256(Buffer.from(indexText)), `${label}: the file index's sha256`).toBe(
      receipt.fileIndex.sha256,
    );
    const indexed = indexText
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as ReceiptFile);
    expect(indexed, `${label}: one index line per file`).toHaveLength(manifest!.files.length);
    expect(receipt.fileIndex.files, `${label}: the file index's count`).toBe(manifest!.files.length);
    if (receipt.files !== undefined) expect(receipt.files, `${label}: inline files = index`).toEqual(indexed);
    const landedPerType = new Map<string, number>();
    // A chunked export may land a resource once per chunk that carries it (a shared Practitioner).
    const distinctPerType = new Map<string, Set<string>>();
    let quarantinedTotal = 0;
    // What the server's counts promised and its files did not hold (a partial export only).
    const missingPerType = new Map<string, number>();
    let missingFiles = 0;
    for (const [index, file] of manifest!.files.entries()) {
      const item = items[index]!;
      const landed = await env.getBytes(item.key);
      const truth = env.sandbox.fileContent(file.url);
      const served = env.sandbox.fileContent(file.url, { served: true });
      const servedLines = linesOf(served);
      const truthLines = linesOf(truth);
      const invalid = servedLines.filter((line, at) => line !== truthLines[at]);
      const expected =
        invalid.length === 0
          ? truth
          : Buffer.from(
              servedLines
                .filter((line, at) => line === truthLines[at])
                .map((line) => `${line}\n`)
                .join(''),
            );
      expect(
        landed?.equals(expected),
        `${label}: ${item.key} is byte-identical to ${file.kind} file ${index}`,
      ).toBe(true);
      expectedKeys.add(item.key);
      const entry = indexed[index]!;
      expect(
        { key: entry.key, bytes: entry.bytes, sha256: entry.sha256, lines: entry.lines },
        `${label}: receipt entry ${index} matches S3`,
      ).toEqual({
        key: item.key,
        bytes: landed!.length,
        sha256: sha256(landed!),
        lines: linesOf(landed!).length,
      });
      if (invalid.length > 0) {
        expect(entry.quarantineKey, `${label}: quarantine key of file ${index}`).toMatch(
          /\/_quarantine\/type=[^/]+\/part-\d{4}\.quarantine\.ndjson$/,
        );
        const quarantine = await env.getText(entry.quarantineKey!);
        expect(quarantine, `${label}: quarantined lines of file ${index}`).toBe(
          invalid.map((line) => `${line}\n`).join(''),
        );
        expect(entry.invalidLines).toBe(invalid.length);
        expectedKeys.add(entry.quarantineKey!);
        quarantinedTotal += invalid.length;
      }
      const delivered = truthLines.length;
      const missing = file.kind === 'output' && file.count !== undefined ? file.count - delivered : 0;
      if (missing !== 0) {
        expect(partial, `${label}: file ${index} is short of its count in a complete export`).toBe(true);
        expect(
          { missing: entry.missing, reasons: entry.serverErrors?.length ?? 0 },
          `${label}: receipt entry ${index}: count ${file.count} − delivered ${delivered}, with the server's reasons`,
        ).toEqual({ missing, reasons: expect.any(Number) });
        expect(entry.serverErrors!.length, `${label}: reasons of file ${index}`).toBeGreaterThan(0);
        missingPerType.set(file.type, (missingPerType.get(file.type) ?? 0) + missing);
        missingFiles += 1;
      } else if (!partial) {
        expect(entry.missing, `${label}: nothing missing from file ${index}`).toBeUndefined();
      }
      if (file.kind === 'output') {
        // A file organized by patient holds several types, each block after a Parameters header.
        for (const line of linesOf(landed!)) {
          const resource = JSON.parse(line) as { resourceType: string; id: string };
          if (item.organizedBy && resource.resourceType === 'Parameters') continue;
          const type = item.organizedBy ? resource.resourceType : file.type;
          landedPerType.set(type, (landedPerType.get(type) ?? 0) + 1);
          const ids = distinctPerType.get(type) ?? new Set<string>();
          ids.add(resource.id);
          distinctPerType.set(type, ids);
        }
      }
    }
    expect(receipt.invalidLinesQuarantined, `${label}: quarantined in the receipt`).toBe(quarantinedTotal);
    if (partial) {
      const missingTotal = [...missingPerType.values()].reduce((sum, count) => sum + count, 0);
      expect(missingTotal, `${label}: the server left resources out`).toBeGreaterThan(0);
      expect(receipt.serverFileErrors?.missingResources, `${label}: missing in the receipt`).toBe(
        missingTotal,
      );
      expect(receipt.serverFileErrors?.files, `${label}: short files in the receipt`).toBeGreaterThanOrEqual(
        missingFiles,
      );
    }
    expect(
      newKeys.filter((key) => key.startsWith(root)),
      `${label}: nothing else under the export`,
    ).toEqual([...expectedKeys].sort());
    expect(
      newKeys.filter((key) => !key.startsWith(root)),
      `${label}: nothing landed outside the export's folder`,
    ).toEqual([]);

    // Per type, exactly the sandbox's resources of the selection (less what was quarantined).
    const types = expectation.types ?? EXPORTABLE_TYPES;
    const expectedCounts: Record<string, number> = {};
    const landedCounts: Record<string, number> = {};
    const receiptCounts: Record<string, number> = {};
    for (const type of types) {
      expectedCounts[type] =
        env.sandbox.dataset.count({
          type,
          patientIndexes: env.cohort,
          ...(expectation.since ? { since: expectation.since } : {}),
        }) -
        (expectation.quarantined?.[type] ?? 0) -
        (missingPerType.get(type) ?? 0);
      landedCounts[type] = landedPerType.get(type) ?? 0;
      receiptCounts[type] = receipt.byType[type]?.resources ?? 0;
    }
    if (receipt.chunking) {
      // Every resource of the cohort, once or more; each copy beyond the first on the receipt's count.
      const distinctCounts = Object.fromEntries(
        types.map((type) => [type, distinctPerType.get(type)?.size ?? 0]),
      );
      expect(distinctCounts, `${label}: distinct resources per type in S3`).toEqual(expectedCounts);
      expect(receiptCounts, `${label}: resources per type in the receipt`).toEqual(landedCounts);
      const extraCopies = Object.fromEntries(
        types
          .map((type) => [type, landedCounts[type]! - distinctCounts[type]!] as const)
          .filter(([, extra]) => extra > 0),
      );
      const counted = Object.fromEntries(
        Object.entries(receipt.duplicateResources?.byType ?? {}).map(([type, count]) => [
          type,
          count.extraCopies,
        ]),
      );
      expect(counted, `${label}: the receipt's copies beyond the first, per type`).toEqual(extraCopies);
    } else {
      expect(landedCounts, `${label}: resources per type in S3`).toEqual(expectedCounts);
      expect(receiptCounts, `${label}: resources per type in the receipt`).toEqual(expectedCounts);
    }
    expect(Object.keys(receipt.byType).every((type) => (types as readonly string[]).includes(type))).toBe(
      true,
    );

    const marker = await env.getJson<{ receiptKey: string; transactionTime: string }>(`${root}${markerName}`);
    expect(marker, `${label}: completion marker`).toMatchObject({
      receiptKey: `${root}_receipt.json`,
      transactionTime: manifest!.transactionTime,
      complete: !partial,
    });
    // A partial export never moves the watermark: the next since=auto run asks for what it is missing.
    if ((expectation.watermarkAdvances ?? true) && !partial) {
      expect(watermark, `${label}: watermark moved`).toMatchObject({
        transactionTime: manifest!.transactionTime,
        executionName,
      });
    } else {
      expect(watermark, `${label}: watermark unchanged`).toEqual(run.watermarkBefore);
    }
    expect(failureReceipt, `${label}: no failure receipt`).toBeUndefined();
    expect(result.emittedEvents.map((event) => event.detailType)).toEqual([
      partial ? 'Bulk Export Partial' : 'Bulk Export Succeeded',
    ]);
    expect(receipt.serverJobDeleted, `${label}: serverJobDeleted`).toBe(true);
  } else {
    const { error, cause } = expectation.outcome;
    const causePattern =
      typeof cause === 'string' ? new RegExp(cause.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : cause;
    if (resumable) {
      expect(result.run.status, `${label}: outcome`).toBe('FAILED');
      const receipt = failureReceipt as unknown as FailureReceipt;
      expect(receipt, `${label}: a resumable failure receipt`).toMatchObject({
        status: 'failed',
        resumable: true,
        resumableUntil: expect.any(String),
      });
      expect(
        receipt.files?.failed.map((file) => file.error),
        `${label}: the failed files' error`,
      ).toContain(error);
      expect(receipt.cause, `${label}: cause`).toMatch(causePattern);
      expect(result.endedCleanUp, `${label}: the ended-execution clean-up ran`).toMatchObject({
        action: 'ended',
        resumable: true,
      });
    } else {
      expect({ status: result.run.status, error: result.run.error }, `${label}: outcome`).toEqual({
        status: 'FAILED',
        error,
      });
      expect(result.run.cause, `${label}: cause`).toMatch(causePattern);
    }
    // Nothing presented complete; what did land is whole, never a torn object.
    expect(
      newKeys.filter((key) => /\/(_SUCCESS|_PARTIAL|_receipt)\.json$/.test(key)),
      `${label}: no marker or receipt`,
    ).toEqual([]);
    // A data file may have landed only staged (unseen by readers); never at its final key.
    const byKey = new Map(items.map((item) => [landingKey(item), item.index]));
    const root = exportRootOf(run);
    if (root) {
      expect(
        await env.getJson<ExportClaim>(`${root}_claim.json`),
        `${label}: the folder's claim`,
      ).toMatchObject({
        executionName,
      });
    }
    const claim = root ? `${root}_claim.json` : undefined;
    for (const key of newKeys.filter((candidate) => !SCRATCH.test(candidate) && candidate !== claim)) {
      const index = byKey.get(key);
      expect(typeof index, `${label}: ${key} is a file of the manifest`).toBe('number');
      const landed = await env.getBytes(key);
      const truth = env.sandbox.fileContent(manifest!.files[index!]!.url);
      expect(landed?.equals(truth), `${label}: ${key} landed whole`).toBe(true);
    }
    expect(watermark, `${label}: watermark unchanged`).toEqual(run.watermarkBefore);
    if (!resumable) {
      expect(failureReceipt, `${label}: failure receipt`).toMatchObject({ status: 'failed', error });
      // Given up: nothing staged is left for anyone.
      expect(
        newKeys.filter((key) => key.includes('/_staging/')),
        `${label}: staged files of a given-up export`,
      ).toEqual([]);
    }
    expect(result.emittedEvents.map((event) => event.detailType)).toEqual(['Bulk Export Failed']);
  }

  // The server's job: DELETEd (success and failure alike), or at least asked to be; kept for a resume.
  // A chunked export has one job per chunk, on the chunk records; each is held to the same rule.
  const chunkItems = (await env.getJson<{ index: number }[]>(`${workPrefix}chunks/items.json`)) ?? [];
  const chunkUrls: string[] = [];
  for (const item of chunkItems) {
    const record = await env.getJson<{ statusUrl?: string }>(
      `${workPrefix}chunks/${String(item.index).padStart(5, '0')}.json`,
    );
    if (record?.statusUrl) chunkUrls.push(record.statusUrl);
  }
  const job = expectation.serverJob ?? (resumable ? 'kept' : 'deleted');
  if (job === 'none') {
    expect(statusUrl, `${label}: no export was kicked off`).toBeUndefined();
    expect(chunkUrls, `${label}: no chunk was kicked off`).toEqual([]);
  } else if (chunkUrls.length > 0 && job !== 'delete-attempted') {
    expect(chunkUrls, `${label}: a job for every chunk`).toHaveLength(chunkItems.length);
    const states = chunkUrls.map(
      (url) => env.sandbox.jobs().find((candidate) => candidate.statusUrl === url)?.state,
    );
    expect(states, `${label}: chunk jobs`).toEqual(
      chunkUrls.map(() => (job === 'deleted' ? 'deleted' : 'complete')),
    );
  } else {
    expect(statusUrl, `${label}: the status URL`).toMatch(/^https?:\/\/[^/]+\/.*export-status\//);
    if (job === 'deleted') {
      expect(serverJob?.state, `${label}: server job state`).toBe('deleted');
    } else if (job === 'kept') {
      expect(serverJob?.state, `${label}: server job kept for a resume`).toBe('complete');
    } else {
      const path = new URL(statusUrl!).pathname;
      const deletes = (await requestsOf(env, run.clientId)).filter(
        (entry) => entry.method === 'DELETE' && entry.path === path,
      );
      expect(deletes.length, `${label}: DELETE of the expired job attempted`).toBeGreaterThan(0);
    }
  }
}
