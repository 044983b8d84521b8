import { describe, expect, it } from 'vitest';
import { continuationRequest, parseContinuationInput } from '../../lambdas/core/continuation.js';
import {
  AWS_HISTORY_EVENT_LIMIT,
  continuationExecutionName,
  DEFAULT_HISTORY_EVENT_BUDGET,
  EVENTS_PER_POLL_CYCLE,
  eventsBeforePolling,
  historyAfterPoll,
  politeWaitSeconds,
  shouldContinueAsNew,
} from '../../lambdas/core/history-budget.js';
import type { ExportContext } from '../../lambdas/state.js';
import { thrown } from '../support/thrown.js';

const context: ExportContext = {
  sourceId: 'epic',
  executionName: 'epic-daily-20261207',
  bucket: 'exports',
  workPrefix: '_work/source=epic/execution=epic-daily-20261207/',
  request: { types: [], typeFilters: [], elements: [], level: 'system' },
  sinceFrom: 'none',
  advancesWatermark: true,
  startedAt: '2026-12-07T00:00:00.000Z',
  deadline: '2026-12-21T00:00:00.000Z',
  maxConcurrency: 4,
};
const ARN = 'arn:aws:states:us-east-1:123456789012:execution:bulk-export:epic-daily-20261207';

describe('history budget', () => {
  it('counts a poll cycle as AWS writes it (Wait 2, Mint 5, Poll 5, Choice 2) on top of the set-up', () => {
    expect(EVENTS_PER_POLL_CYCLE).toBe(14);
    expect(historyAfterPoll(undefined, 1)).toBe(eventsBeforePolling(1) + 14);
    expect(historyAfterPoll(1_000, 1)).toBe(1_014);
    // Each kick-off retry is a cycle of its own before polling starts.
    expect(eventsBeforePolling(3) - eventsBeforePolling(1)).toBe(28);
  });

  it('hands over while one more cycle still fits, far below AWS’s limit by default', () => {
    expect(shouldContinueAsNew(14_986, 15_000)).toBe(false);
    expect(shouldContinueAsNew(14_987, 15_000)).toBe(true);
    expect(DEFAULT_HISTORY_EVENT_BUDGET).toBeLessThanOrEqual(AWS_HISTORY_EVENT_LIMIT - 10_000);
  });

  it('names continuations deterministically, within 80 characters', () => {
    expect(continuationExecutionName('epic-daily', 2)).toBe('epic-daily-cont-2');
    const long = continuationExecutionName('x'.repeat(80), 12);
    expect(long).toHaveLength(80);
    expect(long.endsWith('-cont-12')).toBe(true);
    expect(thrown(() => continuationExecutionName('epic', 0)).message).toBe(
      'a continuation is numbered from 1, got 0',
    );
  });

  it('stretches the wait with the job’s age, never past the ceiling and never below what the server asked', () => {
    expect(politeWaitSeconds(5, 60, 300)).toBe(5);
    expect(politeWaitSeconds(5, 3_600, 300)).toBe(72);
    expect(politeWaitSeconds(5, 7 * 86_400, 300)).toBe(300);
    expect(politeWaitSeconds(600, 7 * 86_400, 300)).toBe(600);
    expect(politeWaitSeconds(5, -10, 300)).toBe(5);
  });
});

describe('continuation input', () => {
  it('carries the export, its job and poll state, and links the executions; no token', () => {
    const request = continuationRequest({ ...context, continuation: { number: 2 } }, ARN, {
      statusUrl: 'https://ehr.example/status/1',
      poll: { attempt: 40, consecutiveTransientErrors: 0, waitSeconds: 5, forceTokenRefresh: false },
    });
    expect(request.name).toBe('epic-daily-20261207-cont-3');
    expect(request.input.continuation.number).toBe(3);
    expect(request.input.continuation.export).toStrictEqual(context);
    expect(request.input.AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID).toBe(ARN);
    expect(JSON.stringify(request)).not.toMatch(/sealedToken|access_token/);
    expect(parseContinuationInput(JSON.parse(JSON.stringify(request.input)))).toStrictEqual(request.input);
  });

  it('is absent from a first execution’s input, and refused when malformed, naming what is wrong', () => {
    expect(parseContinuationInput({ sourceId: 'epic', since: 'auto' })).toBeUndefined();
    const valid = continuationRequest(context, ARN, { chunks: { total: 3 } as never }).input;
    expect(thrown(() => parseContinuationInput({ ...valid, since: 'auto' })).message).toMatch(/since/);
    expect(
      thrown(() => parseContinuationInput({ ...valid, continuation: { ...valid.continuation, number: 0 } }))
        .message,
    ).toBe('input.continuation.number must be a whole number from 1');
    expect(thrown(() => parseContinuationInput({ ...valid, sourceId: 'oracle' })).message).toBe(
      'input.continuation.export.sourceId must be the input’s sourceId',
    );
    expect(
      thrown(() =>
        parseContinuationInput({
          ...valid,
          continuation: { ...valid.continuation, statusUrl: 'https://ehr.example/status/1', poll: {} },
        }),
      ).message,
    ).toMatch(/either statusUrl and poll .* or chunks/);
  });
});
