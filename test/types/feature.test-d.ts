import type { Table } from 'apache-arrow';
import { type Feature, FeatureStore, feature, Last, type LazyFrame, type Row } from 'featurefn';
import { describe, expectTypeOf, it } from 'vitest';

describe('feature() keeps the function’s type', () => {
  it('same parameters, same awaited result, always a Promise', () => {
    const f = feature({ module: 'types' }, async function f(p: { when: Date; app: string }) {
      return [{ user_id: 1, n: p.app.length }];
    });
    expectTypeOf(f).parameters.toEqualTypeOf<[{ when: Date; app: string }]>();
    expectTypeOf(f).returns.toEqualTypeOf<Promise<{ user_id: number; n: number }[]>>();
    expectTypeOf(f).toExtend<Feature>();

    const sync = new FeatureStore().feature(function sync(p: { n: number }) {
      return p.n > 0;
    });
    expectTypeOf(sync).returns.toEqualTypeOf<Promise<boolean>>();

    const noParams = new FeatureStore().feature(async function noParams() {
      return [] as Row[];
    });
    expectTypeOf(noParams).parameters.toEqualTypeOf<[]>();
  });

  it('refuses calls with the wrong parameters', () => {
    const f = new FeatureStore().feature(async function f(p: { when: Date }) {
      return [p];
    });
    // @ts-expect-error: `when` must be a Date
    void f({ when: '2001-01-01' });
    // @ts-expect-error: missing parameter
    void f();
  });

  it('lazy frames are immutable builders ending in promises', () => {
    const store = new FeatureStore();
    const f = store.feature(async function g() {
      return [{ id: 1 }];
    });
    const frame = store.withParams({ when: Last() }).getFeatures(f).filter({ id: 1 }).limit(1);
    expectTypeOf(frame).toEqualTypeOf<LazyFrame>();
    expectTypeOf(frame.toArray()).toEqualTypeOf<Promise<Row[]>>();
    expectTypeOf(frame.toArrow()).toEqualTypeOf<Promise<Table>>();
    expectTypeOf(frame.explain()).toEqualTypeOf<Promise<string>>();
  });
});
