import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { Bearer } from '../adapters/fhir-http.js';
import { type Chunk, planPatientChunks, planTimeChunks } from '../core/chunks.js';
import { chunkItemsKey, chunkPatientsKey, jobRecordKey } from '../core/layout.js';
import { ConfigurationError, InvalidExecutionInputError, StorageError } from '../errors.js';
import { type Runtime, sealContext } from '../runtime.js';
import { PATIENT_REFERENCE, type SourceSettings } from '../schema/source.js';
import type { ChunkItem, ChunkPlan, ChunkRecord } from '../services/chunk-records.js';
import { writeChunkRecord } from '../services/chunk-records.js';
import type { JobRecord } from '../services/export-lifecycle.js';
import { readCohort } from '../services/group-members.js';
import { deleteSupersededJobs } from '../services/server-jobs.js';
import type { ChunkingContext, ExportContext } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';

export interface PlanChunksEvent {
  readonly export: ExportContext;
  readonly sealedToken: string;
  /** `planned`: the export is chunked from the start; `timeout`: its one job was abandoned (chunkOnTimeout). */
  readonly reason: ChunkPlan['reason'];
}

/**
 * Splits the cohort into chunks and writes the plan to the work area: each
 * chunk's patient list and record, and the list the chunk Map reads. A plan
 * is made once per execution: a retried or redriven Plan Chunks finds it and
 * returns it, so a cohort that changed meanwhile cannot shift chunks that
 * already ran.
 */
export function createPlanChunksHandler(runtime: Runtime) {
  return async (event: PlanChunksEvent): Promise<ChunkPlan> => {
    const context = event.export;
    const chunking = context.chunking ?? context.chunkOnTimeout?.chunking;
    if (!chunking) {
      throw new ConfigurationError(
        `the export of source ${context.sourceId} has no chunk settings to plan by`,
      );
    }
    const work = context.workPrefix;
    const planned = await runtime.store.getJson<ChunkItem[]>(chunkItemsKey(work));
    if (Array.isArray(planned)) return planOf(work, chunking, planned.length, event.reason);

    const settings = await runtime.sources.get(context.sourceId);
    if (context.supersedes && event.reason === 'planned') {
      const bearer: Bearer = {
        accessToken: await runtime.sealer.open(
          event.sealedToken,
          sealContext(context.sourceId, context.executionName),
        ),
        audience: settings,
      };
      await deleteSupersededJobs(runtime, context, bearer);
    }
    const chunks =
      chunking.by === 'time'
        ? planTimeChunks(...timeSpan(context), chunking.window!)
        : planPatientChunks(await cohortOf(runtime, event, settings, chunking), chunking.size!);
    const items: ChunkItem[] = chunks.map(itemOf);
    for (const chunk of chunks) {
      if (chunk.kind === 'patients')
        await runtime.store.putJson(chunkPatientsKey(work, chunk.index), chunk.patients);
      const record: ChunkRecord = { ...itemOf(chunk), state: 'planned', attempt: 0 };
      await writeChunkRecord(runtime, work, record);
    }
    // Written last: its presence says the plan is whole.
    await runtime.store.putJson(chunkItemsKey(work), items);
    const job = await runtime.store.getJson<JobRecord>(jobRecordKey(work));
    await runtime.store.putJson(jobRecordKey(work), {
      ...(job ?? { sourceId: context.sourceId, executionName: context.executionName, export: context }),
      chunks: { total: items.length, done: 0 },
    } satisfies JobRecord);
    runtime.logger.info('planned a chunked export', {
      sourceId: context.sourceId,
      by: chunking.by,
      chunks: items.length,
      reason: event.reason,
      ...(chunking.by === 'patients'
        ? { patients: items.reduce((sum, item) => sum + (item.patients ?? 0), 0), size: chunking.size }
        : { window: chunking.window }),
    });
    runtime.progress?.({
      kind: 'phase',
      phase: 'chunks planned',
      detail: `${items.length} chunk(s) by ${chunking.by}${event.reason === 'timeout' ? ' after the export in one piece timed out' : ''}`,
    });
    return planOf(work, chunking, items.length, event.reason);
  };
}

function planOf(
  work: string,
  chunking: ChunkingContext,
  total: number,
  reason: ChunkPlan['reason'],
): ChunkPlan {
  return {
    total,
    itemsKey: chunkItemsKey(work),
    by: chunking.by,
    maxConcurrentJobs: chunking.maxConcurrentJobs,
    maxAttempts: chunking.maxAttempts,
    reason,
  };
}

function itemOf(chunk: Chunk): ChunkItem {
  return chunk.kind === 'patients'
    ? { index: chunk.index, kind: 'patients', patients: chunk.patients.length }
    : { index: chunk.index, kind: 'time', since: chunk.since, until: chunk.until };
}

/**
 * The span time chunks cover: from `_since` (the watermark or the input) to
 * `_until`, or to when the execution started for a delta, which is what an
 * export in one piece would have covered.
 */
function timeSpan(context: ExportContext): [string, string] {
  const { since, until } = context.request;
  if (!since) {
    throw new InvalidExecutionInputError(
      `chunk.by time needs a start: source ${context.sourceId} has no watermark and the input gave no since; pass "since" (a backfill's start) or chunk by patients`,
    );
  }
  return [since, until ?? context.startedAt];
}

/** The cohort's patients: the object `patientsFrom` names, or the members of the export's Group. */
async function cohortOf(
  runtime: Runtime,
  event: PlanChunksEvent,
  settings: SourceSettings,
  chunking: ChunkingContext,
): Promise<readonly string[]> {
  if (chunking.patientsFrom) return readPatientList(runtime, chunking.patientsFrom);
  const context = event.export;
  const groupId = context.request.groupId;
  if (context.request.level !== 'group' || !groupId) {
    throw new ConfigurationError(
      `chunking source ${context.sourceId} by patients needs a Group to read the cohort from, or chunk.patientsFrom`,
    );
  }
  const accessToken = await runtime.sealer.open(
    event.sealedToken,
    sealContext(context.sourceId, context.executionName),
  );
  const members = await readCohort(runtime.fhir, settings.fhirBaseUrl, groupId, accessToken);
  if (members.inactive > 0 || members.repeated > 0) {
    runtime.logger.info('the Group lists members that are not in the cohort today', {
      sourceId: context.sourceId,
      groupId,
      inactive: members.inactive,
      repeated: members.repeated,
    });
  }
  return members.patients;
}

/**
 * A patient list in S3: one `Patient/<id>` per line (blank lines and `#`
 * comments skipped). A line that is not a reference is refused by its line
 * number, never echoed: the file may hold anything.
 */
async function readPatientList(runtime: Runtime, url: string): Promise<string[]> {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  if (!match) throw new ConfigurationError(`chunk.patientsFrom must be s3://<bucket>/<key>`);
  const [, bucket, key] = match;
  let text: string;
  try {
    const response = await runtime.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    text = await response.Body!.transformToString('utf8');
  } catch (error) {
    const name = (error as Error).name;
    if (name === 'NoSuchKey' || name === 'NotFound') {
      throw new ConfigurationError(`chunk.patientsFrom ${url} does not exist`);
    }
    throw new StorageError(`could not read chunk.patientsFrom ${url}: ${name}`);
  }
  const seen = new Set<string>();
  const patients: string[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    if (!PATIENT_REFERENCE.regex.test(line)) {
      throw new ConfigurationError(
        `chunk.patientsFrom ${url} line ${index + 1} is not ${PATIENT_REFERENCE.expected}`,
      );
    }
    if (seen.has(line)) return;
    seen.add(line);
    patients.push(line);
  });
  if (patients.length === 0) throw new ConfigurationError(`chunk.patientsFrom ${url} lists no patients`);
  return patients;
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('PlanChunks', createPlanChunksHandler);
