import { describe, expect, it } from 'vitest';
import { ExportStateMachines } from '../../infra/constructs/export-state-machine.js';
import { synthesize } from './pipeline-fixture.js';

describe('ExportStateMachines', () => {
  const { stack, logicalId } = synthesize({ stateMachineName: 'FhirBulkExport-Prod' });
  const part = stack.pipeline.node.findChild('StateMachines') as ExportStateMachines;

  it('is the part that holds both machines, the clean-up rule and its dead-letter queue', () => {
    expect(part).toBeInstanceOf(ExportStateMachines);
    expect([
      part.stateMachine,
      part.cleanUpStateMachine,
      part.cleanUpRule,
      part.cleanUpDeadLetterQueue,
    ]).toEqual([
      stack.pipeline.stateMachine,
      stack.pipeline.cleanUpStateMachine,
      stack.pipeline.cleanUpRule,
      stack.pipeline.cleanUpDeadLetterQueue,
    ]);
  });

  it('keeps the logical ids from before the split: a named machine must not be replaced (its name would clash)', () => {
    expect([part.stateMachine, part.cleanUpStateMachine, part.cleanUpRule].map(logicalId)).toEqual([
      'PipelineStateMachine1814BD05',
      'PipelineCleanUpStateMachineF656C5C4',
      'PipelineCleanUpRule7BED044E',
    ]);
  });
});
