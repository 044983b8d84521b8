/**
 * `long-export`: a server whose job takes 7 days and answers every poll
 * with `Retry-After: 5`, on a simulated clock: the real ASL, handlers,
 * sandbox and embedded S3, with each Wait state's seconds added to the clock
 * the handlers, the token minter and the sandbox share, so a week passes in
 * seconds. Reports the polls, the executions the export ran in, each one's
 * history events (AWS's limit is 25,000; the budget 15,000), and what the
 * polling cost. In-process: one clock for all.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AWS_HISTORY_EVENT_LIMIT, DEFAULT_HISTORY_EVENT_BUDGET } from '../../lambdas/core/history-budget.js';
import { adaptDefinitionForLocalRun } from '../local/asl-adapter.js';
import type { EmbeddedS3 } from '../local/embedded-s3.js';
import { runLocalExport } from '../local/local-export.js';
import { ensureLocalKeyPair } from '../local/local-keys.js';
import { DEFINITION_PATH } from '../local/runner.js';
import { startSandbox } from '../sandbox/index.js';
import { countStateTransitions, estimatedCostUsd, lambdaUsage, taskDurations } from './billing.js';
import { progress } from './children.js';

export interface LongExportOptions {
  readonly s3: EmbeddedS3;
  readonly jobDays: number;
  readonly retryAfterSeconds: number;
}

// Simulated time starts now: `$$.Execution.StartTime` is the real clock's, and a job's age counts from it.
const START = Date.now();

export async function runLongExport(options: LongExportOptions): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'bench-long-'));
  // The simulated clock: real time since the start, plus every Wait state's seconds.
  const realStart = Date.now();
  let skippedMs = 0;
  const now = () => new Date(START + (Date.now() - realStart) + skippedMs);
  const jobDurationMs = options.jobDays * 86_400_000;
  const sandbox = await startSandbox({
    patientCount: 20,
    jobDurationMs,
    retryAfterSeconds: options.retryAfterSeconds,
    now,
    spoolDirectory: work,
  });
  try {
    const key = await ensureLocalKeyPair(join(work, 'keys'));
    const { clientId } = await sandbox.registerClient({ jwks: { keys: [key.publicJwk] } });
    const bucket = 'bench-long-export';
    await options.s3.createBucket(bucket);
    let pendingWaitSeconds = 0;
    let polls = 0;
    progress(
      `long-export: a ${options.jobDays}-day job, Retry-After ${options.retryAfterSeconds} s, simulated clock`,
    );
    const started = Date.now();
    const result = await runLocalExport({
      sources: [
        {
          raw: {
            id: 'long-export',
            fhirBaseUrl: sandbox.baseUrl,
            clientId,
            privateKeyFile: key.privateKeyFile,
            allowInsecureHttp: true,
            export: { level: 'system', types: ['Patient'] },
            deadlineHours: Math.ceil(options.jobDays * 24 + 24),
          },
        },
      ],
      input: { sourceId: 'long-export' },
      s3ClientConfig: options.s3.clientConfig,
      bucket,
      now,
      waitOverrideMs: 0,
      retryOverrideMs: 0,
      onEvent: (event) => {
        if (event.type !== 'StateEntered') return;
        const name = event.state?.name;
        if (name === 'Wait For Export' || name === 'Wait Before Retrying Kick-Off') {
          const input = event.state!.input as {
            poll?: { waitSeconds?: number };
            kickoff?: { waitSeconds?: number };
          };
          pendingWaitSeconds = (name === 'Wait For Export' ? input.poll : input.kickoff)?.waitSeconds ?? 0;
        }
      },
      beforeInvocation: async (invocation) => {
        if (
          invocation.stateName !== 'Mint Token For Status' &&
          invocation.stateName !== 'Mint Token For Kick-Off'
        )
          return;
        // Let the runner's event log deliver the Wait state's entry first.
        await new Promise((resolve) => setImmediate(resolve));
        skippedMs += pendingWaitSeconds * 1000;
        pendingWaitSeconds = 0;
        if (invocation.stateName === 'Mint Token For Status' && ++polls % 500 === 0) {
          progress(`long-export: ${polls} polls, day ${((now().getTime() - START) / 86_400_000).toFixed(2)}`);
        }
      },
    });
    const seconds = (Date.now() - started) / 1000;
    const run = result.run;
    if (run.status !== 'SUCCEEDED') throw new Error(`long-export failed: ${run.error}: ${run.cause}`);
    const definition = JSON.parse(await readFile(DEFINITION_PATH, 'utf8')) as unknown;
    const { taskFunctions } = adaptDefinitionForLocalRun(definition);
    const transitions = countStateTransitions(run.events);
    const lambda = lambdaUsage(taskDurations(run.events, taskFunctions));
    const perExecution = run.executions.map((execution) => execution.historyEvents.execution);
    return JSON.stringify({
      scenario: 'long-export',
      jobDays: options.jobDays,
      retryAfterSeconds: options.retryAfterSeconds,
      simulatedDays: Number(((now().getTime() - START) / 86_400_000).toFixed(2)),
      seconds: Number(seconds.toFixed(1)),
      polls: result.run.invocations.PollStatus ?? 0,
      pollsAtRetryAfter: Math.ceil((options.jobDays * 86_400) / options.retryAfterSeconds),
      executions: run.executions.length,
      historyEvents: Math.max(...perExecution),
      historyEventsPerExecution: perExecution,
      historyEventBudget: DEFAULT_HISTORY_EVENT_BUDGET,
      awsHistoryEventLimit: AWS_HISTORY_EVENT_LIMIT,
      stateTransitions: transitions.total,
      lambdaInvocations: lambda.requests,
      costUsd: Number(estimatedCostUsd(transitions.total, lambda.gbSeconds, lambda.requests).toPrecision(3)),
      files: result.receipt ? result.receipt.totals.files : 0,
    });
  } finally {
    await sandbox.close();
    await rm(work, { recursive: true, force: true });
  }
}
