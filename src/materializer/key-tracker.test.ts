import { type RecordBatch, tableFromArrays } from 'apache-arrow';
import { describe, expect, it } from 'vitest';
import { KeyTracker } from './key-tracker.js';

async function* batchesOf(...columns: Record<string, unknown>[]): AsyncIterable<RecordBatch> {
  for (const c of columns)
    yield* tableFromArrays(c as Parameters<typeof tableFromArrays>[0]).batches as RecordBatch[];
}

async function summarize(tracker: KeyTracker, batches: AsyncIterable<RecordBatch>) {
  let rows = 0;
  for await (const batch of tracker.track(batches)) rows += batch.numRows;
  return { passed: rows, summary: tracker.summary() };
}

describe('KeyTracker', () => {
  it('passes batches through and counts rows, across batches', async () => {
    const { passed, summary } = await summarize(
      new KeyTracker(['id'], 100),
      batchesOf({ id: ['a', 'b'] }, { id: ['c'] }),
    );
    expect(passed).toBe(3);
    expect(summary).toEqual({ rows: 3, nulls: 0, duplicate: undefined });
  });

  it('finds a key repeated in a later batch, with how many rows have it', async () => {
    const { summary } = await summarize(
      new KeyTracker(['id'], 100),
      batchesOf({ id: ['a', 'b'] }, { id: ['b', 'c', 'b'] }),
    );
    expect(summary).toEqual({ rows: 5, nulls: 0, duplicate: { id: 'b', n: 3 } });
  });

  it('names a duplicated instant as a Date, not as the number Arrow gives', async () => {
    const day = new Date(Date.UTC(2001, 0, 3));
    const { summary } = await summarize(
      new KeyTracker(['origin', 'day'], 100),
      batchesOf({ origin: ['A7', 'A7', 'A8'], day: [day, new Date(day.getTime()), day] }),
    );
    expect(summary?.duplicate).toEqual({ origin: 'A7', day, n: 2 });
  });

  it('counts rows with a null in any key column, and compares composite keys by every part', async () => {
    const { summary } = await summarize(
      new KeyTracker(['origin', 'n'], 100),
      batchesOf({
        origin: ['SFO', 'SFO', null, 'S', 'SFO1'],
        n: Float64Array.from([1, 2, 3, 1, 1]),
      }),
    );
    // 'S' + 'FO1'-like collisions cannot happen: parts are length-prefixed.
    expect(summary).toEqual({ rows: 5, nulls: 1, duplicate: undefined });
    const again = await summarize(
      new KeyTracker(['origin', 'n'], 100),
      batchesOf({ origin: ['SFO', 'LAX', 'SFO'], n: Float64Array.from([1, 1, 1]) }),
    );
    expect(again.summary?.duplicate).toEqual({ origin: 'SFO', n: 2 });
  });

  it('compares dates by their instant', async () => {
    const day = (d: number) => new Date(Date.UTC(2001, 0, d));
    const { summary } = await summarize(
      new KeyTracker(['day'], 100),
      batchesOf({ day: [day(1), day(2), day(1)] }),
    );
    expect(summary?.duplicate?.n).toBe(2);
  });

  it('gives up past its limit, leaving the check to the database', async () => {
    const { passed, summary } = await summarize(
      new KeyTracker(['id'], 2),
      batchesOf({ id: ['a', 'a'] }, { id: ['b'] }),
    );
    expect(passed).toBe(3);
    expect(summary).toBeUndefined();
  });
});
