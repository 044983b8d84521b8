import type { Bearer } from '../adapters/fhir-http.js';
import { putObjectBytes } from '../adapters/s3-multipart.js';
import type { SourceSettings } from '../config.js';
import type { FileBatch } from '../core/file-batches.js';
import {
  checkpointKey,
  fileFailureKey,
  leaseKey,
  quarantineKey,
  resultKey,
  serverErrorFilesKey,
} from '../core/layout.js';
import { oneLine } from '../core/operation-outcome.js';
import { interpretStatusResponse } from '../core/status.js';
import {
  ConfigurationError,
  ExportStoppedError,
  InvalidManifestError,
  StorageError,
  TransientServerError,
} from '../errors.js';
import type { InvocationContext } from '../middleware.js';
import { type Runtime, sealContext } from '../runtime.js';
import { readChunkRecord } from '../services/chunk-records.js';
import { resourceIdsKey } from '../services/duplicate-resources.js';
import type { DownloadLease, FileFailure } from '../services/export-lifecycle.js';
import { readManifestPages } from '../services/manifest-pages.js';
import { landingKey } from '../services/publish-export.js';
import { assertExportMayLand } from '../services/source-lock.js';
import {
  DEFAULT_TRANSFER_SETTINGS,
  type TransferCheckpoint,
  transferFile,
} from '../services/transfer-file.js';
import type { ExportContext, FileItem, FileResult } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';

export interface DownloadFileEvent {
  /** The Map item: the files this child lands, in order (see core/file-batches.ts). */
  readonly batch?: FileBatch;
  /** One file: an execution started before files were batched, or a caller landing one file. */
  readonly file?: FileItem;
  readonly export: ExportContext;
  readonly requiresAccessToken: boolean;
  readonly urlsKey: string;
  /** Where the manifest can be read again when a file link has expired; null for a chunked export (the file's chunk says). */
  readonly statusUrl?: string | null;
  readonly sealedToken: string;
  /** When the sealed token expires: a batch hands back for a fresh one rather than start a file with a dying token. */
  readonly tokenExpiresAt?: string | null;
  readonly transfer: {
    /** The file of the batch this invocation starts with (the one the checkpoint is of). */
    readonly position?: number;
    readonly checkpoint: CheckpointRef | null;
    /** Invocations so far for the file at `position`. */
    readonly invocations?: number;
  };
  /** `retry` in the retry pass (Retry Failed Files). */
  readonly pass?: 'retry';
}

/** One file's share of the event: what the per-file download reads. */
interface FileEvent extends Omit<DownloadFileEvent, 'batch' | 'file'> {
  readonly file: FileItem;
}

/**
 * Where the transfer's checkpoint is kept, and how far it got. The checkpoint
 * itself (hash state, part ETags) is derived from resource content, so it
 * lives in an S3 work object (encrypted with the bucket) and never in the
 * Step Functions state, whose history anyone with console access can read.
 */
export interface CheckpointRef {
  readonly key: string;
  readonly byteOffset: number;
}

export interface DownloadFileState {
  readonly status: 'complete' | 'checkpoint';
  /** With a checkpoint: the file of the batch the next invocation starts with. */
  readonly position?: number;
  readonly checkpoint: CheckpointRef | null;
  readonly forceTokenRefresh: boolean;
  readonly invocations: number;
  readonly lines?: number;
  readonly bytes?: number;
}

/**
 * A batch does not start a file with less than this left of its token: it
 * hands back (a checkpoint at that file) and the loop mints a fresh one, as
 * a child per file did before each file. A file that outlasts its token
 * anyway meets a 401 and hands back from where it stands.
 */
export const TOKEN_HANDBACK_MARGIN_MS = 60_000;

/** File URLs per list key, cached per container: the Map sends only an index (URLs can be credentials). */
const urlLists = new Map<string, Promise<readonly string[]>>();

/**
 * A batch of manifest files, each into one verified S3 object, in order.
 * When the invocation runs low on time, or the server refuses the token, it
 * returns a checkpoint (the file's `position` in the batch and its transfer
 * checkpoint) and the state machine calls it again (after a fresh token when
 * needed). A file that fails is recorded and the others still land; the
 * batch fails at the end (see landBatch).
 */
export function createDownloadFileHandler(runtime: Runtime) {
  /**
   * Whether the manifest's error[] lists files (its record exists from the
   * manifest on, and never changes): then an output file that holds fewer
   * resources than its count may be one the server reported, and lands for
   * Verify Files to judge with the server's reasons in hand (verify-files.ts).
   * Kept per export for the container's life: one HEAD, not one per file.
   */
  const errorFilesListed = new Map<string, Promise<boolean>>();
  function listsErrorFiles(workPrefix: string): Promise<boolean> {
    let listed = errorFilesListed.get(workPrefix);
    if (!listed) {
      listed = runtime.store.head(serverErrorFilesKey(workPrefix)).then((head) => head !== undefined);
      listed.catch(() => errorFilesListed.delete(workPrefix));
      errorFilesListed.set(workPrefix, listed);
    }
    return listed;
  }

  return async (event: DownloadFileEvent, context: InvocationContext): Promise<DownloadFileState> => {
    const { export: exportContext } = event;
    const settings = await runtime.sources.get(exportContext.sourceId);
    if (runtime.maxLineBytes !== undefined && settings.maxLineBytes > runtime.maxLineBytes) {
      throw new ConfigurationError(
        `source ${settings.id} allows lines of ${settings.maxLineBytes} bytes (its maxLineBytes) but Download File is sized for lines of at most ${runtime.maxLineBytes} bytes (the pipeline's maxLineBytes, MAX_LINE_BYTES): lower the source's maxLineBytes or raise the pipeline's`,
      );
    }
    const files = event.batch?.files ?? (event.file ? [event.file] : []);
    if (files.length === 0) {
      throw new ConfigurationError('Download File was called without a file or a batch of files');
    }
    // With allowPartialManifests a single file may have landed in a partial round already (same key).
    const mayHaveLanded = event.export.request?.allowPartialManifests === true;
    if (files.length === 1) return landOne(oneFile(event, files[0]!, 0), context, settings, mayHaveLanded);
    return landBatch(event, files, context, settings);
  };

  /**
   * Files one after the other (they are small: the planner puts a large file
   * alone). A file that fails does not stop the others: its failure is
   * recorded (file-failures/) and the batch goes on. At the end the batch
   * throws: a retryable error if any file failed retryably (the Map retries
   * the batch, and files that landed are skipped), else the first failure
   * (the child fails, tolerated in the first pass; Check Files finds the
   * files without a result and the retry pass lands them).
   */
  async function landBatch(
    event: DownloadFileEvent,
    files: readonly FileItem[],
    context: InvocationContext,
    settings: SourceSettings,
  ): Promise<DownloadFileState> {
    const start = event.transfer.position ?? 0;
    const safetyMarginMs =
      runtime.transfer?.settings?.safetyMarginMs ?? DEFAULT_TRANSFER_SETTINGS.safetyMarginMs;
    const failures: Error[] = [];
    let lines = 0;
    let bytes = 0;
    for (let position = start; position < files.length; position += 1) {
      // A file not begun yet waits for the next invocation rather than start with too little time,
      // or with a token about to expire (the loop mints a fresh one first).
      if (
        position > start &&
        (context.getRemainingTimeInMillis() < safetyMarginMs || tokenRunsOut(event, files[position]!))
      ) {
        return { status: 'checkpoint', position, checkpoint: null, forceTokenRefresh: false, invocations: 0 };
      }
      try {
        // Skipping landed files makes a retried batch (after a retryable failure, a killed invocation) land only the rest.
        const state = await landOne(
          oneFile(event, files[position]!, position - start),
          context,
          settings,
          true,
        );
        if (state.status === 'checkpoint') return { ...state, position };
        lines += state.lines ?? 0;
        bytes += state.bytes ?? 0;
      } catch (error) {
        // The export is ending: no other file may land either.
        if (error instanceof ExportStoppedError) throw error;
        failures.push(error as Error);
        runtime.logger.warn('a file of the batch did not land; going on with the others', {
          batch: event.batch?.batch,
          index: files[position]!.index,
          error: (error as Error).name,
        });
      }
    }
    if (failures.length > 0) throw batchFailure(failures, files.length, event.batch?.batch);
    return { status: 'complete', checkpoint: null, forceTokenRefresh: false, invocations: 0, lines, bytes };
  }

  function tokenRunsOut(event: DownloadFileEvent, file: FileItem): boolean {
    const requiresAccessToken = file.requiresAccessToken ?? event.requiresAccessToken;
    if (!requiresAccessToken || !event.tokenExpiresAt) return false;
    return Date.parse(event.tokenExpiresAt) - runtime.now().getTime() < TOKEN_HANDBACK_MARGIN_MS;
  }

  /** One file of the batch: `offset` 0 is the file the invocation starts with, the one its checkpoint is of. */
  function oneFile(event: DownloadFileEvent, file: FileItem, offset: number): FileEvent {
    const { batch: _batch, file: _file, transfer, ...rest } = event;
    return {
      ...rest,
      file,
      transfer:
        offset === 0
          ? { checkpoint: transfer.checkpoint, invocations: transfer.invocations ?? 0 }
          : { checkpoint: null, invocations: 0 },
    };
  }

  /**
   * One manifest file into one verified S3 object. `skipLanded`: a file with a
   * result is returned as it is (a batch run again; the retry pass).
   */
  async function landOne(
    event: FileEvent,
    context: InvocationContext,
    settings: SourceSettings,
    skipLanded: boolean,
  ): Promise<DownloadFileState> {
    const { file, export: exportContext } = event;
    // The retry pass, run again by a redrive, meets files that landed meanwhile: they stay as they are;
    // so does a batch run again. (A single file in the first pass never does: its result is its child's last
    // step; unless a partial round of allowPartialManifests landed it while the job ran.)
    const landed =
      event.pass === 'retry' || skipLanded
        ? await runtime.store.getJson<FileResult>(resultKey(exportContext.workPrefix, file.index))
        : undefined;
    if (landed) {
      runtime.logger.info('file already landed; kept as it is', { index: file.index, key: landed.key });
      return {
        status: 'complete',
        checkpoint: null,
        forceTokenRefresh: false,
        invocations: event.transfer.invocations ?? 0,
        lines: landed.lines,
        bytes: landed.bytes,
      };
    }
    const lease = leaseKey(exportContext.workPrefix, file.index, context.awsRequestId);
    const startedAt = runtime.now();
    const leaseRecord: DownloadLease = {
      index: file.index,
      startedAt: startedAt.toISOString(),
      deadline: new Date(startedAt.getTime() + context.getRemainingTimeInMillis()).toISOString(),
    };
    // Lease first, then the fence: whoever ends the export fences first, then waits for the leases it sees.
    await runtime.store.putJson(lease, leaseRecord);
    try {
      await assertExportMayLand(runtime, exportContext.sourceId, exportContext.executionName);
      return await download(event, context, settings);
    } catch (error) {
      // The Map reports only that items failed: what failed, per file, is kept for the failure receipt.
      if (!(error instanceof ExportStoppedError)) {
        const failure: FileFailure = {
          index: file.index,
          kind: file.kind,
          type: file.type,
          error: (error as Error).name,
          message: oneLine((error as Error).message, 500),
          at: runtime.now().toISOString(),
        };
        await runtime.store
          .putJson(fileFailureKey(exportContext.workPrefix, file.index), failure)
          .catch(() => undefined);
      }
      throw error;
    } finally {
      await runtime.store.delete(lease).catch((error: unknown) =>
        runtime.logger.warn('could not remove the download lease', {
          key: lease,
          error: (error as Error).name,
        }),
      );
    }
  }

  async function download(
    event: FileEvent,
    context: InvocationContext,
    settings: SourceSettings,
  ): Promise<DownloadFileState> {
    const { file, export: exportContext } = event;
    const checksCount =
      file.count !== undefined &&
      (file.kind !== 'output' || !(await listsErrorFiles(exportContext.workPrefix)));
    const url = await fileUrl(runtime, event.urlsKey, file.index);
    // A chunked export's chunks are separate server jobs, and their manifests may differ on this.
    const requiresAccessToken = file.requiresAccessToken ?? event.requiresAccessToken;
    // Resources shared by chunks land once per chunk; their ids let Finalize count the copies.
    const collectResourceIds = file.chunk !== undefined;
    const accessToken = requiresAccessToken
      ? await runtime.sealer.open(
          event.sealedToken,
          sealContext(exportContext.sourceId, exportContext.executionName),
        )
      : undefined;
    const invocations = (event.transfer.invocations ?? 0) + 1;
    const inputCheckpoint = await readCheckpoint(runtime, event.transfer.checkpoint);

    const outcome = await transferFile(
      {
        url,
        resourceType: file.resourceType,
        // A patient's block holds every type asked for, and its Parameters header (IG 2.0).
        ...(file.organizedBy ? { resourceTypes: organizedFileTypes(exportContext.request.types) } : {}),
        kind: file.kind,
        ...(checksCount ? { expectedCount: file.count } : {}),
        requiresAccessToken,
        ...(accessToken === undefined ? {} : { accessToken }),
        tokenAudience: settings,
        allowInsecureHttp: settings.allowInsecureHttp,
        bucket: exportContext.bucket,
        key: landingKey(file),
        // From the final key: under _staging/ it would land in _staging/_quarantine/.
        quarantineKey: quarantineKey(file.key),
        invalidLinePolicy: settings.invalidLinePolicy,
        maxLineBytes: settings.maxLineBytes,
        ...(runtime.transfer?.partSizeBytes ? { partSizeBytes: runtime.transfer.partSizeBytes } : {}),
        ...(runtime.sseKmsKeyId ? { sseKmsKeyId: runtime.sseKmsKeyId } : {}),
        ...(inputCheckpoint ? { checkpoint: inputCheckpoint } : {}),
        ...(collectResourceIds ? { collectResourceIds } : {}),
      },
      {
        s3: runtime.s3,
        ...(runtime.fileDispatcher ? { http: runtime.fileDispatcher } : {}),
        now: runtime.now,
        remainingTimeMs: () => context.getRemainingTimeInMillis(),
        sleep: runtime.sleep,
        random: runtime.random,
        logger: runtime.logger,
        ...(runtime.transfer?.settings ? { settings: runtime.transfer.settings } : {}),
        ...(event.statusUrl || file.chunk !== undefined
          ? { refreshUrl: () => refreshedFileUrl(runtime, event, settings) }
          : {}),
        beforeLanding: () =>
          assertExportMayLand(runtime, exportContext.sourceId, exportContext.executionName),
      },
    );

    if (outcome.status === 'checkpoint') {
      // Named by invocation: a retry of this same input writes the same key, and the
      // checkpoint it was given stays readable until the new one is in place.
      const key = checkpointKey(exportContext.workPrefix, file.index, invocations);
      await runtime.store.putJson(key, outcome.checkpoint);
      await forgetCheckpoint(runtime, event.transfer.checkpoint, key);
      return {
        status: 'checkpoint',
        checkpoint: { key, byteOffset: outcome.checkpoint.byteOffset },
        forceTokenRefresh: outcome.reason === 'access-token-rejected',
        invocations,
      };
    }
    let idsKey: string | undefined;
    if (collectResourceIds) {
      // Before the result: a result that names the ids object is never written without it.
      idsKey = resourceIdsKey(exportContext.workPrefix, file.index);
      await putObjectBytes(
        runtime.s3,
        {
          bucket: runtime.store.bucket,
          key: idsKey,
          ...(runtime.sseKmsKeyId ? { sseKmsKeyId: runtime.sseKmsKeyId } : {}),
        },
        outcome.resourceIds ?? Buffer.alloc(0),
        { contentType: 'application/octet-stream' },
      );
    }
    const result: FileResult = {
      index: file.index,
      kind: file.kind,
      type: file.type,
      key: landingKey(file),
      bytes: outcome.bytes,
      lines: outcome.lines,
      blankLines: outcome.blankLines,
      invalidLines: outcome.invalidLines,
      sha256: outcome.sha256,
      ...(file.count === undefined ? {} : { serverCount: file.count }),
      ...(outcome.quarantineKey ? { quarantineKey: outcome.quarantineKey } : {}),
      invocations,
      ...(file.chunk === undefined ? {} : { chunk: file.chunk }),
      ...(idsKey === undefined ? {} : { resourceIdsKey: idsKey }),
      ...(outcome.resourceTypeCounts ? { resourceTypeCounts: outcome.resourceTypeCounts } : {}),
    };
    await runtime.store.putJson(resultKey(exportContext.workPrefix, file.index), result);
    await forgetCheckpoint(runtime, event.transfer.checkpoint);
    runtime.progress?.({
      kind: 'file-done',
      index: file.index,
      type: file.type,
      bytes: outcome.bytes,
      lines: outcome.lines,
    });
    runtime.metrics.fileLanded({
      sourceId: exportContext.sourceId,
      bytes: outcome.bytes,
      // The retry pass is an attempt beyond the first too (the first pass's failure is on record).
      retries: (outcome.retries ?? 0) + (event.pass === 'retry' ? 1 : 0),
      checkpoints: invocations - 1,
    });
    return {
      status: 'complete',
      checkpoint: null,
      forceTokenRefresh: false,
      invocations,
      lines: outcome.lines,
      bytes: outcome.bytes,
    };
  }
}

/**
 * The error a batch ends with when files failed. Retryable when any file
 * failed retryably (its name is what the Map's Retry matches), so the batch
 * is run again and only the files without a result are fetched; otherwise
 * the first file's own error. Either way the message counts the failures;
 * each file's own error is in file-failures/.
 */
export function batchFailure(
  failures: readonly Error[],
  batchSize: number,
  batch: number | undefined,
): Error {
  const retryable = failures.find(
    (error) => error instanceof TransientServerError || error instanceof StorageError,
  );
  const chosen = retryable ?? failures[0]!;
  const message = `${failures.length} of ${batchSize} file(s) of batch ${batch ?? '?'} did not land; ${chosen.name}: ${chosen.message}`;
  const error =
    chosen instanceof TransientServerError
      ? new TransientServerError(message, chosen.retryAfterSeconds, { cause: chosen })
      : chosen instanceof StorageError
        ? new StorageError(message, { cause: chosen })
        : chosen;
  return error;
}

async function readCheckpoint(
  runtime: Runtime,
  ref: CheckpointRef | null,
): Promise<TransferCheckpoint | undefined> {
  if (ref === null || ref === undefined) return undefined;
  if (typeof ref.key !== 'string') {
    // An execution started before checkpoints moved to S3 carries the checkpoint itself.
    // transferFile accepts it once and starts the file over (its hash cannot be continued).
    return ref as unknown as TransferCheckpoint;
  }
  const checkpoint = await runtime.store.getJson<TransferCheckpoint>(ref.key);
  if (checkpoint === undefined) {
    throw new StorageError(
      `the checkpoint s3://${runtime.store.bucket}/${ref.key} (byte offset ${ref.byteOffset}) is gone; the file's work objects were removed while it was in progress`,
    );
  }
  return checkpoint;
}

/** The input's checkpoint object once a newer one (or the result) is in place. */
async function forgetCheckpoint(runtime: Runtime, ref: CheckpointRef | null, keep?: string) {
  if (ref === null || ref === undefined || typeof ref.key !== 'string' || ref.key === keep) return;
  await runtime.store.delete(ref.key);
}

async function fileUrl(runtime: Runtime, urlsKey: string, index: number): Promise<string> {
  let list = urlLists.get(urlsKey);
  if (!list) {
    list = runtime.store.getJson<string[]>(urlsKey).then((urls) => {
      if (!Array.isArray(urls)) throw new InvalidManifestError(`file URL list ${urlsKey} is missing`);
      return urls;
    });
    urlLists.set(urlsKey, list);
    list.catch(() => urlLists.delete(urlsKey));
  }
  const url = (await list)[index];
  if (typeof url !== 'string')
    throw new InvalidManifestError(`file URL list ${urlsKey} has no entry ${index}`);
  return url;
}

/**
 * File links may expire (presigned URLs, CMS after 24 h); the IG lets a client
 * read the manifest again from the status URL for fresh ones. The transfer
 * asks for one when a link has expired and goes on from where it stands. The
 * fresh list replaces this container's cached one, so its other files use it
 * too. It is not written to S3: links can be credentials, and each container
 * refreshes on its own first expired link.
 */
async function refreshedFileUrl(
  runtime: Runtime,
  event: FileEvent,
  settings: SourceSettings,
): Promise<string> {
  const { file, export: context } = event;
  const { allowInsecureHttp } = settings;
  const bearer: Bearer = {
    accessToken: await runtime.sealer.open(
      event.sealedToken,
      sealContext(context.sourceId, context.executionName),
    ),
    audience: settings,
  };
  const now = runtime.now();
  // A chunked export's file comes from its chunk's job: that job's status URL, its place in that manifest.
  const chunk =
    file.chunk === undefined ? undefined : await readChunkRecord(runtime, context.workPrefix, file.chunk);
  const statusUrl = file.chunk === undefined ? event.statusUrl : chunk?.statusUrl;
  if (!statusUrl) {
    throw new InvalidManifestError(
      `file ${file.index}'s link expired and chunk ${file.chunk} has no job on record to read the manifest again from`,
    );
  }
  const position = file.chunkFileIndex ?? file.index;
  const response = await runtime.fhir.send(
    { method: 'GET', url: statusUrl, headers: { Accept: 'application/json' } },
    bearer,
  );
  const status = interpretStatusResponse(response, now);
  if (status.outcome !== 'complete') {
    throw new TransientServerError(
      `reading the manifest again for a fresh link to file ${file.index}: status answered ${response.status}`,
    );
  }
  const manifest = await readManifestPages(
    runtime,
    status.manifestBody,
    bearer,
    allowInsecureHttp,
    now,
    event.export.request,
  );
  const previous = await urlLists.get(event.urlsKey);
  const entry = manifest.files[position];
  const sameLength =
    file.chunk !== undefined || previous === undefined || previous.length === manifest.files.length;
  if (entry === undefined || entry.kind !== file.kind || entry.type !== file.type || !sameLength) {
    throw new InvalidManifestError(
      `the manifest read again for a fresh link no longer lists file ${file.index} (${file.kind} ${file.type}) where it was`,
    );
  }
  if (file.chunk === undefined) {
    urlLists.set(event.urlsKey, Promise.resolve(manifest.files.map((listed) => listed.url)));
  } else if (previous !== undefined) {
    // One chunk's manifest refreshes only that chunk's files: the others keep theirs.
    const fresh = [...previous];
    // Merge Chunks lists a chunk's files together, in its manifest's order.
    const start = file.index - position;
    manifest.files.forEach((listed, at) => {
      if (start + at < fresh.length) fresh[start + at] = listed.url;
    });
    urlLists.set(event.urlsKey, Promise.resolve(fresh));
  }
  return entry.url;
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('DownloadFile', createDownloadFileHandler);

/**
 * The types a file organized by patient may hold: the request's `_type` (none: any type) and the
 * `Parameters` resource that heads each patient's block ("a header Parameters resource containing a
 * parameter named header with a reference to" the patient, IG 2.0 "Bulk Data Output File Organization").
 */
export function organizedFileTypes(requestedTypes: readonly string[]): readonly string[] {
  return requestedTypes.length === 0 ? [] : [...new Set([...requestedTypes, 'Parameters'])];
}
