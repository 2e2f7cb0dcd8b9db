/**
 * The behaviour every online store must show, run by each: `describeOnlineStore(name, factory)`.
 * A new store is done when this suite passes.
 */
import type { RecordBatch } from 'apache-arrow';
import { afterEach, describe, expect, it } from 'vitest';
import { FeatureStoreError } from '../../src/errors.js';
import { canonicalParams } from '../../src/feature/params.js';
import { type ColumnSpec, type Row, tableFromColumns } from '../../src/frame/columns.js';
import { type OnlineStore, resolveOnline } from '../../src/online/online-store.js';
import { Last, resolveParams } from '../../src/resolver/resolvers.js';
import { seeded } from '../support/seeded.js';

/** Makes a fresh, empty store (its own file or key prefix) and a cleanup to call after. */
export type OnlineStoreFactory = (options?: { keep?: number }) => Promise<{
  store: OnlineStore;
  cleanup: () => Promise<void>;
}>;

const day = (d: number) => new Date(Date.UTC(2024, 0, d));
const paramsKey = (d: number) => canonicalParams({ when: day(d) });

/** A publication of `columns` (key first) with `values` per column. */
export function publication(
  feature: string,
  id: string,
  when: number,
  key: readonly string[],
  columns: readonly ColumnSpec[],
  values: readonly (readonly unknown[])[],
) {
  const table = tableFromColumns(columns, values);
  return {
    feature,
    id,
    paramsKey: paramsKey(when),
    key,
    columns: columns.filter((c) => !key.includes(c.name)),
    batches: table.batches as RecordBatch[],
  };
}

/** One numeric feature over `n` string keys `u0…`, value `base + i`. */
function numeric(feature: string, id: string, when: number, n: number, base: number) {
  return publication(
    feature,
    id,
    when,
    ['user_id'],
    [
      { name: 'user_id', type: 'string' },
      { name: 'value', type: 'float64' },
    ],
    [Array.from({ length: n }, (_, i) => `u${i}`), Array.from({ length: n }, (_, i) => base + i)],
  );
}

const ALL_TYPES: ColumnSpec[] = [
  { name: 'id', type: 'int64' },
  { name: 's', type: 'string' },
  { name: 'f', type: 'float64' },
  { name: 'i32', type: 'int32' },
  { name: 'i64', type: 'int64' },
  { name: 'b', type: 'boolean' },
  { name: 't', type: 'timestamp' },
  { name: 'j', type: 'json' },
  { name: 'e', type: 'float64[]' },
];

/** Rows of every type, with nulls, extremes and awkward text. */
export const TYPED_ROWS: Row[] = [
  {
    id: 1n,
    s: 'plain',
    f: 1.5,
    i32: -2147483648,
    i64: 9007199254740993n,
    b: true,
    t: new Date('2024-03-01T12:34:56.789Z'),
    j: { nested: [1, 'two', null], ok: true },
    e: [0.1, null, -3.5e300],
  },
  {
    id: 2n,
    s: 'tab\t"quote"\nnewline ✈ \u0000',
    f: Number.NaN,
    i32: 2147483647,
    i64: -9223372036854775808n,
    b: false,
    t: new Date('1969-12-31T23:59:59.999Z'),
    j: [1, 2, 3],
    e: [],
  },
  { id: 3n, s: '', f: -0, i32: 0, i64: 0n, b: null, t: null, j: 'just text', e: null },
  {
    id: 4n,
    s: null,
    f: Number.POSITIVE_INFINITY,
    i32: null,
    i64: null,
    b: true,
    t: new Date(0),
    j: null,
    e: [Number.NEGATIVE_INFINITY, Number.NaN, -0],
  },
  { id: 5n, s: 's:1', f: null, i32: 7, i64: 5n, b: false, t: new Date(8.64e15), j: 0, e: [null] },
];

function typedPublication(id: string, when: number) {
  return publication(
    'types.all',
    id,
    when,
    ['id'],
    ALL_TYPES,
    ALL_TYPES.map((c) => TYPED_ROWS.map((r) => r[c.name])),
  );
}

/** Runs the online store contract against `factory`. */
export function describeOnlineStore(name: string, factory: OnlineStoreFactory): void {
  describe(`online store contract: ${name}`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    const open = async (options?: { keep?: number }) => {
      const { store, cleanup } = await factory(options);
      cleanups.push(cleanup);
      return store;
    };
    afterEach(async () => {
      for (const cleanup of cleanups.splice(0)) await cleanup();
    });

    it('gives every type back exactly, nulls included', async () => {
      const store = await open();
      const record = await store.publish(typedPublication('m1', 1));
      expect(record).toMatchObject({ feature: 'types.all', id: 'm1', paramsKey: paramsKey(1), rows: 5 });
      const keys = TYPED_ROWS.map((r) => [r.id as bigint]);
      const got = await store.read([{ feature: 'types.all', id: 'm1' }], keys);
      expect(got.map(([row]) => row)).toEqual(TYPED_ROWS.map(({ id: _, ...values }) => values));
      // toEqual treats -0 and 0 alike; the store must not.
      expect(Object.is(got[2]![0]!.f, -0)).toBe(true);
      expect(Object.is((got[3]![0]!.e as number[])[2], -0)).toBe(true);
      expect(typeof got[0]![0]!.i64).toBe('bigint');
    });

    it('finds an int64 key given as a number or a bigint, and answers null for a missing key', async () => {
      const store = await open();
      await store.publish(typedPublication('m1', 1));
      const got = await store.read([{ feature: 'types.all', id: 'm1' }], [[3], [3n], [99], [99n]]);
      expect(got[0]![0]).toEqual(got[1]![0]);
      expect(got[0]![0]).toMatchObject({ s: '', i32: 0 });
      expect(got.slice(2)).toEqual([[null], [null]]);
    });

    it('reads composite keys', async () => {
      const store = await open();
      const columns: ColumnSpec[] = [
        { name: 'origin', type: 'string' },
        { name: 'hour', type: 'int32' },
        { name: 'day', type: 'timestamp' },
        { name: 'share', type: 'float64' },
      ];
      await store.publish(
        publication('routes.share', 'r1', 1, ['origin', 'hour', 'day'], columns, [
          ['SFO', 'SFO', 'S', 'SFO1'],
          [1, 11, 11, 1],
          [day(1), day(1), day(1), day(1)],
          [0.1, 0.2, 0.3, 0.4],
        ]),
      );
      const got = await store.read(
        [{ feature: 'routes.share', id: 'r1' }],
        [
          ['SFO', 1, day(1)],
          ['SFO', 11, day(1)],
          ['S', 11, day(1)],
          ['SFO1', 1, day(1)],
          ['SFO', 1, day(2)],
          ['SF', 11, day(1)],
        ],
      );
      expect(got.map(([r]) => r?.share ?? null)).toEqual([0.1, 0.2, 0.3, 0.4, null, null]);
    });

    it('keeps a leading U+FEFF in keys and values: "\\ufeffx" and "x" are two keys', async () => {
      const store = await open();
      const columns: ColumnSpec[] = [
        { name: 'k', type: 'string' },
        { name: 's', type: 'string' },
      ];
      await store.publish(
        publication('types.bom', 'b1', 1, ['k'], columns, [
          ['\ufeffx', 'x'],
          ['\ufeffwith', 'without'],
        ]),
      );
      const got = await store.read([{ feature: 'types.bom', id: 'b1' }], [['\ufeffx'], ['x']]);
      expect(got).toEqual([[{ s: '\ufeffwith' }], [{ s: 'without' }]]);
    });

    it('reads 50 features of one key in one call, at the point Last() resolves to', async () => {
      const store = await open();
      const features = Array.from({ length: 50 }, (_, f) => `wide.f${f}`);
      for (const [f, feature] of features.entries()) {
        for (const when of [1, 2, 3]) {
          // The last feature lacks day 3, so Last() over all of them is day 2.
          if (f === 49 && when === 3) continue;
          await store.publish(numeric(feature, `${feature}@${when}`, when, 20, when * 1000 + f * 100));
        }
      }
      const resolved = await resolveOnline(store, features, { when: Last() });
      expect(resolved?.params).toEqual({ when: day(2) });
      const got = await store.read(resolved!.sources, [['u7']]);
      expect(got).toHaveLength(1);
      expect(got[0]!.map((row) => row?.value)).toEqual(features.map((_, f) => 2000 + f * 100 + 7));
      const two = await store.read(resolved!.sources.slice(0, 2), [['u1'], ['nobody'], ['u19']]);
      expect(two).toEqual([
        [{ value: 2101 - 100 }, { value: 2101 }],
        [null, null],
        [{ value: 2019 }, { value: 2119 }],
      ]);
    });

    it('resolves Last() to the same parameters as over the full history, within keep', async () => {
      const store = await open({ keep: 3 });
      const random = seeded(11);
      const features = ['h.a', 'h.b', 'h.c'];
      const history = new Map<string, number[]>();
      for (let when = 1; when <= 8; when++) {
        for (const feature of features) {
          if (when < 8 && random.chance(0.3)) continue;
          if (feature === 'h.c' && when === 8) continue;
          await store.publish(numeric(feature, `${feature}@${when}`, when, 3, when));
          history.set(feature, [...(history.get(feature) ?? []), when]);
        }
      }
      const offline = resolveParams(
        { when: Last() },
        features.map((feature) => ({
          feature,
          materializations: history
            .get(feature)!
            .map((w) => ({ paramsKey: paramsKey(w), createdAt: new Date() })),
        })),
      );
      const online = await resolveOnline(store, features, { when: Last() });
      expect(online?.params).toEqual(offline?.params);
      const listed = await store.list(features);
      for (const feature of features) {
        const whens = history.get(feature)!.slice(-3);
        expect(listed.filter((m) => m.feature === feature).map((m) => m.paramsKey)).toEqual(
          whens.map(paramsKey),
        );
      }
    });

    it('replaces a materialization of the same parameters, unpublishes, and prunes beyond keep', async () => {
      const store = await open({ keep: 2 });
      expect(store.keep).toBe(2);
      await store.publish(numeric('p.x', 'a', 1, 3, 10));
      await store.publish(numeric('p.x', 'b', 2, 3, 20));
      const replaced = await store.publish(numeric('p.x', 'c', 2, 3, 30));
      expect(replaced.rows).toBe(3);
      expect((await store.list(['p.x'])).map((m) => m.id)).toEqual(['a', 'c']);
      await expect(store.read([{ feature: 'p.x', id: 'b' }], [['u0']])).rejects.toMatchObject({
        code: 'STORE_ERROR',
        feature: 'p.x',
      });
      expect(await store.read([{ feature: 'p.x', id: 'c' }], [['u2']])).toEqual([[{ value: 32 }]]);

      await store.publish(numeric('p.x', 'd', 3, 3, 40));
      expect((await store.list(['p.x'])).map((m) => m.id)).toEqual(['c', 'd']);
      await expect(store.read([{ feature: 'p.x', id: 'a' }], [['u0']])).rejects.toThrow(
        /not published online/,
      );

      expect(await store.unpublish('p.x', 'd')).toBe(true);
      expect(await store.unpublish('p.x', 'd')).toBe(false);
      const resolved = await resolveOnline(store, ['p.x'], { when: Last() });
      expect(resolved?.params).toEqual({ when: day(2) });
      await expect(store.read([{ feature: 'p.x', id: 'd' }], [['u0']])).rejects.toBeInstanceOf(
        FeatureStoreError,
      );
      expect(await store.list(['p.x', 'never.published'])).toHaveLength(1);
    });

    it('refuses to publish an id already listed, duplicate keys and null keys, storing nothing', async () => {
      const store = await open();
      await store.publish(numeric('r.x', 'a', 1, 3, 10));
      await expect(store.publish(numeric('r.x', 'a', 2, 3, 10))).rejects.toMatchObject({
        code: 'STORE_ERROR',
      });
      const columns: ColumnSpec[] = [
        { name: 'user_id', type: 'string' },
        { name: 'value', type: 'float64' },
      ];
      await expect(
        store.publish(
          publication('r.x', 'dup', 2, ['user_id'], columns, [
            ['u1', 'u2', 'u1'],
            [1, 2, 3],
          ]),
        ),
      ).rejects.toMatchObject({ code: 'DUPLICATE_KEY', feature: 'r.x', params: { when: day(2) } });
      await expect(
        store.publish(
          publication('r.x', 'nul', 3, ['user_id'], columns, [
            ['u1', null],
            [1, 2],
          ]),
        ),
      ).rejects.toMatchObject({ code: 'NULL_KEY', feature: 'r.x' });
      expect((await store.list(['r.x'])).map((m) => m.id)).toEqual(['a']);
      expect(await store.read([{ feature: 'r.x', id: 'a' }], [['u1']])).toEqual([[{ value: 11 }]]);
    });

    it('shows a read concurrent with a publication the old or the new materialization, never a mix', async () => {
      const store = await open();
      const n = 20_000;
      await store.publish(numeric('c.x', 'g0', 1, n, 0));
      const keys = [['u0'], [`u${n - 1}`]];
      const seen: string[] = [];
      let publishing = true;
      const reader = (async () => {
        while (publishing) {
          const resolved = await resolveOnline(store, ['c.x'], { when: Last() });
          try {
            const got = await store.read(resolved!.sources, keys);
            const base = resolved!.sources[0]!.id === 'g0' ? 0 : 1_000_000;
            expect(got).toEqual([[{ value: base }], [{ value: base + n - 1 }]]);
            seen.push(resolved!.sources[0]!.id);
          } catch (error) {
            // Retired between resolving and reading: the caller resolves again.
            expect(error).toMatchObject({ code: 'STORE_ERROR' });
          }
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      await store.publish(numeric('c.x', 'g1', 1, n, 1_000_000));
      publishing = false;
      await reader;
      expect(seen.length).toBeGreaterThan(0);
      expect((await store.list(['c.x'])).map((m) => m.id)).toEqual(['g1']);
      expect(await store.read([{ feature: 'c.x', id: 'g1' }], [['u5']])).toEqual([[{ value: 1_000_005 }]]);
    });

    it('rejects every call with CLOSED after close, and closes twice harmlessly', async () => {
      const store = await open();
      await store.publish(numeric('z.x', 'a', 1, 2, 0));
      await store.close();
      await store.close();
      await expect(store.read([{ feature: 'z.x', id: 'a' }], [['u0']])).rejects.toMatchObject({
        code: 'CLOSED',
      });
      await expect(store.list(['z.x'])).rejects.toMatchObject({ code: 'CLOSED' });
      await expect(store.publish(numeric('z.x', 'b', 2, 2, 0))).rejects.toMatchObject({ code: 'CLOSED' });
    });
  });
}
