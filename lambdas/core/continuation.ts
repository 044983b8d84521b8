import { InvalidExecutionInputError } from '../errors.js';
import type { ChunkPlan } from '../services/chunk-records.js';
import type { ExportContext, PollState } from '../state.js';
import { continuationExecutionName } from './history-budget.js';
import { asObject, rejectUnknownKeys, requiredString } from './validate.js';

/**
 * An export that continues in a new execution (history budget, see
 * core/history-budget.ts) starts it with this input: the export as it was
 * prepared (its name, work area, request and deadline stay the first
 * execution's), and where it stood: the one job's status URL and poll state,
 * or the chunk plan (each chunk's job is in its record in S3).
 */
export interface ContinuationInput {
  readonly sourceId: string;
  readonly continuation: Continuation;
  /** Links the two executions in the Step Functions console. */
  readonly AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID?: string;
}

export interface Continuation {
  /** 1 for the export's first continuation. */
  readonly number: number;
  /** The execution that handed over: the lock must still name it. */
  readonly previousExecutionArn: string;
  readonly export: ExportContext;
  /** An export in one piece: its job, and the poll state to go on from. */
  readonly statusUrl?: string;
  readonly poll?: Pick<
    PollState,
    'attempt' | 'consecutiveTransientErrors' | 'waitSeconds' | 'forceTokenRefresh'
  >;
  /** A chunked export: the plan Plan Chunks wrote. */
  readonly chunks?: ChunkPlan;
}

/** What the state machine's StartExecution task is given. */
export interface ContinuationRequest {
  readonly name: string;
  readonly input: ContinuationInput;
}

/**
 * The next execution of `context`'s export, handed over by the execution
 * `executionArn`. Only ids, keys, URLs of the server's job and counters:
 * nothing of the token or of the data.
 */
export function continuationRequest(
  context: ExportContext,
  executionArn: string,
  where: Pick<Continuation, 'statusUrl' | 'poll' | 'chunks'>,
): ContinuationRequest {
  const number = (context.continuation?.number ?? 0) + 1;
  const { continuation: _previous, ...exportContext } = context;
  return {
    name: continuationExecutionName(context.executionName, number),
    input: {
      sourceId: context.sourceId,
      continuation: { number, previousExecutionArn: executionArn, export: exportContext, ...where },
      AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID: executionArn,
    },
  };
}

const fail = (message: string) => new InvalidExecutionInputError(message);

/**
 * The continuation an execution input carries, or undefined for an export's
 * first execution. Its shape is checked here; whether it may take over is the
 * lock's to say (Prepare Export): the lock must name the export and the
 * execution that handed over.
 */
export function parseContinuationInput(raw: unknown): ContinuationInput | undefined {
  if (typeof raw !== 'object' || raw === null || !('continuation' in raw)) return undefined;
  const input = asObject(raw, 'execution input', fail);
  rejectUnknownKeys(
    input,
    ['sourceId', 'continuation', 'AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID'],
    'continuation input',
    fail,
  );
  const sourceId = requiredString(input, 'sourceId', 'input', fail);
  const continuation = asObject(input.continuation, 'input.continuation', fail);
  const number = continuation.number;
  if (typeof number !== 'number' || !Number.isInteger(number) || number < 1) {
    throw fail('input.continuation.number must be a whole number from 1');
  }
  requiredString(continuation, 'previousExecutionArn', 'input.continuation', fail);
  const context = asObject(continuation.export, 'input.continuation.export', fail);
  if (context.sourceId !== sourceId) {
    throw fail('input.continuation.export.sourceId must be the input’s sourceId');
  }
  for (const key of ['executionName', 'workPrefix', 'deadline', 'startedAt'] as const) {
    requiredString(context, key, 'input.continuation.export', fail);
  }
  const inOnePiece = typeof continuation.statusUrl === 'string' && typeof continuation.poll === 'object';
  const chunked = typeof continuation.chunks === 'object' && continuation.chunks !== null;
  if (inOnePiece === chunked) {
    throw fail(
      'input.continuation must carry either statusUrl and poll (an export in one piece) or chunks (a chunked export)',
    );
  }
  return raw as ContinuationInput;
}
