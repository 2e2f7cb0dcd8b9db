import type { Table } from 'apache-arrow';
import { type Feature, FeatureStore, Last, type Materializer, type OnlineStore, type Row } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { PostgresMaterializer } from 'featurefn/postgres';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { redisOnline, sqliteOnline } from '../support/online.js';
import { dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';

const pg = await requirePostgres();
const day = (d: number) => new Date(Date.UTC(2024, 0, d));
const USERS = ['u0', 'u1', 'u2', '\ufeffu3', 'u 4'];

/** Every value type a store keeps, specials and nulls included; values depend on `when`. */
function profiles(when: Date): Row[] {
  const d = when.getUTCDate();
  return USERS.map((user_id, i) => ({
    user_id,
    n: i === 2 ? null : d * 10 + i,
    small64: BigInt(d * 100 + i),
    big64: 2n ** 60n + BigInt(d * 100 + i),
    x:
      [Number.NaN, -0, Number.POSITIVE_INFINITY, 1.5, null][i]! === null
        ? null
        : [Number.NaN, -0, Infinity, d + 0.5][i % 4]!,
    flag: i % 2 === 0,
    at: new Date(Date.UTC(2024, 0, d, i, 30, 15, 250)),
    meta: i === 4 ? null : { d, tags: ['a', `t${i}`], nested: { ok: true } },
    emb: [d, i, 0.25],
    label: i === 1 ? null : `\ufeff${user_id}@${d}`,
  }));
}

/** A real online store behind a wrapper that counts reads, to see which reads went online. */
function counting(store: OnlineStore): OnlineStore & { reads: number } {
  const wrapper = {
    reads: 0,
    get name() {
      return store.name;
    },
    get keep() {
      return store.keep;
    },
    publish: (p: Parameters<OnlineStore['publish']>[0]) => store.publish(p),
    unpublish: (f: string, id: string) => store.unpublish(f, id),
    list: (features: readonly string[]) => store.list(features),
    read: (sources: Parameters<OnlineStore['read']>[0], keys: Parameters<OnlineStore['read']>[1]) => {
      wrapper.reads++;
      return store.read(sources, keys);
    },
    close: () => store.close(),
  };
  return wrapper;
}

type Setup = (
  online: OnlineStore,
  cache?: number,
) => Promise<{ materializer: Materializer; cleanup(): Promise<void> }>;

type OpenOnline = () => Promise<{ store: OnlineStore; cleanup(): Promise<void> }>;

const configurations: [string, OpenOnline, Setup, boolean][] = [
  [
    'DuckDB + SQLite',
    sqliteOnline,
    async (online, cache) => {
      const materializer = new DuckDBMaterializer({
        online: cache === undefined ? online : { store: online, cache: { entries: cache } },
      });
      return { materializer, cleanup: () => materializer.close() };
    },
    true,
  ],
  [
    'PostgreSQL + Redis',
    redisOnline,
    async (online, cache) => {
      const schema = uniqueSchema('online');
      const materializer = new PostgresMaterializer({
        connection: postgresUrl(),
        schema,
        poolSize: 2,
        online: cache === undefined ? online : { store: online, cache: { entries: cache } },
      });
      return {
        materializer,
        cleanup: async () => {
          await materializer.close();
          await dropSchema(schema);
        },
      };
    },
    pg.available,
  ],
];

/** Rows of an Arrow table with each column's type, to compare two tables exactly. */
function arrowShape(table: Table) {
  return {
    fields: table.schema.fields.map((f) => `${f.name}: ${String(f.type)}`),
    rows: table.toArray().map((r) => JSON.stringify(r, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))),
  };
}

for (const [name, openOnline, setup, available] of configurations) {
  describe.skipIf(!available)(`key lookups served online: ${name}${available ? '' : pg.reason}`, () => {
    let online: Awaited<ReturnType<OpenOnline>>;
    let counted: ReturnType<typeof counting>;
    let materializer: Materializer;
    let cleanup: () => Promise<void>;
    let detach: () => void;
    let store: FeatureStore;
    let profile: Feature<(p: { when: Date }) => Promise<Row[]>>;
    let score: Feature<(p: { when: Date }) => Promise<{ user_id: string; score: number }[]>>;

    async function open(cache?: number) {
      online = await openOnline();
      counted = counting(online.store);
      ({ materializer, cleanup } = await setup(counted, cache));
      store = new FeatureStore();
      profile = store.feature(
        { module: 'serving', entity: 'user_id' },
        async function profile({ when }: { when: Date }) {
          return profiles(when);
        },
      );
      score = store.feature(
        { module: 'serving', entity: 'user_id' },
        async function score({ when }: { when: Date }) {
          return USERS.slice(0, 4).map((user_id, i) => ({ user_id, score: when.getUTCDate() + i / 10 }));
        },
      );
      detach = store.addDecorator(materializer.decorator);
    }

    afterEach(async () => {
      await cleanup();
      await online.cleanup();
    });

    describe('without a cache', () => {
      beforeEach(() => open());

      it('answers a Last() key lookup online exactly as the offline store does, rows and Arrow', async () => {
        for (const d of [1, 2, 3]) {
          await materializer.materialize(profile, { when: day(d) });
          await materializer.materialize(score, { when: day(d) });
        }
        const frame = store.withParams({ when: Last() }).getFeatures(profile, score);
        for (const user_id of [...USERS, 'nobody']) {
          const before = counted.reads;
          const served = await frame.filter({ user_id }).toArray();
          expect(counted.reads).toBe(before + 1);
          // An IN filter is no key lookup: the offline store answers it.
          const offline = await frame.filter({ user_id: [user_id] }).toArray();
          expect(counted.reads).toBe(before + 1);
          expect(served).toStrictEqual(offline);
          expect(served.map((r) => Object.keys(r))).toEqual(offline.map((r) => Object.keys(r)));
          expect(arrowShape(await frame.filter({ user_id }).toArrow())).toEqual(
            arrowShape(await frame.filter({ user_id: [user_id] }).toArrow()),
          );
          for (const narrowed of [
            (f: typeof frame) => f.select('score', 'user_id', 'big64'),
            (f: typeof frame) => f.limit(0),
            (f: typeof frame) => f.select('label').limit(1),
          ]) {
            expect(await narrowed(frame.filter({ user_id })).toArray()).toStrictEqual(
              await narrowed(frame.filter({ user_id: [user_id] })).toArray(),
            );
          }
        }
        expect(await frame.filter({ user_id: 'u1' }).toArray({ params: true })).toStrictEqual(
          await frame.filter({ user_id: ['u1'] }).toArray({ params: true }),
        );
        expect((await frame.filter({ user_id: 'u0' }).toArray())[0]).toMatchObject({ n: 30, score: 3 });
      });

      it('says in explain() which store serves a read, and why not online', async () => {
        await materializer.materialize(profile, { when: day(1) });
        await materializer.materialize(score, { when: day(1) });
        const frame = store.withParams({ when: Last() }).getFeatures(profile, score);
        const online = await frame.filter({ user_id: 'u1' }).explain();
        expect(online).toContain(
          `-- served online from ${counted.name}: one read of 2 feature(s) at key (user_id = "u1")`,
        );
        expect(online).not.toMatch(/SELECT/);
        for (const [read, why] of [
          [
            frame.filter({ user_id: ['u1', 'u2'] }),
            'the filter on "user_id" is not an equality on the entity key',
          ],
          [frame.filter({ n: 11 }), 'the filter on "n" is not an equality on the entity key'],
          [frame, 'no equality filter on the key column(s) user_id'],
          [frame.limit(1).filter({ user_id: 'u1' }), 'a filter follows a selection or a limit'],
        ] as const) {
          const text = await read.explain();
          expect(text).toContain(`-- not served online (${counted.name}): ${why}`);
          expect(text).toMatch(/SELECT/);
        }
      });

      it('resolves Last() over several features as the offline store does, and serves older points offline', async () => {
        for (const d of [2, 3, 4, 5]) await materializer.materialize(profile, { when: day(d) });
        for (const d of [2, 3]) await materializer.materialize(score, { when: day(d) });
        const frame = store
          .withParams({ when: Last() })
          .getFeatures(profile, score)
          .filter({ user_id: 'u2' });
        expect(await frame.resolvedParams()).toEqual({ when: day(3) });
        expect(await frame.explain()).toContain('-- served online from');
        expect(await frame.toArray()).toStrictEqual(
          await store
            .withParams({ when: Last() })
            .getFeatures(profile, score)
            .filter({ user_id: ['u2'] })
            .toArray(),
        );
        expect((await frame.toArray())[0]).toMatchObject({ small64: 302, score: 3.2 });
        // A backfill older than what is online does not push the latest out of the online store.
        await materializer.materialize(profile, { when: day(1) });
        expect(await frame.explain()).toContain('-- served online from');
        const old = store
          .withParams({ when: day(1) })
          .getFeatures(profile)
          .filter({ user_id: 'u2' });
        expect(await old.explain()).toMatch(
          /not served online \(\w+\): not published there: serving\.profile/,
        );
        const reads = counted.reads;
        expect((await old.toArray())[0]).toMatchObject({ small64: 102 });
        expect((await old.toArray())[0]).toMatchObject({ small64: 102 });
        // Known to be absent online: the second read did not ask the online store again.
        expect(counted.reads).toBe(reads + 1);
      });

      it('publishes what the online store lacks with syncOnline(), and retires what Last() no longer needs', async () => {
        for (const d of [1, 2, 3, 4]) await materializer.materialize(profile, { when: day(d) });
        expect((await counted.list(['serving.profile'])).map((m) => m.paramsKey)).toHaveLength(3);
        const listed = await counted.list(['serving.profile']);
        for (const m of listed) await counted.unpublish('serving.profile', m.id);
        const frame = store.withParams({ when: Last() }).getFeatures(profile).filter({ user_id: 'u0' });
        expect(await frame.explain()).toContain('not published there');
        expect((await frame.toArray())[0]).toMatchObject({ n: 40 });
        const published = await materializer.syncOnline();
        expect(published).toEqual(listed.map((m) => m.id));
        expect(await materializer.syncOnline([profile])).toEqual([]);
        expect(await frame.explain()).toContain('-- served online from');
      });
    });

    describe('with a cache', () => {
      beforeEach(() => open(4));

      it('answers repeated lookups from the cache, bounded, and moves to a new publication with no stale answer', async () => {
        await materializer.materialize(profile, { when: day(1) });
        const frame = () => store.withParams({ when: Last() }).getFeatures(profile);
        expect(await frame().filter({ user_id: 'u0' }).explain()).toContain('through the in-process cache');
        const first = await frame().filter({ user_id: 'u0' }).toArray();
        const reads = counted.reads;
        const again = await frame().filter({ user_id: 'u0' }).toArray();
        expect(counted.reads).toBe(reads);
        expect(again).toStrictEqual(first);
        // A caller changing what it got changes nothing cached.
        (again[0]!.at as Date).setTime(0);
        (again[0]!.meta as { d: number }).d = -1;
        expect(await frame().filter({ user_id: 'u0' }).toArray()).toStrictEqual(first);
        expect(materializer.cacheStats()).toEqual({ hits: 2, misses: 1, hitRate: 2 / 3, entries: 1 });

        await materializer.materialize(profile, { when: day(2) });
        expect((await frame().filter({ user_id: 'u0' }).toArray())[0]).toMatchObject({ n: 20 });
        for (const user_id of USERS) await frame().filter({ user_id }).toArray();
        expect(materializer.cacheStats().entries).toBeLessThanOrEqual(4);
      });

      it('moves a frame built once, as a server keeps it, to a new publication, changed code and a detached store at the next read', async () => {
        for (const feature of [profile, score]) await materializer.materialize(feature, { when: day(1) });
        const frame = store.withParams({ when: Last() }).getFeatures(profile, score);
        const read = async () => (await frame.filter({ user_id: 'u0' }).toArray())[0];
        expect(await read()).toMatchObject({ n: 10, score: 1 });
        expect(await read()).toMatchObject({ n: 10, score: 1 });
        const { hits } = materializer.cacheStats();
        expect(hits).toBeGreaterThan(0);

        // Last() over both stays at day 1 until both are materialized at day 2.
        await materializer.materialize(score, { when: day(2) });
        expect(await read()).toMatchObject({ n: 10, score: 1 });
        await materializer.materialize(profile, { when: day(2) });
        expect(await read()).toMatchObject({ n: 20, score: 2 });
        expect(await read()).toMatchObject({ n: 20, score: 2 });
        expect(materializer.cacheStats().hits).toBeGreaterThan(hits);

        // Redefined: its materializations are stale, and store.config.onStale decides at each read.
        store.config.interactive = true;
        store.config.onStale = 'serve';
        store.feature(
          { module: 'serving', entity: 'user_id' },
          async function score({ when }: { when: Date }) {
            return USERS.map((user_id) => ({ user_id, score: -when.getUTCDate() }));
          },
        );
        expect(await read()).toMatchObject({ n: 20, score: 2 });
        store.config.onStale = 'compute';
        expect(await read()).toMatchObject({ n: 20, score: -2 });
        store.config.onStale = 'serve';
        expect(await read()).toMatchObject({ n: 20, score: 2 });

        detach();
        await expect(read()).rejects.toMatchObject({ code: 'NO_CONSISTENT_MATERIALIZATION' });
      });
    });
  });
}

describe.skipIf(!pg.available)(`online cache across processes${pg.reason}`, () => {
  it('moves reads to another process’s publication once PostgreSQL notifies it', async () => {
    const online = await redisOnline();
    const schema = uniqueSchema('online');
    const options = { connection: postgresUrl(), schema, poolSize: 2 };
    const reader = new PostgresMaterializer({
      ...options,
      online: { store: online.store, cache: { entries: 100 } },
    });
    const writer = new PostgresMaterializer({ ...options, online: online.store });
    try {
      const stores = [new FeatureStore(), new FeatureStore()];
      const features = stores.map((s) =>
        s.feature({ module: 'serving', entity: 'user_id' }, async function level({ when }: { when: Date }) {
          return [{ user_id: 'u0', level: when.getUTCDate() }];
        }),
      );
      stores[0]!.addDecorator(reader.decorator);
      stores[1]!.addDecorator(writer.decorator);
      await writer.materialize(features[1]!, { when: day(1) });
      const read = async () =>
        (
          await stores[0]!
            .withParams({ when: Last() })
            .getFeatures(features[0]!)
            .filter({ user_id: 'u0' })
            .toArray()
        )[0]?.level;
      expect(await read()).toBe(1);
      expect(await read()).toBe(1);
      expect(reader.cacheStats().hits).toBe(1);
      await writer.materialize(features[1]!, { when: day(2) });
      await expect.poll(read, { timeout: 5_000 }).toBe(2);
      expect(await read()).toBe(2);
    } finally {
      await reader.close();
      await writer.close();
      await dropSchema(schema);
      await online.cleanup();
    }
  });
});
