import { afterEach, describe, expect, it } from 'vitest';
import { DuckDBMaterializer } from '../engines/duckdb/duckdb-materializer.js';
import type { FeatureDecorator } from '../materializer/materializer.js';
import { FeatureStore } from './feature-store.js';

const open: DuckDBMaterializer[] = [];
function duckdb(): DuckDBMaterializer {
  const m = new DuckDBMaterializer({ path: ':memory:' });
  open.push(m);
  return m;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((m) => m.close()));
});

function counting(store: FeatureStore, module = 'events') {
  let runs = 0;
  const f = store.feature({ module, entity: 'user_id' }, async function nEvents({ day }: { day: number }) {
    runs++;
    return [{ user_id: 1, n: day * 10 + runs }];
  });
  return { f, runs: () => runs };
}

describe('detaching decorators', () => {
  it('addDecorator returns a function that removes that decorator, idempotently', async () => {
    const store = new FeatureStore();
    const tag =
      (t: string): FeatureDecorator =>
      (next) =>
      async (p) => [...((await next(p)) as string[]), t];
    const f = store.feature({ module: 'm' }, async function f() {
      return ['fn'];
    });
    const detachA = store.addDecorator(tag('a'));
    store.addDecorator(tag('b'));
    expect(await f()).toEqual(['fn', 'a', 'b']);
    detachA();
    expect(await f()).toEqual(['fn', 'b']);
    detachA();
    expect(await f()).toEqual(['fn', 'b']);
  });

  it('close() detaches the materializer from every store, so later calls run the function', async () => {
    const store = new FeatureStore();
    const other = new FeatureStore();
    const m = duckdb();
    const { f, runs } = counting(store);
    const g = counting(other).f;
    store.addDecorator(m.decorator);
    other.addDecorator(m.decorator, 'events');
    await m.materialize(f, { day: 1 });
    expect(await f({ day: 1 })).toEqual([{ user_id: 1, n: 11 }]); // served, not run again
    expect(runs()).toBe(1);
    await m.close();
    expect(await f({ day: 1 })).toEqual([{ user_id: 1, n: 12 }]);
    expect(await g({ day: 2 })).toEqual([{ user_id: 1, n: 21 }]);
    await expect(m.materialize(f, { day: 2 })).rejects.toMatchObject({ code: 'CLOSED' });
  });
});

describe('materialize refuses what its decorator will never serve', () => {
  it('a feature outside the module prefix it is attached with', async () => {
    const store = new FeatureStore();
    const m = duckdb();
    store.addDecorator(m.decorator, 'billing');
    const { f } = counting(store, 'events');
    await expect(m.materialize(f, { day: 1 })).rejects.toMatchObject({
      code: 'NOT_SERVED',
      feature: 'events.nEvents',
      message: expect.stringMatching(/covers only the module\(s\) "billing", not "events"/),
    });
    expect(await m.listMaterializations(f)).toEqual([]);
    const covered = counting(store, 'billing.invoices').f;
    expect((await m.materialize(covered, { day: 1 })).rows).toBe(1);
  });

  it('a feature of a store it is not attached to, when attached elsewhere', async () => {
    const store = new FeatureStore();
    const other = new FeatureStore();
    const m = duckdb();
    other.addDecorator(m.decorator);
    const { f } = counting(store);
    await expect(m.materialize(f, { day: 1 })).rejects.toMatchObject({ code: 'NOT_SERVED' });
  });

  it('materializes anything before any addDecorator, and serves it once attached', async () => {
    const store = new FeatureStore();
    const m = duckdb();
    const { f, runs } = counting(store);
    expect((await m.materialize(f, { day: 1 })).rows).toBe(1);
    store.addDecorator(m.decorator);
    expect(await f({ day: 1 })).toEqual([{ user_id: 1, n: 11 }]);
    expect(runs()).toBe(1);
  });
});
