import {
  type MultipartProgress,
  putObjectBytes,
  S3MultipartWriter,
  type S3ObjectTarget,
} from '../adapters/s3-multipart.js';
import { markerRoot } from '../core/layout.js';
import { BLOCK_HEADER_TYPE, type Receipt } from '../core/receipt.js';
import { ConfigurationError, ValidationIncompleteError, ValidationInputError } from '../errors.js';
import type { InvocationContext } from '../middleware.js';
import type { Runtime } from '../runtime.js';
import {
  type CompletionMarker,
  openObject,
  readFileIndex,
  readMarkerJson,
} from '../services/export-markers.js';
import {
  COMPLETION_MARKER_NAME,
  issuesPartKey,
  partialSummariesPrefix,
  partialSummaryKey,
  validatedMarkerKey,
  validationBatchesKey,
  validationCheckpointKey,
  validationPlanKey,
  validationSummaryKey,
  validationWorkPrefix,
} from './layout.js';
import { DEFAULT_VALIDATION_POLICY, judge, type ValidationPolicy } from './policy.js';
import {
  buildValidationSummary,
  emptyPartialSummary,
  issueLines,
  mergePartialSummary,
  type PartialSummary,
  tallyResource,
  type ValidationSummary,
  type ValidationTotals,
} from './report.js';
import type { ResourceValidator } from './types.js';

/**
 * The validation stage (state-machines/validate-export.asl.json): Plan
 * Validation reads a complete export's receipt and file index and writes the
 * batches of data files; Validate Batch streams each file line by line through
 * the US Core validator, checkpointing to S3 when time runs low; Write
 * Validation Report merges the files' partial summaries, writes the summary
 * and then `_VALIDATED.json`, and announces the outcome. State only ever holds
 * keys, counts and offsets.
 */

export const VALIDATION_DEFAULTS = {
  /** A 15-minute Lambda stops taking lines with this much left, to write its checkpoint. */
  safetyMarginMs: 30_000,
  linesPerInvocation: Number.POSITIVE_INFINITY,
  issuePartBytes: 8 * 1024 * 1024,
} as const;

/** Small files share a batch (one child, one invocation); a large one goes alone. */
const FILES_PER_BATCH = 50;
const BATCH_BYTES = 256 * 1024 * 1024;

const ISSUES_CONTENT_TYPE = 'application/x-ndjson';

/** What every task of one validation is given: where the export is, where its scratch space is. */
export interface ValidationTarget {
  readonly bucket: string;
  /** The export folder (`…/source=<id>/export=<…>/`). */
  readonly exportFolder: string;
  readonly workPrefix: string;
}

export interface ValidationFile {
  /** Line of the file in the receipt's file index (0-based): names its partial summary. */
  readonly index: number;
  readonly key: string;
  readonly type: string;
  readonly bytes: number;
}

/** One item of the Validate Files Map. */
export interface ValidationBatch {
  readonly batch: number;
  readonly files: readonly ValidationFile[];
}

/** `_work/validation/…/plan.json`. */
export interface ValidationPlan {
  readonly sourceId: string;
  readonly transactionTime: string;
  readonly markerKey: string;
  readonly receiptKey: string;
  readonly policy: ValidationPolicy;
  readonly files: number;
  readonly batches: number;
}

export interface PlanValidationEvent {
  /** The bucket and key of the `_SUCCESS.json` the EventBridge event names. */
  readonly bucket: string;
  readonly key: string;
}

export type PlanValidationResult =
  | {
      readonly enabled: true;
      readonly validation: ValidationTarget;
      readonly batchesKey: string;
      readonly files: number;
      readonly batches: number;
    }
  | { readonly enabled: false; readonly sourceId: string; readonly reason: string };

export async function planValidation(
  runtime: Runtime,
  event: PlanValidationEvent,
): Promise<PlanValidationResult> {
  const { bucket } = event;
  let key = event.key;
  if (typeof bucket !== 'string' || typeof key !== 'string') {
    throw new ValidationInputError(
      'the validation input must name the bucket and key of an export’s _SUCCESS.json',
    );
  }
  if (bucket !== runtime.store.bucket) {
    throw new ValidationInputError(
      `the marker is in bucket ${bucket}; this pipeline validates exports in ${runtime.store.bucket} only`,
    );
  }
  if (!key.endsWith(`/${COMPLETION_MARKER_NAME}`)) {
    throw new ValidationInputError(
      `${key} is not an export's completion marker: expected a key ending in /${COMPLETION_MARKER_NAME} (a partial export's _PARTIAL.json is not validated)`,
    );
  }
  const found = await readMarkerJson<CompletionMarker>(runtime, key);
  const marker = found?.value;
  if (found) key = found.key;
  const exportFolder = markerRoot(key);
  const workPrefix = validationWorkPrefix(runtime.prefix, exportFolder);
  if (!marker) {
    throw new ValidationInputError(
      `no completion marker at s3://${bucket}/${key}: the export did not finish there`,
    );
  }
  if (typeof marker.receiptKey !== 'string' || typeof marker.sourceId !== 'string') {
    throw new ValidationInputError(
      `s3://${bucket}/${key} is not a completion marker: it names no receipt or source`,
    );
  }
  const receipt = await runtime.store.getJson<Receipt>(marker.receiptKey);
  if (!receipt?.fileIndex) {
    throw new ValidationInputError(
      `the marker's receipt ${marker.receiptKey} is missing or has no file index (receiptVersion 2 expected)`,
    );
  }
  const policy = await validationPolicy(runtime, marker.sourceId);
  if (!policy.enabled) {
    return { enabled: false, sourceId: marker.sourceId, reason: "the source's validation.enabled is false" };
  }

  const files: ValidationFile[] = [];
  let index = 0;
  for await (const entry of readFileIndex(
    runtime,
    receipt.fileIndex.key,
    (message) => new ValidationInputError(message),
  )) {
    if (entry.kind === 'output' && entry.lines > 0) {
      files.push({ index, key: entry.key, type: entry.type, bytes: entry.bytes });
    }
    index += 1;
  }
  const batches = batchFiles(files);
  const target: ValidationTarget = { bucket, exportFolder, workPrefix };
  const plan: ValidationPlan = {
    sourceId: marker.sourceId,
    transactionTime: marker.transactionTime,
    markerKey: key,
    receiptKey: marker.receiptKey,
    policy,
    files: files.length,
    batches: batches.length,
  };
  await runtime.store.putJson(validationPlanKey(workPrefix), plan);
  await runtime.store.putJson(validationBatchesKey(workPrefix), batches);
  runtime.progress?.({ kind: 'phase', phase: 'validating', detail: `${files.length} file(s)` });
  return {
    enabled: true,
    validation: target,
    batchesKey: validationBatchesKey(workPrefix),
    files: files.length,
    batches: batches.length,
  };
}

async function validationPolicy(runtime: Runtime, sourceId: string): Promise<ValidationPolicy> {
  try {
    const settings = await runtime.sources.get(sourceId);
    return { ...DEFAULT_VALIDATION_POLICY, ...settings.validation };
  } catch (error) {
    if (!(error instanceof ConfigurationError)) throw error;
    // An export whose source was since removed is still worth a report: the defaults say how.
    runtime.logger.warn('the source is not registered: validating with the default policy', { sourceId });
    return DEFAULT_VALIDATION_POLICY;
  }
}

/** In file-index order: consecutive small files of a type together, a file of BATCH_BYTES or more alone. */
export function batchFiles(files: readonly ValidationFile[]): ValidationBatch[] {
  const batches: ValidationBatch[] = [];
  let current: ValidationFile[] = [];
  let bytes = 0;
  const close = () => {
    if (current.length > 0) batches.push({ batch: batches.length, files: current });
    current = [];
    bytes = 0;
  };
  for (const file of files) {
    const fits =
      current.length < FILES_PER_BATCH && bytes + file.bytes <= BATCH_BYTES && current[0]?.type === file.type;
    if (!fits) close();
    current.push(file);
    bytes += file.bytes;
  }
  close();
  return batches;
}

// ---------------------------------------------------------------------------------------------
// Validate Batch

export interface BatchProgress {
  readonly status: 'pending' | 'checkpointed' | 'complete';
  readonly checkpointKey: string | null;
  readonly invocations: number;
}

export interface ValidateBatchEvent {
  readonly validation: ValidationTarget;
  readonly batch: ValidationBatch;
  readonly progress: BatchProgress;
}

/** Where a batch stood: `_work/validation/…/checkpoints/<batch>.<invocation>.json`. */
interface ValidationCheckpoint {
  readonly batch: number;
  readonly position: number;
  readonly fileIndex: number;
  /** Bytes of the file consumed through the last complete line: where the next Range starts. */
  readonly byteOffset: number;
  readonly lines: number;
  readonly summary: PartialSummary;
  readonly issues: IssueWriterState;
}

/** One data file's counts, once all of it is validated. */
export interface FilePartialSummary extends PartialSummary {
  readonly ruleSet: string;
  readonly fileIndex: number;
  readonly dataKey: string;
  readonly lines: number;
  /** Lines written to the file's issues part (absent when none). */
  readonly issueLines: number;
  readonly issuesKey?: string;
}

export async function validateBatch(
  runtime: Runtime,
  validator: ResourceValidator,
  event: ValidateBatchEvent,
  context: InvocationContext,
): Promise<BatchProgress> {
  const { validation, batch, progress } = event;
  const settings = { ...VALIDATION_DEFAULTS, ...runtime.validation };
  const invocation = progress.invocations + 1;
  let checkpoint: ValidationCheckpoint | undefined;
  if (progress.checkpointKey) {
    checkpoint = await runtime.store.getJson<ValidationCheckpoint>(progress.checkpointKey);
    if (!checkpoint || checkpoint.batch !== batch.batch) {
      throw new ValidationIncompleteError(
        `the checkpoint ${progress.checkpointKey} of validation batch ${batch.batch} is missing or not this batch's`,
      );
    }
  }
  let linesThisInvocation = 0;
  const lowOnTime = () =>
    linesThisInvocation >= settings.linesPerInvocation ||
    context.getRemainingTimeInMillis() < settings.safetyMarginMs;

  for (let position = checkpoint?.position ?? 0; position < batch.files.length; position++) {
    const file = batch.files[position]!;
    const resuming = checkpoint?.fileIndex === file.index ? checkpoint : undefined;
    const partialKey = partialSummaryKey(validation.workPrefix, file.index);
    // A retried invocation (or a re-run) skips files it finished: their partial is written last.
    if (!resuming) {
      const done = await runtime.store.getJson<FilePartialSummary>(partialKey);
      if (done?.ruleSet === validator.ruleSet && done.dataKey === file.key) continue;
    }
    const issuesKey = issuesPartKey(validation.exportFolder, file.key);
    const issues = new IssuePartWriter(
      runtime,
      {
        bucket: validation.bucket,
        key: issuesKey,
        ...(runtime.sseKmsKeyId ? { sseKmsKeyId: runtime.sseKmsKeyId } : {}),
      },
      settings.issuePartBytes,
      resuming?.issues,
    );
    const summary = resuming?.summary ?? emptyPartialSummary();
    let byteOffset = resuming?.byteOffset ?? 0;
    let lines = resuming?.lines ?? 0;
    let stopped = false;

    const body = byteOffset < file.bytes ? await openObject(runtime, file.key, byteOffset) : undefined;
    if (byteOffset < file.bytes && !body) {
      throw new ValidationIncompleteError(`the data file ${file.key} the receipt lists is missing`);
    }
    if (body) {
      // A line's pieces until its newline comes: joined once, so a line of many chunks (an inline
      // attachment can be tens of MB) costs one copy, not one per chunk.
      let pieces: Buffer[] = [];
      outer: for await (const raw of body as AsyncIterable<Uint8Array>) {
        const chunk = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
        let start = 0;
        for (let newline = chunk.indexOf(10, start); newline >= 0; newline = chunk.indexOf(10, start)) {
          const tail = chunk.subarray(start, newline);
          const line = pieces.length > 0 ? Buffer.concat([...pieces, tail]) : tail;
          pieces = [];
          start = newline + 1;
          lines += 1;
          const found = validateLine(validator, summary, line, file, lines);
          // Most lines have nothing to write: no promise per line on the hot path.
          if (found.length > 0) await issues.add(found);
          byteOffset += line.length + 1;
          linesThisInvocation += 1;
          if (lowOnTime()) {
            stopped = true;
            body.destroy();
            break outer;
          }
        }
        if (start < chunk.length) pieces.push(chunk.subarray(start));
      }
      // A last line without its newline.
      if (!stopped && pieces.length > 0) {
        const last = Buffer.concat(pieces);
        lines += 1;
        const found = validateLine(validator, summary, last, file, lines);
        if (found.length > 0) await issues.add(found);
        byteOffset += last.length;
      }
    }

    if (stopped && (byteOffset < file.bytes || position + 1 < batch.files.length)) {
      const key = validationCheckpointKey(validation.workPrefix, batch.batch, invocation);
      const atEnd = byteOffset >= file.bytes;
      if (atEnd) {
        // The file is done: finish it and start the next one in the next invocation.
        await finishFile(runtime, validator, issues, summary, partialKey, file, lines);
        const next = batch.files[position + 1]!;
        await runtime.store.putJson(key, {
          batch: batch.batch,
          position: position + 1,
          fileIndex: next.index,
          byteOffset: 0,
          lines: 0,
          summary: emptyPartialSummary(),
          issues: { pending: '' },
        } satisfies ValidationCheckpoint);
      } else {
        await runtime.store.putJson(key, {
          batch: batch.batch,
          position,
          fileIndex: file.index,
          byteOffset,
          lines,
          summary,
          issues: await issues.checkpoint(),
        } satisfies ValidationCheckpoint);
      }
      return { status: 'checkpointed', checkpointKey: key, invocations: invocation };
    }
    await finishFile(runtime, validator, issues, summary, partialKey, file, lines);
  }
  return { status: 'complete', checkpointKey: null, invocations: invocation };
}

/** Tallies one line's resource and returns its issue lines (serialized) for the issues part. */
function validateLine(
  validator: ResourceValidator,
  summary: PartialSummary,
  line: Buffer,
  file: ValidationFile,
  lineNumber: number,
): string[] {
  const text = line.toString('utf8').trim();
  if (text === '') return [];
  let resource: unknown;
  try {
    resource = JSON.parse(text);
  } catch {
    // The downloader lands only lines it parsed; never quote the line: it is PHI.
    throw new ValidationIncompleteError(`line ${lineNumber} of ${file.key} is not JSON`);
  }
  // A file organized by patient heads each block with a Parameters header: not exported data.
  if (
    (resource as { resourceType?: unknown }).resourceType === BLOCK_HEADER_TYPE &&
    file.type !== BLOCK_HEADER_TYPE
  ) {
    return [];
  }
  const result = validator.validate(resource);
  tallyResource(summary, result);
  return issueLines(result).map((issueLine) => JSON.stringify(issueLine));
}

async function finishFile(
  runtime: Runtime,
  validator: ResourceValidator,
  issues: IssuePartWriter,
  summary: PartialSummary,
  partialKey: string,
  file: ValidationFile,
  lines: number,
): Promise<void> {
  const written = await issues.close();
  const partial: FilePartialSummary = {
    ruleSet: validator.ruleSet,
    fileIndex: file.index,
    dataKey: file.key,
    lines,
    files: 1,
    byType: summary.byType,
    issueLines: written,
    ...(written > 0 ? { issuesKey: issues.key } : {}),
  };
  await runtime.store.putJson(partialKey, partial);
}

interface IssueWriterState {
  readonly upload?: MultipartProgress;
  /** Issue lines not yet in a part (less than one part's bytes). */
  readonly pending: string;
  readonly lines?: number;
}

/**
 * A file's issues part: lines gather into parts of `partBytes` that go out as
 * a multipart upload, so a file of a million non-conformant resources costs one
 * part of memory. At a checkpoint the upload's parts and the lines not yet in
 * a part go into the checkpoint object; the next invocation goes on with them.
 * A file whose issues fit in one part is one PUT; a file without any has none.
 */
class IssuePartWriter {
  readonly #runtime: Runtime;
  readonly #target: S3ObjectTarget;
  readonly #partBytes: number;
  #writer: S3MultipartWriter | undefined;
  #pending: string;
  #lines: number;

  constructor(runtime: Runtime, target: S3ObjectTarget, partBytes: number, state?: IssueWriterState) {
    this.#runtime = runtime;
    this.#target = target;
    this.#partBytes = partBytes;
    this.#pending = state?.pending ?? '';
    this.#lines = state?.lines ?? 0;
    if (state?.upload) {
      this.#writer = S3MultipartWriter.resume(runtime.s3, target, state.upload, {
        contentType: ISSUES_CONTENT_TYPE,
      });
    }
  }

  get key(): string {
    return this.#target.key;
  }

  async add(lines: readonly string[]): Promise<void> {
    for (const line of lines) {
      this.#pending += `${line}\n`;
      this.#lines += 1;
    }
    if (Buffer.byteLength(this.#pending) >= this.#partBytes) await this.#uploadPending();
  }

  async #uploadPending(): Promise<void> {
    const body = Buffer.from(this.#pending);
    this.#pending = '';
    this.#writer ??= await S3MultipartWriter.create(
      this.#runtime.s3,
      this.#target,
      {},
      { concurrency: 1, contentType: ISSUES_CONTENT_TYPE },
    );
    await this.#writer.uploadPart(body);
  }

  async checkpoint(): Promise<IssueWriterState> {
    const upload = this.#writer ? await this.#writer.flush() : undefined;
    return { ...(upload ? { upload } : {}), pending: this.#pending, lines: this.#lines };
  }

  /** Writes what is left; returns how many lines the part has. */
  async close(): Promise<number> {
    if (this.#writer === undefined) {
      if (this.#lines > 0) {
        await putObjectBytes(this.#runtime.s3, this.#target, Buffer.from(this.#pending), {
          contentType: ISSUES_CONTENT_TYPE,
        });
      }
    } else {
      if (this.#pending.length > 0) await this.#uploadPending();
      await this.#writer.complete();
    }
    this.#pending = '';
    return this.#lines;
  }
}

// ---------------------------------------------------------------------------------------------
// Write Validation Report

export interface WriteValidationReportEvent {
  readonly validation: ValidationTarget;
}

/** `_VALIDATED.json`: written last, only for a validation that finished. */
export interface ValidatedMarker {
  readonly sourceId: string;
  readonly transactionTime: string;
  readonly exportFolder: string;
  readonly completionMarkerKey: string;
  readonly summaryKey: string;
  readonly ruleSet: string;
  readonly passed: boolean;
  readonly mode: ValidationPolicy['mode'];
  readonly reason?: string;
  readonly conformantPercent: number;
  /** gate only: the threshold applied. */
  readonly minConformantPercent?: number;
  readonly totals: ValidationTotals;
}

export interface WriteValidationReportResult {
  readonly passed: boolean;
  readonly mode: ValidationPolicy['mode'];
  readonly reason?: string;
  readonly validatedMarkerKey: string;
  readonly summaryKey: string;
  readonly totals: ValidationTotals;
}

export async function writeValidationReport(
  runtime: Runtime,
  validator: ResourceValidator,
  event: WriteValidationReportEvent,
): Promise<WriteValidationReportResult> {
  const { exportFolder, workPrefix, bucket } = event.validation;
  const plan = await runtime.store.getJson<ValidationPlan>(validationPlanKey(workPrefix));
  if (!plan) {
    // A retry of an invocation that had finished (and removed the work objects) before it could answer.
    const done = await runtime.store.getJson<ValidatedMarker>(validatedMarkerKey(exportFolder));
    if (done) {
      return {
        passed: done.passed,
        mode: done.mode,
        ...(done.reason ? { reason: done.reason } : {}),
        validatedMarkerKey: validatedMarkerKey(exportFolder),
        summaryKey: done.summaryKey,
        totals: done.totals,
      };
    }
    throw new ValidationIncompleteError(`the validation plan of ${exportFolder} is missing`);
  }
  const receipt = await runtime.store.getJson<Receipt>(plan.receiptKey);
  if (!receipt) throw new ValidationIncompleteError(`the receipt ${plan.receiptKey} is gone`);

  // One partial at a time: memory grows with types, profiles and rules, never with files.
  const merged = emptyPartialSummary();
  const partialKeys = await runtime.store.listKeys(partialSummariesPrefix(workPrefix));
  for (const key of partialKeys) {
    const partial = await runtime.store.getJson<FilePartialSummary>(key);
    if (!partial || partial.ruleSet !== validator.ruleSet) {
      throw new ValidationIncompleteError(
        `the partial summary ${key} is missing or was made with another rule set than ${validator.ruleSet}`,
      );
    }
    mergePartialSummary(merged, partial);
  }
  if (merged.files !== plan.files) {
    throw new ValidationIncompleteError(
      `${merged.files} of the ${plan.files} data files of ${exportFolder} were validated; no report is written for an unfinished validation`,
    );
  }
  for (const [type, totals] of Object.entries(receipt.byType)) {
    const checked = merged.byType[type]?.checked ?? 0;
    if (checked !== totals.resources) {
      throw new ValidationIncompleteError(
        `${checked} ${type} resources were validated, the receipt lists ${totals.resources}`,
      );
    }
  }

  const summary: ValidationSummary = buildValidationSummary(merged, validator, {
    sourceId: plan.sourceId,
    transactionTime: plan.transactionTime,
    exportFolder,
    receiptKey: plan.receiptKey,
  });
  const summaryKey = validationSummaryKey(exportFolder);
  await runtime.store.putJson(summaryKey, summary);
  const verdict = judge(plan.policy, summary.totals);
  const markerKey = validatedMarkerKey(exportFolder);
  const marker: ValidatedMarker = {
    sourceId: plan.sourceId,
    transactionTime: plan.transactionTime,
    exportFolder,
    completionMarkerKey: plan.markerKey,
    summaryKey,
    ruleSet: validator.ruleSet,
    passed: verdict.passed,
    mode: verdict.mode,
    ...(verdict.reason ? { reason: verdict.reason } : {}),
    conformantPercent: verdict.conformantPercent,
    ...(plan.policy.mode === 'gate' ? { minConformantPercent: plan.policy.minConformantPercent } : {}),
    totals: summary.totals,
  };
  await runtime.store.putJson(markerKey, marker);
  await runtime.events.emit('Bulk Export Validated', {
    sourceId: plan.sourceId,
    transactionTime: plan.transactionTime,
    bucket,
    exportFolder,
    validatedMarkerKey: markerKey,
    summaryKey,
    ruleSet: validator.ruleSet,
    passed: verdict.passed,
    mode: verdict.mode,
    ...(verdict.reason ? { reason: verdict.reason } : {}),
    conformantPercent: verdict.conformantPercent,
    totals: summary.totals,
  });
  for (const key of await runtime.store.listKeys(workPrefix)) await runtime.store.delete(key);
  runtime.progress?.({
    kind: 'phase',
    phase: 'validated',
    detail: `${verdict.conformantPercent}% conformant${verdict.passed ? '' : ': not passed'}`,
  });
  return {
    passed: verdict.passed,
    mode: verdict.mode,
    ...(verdict.reason ? { reason: verdict.reason } : {}),
    validatedMarkerKey: markerKey,
    summaryKey,
    totals: summary.totals,
  };
}
