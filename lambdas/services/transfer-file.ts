import type { S3Client } from '@aws-sdk/client-s3';
import type { Dispatcher } from 'undici';
import {
  DEFAULT_MAX_GZIP_EXPANSION,
  describeUrl,
  type FileResponse,
  isPossiblyTransientNotFound,
  openFile,
} from '../adapters/file-http.js';
import { S3_MIN_PART_BYTES } from '../adapters/s3-multipart.js';
import type { FileKind } from '../core/manifest.js';
import {
  FRAMER_POSITION_ZERO,
  type FramedLines,
  type FramerPosition,
  NdjsonFramer,
} from '../core/ndjson/framer.js';
import { DEFAULT_MAX_LINE_BYTES } from '../core/ndjson/line-limit.js';
import type { TokenAudience } from '../core/origins.js';
import {
  AccessTokenRejectedError,
  ConfigurationError,
  FileDownloadError,
  FileLinkExpiredError,
  PipelineError,
  TransientServerError,
  VerificationError,
} from '../errors.js';
import type { Logger } from '../logger.js';
import { parseCheckpoint, type TransferCheckpoint } from './transfer/checkpoint.js';
import { ObjectSink, type ObjectSinkOptions } from './transfer/object-sink.js';
import { QuarantineSink } from './transfer/quarantine-sink.js';
import { ResourceIdSink } from './transfer/resource-ids.js';

export type { TransferCheckpoint } from './transfer/checkpoint.js';

/**
 * One manifest file in, one verified S3 object out: stream the file, check
 * and count every line, hash what lands, upload it in parts, and stop at a
 * line boundary with a checkpoint when the invocation runs short of time.
 *
 * A retry never drops or doubles a line: the download only ever continues
 * from the byte after the last whole line handed to the upload, and only with
 * `Range` + `If-Range` against the same strong ETag; anything else (no range
 * support, a 200 to a range request, a changed file) starts the object over.
 */

export interface TransferFileInput {
  readonly url: string;
  /** The manifest entry's `type`. */
  readonly resourceType: string;
  /**
   * A file organized by patient (`organizeOutputBy`): its lines may be of any of these types (the
   * request's `_type`; any type when empty) and are counted per type. Replaces `resourceType`.
   */
  readonly resourceTypes?: readonly string[];
  /** Which manifest array the file came from: `error` files hold OperationOutcomes, `deleted` files Bundles. */
  readonly kind: FileKind;
  /** The manifest's `count`, when the server gave one. */
  readonly expectedCount?: number;
  readonly requiresAccessToken: boolean;
  readonly accessToken?: string;
  /** Where the token may go: required with requiresAccessToken (see FileRequest). */
  readonly tokenAudience?: TokenAudience;
  /** Plain http to loopback hosts; local mode only. */
  readonly allowInsecureHttp?: boolean;
  readonly bucket: string;
  readonly key: string;
  /** Where invalid lines go under the `quarantine` policy (required with it). */
  readonly quarantineKey?: string;
  /** @default 'fail' */
  readonly invalidLinePolicy?: 'fail' | 'quarantine';
  /** @default 64 MiB */
  readonly maxLineBytes?: number;
  /** @default 8 MiB */
  readonly partSizeBytes?: number;
  readonly sseKmsKeyId?: string;
  /** From the previous invocation's `checkpoint` outcome. */
  readonly checkpoint?: TransferCheckpoint;
  /**
   * Collect a hash of each landed line's top-level `id` (see ResourceIdSink),
   * for counting resources that land more than once (chunked exports). Lines
   * without a string id contribute none. The checkpoints of one transfer must
   * all be made with the same setting.
   */
  readonly collectResourceIds?: boolean;
}

export interface TransferSettings {
  /** Checkpoint when less than this is left of the invocation. @default 60 s */
  readonly safetyMarginMs: number;
  /** Attempts in a row without progress, per file per invocation, the first included. @default 5 */
  readonly maxAttempts: number;
  /** First backoff ceiling; full jitter below it, doubling per attempt. @default 1 s */
  readonly baseBackoffMs: number;
  /** @default 30 s */
  readonly maxBackoffMs: number;
  /** Times a file may start over from byte 0, over all invocations. @default 10 */
  readonly maxRestarts: number;
  /** Parts in flight. @default 3 */
  readonly partConcurrency: number;
  /** S3's minimum part size; lower it only against a local S3 that does not enforce it (tests). @default 5 MiB */
  readonly minPartSizeBytes: number;
  /** Cap on quarantined bytes per file. @default 64 MiB */
  readonly maxQuarantineBytes: number;
  /** Inline the part list in the checkpoint up to this size; beyond, keep it in S3. @default 6 KiB */
  readonly maxInlinePartsJsonBytes: number;
  /** Decoded bytes per compressed byte a gzip body may reach (file-http.ts). @default 100 */
  readonly maxGzipExpansion: number;
}

export const DEFAULT_TRANSFER_SETTINGS: TransferSettings = Object.freeze({
  safetyMarginMs: 60_000,
  maxAttempts: 5,
  baseBackoffMs: 1_000,
  maxBackoffMs: 30_000,
  maxRestarts: 10,
  partConcurrency: 3,
  minPartSizeBytes: S3_MIN_PART_BYTES,
  maxQuarantineBytes: 64 * 1024 * 1024,
  maxInlinePartsJsonBytes: 6 * 1024,
  maxGzipExpansion: DEFAULT_MAX_GZIP_EXPANSION,
});

/** How long a fresh transfer feeds both hashes before predicting whether the file ends in this invocation. */
const HASH_DECISION_AFTER_MS = 200;
/** node:crypto only when the file should end within this share of the time left: a wrong guess costs a restart. */
const HASH_NATIVE_MAX_SHARE_OF_TIME_LEFT = 0.5;

export const DEFAULT_PART_SIZE_BYTES = 8 * 1024 * 1024;

export interface TransferFileDeps {
  readonly s3: S3Client;
  /** The keep-alive pool for file downloads. @default the container's shared pool */
  readonly http?: Dispatcher;
  now(): Date;
  /** Milliseconds left in this invocation (Lambda's `context.getRemainingTimeInMillis`). */
  remainingTimeMs(): number;
  sleep(ms: number): Promise<void>;
  /** In [0, 1), for backoff jitter. */
  random(): number;
  readonly logger: Logger;
  readonly settings?: Partial<TransferSettings>;
  /**
   * A fresh URL for the file when its link has expired (410, or a 404 that
   * outlasts the retries): the IG lets a client read the manifest again. The
   * transfer then goes on from where it stands. Without it, an expired link
   * fails the transfer with FileLinkExpiredError.
   */
  refreshUrl?(): Promise<string>;
  /**
   * Called just before the object lands (the upload is completed): throws
   * when the export is being stopped, so that nothing lands after its
   * failure is recorded. The upload is then aborted.
   */
  beforeLanding?(): Promise<void>;
}

export type TransferOutcome =
  | {
      readonly status: 'complete';
      readonly bucket: string;
      readonly key: string;
      readonly bytes: number;
      readonly lines: number;
      readonly blankLines: number;
      readonly invalidLines: number;
      readonly sha256: string;
      /** With `resourceTypes`: valid lines per resourceType. */
      readonly resourceTypeCounts?: Readonly<Record<string, number>>;
      readonly quarantineKey?: string;
      readonly serverEtag?: string;
      /** Failed attempts this invocation retried (absent: none); for the FileRetries metric. */
      readonly retries?: number;
      /**
       * With `collectResourceIds`: 8 bytes per landed line that has a string id, in file
       * order, each the first 8 bytes of the SHA-256 of the id's UTF-8 bytes.
       */
      readonly resourceIds?: Buffer;
    }
  | {
      readonly status: 'checkpoint';
      readonly reason: 'time' | 'access-token-rejected';
      readonly checkpoint: TransferCheckpoint;
    };

export async function transferFile(
  input: TransferFileInput,
  deps: TransferFileDeps,
): Promise<TransferOutcome> {
  const settings = resolveSettings(deps.settings);
  validateInput(input);
  const checkpoint = input.checkpoint === undefined ? undefined : parseCheckpoint(input.checkpoint);
  const transfer = await FileTransfer.open(input, checkpoint, deps, settings);
  try {
    return await transfer.run();
  } catch (error) {
    await transfer.cleanUpAfter(error);
    throw error;
  }
}

/** The resource type every line must have. */
export function expectedResourceType(input: Pick<TransferFileInput, 'kind' | 'resourceType'>): string {
  if (input.kind === 'error') return 'OperationOutcome';
  if (input.kind === 'deleted') return 'Bundle';
  return input.resourceType;
}

function resolveSettings(overrides: Partial<TransferSettings> = {}): TransferSettings {
  for (const [name, value] of Object.entries(overrides)) {
    if (!(name in DEFAULT_TRANSFER_SETTINGS)) {
      throw new ConfigurationError(`Unknown transfer setting "${name}"`);
    }
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value) || value < 0)) {
      throw new ConfigurationError(
        `Transfer setting "${name}" must be a non-negative number, got ${String(value)}`,
      );
    }
  }
  const settings = { ...DEFAULT_TRANSFER_SETTINGS, ...overrides };
  if (settings.maxAttempts < 1)
    throw new ConfigurationError('Transfer setting "maxAttempts" must be at least 1');
  if (settings.partConcurrency < 1)
    throw new ConfigurationError('Transfer setting "partConcurrency" must be at least 1');
  return settings;
}

function validateInput(input: TransferFileInput): void {
  const fail = (field: string, expected: string): never => {
    throw new ConfigurationError(`transferFile input.${field} must be ${expected}`);
  };
  for (const field of ['url', 'resourceType', 'bucket', 'key'] as const) {
    if (typeof input[field] !== 'string' || input[field] === '') fail(field, 'a non-empty string');
  }
  if (!['output', 'error', 'deleted'].includes(input.kind)) fail('kind', "'output', 'error' or 'deleted'");
  if (
    input.expectedCount !== undefined &&
    !(Number.isSafeInteger(input.expectedCount) && input.expectedCount >= 0)
  ) {
    fail('expectedCount', 'a non-negative integer');
  }
  const policy = input.invalidLinePolicy ?? 'fail';
  if (policy !== 'fail' && policy !== 'quarantine') fail('invalidLinePolicy', "'fail' or 'quarantine'");
  if (policy === 'quarantine' && !input.quarantineKey)
    fail('quarantineKey', "given with invalidLinePolicy 'quarantine'");
  if (input.quarantineKey !== undefined && input.quarantineKey === input.key)
    fail('quarantineKey', 'different from key');
  if (
    input.maxLineBytes !== undefined &&
    !(Number.isSafeInteger(input.maxLineBytes) && input.maxLineBytes > 0)
  ) {
    fail('maxLineBytes', 'a positive integer');
  }
  if (
    input.partSizeBytes !== undefined &&
    !(
      Number.isSafeInteger(input.partSizeBytes) &&
      input.partSizeBytes > 0 &&
      input.partSizeBytes <= 5 * 1024 ** 3
    )
  ) {
    fail('partSizeBytes', 'a positive integer of at most 5 GiB');
  }
}

class FileTransfer {
  readonly #input: TransferFileInput;
  readonly #deps: TransferFileDeps;
  readonly #settings: TransferSettings;
  readonly #log: Logger;
  readonly #expectedType: string;
  readonly #sink: ObjectSink;
  readonly #quarantine: QuarantineSink;
  readonly #resourceIds: ResourceIdSink | undefined;
  readonly #resumedFrom: TransferCheckpoint | undefined;
  /** The file's URL: the input's, until an expired link is replaced by a fresh one. */
  #url: string;
  /** A fresh link was swapped in and has not answered yet: if it is refused too, give up. */
  #awaitingFreshLink = false;
  /** A 404 that outlasted the retries gets one fresh link per invocation, not more. */
  #refreshedAfterNotFound = false;
  #position: FramerPosition;
  #resumeValidator: string | undefined;
  /** The coding of the last body received, and whether fresh GETs still ask for gzip. */
  #lastEncoding: 'gzip' | 'identity' | undefined;
  #acceptGzip: boolean;
  #restarts: number;
  #tokenRejections: number;
  #failedAttempts = 0;
  /** Failures since the transfer last got further than `#offsetAtLastFailure`: what `maxAttempts` limits. */
  #failuresWithoutProgress = 0;
  #offsetAtLastFailure: number;
  readonly #startedAt: number;
  #downloadedBytes = 0;

  private constructor(
    input: TransferFileInput,
    checkpoint: TransferCheckpoint | undefined,
    deps: TransferFileDeps,
    settings: TransferSettings,
    sink: ObjectSink,
    quarantine: QuarantineSink,
    resourceIds: ResourceIdSink | undefined,
  ) {
    this.#input = input;
    this.#url = input.url;
    this.#deps = deps;
    this.#settings = settings;
    this.#expectedType = expectedResourceType(input);
    this.#log = deps.logger.child({
      bucket: input.bucket,
      key: input.key,
      fileKind: input.kind,
      type: input.resourceType,
    });
    this.#sink = sink;
    this.#quarantine = quarantine;
    this.#resourceIds = resourceIds;
    this.#resumedFrom = checkpoint;
    this.#position = checkpoint
      ? {
          byteOffset: checkpoint.byteOffset,
          lines: checkpoint.lines,
          blankLines: checkpoint.blankLines,
          invalidLines: checkpoint.invalidLines,
          ...(checkpoint.resourceTypeCounts ? { resourceTypeCounts: checkpoint.resourceTypeCounts } : {}),
        }
      : FRAMER_POSITION_ZERO;
    this.#resumeValidator = checkpoint?.resumeValidator;
    this.#acceptGzip = checkpoint?.avoidGzip !== true;
    this.#restarts = checkpoint?.restarts ?? 0;
    this.#tokenRejections = checkpoint?.tokenRejections ?? 0;
    this.#offsetAtLastFailure = this.#position.byteOffset;
    this.#startedAt = deps.now().getTime();
  }

  static async open(
    input: TransferFileInput,
    checkpoint: TransferCheckpoint | undefined,
    deps: TransferFileDeps,
    settings: TransferSettings,
  ): Promise<FileTransfer> {
    const target = {
      bucket: input.bucket,
      key: input.key,
      ...(input.sseKmsKeyId ? { sseKmsKeyId: input.sseKmsKeyId } : {}),
    };
    const sinkOptions: ObjectSinkOptions = {
      s3: deps.s3,
      target,
      partSizeBytes: Math.max(input.partSizeBytes ?? DEFAULT_PART_SIZE_BYTES, settings.minPartSizeBytes),
      minPartSizeBytes: settings.minPartSizeBytes,
      concurrency: settings.partConcurrency,
      metadata: { 'resource-type': expectedResourceType(input), 'file-kind': input.kind },
      maxInlinePartsJsonBytes: settings.maxInlinePartsJsonBytes,
      logger: deps.logger,
    };
    const sink = checkpoint
      ? await ObjectSink.resume(sinkOptions, checkpoint)
      : await ObjectSink.fresh(sinkOptions);
    const quarantine = new QuarantineSink(
      deps.s3,
      input.quarantineKey ? { ...target, key: input.quarantineKey } : undefined,
      settings.maxQuarantineBytes,
      checkpoint?.quarantine,
    );
    const resourceIds = input.collectResourceIds
      ? new ResourceIdSink(deps.s3, target, checkpoint?.resourceIds)
      : undefined;
    return new FileTransfer(input, checkpoint, deps, settings, sink, quarantine, resourceIds);
  }

  async run(): Promise<TransferOutcome> {
    this.#log.info(this.#resumedFrom ? 'resuming file transfer' : 'starting file transfer', {
      url: describeUrl(new URL(this.#url)),
      byteOffset: this.#position.byteOffset,
      restarts: this.#restarts,
    });
    if (this.#sink.staleHash !== undefined) {
      // Deployed between two invocations of this file: the new build cannot continue the old hash.
      await this.#restart(this.#sink.staleHash);
    }
    if (this.#resourceIds !== undefined && this.#position.byteOffset > 0 && !this.#resumedFrom?.resourceIds) {
      // The ids of the lines before the checkpoint were never collected: only a fresh start has them all.
      await this.#restart('the checkpoint was made without collecting resource ids');
    }
    for (;;) {
      let response: FileResponse;
      try {
        response = await this.#request();
      } catch (error) {
        if (error instanceof AccessTokenRejectedError) return await this.#tokenRejected(error);
        const linkExpired = error instanceof FileLinkExpiredError && !isPossiblyTransientNotFound(error);
        if (!linkExpired) this.#awaitingFreshLink = false;
        if (linkExpired && (await this.#refreshLink(error))) continue;
        const outcome = await this.#afterFailure(error);
        if (outcome) return outcome;
        continue;
      }
      this.#awaitingFreshLink = false;
      try {
        const end = await this.#stream(response);
        if (end === 'time') return await this.#checkpoint('time');
        return await this.#complete();
      } catch (error) {
        response.cancel();
        const outcome = await this.#afterFailure(error);
        if (outcome) return outcome;
      }
    }
  }

  /**
   * Opens the file where the transfer stands: from byte 0, or from the last
   * line boundary with `Range`. Reconciles what came back with what we have,
   * starting the object over when the server cannot continue it exactly.
   */
  async #request(): Promise<FileResponse> {
    for (;;) {
      const offset = this.#position.byteOffset;
      if (offset > 0 && this.#resumeValidator === undefined) {
        // A gzip body with no strong Last-Modified can never be resumed, but the same file
        // undecoded usually can (by its ETag): ask for that from now on.
        if (this.#lastEncoding === 'gzip') this.#acceptGzip = false;
        await this.#restart(
          'the server does not support resuming (no Accept-Ranges: bytes with a strong ETag, or with a strong Last-Modified for gzip)',
        );
        continue;
      }
      const resumeFrom =
        offset > 0 && this.#resumeValidator ? { offset, validator: this.#resumeValidator } : undefined;
      const response = await openFile(
        {
          url: this.#url,
          requiresAccessToken: this.#input.requiresAccessToken,
          ...(this.#input.accessToken ? { accessToken: this.#input.accessToken } : {}),
          ...(this.#input.tokenAudience ? { tokenAudience: this.#input.tokenAudience } : {}),
          ...(this.#input.allowInsecureHttp ? { allowInsecureHttp: true } : {}),
          ...(resumeFrom ? { resumeFrom } : {}),
          ...(this.#acceptGzip ? {} : { acceptGzip: false }),
          maxGzipExpansion: this.#settings.maxGzipExpansion,
        },
        { ...(this.#deps.http ? { dispatcher: this.#deps.http } : {}), now: this.#deps.now },
      );
      // The token worked: a later 401 is a fresh expiry, worth another re-mint.
      this.#tokenRejections = 0;
      this.#lastEncoding = response.contentEncoding;
      if (!resumeFrom) {
        if (response.status !== 200) {
          response.cancel();
          throw new FileDownloadError(
            `GET ${describeUrl(new URL(this.#url))} answered ${response.status} to a plain GET`,
          );
        }
        this.#resumeValidator = resumeValidatorOf(response);
        return response;
      }
      const sameVersion = isSameVersion(response, this.#resumeValidator!);
      if (
        response.status === 206 &&
        response.rangeStart === offset &&
        response.contentEncoding === 'identity' &&
        sameVersion
      ) {
        return response;
      }
      if (response.status === 416 && response.totalBytes === offset && sameVersion) {
        // The previous invocation stopped exactly at the end of the file.
        return response;
      }
      if (response.status === 200) {
        // If-Range did its job: the file changed, or the server ignores Range. Use this full copy.
        await this.#restart('the server answered a range request with the whole file');
        this.#resumeValidator = resumeValidatorOf(response);
        return response;
      }
      response.cancel();
      await this.#restart(
        `the server answered a range request from byte ${offset} with an unusable ${response.status}`,
      );
    }
  }

  /** Feeds the body through the framer into the sinks. Returns 'time' when the invocation must stop. */
  async #stream(response: FileResponse): Promise<'end' | 'time'> {
    const resourceIds = this.#resourceIds;
    // A previous stream may have failed after framing lines it never handed over: they come again.
    resourceIds?.rollback();
    const framer = new NdjsonFramer({
      resourceType: this.#expectedType,
      ...(this.#input.resourceTypes === undefined ? {} : { resourceTypes: this.#input.resourceTypes }),
      maxLineBytes: this.#input.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
      invalidLinePolicy: this.#input.invalidLinePolicy ?? 'fail',
      start: this.#position,
      ...(resourceIds ? { onResourceId: (id: Uint8Array) => resourceIds.add(id) } : {}),
    });
    const chunks = response.body[Symbol.asyncIterator]();
    const openedAtMs = this.#deps.now().getTime();
    let decodedBytes = 0;
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = await chunks.next();
      } catch (error) {
        // Only errors of the body itself are network trouble; ours propagate as they are, and so
        // does a body the adapter refused for good (a gzip bomb).
        if (error instanceof PipelineError && !(error instanceof TransientServerError)) throw error;
        throw new TransientServerError(
          `Reading ${describeUrl(new URL(this.#url))} failed at byte ${this.#position.byteOffset + framer.pendingBytes}: ${reasonOf(error)}`,
          undefined,
          { cause: error },
        );
      }
      if (next.done) break;
      this.#downloadedBytes += next.value.length;
      decodedBytes += next.value.length;
      await this.#accept(framer.push(next.value), framer.position);
      if (this.#sink.hashing === 'undecided') {
        const elapsedMs = this.#deps.now().getTime() - openedAtMs;
        if (elapsedMs >= HASH_DECISION_AFTER_MS) this.#settleHashing(response, decodedBytes, elapsedMs);
      }
      if (this.#deps.remainingTimeMs() < this.#settings.safetyMarginMs) {
        response.cancel();
        return 'time';
      }
    }
    await this.#accept(framer.end(), framer.position);
    return 'end';
  }

  /**
   * Picks the hash for the rest of this invocation (see FileHash): node:crypto
   * when the response's length and the speed so far say it ends well within
   * the time left, else the resumable one. Without a Content-Length there is
   * nothing to predict from, so the safe choice.
   */
  #settleHashing(response: FileResponse, decodedBytes: number, elapsedMs: number): void {
    const total = response.contentLength;
    const read = response.encodedBytesRead() ?? decodedBytes;
    if (read === 0) return;
    let mode: 'native' | 'resumable' = 'resumable';
    let predictedSecondsLeft: number | undefined;
    if (total !== undefined) {
      const predictedMsLeft = (elapsedMs * Math.max(0, total - read)) / read;
      const usableMs = this.#deps.remainingTimeMs() - this.#settings.safetyMarginMs;
      if (predictedMsLeft <= usableMs * HASH_NATIVE_MAX_SHARE_OF_TIME_LEFT) mode = 'native';
      predictedSecondsLeft = Math.round(predictedMsLeft / 1000);
    }
    this.#sink.settleHashing(mode);
    this.#log.info('hashing settled', {
      hashing: mode,
      // As sent (compressed, for gzip); absent when the server streamed without a Content-Length.
      ...(total !== undefined ? { responseBytes: total } : {}),
      ...(predictedSecondsLeft !== undefined ? { predictedSecondsLeft } : {}),
    });
  }

  async #accept(framed: FramedLines, position: FramerPosition): Promise<void> {
    if (framed.invalidBytes > 0) this.#quarantine.add(framed.invalid, framed.invalidBytes);
    if (framed.validBytes > 0) await this.#sink.write(framed.valid, framed.validBytes);
    this.#position = position;
    this.#resourceIds?.commit();
  }

  /** Decides between retrying (after a backoff), checkpointing, or giving up (rethrow). */
  async #afterFailure(error: unknown): Promise<TransferOutcome | undefined> {
    const retryable = error instanceof TransientServerError || isPossiblyTransientNotFound(error);
    if (!retryable) throw error;
    // Only failures in a row without progress count against maxAttempts: a multi-gigabyte file
    // on a link that drops every few hundred megabytes keeps going; a dead server still fails fast.
    if (this.#position.byteOffset > this.#offsetAtLastFailure) this.#failuresWithoutProgress = 0;
    this.#offsetAtLastFailure = this.#position.byteOffset;
    this.#failuresWithoutProgress++;
    this.#failedAttempts++;
    if (this.#failuresWithoutProgress >= this.#settings.maxAttempts) {
      // A 404 that outlasted the retries may be a link gone stale rather than a file not there yet.
      if (!isPossiblyTransientNotFound(error) || this.#refreshedAfterNotFound) throw error;
      if (!(await this.#refreshLink(error as Error))) throw error;
      this.#refreshedAfterNotFound = true;
      this.#failuresWithoutProgress = 0;
      return undefined;
    }
    const retryAfter = error instanceof TransientServerError ? error.retryAfterSeconds : undefined;
    const ceiling = Math.min(
      this.#settings.maxBackoffMs,
      this.#settings.baseBackoffMs * 2 ** (this.#failedAttempts - 1),
    );
    // Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"), unless the server said when.
    const delayMs = retryAfter !== undefined ? retryAfter * 1000 : Math.floor(this.#deps.random() * ceiling);
    this.#log.warn('file download failed, will retry', {
      attempt: this.#failedAttempts,
      delayMs,
      byteOffset: this.#position.byteOffset,
      error,
    });
    if (this.#deps.remainingTimeMs() - delayMs < this.#settings.safetyMarginMs)
      return await this.#checkpoint('time');
    await this.#deps.sleep(delayMs);
    return undefined;
  }

  /** Swaps in a fresh link; false when there is no way to get one, or the fresh one was refused at once. */
  async #refreshLink(error: Error): Promise<boolean> {
    if (this.#deps.refreshUrl === undefined || this.#awaitingFreshLink) return false;
    this.#awaitingFreshLink = true;
    this.#log.warn('file link expired; asking for a fresh one', {
      byteOffset: this.#position.byteOffset,
      reason: error.message,
    });
    this.#url = await this.#deps.refreshUrl();
    return true;
  }

  async #tokenRejected(error: AccessTokenRejectedError): Promise<TransferOutcome> {
    if (this.#tokenRejections >= 1) {
      throw new AccessTokenRejectedError(`${error.message}, again after a fresh token`, { cause: error });
    }
    this.#tokenRejections++;
    this.#log.warn('access token rejected; handing back for a fresh one', {
      byteOffset: this.#position.byteOffset,
    });
    return await this.#checkpoint('access-token-rejected');
  }

  /** Back to byte 0 with a fresh upload: the only safe move when the server cannot continue exactly. */
  async #restart(reason: string, hashing: 'undecided' | 'resumable' = 'undecided'): Promise<void> {
    if (this.#restarts >= this.#settings.maxRestarts) {
      throw new FileDownloadError(
        `Gave up on ${describeUrl(new URL(this.#url))} after ${this.#restarts} restarts from byte 0; last reason: ${reason}`,
      );
    }
    this.#restarts++;
    this.#log.warn('restarting the file from byte 0', { reason, restarts: this.#restarts });
    await this.#sink.reset(hashing);
    await this.#quarantine.reset();
    await this.#resourceIds?.reset();
    this.#position = FRAMER_POSITION_ZERO;
    this.#offsetAtLastFailure = 0;
    this.#resumeValidator = undefined;
  }

  async #checkpoint(reason: 'time' | 'access-token-rejected'): Promise<TransferOutcome> {
    if (this.#position.byteOffset > 0 && this.#resumeValidator === undefined) {
      // Without range support the next invocation must start over anyway:
      // do it now rather than keep parts nobody can continue.
      if (this.#lastEncoding === 'gzip') this.#acceptGzip = false;
      await this.#restart(
        `stopped at byte ${this.#position.byteOffset} (${reason}) and the server cannot resume`,
      );
    }
    if (this.#position.byteOffset > 0 && !this.#sink.canCheckpoint) {
      // The hash was node:crypto's, on the prediction that the file would end here; its state
      // cannot travel. Start over with the resumable hash rather than carry a guess.
      await this.#restart(
        `stopped at byte ${this.#position.byteOffset} (${reason}) after hashing with node:crypto, whose state cannot be carried`,
        'resumable',
      );
    }
    const sink = await this.#sink.checkpoint(this.#position.byteOffset);
    const quarantine = await this.#quarantine.checkpoint();
    const resourceIds = await this.#resourceIds?.checkpoint();
    const checkpoint: TransferCheckpoint = {
      version: 2,
      ...sink,
      byteOffset: this.#position.byteOffset,
      lines: this.#position.lines,
      blankLines: this.#position.blankLines,
      invalidLines: this.#position.invalidLines,
      ...(this.#position.resourceTypeCounts ? { resourceTypeCounts: this.#position.resourceTypeCounts } : {}),
      ...(this.#resumeValidator ? { resumeValidator: this.#resumeValidator } : {}),
      restarts: this.#restarts,
      tokenRejections: this.#tokenRejections,
      ...(this.#acceptGzip ? {} : { avoidGzip: true }),
      ...(quarantine.segments > 0 ? { quarantine } : {}),
      ...(resourceIds ? { resourceIds } : {}),
    };
    this.#log.info('file transfer checkpoint', {
      reason,
      byteOffset: checkpoint.byteOffset,
      objectBytes: checkpoint.objectBytes,
      carryBytes: checkpoint.carryBytes,
      nextPartNumber: checkpoint.nextPartNumber,
      lines: checkpoint.lines,
    });
    return { status: 'checkpoint', reason, checkpoint };
  }

  async #complete(): Promise<TransferOutcome> {
    const { lines, blankLines, invalidLines } = this.#position;
    const expected = this.#input.expectedCount;
    // The server's count includes lines we quarantined: it counts resources it wrote.
    if (expected !== undefined && lines + invalidLines !== expected) {
      throw new VerificationError(
        `${describeUrl(new URL(this.#url))}: the manifest says ${expected} resources, the file had ${lines + invalidLines}` +
          (invalidLines > 0 ? ` (${lines} valid, ${invalidLines} quarantined)` : ''),
      );
    }
    // Read back before landing: an object must not land without the ids it was asked for.
    const resourceIds = await this.#resourceIds?.finish();
    await this.#deps.beforeLanding?.();
    // Ending here: no checkpoint will need the resumable hash.
    this.#sink.settleHashing('native');
    const { bytes, sha256 } = await this.#sink.finish(lines);
    const quarantineKey = await this.#quarantine.finish();
    await this.#resourceIds?.deleteSegments();
    const seconds = (this.#deps.now().getTime() - this.#startedAt) / 1000;
    this.#log.info('file transferred', {
      bytes,
      lines,
      blankLines,
      invalidLines,
      downloadedBytes: this.#downloadedBytes,
      seconds,
      restarts: this.#restarts,
    });
    return {
      status: 'complete',
      bucket: this.#input.bucket,
      key: this.#input.key,
      bytes,
      lines,
      blankLines,
      invalidLines,
      sha256,
      ...(this.#position.resourceTypeCounts ? { resourceTypeCounts: this.#position.resourceTypeCounts } : {}),
      ...(quarantineKey ? { quarantineKey } : {}),
      ...(this.#resumeValidator && isEtag(this.#resumeValidator)
        ? { serverEtag: this.#resumeValidator }
        : {}),
      ...(this.#failedAttempts > 0 ? { retries: this.#failedAttempts } : {}),
      ...(resourceIds ? { resourceIds } : {}),
    };
  }

  /**
   * After a failure: a transient one leaves the input checkpoint usable (the
   * state machine may retry this very input), so only uploads created in
   * this invocation are aborted. Anything else is final: abort the upload and
   * remove scratch objects, so nothing half-written is left to look complete.
   */
  async cleanUpAfter(error: unknown): Promise<void> {
    const transient = error instanceof TransientServerError || isPossiblyTransientNotFound(error);
    this.#log.error('file transfer failed', { error, byteOffset: this.#position.byteOffset, transient });
    if (transient) {
      await this.#sink.abort('created-here');
      return;
    }
    await this.#sink.abort('all');
    try {
      await this.#sink.deleteScratch();
      await this.#quarantine.deleteSegments();
      await this.#resourceIds?.deleteSegments();
    } catch (cleanupError) {
      // The original error matters more; leftover scratch objects are named to be ignored.
      this.#log.error('could not delete scratch objects', { error: cleanupError });
    }
  }
}

const isEtag = (validator: string) => validator.startsWith('"');

/**
 * What a later Range request can name this version of the file by, in If-Range: its strong
 * ETag, when the body came as is. A gzip body's ETag names the gzip bytes (each content coding
 * is its own representation, RFC 9110 §8.8.3) while our offsets count decoded bytes, which
 * only a strong Last-Modified (same file, same date) still vouches for.
 */
function resumeValidatorOf(response: FileResponse): string | undefined {
  if (!response.acceptsRanges) return undefined;
  if (response.contentEncoding === 'identity' && response.strongEtag) return response.strongEtag;
  return response.strongLastModified;
}

/** The answer to a range request is of the version we started from (as far as it says). */
function isSameVersion(response: FileResponse, validator: string): boolean {
  // A server that ignores If-Range still labels what it sent: the label must match.
  if (isEtag(validator)) return response.strongEtag === undefined || response.strongEtag === validator;
  return response.lastModified === validator;
}

function reasonOf(error: unknown): string {
  if (error instanceof PipelineError) return error.message;
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  return typeof code === 'string' ? `${code} (${message})` : message;
}
