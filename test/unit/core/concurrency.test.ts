import { describe, expect, it } from 'vitest';
import { mapInOrder } from '../../../lambdas/core/concurrency.js';

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('mapInOrder', () => {
  it('keeps input order and never has more than the limit in flight', async () => {
    // Prepare
    let inFlight = 0;
    let peak = 0;
    const items = Array.from({ length: 25 }, (_, i) => i);
    // Act
    const results = await mapInOrder(items, 4, async (item) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await tick((item * 7) % 5);
      inFlight--;
      return item * 10;
    });
    // Assess
    expect(results).toEqual(items.map((item) => item * 10));
    expect(peak).toBe(4);
  });

  it('starts nothing after a failure, waits for what is in flight, then throws the first failure', async () => {
    // Prepare
    const started: number[] = [];
    const finished: number[] = [];
    // Act
    const outcome = mapInOrder(
      Array.from({ length: 20 }, (_, i) => i),
      3,
      async (item) => {
        started.push(item);
        if (item === 2) throw new Error('item 2 failed');
        await tick(20);
        finished.push(item);
        return item;
      },
    );
    // Assess
    await expect(outcome).rejects.toThrow('item 2 failed');
    // Items 0 and 1 were in flight when 2 failed: both finished before the call threw.
    expect(started).toEqual([0, 1, 2]);
    expect(finished.sort()).toEqual([0, 1]);
  });

  it('answers [] for no items, and refuses a limit below 1', async () => {
    await expect(mapInOrder([], 8, async () => 1)).resolves.toEqual([]);
    await expect(mapInOrder([1], 0, async () => 1)).rejects.toThrow(
      new RangeError('limit must be a positive integer, got 0'),
    );
  });
});
