import { describe, expect, it } from 'vitest';
import { invocationKeys } from '../../../lambdas/observability/invocation-keys.js';

const context = { sourceId: 'epic-prod', executionName: 'epic-prod-auto-open', workPrefix: '_work/…' };

describe('invocationKeys', () => {
  it.each<[string, unknown, ReturnType<typeof invocationKeys>]>([
    [
      'a Task with the export context (Kick Off, Poll Status, Download File, Finalize, Complete)',
      { export: context, sealedToken: 'sealed' },
      { sourceId: 'epic-prod', executionId: 'epic-prod-auto-open' },
    ],
    [
      'Prepare Export (the input and the execution name)',
      { input: { sourceId: 'epic-prod', since: 'auto' }, executionName: 'e-1', startedAt: 'now' },
      { sourceId: 'epic-prod', executionId: 'e-1' },
    ],
    ['Mint Token', { sourceId: 'cerner', executionName: 'e-2' }, { sourceId: 'cerner', executionId: 'e-2' }],
    [
      'Clean Up after Prepare (the state has the export)',
      { executionName: 'e-3', input: { sourceId: 'other' }, state: { export: context } },
      { sourceId: 'epic-prod', executionId: 'e-3' },
    ],
    [
      'Clean Up Ended Export',
      {
        ended: { executionName: 'e-4', status: 'ABORTED', input: { sourceId: 'epic-prod' } },
        sealedToken: null,
      },
      { sourceId: 'epic-prod', executionId: 'e-4' },
    ],
    [
      'an input that never validated: no source id, whatever it holds',
      { executionName: 'e-5', input: { sourceId: 'Bearer abc.def' }, state: {} },
      { executionId: 'e-5' },
    ],
    ['the item reader, which names neither', { Bucket: 'b', Key: 'k' }, {}],
    ['no event', undefined, {}],
  ])('%s', (_, event, keys) => {
    expect(invocationKeys(event)).toEqual(keys);
  });
});
