/**
 * Group commit (src/db/batcher.ts): concurrent items share one run, items arriving while a batch is in flight wait
 * for it and then go together, a lone item waits for no timer, and a failed batch fails only its own items.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';

import { describe, expect, it } from 'vitest';

import { Batcher } from '../../src/db/batcher.ts';

/** A run function whose batches the test sees and answers by hand. */
function manualRun<Item, Result>() {
  const batches: { items: Item[]; answer(results: Result[]): void; fail(error: unknown): void }[] = [];
  const run = (items: readonly Item[]) =>
    new Promise<Result[]>((resolve, reject) => {
      batches.push({ items: [...items], answer: resolve, fail: reject });
    });
  return { batches, run };
}

describe('Batcher', () => {
  it('sends a lone item at the end of the current turn, without a timer', async () => {
    const runs: number[][] = [];
    const batcher = new Batcher<number, number>((items) => {
      runs.push([...items]);
      return Promise.resolve(items.map((n) => n * 2));
    });
    const answer = batcher.load(21);
    expect(runs).toEqual([]);
    await nextTurn();
    expect(runs).toEqual([[21]]);
    await expect(answer).resolves.toBe(42);
  });

  it('sends the items of one turn as one batch, each caller getting its own result', async () => {
    const runs: string[][] = [];
    const batcher = new Batcher<string, string>((items) => {
      runs.push([...items]);
      return Promise.resolve(items.map((s) => s.toUpperCase()));
    });
    const answers = await Promise.all(['a', 'b', 'c'].map((s) => batcher.load(s)));
    expect(answers).toEqual(['A', 'B', 'C']);
    expect(runs).toEqual([['a', 'b', 'c']]);
  });

  it('queues items while a batch is in flight and sends them together when it returns', async () => {
    const { batches, run } = manualRun<number, number>();
    const batcher = new Batcher(run);
    const first = batcher.load(1);
    await nextTurn();
    expect(batches.map((b) => b.items)).toEqual([[1]]);

    const later = [2, 3, 4].map((n) => batcher.load(n));
    await nextTurn();
    await nextTurn();
    // Never added to the batch already sent, and not sent on their own while it is in flight.
    expect(batches.map((b) => b.items)).toEqual([[1]]);

    batches[0]?.answer([10]);
    await expect(first).resolves.toBe(10);
    await nextTurn();
    expect(batches.map((b) => b.items)).toEqual([[1], [2, 3, 4]]);
    batches[1]?.answer([20, 30, 40]);
    await expect(Promise.all(later)).resolves.toEqual([20, 30, 40]);
  });

  it('fails only the items of a failed batch; the next batch runs as usual', async () => {
    const { batches, run } = manualRun<number, number>();
    const batcher = new Batcher(run);
    const failed = [batcher.load(1), batcher.load(2)];
    await nextTurn();
    const next = batcher.load(3);
    const outage = Object.assign(new Error('Connection terminated unexpectedly'), { code: '08006' });
    batches[0]?.fail(outage);
    for (const answer of failed) await expect(answer).rejects.toBe(outage);
    await nextTurn();
    expect(batches.map((b) => b.items)).toEqual([[1, 2], [3]]);
    batches[1]?.answer([30]);
    await expect(next).resolves.toBe(30);
  });

  it('fails a batch whose run throws synchronously, or answers the wrong number of results', async () => {
    const throwing = new Batcher<number, number>(() => {
      throw new Error('cannot build the statement');
    });
    await expect(throwing.load(1)).rejects.toThrow('cannot build the statement');

    const short = new Batcher<number, number>(() => Promise.resolve([1]));
    const answers = [short.load(1), short.load(2)];
    for (const answer of answers)
      await expect(answer).rejects.toThrow('a batch of 2 items answered 1 results');
  });

  it('splits a queue longer than maxBatch into consecutive batches, in arrival order', async () => {
    const runs: number[][] = [];
    const batcher = new Batcher<number, number>(
      (items) => {
        runs.push([...items]);
        return Promise.resolve([...items]);
      },
      { maxBatch: 2 },
    );
    const answers = await Promise.all([1, 2, 3, 4, 5].map((n) => batcher.load(n)));
    expect(answers).toEqual([1, 2, 3, 4, 5]);
    expect(runs).toEqual([[1, 2], [3, 4], [5]]);
  });
});
