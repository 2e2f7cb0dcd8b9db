import { tableFromArrays } from 'apache-arrow';
import {
  AsOf,
  type Feature,
  FeatureStore,
  FeatureStoreError,
  First,
  gt,
  Last,
  lte,
  type Materializer,
  ne,
  type Row,
  registerFrameAdapter,
} from 'featurefn';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

/** A frame whose batches stop with an error part-way, as a dropped source connection would. */
class FailingStream {
  constructor(readonly batchesBeforeError: number) {}
}

registerFrameAdapter({
  kind: 'failing-stream',
  canAdapt: (value): value is FailingStream => value instanceof FailingStream,
  toArrow: async () => {
    throw new Error('not used: this kind streams');
  },
  fromArrow: async () => {
    throw new Error('not used');
  },
  async *toBatches(stream: FailingStream) {
    for (let i = 0; i < stream.batchesBeforeError; i++) {
      const origins = Array.from({ length: 1000 }, (_, j) => `A${i}_${j}`);
      yield tableFromArrays({ origin: origins, n: Int32Array.from(origins, (_, j) => j) }).batches[0]!;
    }
    throw new Error(`stream broke after ${stream.batchesBeforeError} batches`);
  },
});

/** A frame streamed from a source that must be released, as a database cursor must. */
class TrackedStream {
  closed = false;
  constructor(readonly column: string) {}
}

registerFrameAdapter({
  kind: 'tracked-stream',
  canAdapt: (value): value is TrackedStream => value instanceof TrackedStream,
  toArrow: async () => {
    throw new Error('not used: this kind streams');
  },
  fromArrow: async () => {
    throw new Error('not used');
  },
  async *toBatches(stream: TrackedStream) {
    try {
      for (let i = 0; i < 5; i++) {
        const keys = Array.from({ length: 100 }, (_, j) => `K${i}_${j}`);
        yield tableFromArrays({ [stream.column]: keys, n: Int32Array.from(keys, (_, j) => i * 100 + j) })
          .batches[0]!;
      }
    } finally {
      stream.closed = true;
    }
  },
});

/**
 * What a store's test file provides: a fresh materializer, and how to clean up after it; and, for
 * a store another process can open, the TypeScript that opens the same store there (an import
 * line and an expression), once this one is closed.
 */
export type MaterializerFactory = () => Promise<{
  materializer: Materializer;
  cleanup(): Promise<void>;
  elsewhere?: { readonly imports: string; readonly create: string };
  /** Another materializer on the same store (closed by the caller), for a store two can share. */
  another?: () => Materializer;
}>;

const day = (d: number) => new Date(Date.UTC(2001, 2, d));

/** Synthetic flights, fixed: origin, destination, day of March 2001, delay in minutes. */
const FLIGHTS: readonly { origin: string; destination: string; day: number; delay: number }[] = [
  { origin: 'SFO', destination: 'LAX', day: 1, delay: 10 },
  { origin: 'SFO', destination: 'LAX', day: 2, delay: 30 },
  { origin: 'SFO', destination: 'JFK', day: 2, delay: -5 },
  { origin: 'LAX', destination: 'SFO', day: 1, delay: 0 },
  { origin: 'LAX', destination: 'JFK', day: 3, delay: 45 },
  { origin: 'O\'HARE"; DROP TABLE x; --', destination: 'SFO', day: 2, delay: 7 },
  { origin: 'JFK', destination: 'SFO', day: 3, delay: 12 },
];

function countByOrigin(when: Date): { origin: string; departures: number }[] {
  const counts = new Map<string, number>();
  for (const f of FLIGHTS) if (day(f.day) <= when) counts.set(f.origin, (counts.get(f.origin) ?? 0) + 1);
  return [...counts].map(([origin, departures]) => ({ origin, departures }));
}

function meanDelayByOrigin(when: Date): { origin: string; mean_delay: number }[] {
  const sums = new Map<string, number[]>();
  for (const f of FLIGHTS)
    if (day(f.day) <= when) sums.set(f.origin, [...(sums.get(f.origin) ?? []), f.delay]);
  return [...sums].map(([origin, d]) => ({ origin, mean_delay: d.reduce((a, b) => a + b, 0) / d.length }));
}

const byOrigin = (a: Row, b: Row) =>
  String(a.origin).localeCompare(String(b.origin)) ||
  String(a.destination ?? '').localeCompare(String(b.destination ?? ''));

/**
 * The behaviour every store must have. A new store is done when this suite passes against a
 * real server; any skip must be listed by name with its reason.
 */
export function describeMaterializer(name: string, factory: MaterializerFactory): void {
  describe(`materializer contract: ${name}`, () => {
    let materializer: Materializer;
    let cleanup: () => Promise<void>;
    let elsewhere: { readonly imports: string; readonly create: string } | undefined;
    let another: (() => Materializer) | undefined;
    let store: FeatureStore;
    let calls: Record<string, number>;
    let departures: Feature<(p: { when: Date }) => Promise<{ origin: string; departures: number }[]>>;
    let meanDelay: Feature<(p: { when: Date }) => Promise<{ origin: string; mean_delay: number }[]>>;

    beforeEach(async () => {
      ({ materializer, cleanup, elsewhere, another } = await factory());
      store = new FeatureStore();
      calls = {};
      const count = (n: string) => {
        calls[n] = (calls[n] ?? 0) + 1;
      };
      departures = store.feature(
        { module: 'flights', entity: 'origin' },
        async function departures({ when }: { when: Date }) {
          count('departures');
          return countByOrigin(when);
        },
      );
      meanDelay = store.feature(
        { module: 'flights', entity: 'origin' },
        async function meanDelay({ when }: { when: Date }) {
          count('meanDelay');
          return meanDelayByOrigin(when);
        },
      );
      store.addDecorator(materializer.decorator);
    });

    afterEach(async () => {
      await cleanup();
    });

    describe('a cold catalog', () => {
      it('lets a reader retrying Last() in a tight loop see a publication made after its first try', async () => {
        if (another === undefined && elsewhere === undefined) return; // in memory: no other store reaches it
        store.config.onStale = 'serve'; // the other writer's code is another version
        const read = () => store.withParams({ when: Last() }).getFeatures(departures).toArray();
        await expect(read()).rejects.toMatchObject({ code: 'NO_CONSISTENT_MATERIALIZATION' });
        let published: number;
        if (another !== undefined) {
          const writer = another();
          try {
            published = (await writer.materialize(departures, { when: day(2) })).rows;
          } finally {
            await writer.close();
          }
        } else {
          // Another process, run synchronously: this process reads nothing meanwhile, so a
          // notification of the publication can only be read by a later read's own I/O.
          published = Number(
            await runElsewhere(
              elsewhere!,
              "import { FeatureStore } from 'featurefn';\n" +
                'const store = new FeatureStore();\n' +
                "const f = store.feature({ module: 'flights', entity: 'origin' }, async function departures(_: { when: Date }) {\n" +
                "  return [{ origin: 'SFO', departures: 1 }, { origin: 'LAX', departures: 2 }];\n" +
                '});\n' +
                'console.log((await m.materialize(f, { when: new Date(Date.UTC(2001, 2, 2)) })).rows);\n',
            ),
          );
        }
        // No I/O between tries: only the read itself may ask the store.
        let rows: Row[] | undefined;
        let failures = 0;
        while (rows === undefined && failures < 200) {
          try {
            rows = await read();
          } catch (error) {
            if ((error as FeatureStoreError).code !== 'NO_CONSISTENT_MATERIALIZATION') throw error;
            failures++;
          }
        }
        expect(failures).toBe(0);
        expect(rows).toHaveLength(published);
      });
    });

    describe('no silent loss of a column', () => {
      const shapes: Record<number, Row[]> = {
        1: [{ origin: 'SFO', n: 1, label: 'a' }],
        2: [],
        3: [{ origin: 'SFO', n: 3 }],
        4: [{ origin: 'SFO', n: 4, label: 5 }],
      };
      let shaped: Feature<(p: { when: Date }) => Promise<Row[]>>;
      beforeEach(() => {
        shaped = store.feature(
          { module: 'shapes', entity: 'origin' },
          async function shaped({ when }: { when: Date }) {
            return shapes[when.getUTCDate()]!;
          },
        );
      });
      const last = () => store.withParams({ when: Last() }).getFeatures(shaped).toArray();

      it('refuses a result with no rows with EMPTY_RESULT, storing nothing', async () => {
        await materializer.materialize(shaped, { when: day(1) });
        const error = await materializer.materialize(shaped, { when: day(2) }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(FeatureStoreError);
        expect((error as FeatureStoreError).code).toBe('EMPTY_RESULT');
        expect((error as FeatureStoreError).message).toMatch(/allowEmpty/);
        expect((await materializer.listMaterializations(shaped)).map((m) => m.params.when)).toEqual([day(1)]);
        expect(await last()).toEqual([{ origin: 'SFO', n: 1, label: 'a' }]);
      });

      it('stores an empty result when allowed, with the columns the feature had, and Last() keeps them', async () => {
        await materializer.materialize(shaped, { when: day(1) });
        const record = await materializer.materialize(shaped, { when: day(2) }, { allowEmpty: true });
        expect(record.rows).toBe(0);
        expect(record.columns.map((c) => c.name)).toEqual(['origin', 'n', 'label']);
        expect(await last()).toEqual([]);
        const arrow = await store.withParams({ when: Last() }).getFeatures(shaped).toArrow();
        expect(arrow.schema.fields.map((f) => f.name)).toEqual(['origin', 'n', 'label']);
      });

      it('takes the first shape after an empty result stored before any shape was known', async () => {
        await materializer.materialize(shaped, { when: day(2) }, { allowEmpty: true });
        await materializer.materialize(shaped, { when: day(3) });
        expect(await last()).toEqual([{ origin: 'SFO', n: 3 }]);
      });

      it('refuses changed value columns with COLUMNS_CHANGED naming them, storing nothing', async () => {
        await materializer.materialize(shaped, { when: day(1) });
        for (const [d, pattern] of [
          [3, /column "label" \(string\) is missing/],
          [4, /column "label" was string and is now/],
        ] as const) {
          const error = await materializer.materialize(shaped, { when: day(d) }).catch((e: unknown) => e);
          expect((error as FeatureStoreError).code).toBe('COLUMNS_CHANGED');
          expect((error as FeatureStoreError).message).toMatch(pattern);
        }
        expect((await materializer.listMaterializations(shaped)).length).toBe(1);
      });

      it('stores changed columns when allowed, and reads give every column, as nulls where one lacks it', async () => {
        await materializer.materialize(shaped, { when: day(1) });
        await materializer.materialize(shaped, { when: day(3) }, { allowColumnChange: true });
        expect(await last()).toEqual([{ origin: 'SFO', n: 3, label: null }]);
        expect(
          await store.withParams({ when: Last() }).getFeatures(shaped).filter({ label: null }).toArray(),
        ).toEqual([{ origin: 'SFO', n: 3, label: null }]);
        expect(
          await store
            .withParams({ when: day(1) })
            .getFeatures(shaped)
            .toArray(),
        ).toEqual([{ origin: 'SFO', n: 1, label: 'a' }]);
      });
    });

    describe('unpublish and prune', () => {
      it('unpublish(id) retires a publication, so Last() moves back, and returns it', async () => {
        await materializer.materialize(departures, { when: day(1) });
        const bad = await materializer.materialize(departures, { when: day(2) });
        const read = () => store.withParams({ when: Last() }).getFeatures(departures).toArray();
        expect((await read()).length).toBe(countByOrigin(day(2)).length);
        expect((await materializer.unpublish(bad.id))?.id).toBe(bad.id);
        expect((await read()).sort(byOrigin)).toEqual(countByOrigin(day(1)).sort(byOrigin));
        expect((await materializer.listMaterializations(departures)).map((m) => m.params.when)).toEqual([
          day(1),
        ]);
        expect(await materializer.unpublish(bad.id)).toBeUndefined();
        expect(await materializer.unpublish('987654321')).toBeUndefined();
      });

      it('keeps a read planned before an unpublish whole', async () => {
        await materializer.materialize(departures, { when: day(1) });
        const record = await materializer.materialize(departures, { when: day(2) });
        const frame = store.withParams({ when: day(2) }).getFeatures(departures);
        expect((await frame.toArray()).length).toBe(record.rows);
        await materializer.unpublish(record.id);
        // Its table is kept for retainReplaced: a read already resolved to it still finishes.
        const plan = {
          sources: [{ feature: departures.info, materialization: record }],
          query: { kind: 'source', feature: departures.info.name },
        };
        expect((await materializer.read(plan as never, 'rows')).length).toBe(record.rows);
      });

      it('prune keeps the newest per feature and other parameters, and what is younger than olderThan', async () => {
        for (const d of [1, 2, 3, 4]) await materializer.materialize(departures, { when: day(d) });
        for (const d of [1, 2]) await materializer.materialize(meanDelay, { when: day(d) });
        expect(await materializer.prune({ keep: 2, olderThan: '1 hour' })).toEqual([]);
        const retired = await materializer.prune({ keep: 2 });
        expect(retired.map((m) => [m.featureName, m.params.when])).toEqual([
          ['flights.departures', day(1)],
          ['flights.departures', day(2)],
        ]);
        expect((await materializer.listMaterializations(departures)).map((m) => m.params.when)).toEqual([
          day(3),
          day(4),
        ]);
        expect((await materializer.listMaterializations(meanDelay)).length).toBe(2);
        expect((await store.withParams({ when: Last() }).getFeatures(departures).toArray()).length).toBe(
          countByOrigin(day(4)).length,
        );
        expect(await materializer.prune({ keep: 2 })).toEqual([]);
        const error = await materializer.prune({ keep: -1 }).catch((e: unknown) => e);
        expect((error as FeatureStoreError).code).toBe('INVALID_OPTION');
      });
    });

    describe('materialize and list', () => {
      it('returns the new record with parameters, row count, creation time and source hash', async () => {
        const before = Date.now();
        const record = await materializer.materialize(departures, { when: day(2) });
        expect(record.featureName).toBe('flights.departures');
        expect(record.params).toEqual({ when: day(2) });
        expect(record.params.when).toBeInstanceOf(Date);
        expect(record.rows).toBe(countByOrigin(day(2)).length);
        expect(record.createdAt.getTime()).toBeGreaterThanOrEqual(before - 1000);
        expect(record.sourceHash).toBe(departures.info.sourceHash);
        expect(record.kind).toBe('rows');
        expect(record.key).toEqual(['origin']);
      });

      it('lists materializations ordered by parameters, by feature, name or info', async () => {
        await materializer.materialize(departures, { when: day(3) });
        await materializer.materialize(departures, { when: day(1) });
        await materializer.materialize(meanDelay, { when: day(2) });
        const list = await materializer.listMaterializations(departures);
        expect(list.map((m) => m.params.when)).toEqual([day(1), day(3)]);
        expect(list.map((m) => m.stale)).toEqual([false, false]);
        // By name alone nothing says which code is running, so freshness is unknown.
        expect(await materializer.listMaterializations('flights.departures')).toEqual(
          list.map((m) => ({ ...m, stale: undefined })),
        );
        expect(await materializer.listMaterializations(departures.info)).toEqual(list);
        expect(await materializer.listMaterializations('flights.unknown')).toEqual([]);
      });

      it('treats equal parameters given in another order as the same materialization', async () => {
        const f = store.feature(
          { module: 'apps', entity: 'origin' },
          async function perApp(p: { when: Date; app: string }) {
            return countByOrigin(p.when).map((r) => ({ ...r, app: p.app }));
          },
        );
        await materializer.materialize(f, { when: day(2), app: 'web' });
        await materializer.materialize(f, { app: 'web', when: new Date(day(2).getTime()) });
        expect(await materializer.listMaterializations(f)).toHaveLength(1);
      });

      it('accepts strings, numbers and booleans as parameters', async () => {
        const f = store.feature(
          { module: 'apps', entity: 'origin' },
          async function mixed(p: { app: string; minDelay: number; late: boolean }) {
            return [{ origin: 'SFO', n: p.minDelay, app: p.app, late: p.late }];
          },
        );
        const record = await materializer.materialize(f, { app: 'web', minDelay: 15, late: true });
        expect(record.params).toEqual({ app: 'web', minDelay: 15, late: true });
        expect(await f({ late: true, minDelay: 15, app: 'web' })).toEqual([
          { origin: 'SFO', n: 15, app: 'web', late: true },
        ]);
      });

      it('replaces a materialization atomically and keeps one record', async () => {
        let version = 1;
        const f = store.feature({ module: 'v', entity: 'origin' }, async function versioned() {
          return [{ origin: 'SFO', version }];
        });
        const first = await materializer.materialize(f, {});
        version = 2;
        const second = await materializer.materialize(f, {});
        expect(second.id).not.toBe(first.id);
        const list = await materializer.listMaterializations(f);
        expect(list).toHaveLength(1);
        expect(list[0]!.id).toBe(second.id);
        expect(await store.withParams({}).getFeatures(f).toArray()).toEqual([{ origin: 'SFO', version: 2 }]);
      });
    });

    describe('decorated calls', () => {
      it('serve a materialized call from the store, as rows when the function returns rows', async () => {
        await materializer.materialize(departures, { when: day(2) });
        const before = calls.departures;
        const rows = await departures({ when: day(2) });
        expect(calls.departures).toBe(before);
        expect([...rows].sort(byOrigin)).toEqual(countByOrigin(day(2)).sort(byOrigin));
      });

      it('compute when nothing is materialized for the parameters', async () => {
        await materializer.materialize(departures, { when: day(2) });
        const before = calls.departures ?? 0;
        const rows = await departures({ when: day(3) });
        expect(calls.departures).toBe(before + 1);
        expect(rows.sort(byOrigin)).toEqual(countByOrigin(day(3)).sort(byOrigin));
      });

      it('give back an Arrow table for a feature that returns Arrow', async () => {
        const arrowFeature = store.feature(
          { module: 'a', entity: 'origin' },
          async function arrowDepartures({ when }: { when: Date }) {
            const rows = countByOrigin(when);
            return tableFromArrays({
              origin: rows.map((r) => r.origin),
              departures: Int32Array.from(rows.map((r) => r.departures)),
            });
          },
        );
        await materializer.materialize(arrowFeature, { when: day(3) });
        const table = await arrowFeature({ when: day(3) });
        expect(table.constructor.name).toBe('Table');
        expect(table.numRows).toBe(countByOrigin(day(3)).length);
        const sfo = table.toArray().find((r) => r.origin === 'SFO');
        expect(sfo?.departures).toBe(3);
      });

      it('serve a derived feature’s inner call from the store', async () => {
        const derived = store.feature(
          { module: 'flights', entity: 'origin' },
          async function busy({ when }: { when: Date }) {
            const rows = await departures({ when });
            return rows.map((r) => ({ origin: r.origin, busy: r.departures >= 3 }));
          },
        );
        await materializer.materialize(departures, { when: day(3) });
        const before = calls.departures;
        const rows = await derived({ when: day(3) });
        expect(calls.departures).toBe(before);
        expect(rows.find((r) => r.origin === 'SFO')).toEqual({ origin: 'SFO', busy: true });
      });

      it('a query returned by a decorated call still runs after the next publication replaced its table', async () => {
        const source = materializer.source!;
        let version = 1;
        const f = store.feature({ module: 'q', entity: 'origin' }, async function versionedQuery() {
          return version === 1
            ? source.sql`SELECT 'SFO' AS origin, 1 AS version`
            : source.sql`SELECT 'SFO' AS origin, 2 AS version`;
        });
        await materializer.materialize(f, {});
        const query = await f(); // served from the store: a query over its table
        version = 2;
        await materializer.materialize(f, {});
        expect(await query.toArray()).toEqual([{ origin: 'SFO', version: 1 }]);
        expect(await (await f()).toArray()).toEqual([{ origin: 'SFO', version: 2 }]);
      });
    });

    describe('reads at a consistent point in time', () => {
      beforeEach(async () => {
        for (const d of [1, 2, 3]) await materializer.materialize(departures, { when: day(d) });
        for (const d of [1, 2]) await materializer.materialize(meanDelay, { when: day(d) });
      });

      it('Last() picks the latest point at which every feature is materialized', async () => {
        const frame = store
          .withParams({ when: Last() })
          .getFeatures(departures, meanDelay)
          .filter({ origin: 'SFO' });
        expect(await frame.toArray()).toEqual([{ origin: 'SFO', departures: 3, mean_delay: 35 / 3 }]);
        expect(await frame.explain()).toContain('2001-03-02T00:00:00.000Z');
        expect(
          await store
            .withParams({ when: Last() })
            .getFeatures(departures)
            .filter({ origin: 'SFO' })
            .toArray(),
        ).toEqual([{ origin: 'SFO', departures: 3 }]);
      });

      it('First() and AsOf(date) resolve among shared points', async () => {
        const first = store
          .withParams({ when: First() })
          .getFeatures(departures, meanDelay)
          .filter({ origin: 'SFO' });
        expect(await first.toArray()).toEqual([{ origin: 'SFO', departures: 1, mean_delay: 10 }]);
        const asOf = store
          .withParams({ when: AsOf(new Date(Date.UTC(2001, 2, 2, 12))) })
          .getFeatures(departures)
          .filter({ origin: 'LAX' });
        expect(await asOf.toArray()).toEqual([{ origin: 'LAX', departures: 1 }]);
      });

      it('reads the instant a Date parameter holds now, after its caller changed it', async () => {
        const when = day(1);
        const exact = () =>
          store.withParams({ when }).getFeatures(departures, meanDelay).filter({ origin: 'SFO' }).toArray();
        expect(await exact()).toEqual([{ origin: 'SFO', departures: 1, mean_delay: 10 }]);
        when.setTime(day(2).getTime());
        expect(await exact()).toEqual([{ origin: 'SFO', departures: 3, mean_delay: 35 / 3 }]);

        const at = new Date(day(1));
        const asOf = () =>
          store
            .withParams({ when: AsOf(at) })
            .getFeatures(departures)
            .filter({ origin: 'SFO' });
        expect(await asOf().toArray()).toEqual([{ origin: 'SFO', departures: 1 }]);
        at.setTime(day(3).getTime());
        expect(await asOf().toArray()).toEqual([{ origin: 'SFO', departures: 3 }]);

        // The parameters a read reports are those it resolved, whatever the caller does later.
        const frame = store.withParams({ when }).getFeatures(departures);
        const explained = await frame.explain();
        expect(explained).toContain('2001-03-02T00:00:00.000Z');
      });

      it('fails clearly when no point in time has every feature', async () => {
        const late = store.feature(
          { module: 'flights', entity: 'origin' },
          async function late({ when }: { when: Date }) {
            return countByOrigin(when);
          },
        );
        await materializer.materialize(late, { when: day(9) });
        const frame = store.withParams({ when: Last() }).getFeatures(departures, late);
        const error = await frame.toArray().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(FeatureStoreError);
        expect((error as FeatureStoreError).code).toBe('NO_CONSISTENT_MATERIALIZATION');
        expect((error as FeatureStoreError).message).toContain('flights.late');
      });

      it('resolves Last() among materializations sharing the other parameters', async () => {
        const perApp = store.feature(
          { module: 'apps', entity: 'origin' },
          async function perAppCount(p: { when: Date; app: string }) {
            return countByOrigin(p.when).map((r) => ({ origin: r.origin, n: r.departures, app: p.app }));
          },
        );
        await materializer.materialize(perApp, { when: day(1), app: 'web' });
        await materializer.materialize(perApp, { when: day(3), app: 'ios' });
        const rows = await store
          .withParams({ when: Last(), app: 'web' })
          .getFeatures(perApp)
          .filter({ origin: 'SFO' })
          .toArray();
        expect(rows).toEqual([{ origin: 'SFO', n: 1, app: 'web' }]);
        // The same read for another app right after resolves anew, not from the last resolution.
        const ios = await store
          .withParams({ when: Last(), app: 'ios' })
          .getFeatures(perApp)
          .filter({ origin: 'SFO' })
          .toArray();
        expect(ios).toEqual([{ origin: 'SFO', n: 3, app: 'ios' }]);
      });

      it('sees a new materialization on the next read', async () => {
        const frame = store
          .withParams({ when: Last() })
          .getFeatures(departures, meanDelay)
          .filter({ origin: 'LAX' });
        expect((await frame.toArray())[0]?.departures).toBe(1);
        await materializer.materialize(meanDelay, { when: day(3) });
        expect((await frame.toArray())[0]?.departures).toBe(2);
      });

      it('follows a publication, an unpublish and another store’s publication between two reads of one frame', async () => {
        const frame = store
          .withParams({ when: Last() })
          .getFeatures(departures, meanDelay)
          .filter({ origin: 'LAX' });
        const anew = () =>
          store.withParams({ when: Last() }).getFeatures(departures, meanDelay).filter({ origin: 'LAX' });
        const both = async () => [
          (await frame.toArray())[0]?.departures,
          (await anew().toArray())[0]?.departures,
        ];
        expect(await both()).toEqual([1, 1]);
        const record = await materializer.materialize(meanDelay, { when: day(3) });
        expect(await both()).toEqual([2, 2]);
        await materializer.unpublish(record.id);
        expect(await both()).toEqual([1, 1]);
        if (another === undefined) return; // in memory: no other store reaches it
        const writer = another();
        try {
          await writer.materialize(meanDelay, { when: day(3) });
        } finally {
          await writer.close();
        }
        expect(await both()).toEqual([2, 2]);
      });

      it('stops serving a frame from the store once its decorator is detached', async () => {
        const local = new FeatureStore();
        const detach = local.addDecorator(materializer.decorator);
        const counted = local.feature(
          { module: 'flights', entity: 'origin' },
          async function counted({ when }: { when: Date }) {
            return countByOrigin(when);
          },
        );
        await materializer.materialize(counted, { when: day(1) });
        const frame = local.withParams({ when: Last() }).getFeatures(counted).filter({ origin: 'SFO' });
        expect(await frame.toArray()).toEqual([{ origin: 'SFO', departures: 1 }]);
        expect(await frame.toArray()).toEqual([{ origin: 'SFO', departures: 1 }]);
        detach();
        await expect(frame.toArray()).rejects.toMatchObject({ code: 'NO_CONSISTENT_MATERIALIZATION' });
      });

      it('binds each read’s own IN list into a statement compiled for another with nulls elsewhere', async () => {
        const frame = store.withParams({ when: Last() }).getFeatures(departures, meanDelay);
        for (const origin of [
          [null, 'SFO'],
          ['SFO', null],
          [null, 'LAX'],
          ['LAX', 'SFO'],
        ]) {
          const rows = await frame.filter({ origin }).toArray();
          expect(rows.map((r) => r.origin).sort()).toEqual(origin.filter((o) => o !== null).sort());
        }
      });

      it('compiles filters, selection and limit into one statement with bound values', async () => {
        const frame = store
          .withParams({ when: Last() })
          .getFeatures(departures, meanDelay)
          .filter({ origin: ['SFO', 'LAX', 'JFK'] })
          .filter({ departures: gt(0), mean_delay: lte(20) })
          .select('origin', 'mean_delay')
          .limit(2);
        const sql = await frame.explain();
        expect(sql).toMatch(/SELECT .* FROM .* LEFT JOIN .* WHERE .* LIMIT/s);
        expect(sql).not.toContain("'SFO'");
        expect(sql).toContain('"SFO"'); // listed apart as a bound value
        const rows = await frame.toArray();
        // Last() is day 2: of SFO, LAX and JFK, SFO and LAX have flights and a mean delay of at most 20.
        expect(rows.length).toBe(2);
        for (const row of rows) expect(Object.keys(row)).toEqual(['origin', 'mean_delay']);
        expect(rows.sort(byOrigin)).toEqual(
          meanDelayByOrigin(day(2))
            .filter((r) => r.origin === 'SFO' || r.origin === 'LAX')
            .sort(byOrigin),
        );
        const all = await store
          .withParams({ when: Last() })
          .getFeatures(departures, meanDelay)
          .filter({ mean_delay: lte(20), origin: ne('LAX') })
          .toArray();
        expect(all.sort(byOrigin).map((r) => r.origin)).toEqual(['O\'HARE"; DROP TABLE x; --', 'SFO']);
      });

      it('applies filter, select and limit in the order they were called, stored and live', async () => {
        // At day 2 both features are stored; at day 3 meanDelay is not, so the frame computes live.
        for (const when of [Last(), day(3)]) {
          const frame = store.withParams({ when }).getFeatures(departures, meanDelay);
          const origins = (await frame.toArray()).map((r) => r.origin as string);
          expect(origins.length).toBeGreaterThan(2);
          // A filter after limit(1) filters the one row kept: over all origins, exactly one row.
          let kept = 0;
          for (const origin of origins) kept += (await frame.limit(1).filter({ origin }).toArray()).length;
          expect(kept, when instanceof Date ? 'live' : 'stored').toBe(1);
          // A filter before the limit keeps its row.
          expect(await frame.filter({ origin: 'LAX' }).limit(1).select('origin').toArray()).toEqual([
            { origin: 'LAX' },
          ]);
          expect(await frame.limit(3).limit(5).toArray()).toHaveLength(3);
          expect(await frame.limit(5).limit(2).toArray()).toHaveLength(2);
        }
      });

      it('binds values that try to break out of SQL quoting', async () => {
        const hostile = 'O\'HARE"; DROP TABLE x; --';
        const rows = await store
          .withParams({ when: Last() })
          .getFeatures(departures)
          .filter({ origin: hostile })
          .toArray();
        expect(rows).toEqual([{ origin: hostile, departures: 1 }]);
        const none = await store
          .withParams({ when: Last() })
          .getFeatures(departures)
          .filter({ origin: "' OR '1'='1" })
          .toArray();
        expect(none).toEqual([]);
        expect(await materializer.listMaterializations(departures)).toHaveLength(3);
      });

      it('toSQL() gives the read as a query on the store’s database, with the same rows', async () => {
        const frame = store
          .withParams({ when: Last() })
          .getFeatures(departures, meanDelay)
          .filter({ origin: ['SFO', 'LAX', 'O\'HARE"; DROP TABLE x; --'] });
        const query = await frame.toSQL();
        expect(query.source.database).toBe(materializer.source?.database);
        expect((await query.toArray()).sort(byOrigin)).toEqual((await frame.toArray()).sort(byOrigin));
        const live = store.withParams({ when: day(9) }).getFeatures(departures);
        await expect(live.toSQL()).rejects.toMatchObject({ code: 'INVALID_QUERY' });
      });

      it('reads as Arrow with the stored column types', async () => {
        const table = await store.withParams({ when: Last() }).getFeatures(departures, meanDelay).toArrow();
        expect(table.numRows).toBe(countByOrigin(day(2)).length);
        expect(table.schema.fields.map((f) => f.name)).toEqual(['origin', 'departures', 'mean_delay']);
      });

      it('computes live, and says so, when the exact parameters are not materialized', async () => {
        const frame = store
          .withParams({ when: day(3) })
          .getFeatures(departures, meanDelay)
          .filter({ origin: 'SFO' });
        expect(await frame.explain()).toMatch(/computes live/);
        expect(await frame.toArray()).toEqual([{ origin: 'SFO', departures: 3, mean_delay: 35 / 3 }]);
      });

      it('keeps a live frame the same when a feature changes the parameters it was given', async () => {
        const meddling = store.feature(
          { module: 'flights', entity: 'origin' },
          async function meddling(params: { when: Date }) {
            const rows = countByOrigin(params.when);
            params.when = day(1);
            return rows;
          },
        );
        const frame = store
          .withParams({ when: day(3) })
          .getFeatures(meddling)
          .filter({ origin: 'SFO' });
        expect(await frame.toArray()).toEqual([{ origin: 'SFO', departures: 3 }]);
        expect(await frame.toArray()).toEqual([{ origin: 'SFO', departures: 3 }]);
      });

      it('joins a composite-key feature on the shared key column', async () => {
        const routes = store.feature(
          { module: 'flights', entity: ['origin', 'destination'] },
          async function routes({ when }: { when: Date }) {
            const counts = new Map<string, { origin: string; destination: string; flights: number }>();
            for (const f of FLIGHTS) {
              if (day(f.day) > when) continue;
              const k = `${f.origin}>${f.destination}`;
              const row = counts.get(k) ?? { origin: f.origin, destination: f.destination, flights: 0 };
              row.flights++;
              counts.set(k, row);
            }
            return [...counts.values()];
          },
        );
        await materializer.materialize(routes, { when: day(2) });
        const rows = await store
          .withParams({ when: Last() })
          .getFeatures(departures, routes)
          .filter({ origin: 'SFO' })
          .toArray();
        expect(rows.sort(byOrigin)).toEqual([
          { origin: 'SFO', departures: 3, destination: 'JFK', flights: 1 },
          { origin: 'SFO', departures: 3, destination: 'LAX', flights: 2 },
        ]);
        const one = await store
          .withParams({ when: Last() })
          .getFeatures(routes)
          .filter({ origin: 'SFO', destination: 'LAX' })
          .toArray();
        expect(one).toEqual([{ origin: 'SFO', destination: 'LAX', flights: 2 }]);
      });
    });

    describe('freshness, resolved parameters and parameter sets', () => {
      const DAY = 86_400_000;
      afterEach(() => {
        vi.useRealTimers();
      });

      it('Last({ maxAge }) admits a point in time exactly maxAge old and refuses one a millisecond older', async () => {
        const now = Date.now();
        vi.useFakeTimers({ toFake: ['Date'], now });
        const edge = new Date(now - 2 * DAY);
        const over = new Date(now - 2 * DAY - 1);
        await materializer.materialize(meanDelay, { when: over });
        const stale = store.withParams({ when: Last({ maxAge: '2 days' }) }).getFeatures(meanDelay);
        const error = await stale.toArray().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(FeatureStoreError);
        expect((error as FeatureStoreError).code).toBe('TOO_OLD');
        expect((error as FeatureStoreError).message).toContain(over.toISOString());
        expect((error as FeatureStoreError).message).toContain('2 days');
        expect((error as FeatureStoreError).details).toMatchObject({ ageMs: 2 * DAY + 1, maxAgeMs: 2 * DAY });

        await materializer.materialize(meanDelay, { when: edge });
        await materializer.materialize(departures, { when: edge });
        await materializer.materialize(departures, { when: new Date(now - DAY) });
        const frame = store
          .withParams({ when: Last({ maxAge: '2 days' }) })
          .getFeatures(departures, meanDelay)
          .filter({ origin: 'SFO' });
        expect(await frame.resolvedParams()).toEqual({ when: edge });
        expect(await frame.toArray()).toHaveLength(1);
        // AsOf takes the same bound.
        const asOf = store
          .withParams({ when: AsOf(new Date(now), { maxAge: 2 * DAY - 1 }) })
          .getFeatures(meanDelay);
        await expect(asOf.toArray()).rejects.toMatchObject({ code: 'TOO_OLD' });

        // One millisecond later the same read, remembered by the store, is refused.
        vi.setSystemTime(now + 1);
        await expect(frame.toArray()).rejects.toMatchObject({ code: 'TOO_OLD' });
        // Without maxAge, the same point in time is still read.
        expect(
          await store.withParams({ when: Last() }).getFeatures(departures, meanDelay).resolvedParams(),
        ).toEqual({ when: edge });
      });

      it('measures a parameter that is not a Date by when it was materialized', async () => {
        const versioned = store.feature(
          { module: 'flights', entity: 'origin' },
          async function versioned({ version }: { version: string }) {
            return [{ origin: 'SFO', version }];
          },
        );
        const record = await materializer.materialize(versioned, { version: 'v1' });
        const created = record.createdAt.getTime();
        vi.useFakeTimers({ toFake: ['Date'], now: created + 3_600_000 });
        const frame = store.withParams({ version: Last({ maxAge: '1 hour' }) }).getFeatures(versioned);
        expect(await frame.toArray()).toEqual([{ origin: 'SFO', version: 'v1' }]);
        vi.setSystemTime(created + 3_600_001);
        await expect(frame.toArray()).rejects.toMatchObject({ code: 'TOO_OLD' });
      });

      it('resolvedParams() and toArray/toArrow({ params: true }) give the parameters read, stored and live', async () => {
        for (const d of [1, 2, 3]) await materializer.materialize(departures, { when: day(d) });
        await materializer.materialize(meanDelay, { when: day(2) });
        const stored = store
          .withParams({ when: Last() })
          .getFeatures(departures, meanDelay)
          .filter({ origin: 'SFO' });
        expect(await stored.resolvedParams()).toEqual({ when: day(2) });
        expect(await stored.toArray({ params: true })).toEqual([
          { origin: 'SFO', departures: 3, mean_delay: 35 / 3, when: day(2) },
        ]);
        const table = await stored.toArrow({ params: true });
        expect(table.schema.fields.map((f) => f.name)).toEqual([
          'origin',
          'departures',
          'mean_delay',
          'when',
        ]);
        expect(new Date(Number(table.getChild('when')!.get(0))).getTime()).toBe(day(2).getTime());

        const live = store
          .withParams({ when: day(3) })
          .getFeatures(departures, meanDelay)
          .filter({ origin: 'SFO' });
        expect(await live.resolvedParams()).toEqual({ when: day(3) });
        expect(await live.toArray({ params: true })).toEqual([
          { origin: 'SFO', departures: 3, mean_delay: 35 / 3, when: day(3) },
        ]);
        expect((await live.toArrow({ params: true })).numRows).toBe(1);

        const clashing = store.feature(
          { module: 'flights', entity: 'origin' },
          async function clashing({ when }: { when: Date }) {
            return [{ origin: 'SFO', when }];
          },
        );
        await materializer.materialize(clashing, { when: day(2) });
        const frame = store.withParams({ when: Last() }).getFeatures(clashing);
        await expect(frame.toArray({ params: true })).rejects.toMatchObject({
          code: 'AMBIGUOUS_COLUMN',
          message: expect.stringContaining('`when`'),
        });
        await expect(frame.toArrow({ params: true })).rejects.toMatchObject({ code: 'AMBIGUOUS_COLUMN' });
      });

      it('reads features with different parameters together, stored and live', async () => {
        const received: Record<string, unknown>[] = [];
        const appOpens = store.feature(
          { module: 'apps', entity: 'origin' },
          async function appOpens(p: { when: Date; app: string }) {
            received.push({ ...p });
            return countByOrigin(p.when).map((r) => ({
              origin: r.origin,
              opens: r.departures * 10,
              app: p.app,
            }));
          },
        );
        for (const d of [1, 2, 3]) await materializer.materialize(departures, { when: day(d) });
        await materializer.materialize(appOpens, { when: day(2), app: 'ios' });
        await materializer.materialize(appOpens, { when: day(3), app: 'web' });
        const frame = store
          .withParams({ when: Last(), app: 'ios' })
          .getFeatures(departures, appOpens)
          .filter({ origin: 'SFO' });
        expect(await frame.resolvedParams()).toEqual({ when: day(2), app: 'ios' });
        expect(await frame.toArray()).toEqual([{ origin: 'SFO', departures: 3, opens: 30, app: 'ios' }]);
        expect(await frame.explain()).not.toContain('computes live');
        expect(
          await store
            .withParams({ when: Last(), app: 'web' })
            .getFeatures(appOpens, departures)
            .resolvedParams(),
        ).toEqual({ when: day(3), app: 'web' });
        expect(
          await store
            .withParams({ app: 'ios', when: day(2) })
            .getFeatures(departures, appOpens)
            .filter({ origin: 'SFO' })
            .toArray(),
        ).toEqual([{ origin: 'SFO', departures: 3, opens: 30, app: 'ios' }]);

        // Live: each feature is called with only the parameters it takes.
        const before = calls.departures ?? 0;
        const live = store
          .withParams({ when: day(1), app: 'ios' })
          .getFeatures(departures, appOpens)
          .filter({ origin: 'SFO' });
        expect(await live.explain()).toContain(`flights.departures({ when: ${day(1).toISOString()} })`);
        expect(await live.toArray()).toEqual([{ origin: 'SFO', departures: 1, opens: 10, app: 'ios' }]);
        expect(calls.departures).toBe(before);
        expect(received.at(-1)).toEqual({ when: day(1), app: 'ios' });

        // A parameter no requested feature takes, e.g. a typo, is refused with the closest name.
        for (const spec of [{ whne: Last() }, { when: day(2), ap: 'ios' }]) {
          const error = await store
            .withParams(spec)
            .getFeatures(departures, appOpens)
            .toArray()
            .catch((e: unknown) => e);
          expect(error).toBeInstanceOf(FeatureStoreError);
          expect((error as FeatureStoreError).code).toBe('UNKNOWN_PARAMETER');
        }
        await expect(store.withParams({ whne: Last() }).getFeatures(departures).toArray()).rejects.toThrow(
          /did you mean `when`\?/i,
        );
      });

      it("onMissing: 'error' refuses a read or call that would run feature code, and runs none", async () => {
        await materializer.materialize(departures, { when: day(2) });
        await materializer.materialize(meanDelay, { when: day(2) });
        store.config.onMissing = 'error';
        const before = { ...calls };
        const frame = store.withParams({ when: day(3) }).getFeatures(departures, meanDelay);
        expect(await frame.explain()).toMatch(
          /would refuse \(onMissing: 'error'\).*flights\.departures, flights\.meanDelay/,
        );
        const error = await frame.toArray().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(FeatureStoreError);
        expect((error as FeatureStoreError).code).toBe('NOT_MATERIALIZED');
        expect((error as FeatureStoreError).message).toContain('flights.departures, flights.meanDelay');
        expect((error as FeatureStoreError).message).toContain(day(3).toISOString());
        await expect(frame.toArrow()).rejects.toMatchObject({ code: 'NOT_MATERIALIZED' });
        await expect(departures({ when: day(3) })).rejects.toMatchObject({
          code: 'NOT_MATERIALIZED',
          message: expect.stringContaining('flights.departures'),
        });
        expect(calls).toEqual(before);
        // Materialized reads and calls are served; materialize() still computes.
        expect(
          await store
            .withParams({ when: day(2) })
            .getFeatures(departures, meanDelay)
            .toArray(),
        ).toHaveLength(countByOrigin(day(2)).length);
        expect(await departures({ when: day(2) })).toHaveLength(countByOrigin(day(2)).length);
        expect(calls).toEqual(before);
        await materializer.materialize(departures, { when: day(3) });
        expect(calls.departures).toBe((before.departures ?? 0) + 1);
        store.config.onMissing = 'compute';
        expect(await frame.explain()).toContain('computes live');
        expect(await frame.filter({ origin: 'SFO' }).toArray()).toEqual([
          { origin: 'SFO', departures: 3, mean_delay: 35 / 3 },
        ]);
      });
    });

    describe('column types', () => {
      it('stores and reads back integers, floats, strings, booleans, timestamps, nulls, JSON values and embeddings', async () => {
        const rows = [
          {
            id: 'a',
            big: 2n ** 40n,
            ratio: 0.125,
            label: 'ünïcode "quoted" \'x\'',
            ok: true,
            at: new Date(Date.UTC(1969, 11, 31, 23, 59, 59, 123)),
            meta: { tags: ['x', 'y'], nested: { n: 1 } },
            embedding: [0.5, -1.25, 3],
          },
          { id: 'b', big: null, ratio: null, label: null, ok: null, at: null, meta: null, embedding: null },
        ];
        const typed = store.feature({ module: 'types', entity: 'id' }, async function typed() {
          return rows;
        });
        const record = await materializer.materialize(typed, {});
        expect(record.columns.map((c) => c.type)).toEqual([
          'string',
          'int64',
          'float64',
          'string',
          'boolean',
          'timestamp',
          'json',
          'float64[]',
        ]);
        const expected = rows.map((r) => ({ ...r, big: r.big === null ? null : Number(r.big) }));
        expect((await typed()).sort(byId)).toEqual(expected);
        expect(await store.withParams({}).getFeatures(typed).filter({ id: 'a' }).toArray()).toEqual([
          expected[0],
        ]);
      });

      it('reads JSON objects and embeddings back unchanged, filtered by key', async () => {
        let seed = 7;
        const random = () => {
          seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
          return seed / 2 ** 31;
        };
        const rows = Array.from({ length: 40 }, (_, i) => ({
          user_id: `u${i}`,
          profile:
            i % 7 === 3
              ? null
              : {
                  name: `Ünïcode "${i}" 'x'`,
                  tags: i % 2 === 0 ? ['a', 'b'] : [],
                  scores: { clicks: i, ratio: i / 3, active: i % 3 === 0, note: null },
                  history: [{ at: '2001-03-01', n: [1, 2, [3]] }],
                },
          embedding:
            i % 11 === 5
              ? null
              : Array.from({ length: 384 }, () => Math.round((random() * 2 - 1) * 1e6) / 1e6),
        }));
        const profiles = store.feature({ module: 'users', entity: 'user_id' }, async function profiles() {
          return rows;
        });
        const record = await materializer.materialize(profiles, {});
        expect(record.columns).toEqual([
          { name: 'user_id', type: 'string' },
          { name: 'profile', type: 'json' },
          { name: 'embedding', type: 'float64[]' },
        ]);
        const wanted = ['u3', 'u4', 'u5', 'u38'];
        const expected = rows.filter((r) => wanted.includes(r.user_id));
        const read = await store.withParams({}).getFeatures(profiles).filter({ user_id: wanted }).toArray();
        expect(read.sort(byUser)).toEqual(expected.sort(byUser));
        expect(await store.withParams({}).getFeatures(profiles).filter({ user_id: 'u4' }).toArray()).toEqual([
          rows[4],
        ]);
        expect(
          await store
            .withParams({})
            .getFeatures(profiles)
            .filter({ user_id: 'u8' })
            .select('embedding')
            .toArray(),
        ).toEqual([{ embedding: rows[8]!.embedding }]);
        expect((await store.withParams({}).getFeatures(profiles).toArrow()).numRows).toBe(40);
        expect((await profiles()).sort(byUser)).toEqual([...rows].sort(byUser));
      });

      it('keeps a leading U+FEFF in keys, values and parameters; "\\ufeffx" and "x" are two keys', async () => {
        const region = '\ufeffeu';
        const bom = store.feature(
          { module: 'types', entity: 'id' },
          async function bom({ region }: { region: string }) {
            return [
              { id: '\ufeffx', region, label: '\ufeffvalue', meta: { note: '\ufeffjson' } },
              { id: 'x', region, label: 'plain', meta: null },
            ];
          },
        );
        const expected = await bom({ region });
        const record = await materializer.materialize(bom, { region });
        expect(record.rows).toBe(2);
        expect(record.params).toEqual({ region });
        const [listed] = await materializer.listMaterializations(bom);
        expect(listed?.params).toEqual({ region });
        // Served from the store: the call must match the stored parameter exactly.
        expect((await bom({ region })).sort(byId)).toEqual([...expected].sort(byId));
        const read = await store.withParams({ region }).getFeatures(bom).toArray();
        expect(read.length).toBe(2);
        expect(read.sort(byId)).toEqual([...expected].sort(byId));
        expect(
          await store.withParams({ region }).getFeatures(bom).filter({ id: '\ufeffx' }).toArray(),
        ).toEqual([expected[0]]);
        expect(await store.withParams({ region }).getFeatures(bom).filter({ id: 'x' }).toArray()).toEqual([
          expected[1],
        ]);
      });

      it('keeps column names that try to break out of SQL quoting', async () => {
        const column = 'x"; DROP TABLE y; --';
        const odd = store.feature({ module: 'types', entity: 'id' }, async function oddColumn() {
          return [{ id: 1, [column]: 'value' }];
        });
        await materializer.materialize(odd, {});
        expect(
          await store
            .withParams({})
            .getFeatures(odd)
            .filter({ [column]: 'value' })
            .toArray(),
        ).toEqual([{ id: 1, [column]: 'value' }]);
      });
    });

    describe('bad input is refused and leaves the store as it was', () => {
      async function expectRefused(run: () => Promise<unknown>, code: string, ...inMessage: string[]) {
        const before = await materializer.listMaterializations(departures);
        const error = await run().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(FeatureStoreError);
        expect((error as FeatureStoreError).code).toBe(code);
        for (const text of inMessage) expect((error as FeatureStoreError).message).toContain(text);
        expect(await materializer.listMaterializations(departures)).toEqual(before);
        expect((await departures({ when: day(1) })).sort(byOrigin)).toEqual(
          countByOrigin(day(1)).sort(byOrigin),
        );
      }

      beforeEach(async () => {
        await materializer.materialize(departures, { when: day(1) });
      });

      it('a result without the key column', async () => {
        const f = store.feature(
          { module: 'flights', entity: 'airport' },
          async function departuresNoKey({ when }: { when: Date }) {
            return countByOrigin(when);
          },
        );
        await expectRefused(
          () => materializer.materialize(f, { when: day(1) }),
          'MISSING_KEY_COLUMN',
          'flights.departuresNoKey',
          '"airport"',
          '"origin"',
        );
      });

      it('a result with a duplicated key, named in the error', async () => {
        const f = store.feature({ module: 'flights', entity: 'origin' }, async function departuresDup() {
          return [
            { origin: 'SFO', n: 1 },
            { origin: 'SFO', n: 2 },
          ];
        });
        await expectRefused(
          () => materializer.materialize(f, { when: day(1) }),
          'DUPLICATE_KEY',
          'origin = "SFO"',
          '2001-03-01',
        );
        expect(await materializer.listMaterializations(f)).toEqual([]);
      });

      it('a duplicated key with a leading U+FEFF is named exactly, in a small and a big result', async () => {
        for (const size of [0, 40_000]) {
          const rows = [
            ...Array.from({ length: size }, (_, i) => ({ id: `k${i}` })),
            { id: 'x' },
            { id: '\ufeffx' },
            { id: '\ufeffx' },
          ];
          const f = store.feature({ module: `types${size}`, entity: 'id' }, async function bomDup() {
            return rows;
          });
          const error = await materializer.materialize(f, {}).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(error).toBeInstanceOf(FeatureStoreError);
          expect((error as FeatureStoreError).code).toBe('DUPLICATE_KEY');
          expect((error as FeatureStoreError).details).toEqual({ key: { id: '\ufeffx' } });
        }
      });

      it('a duplicate that replaces an existing materialization keeps the old one', async () => {
        let dup = false;
        const f = store.feature({ module: 'flights', entity: 'origin' }, async function sometimesDup() {
          return dup ? [{ origin: 'SFO' }, { origin: 'SFO' }] : [{ origin: 'SFO' }];
        });
        const ok = await materializer.materialize(f, {});
        dup = true;
        await expect(materializer.materialize(f, {})).rejects.toMatchObject({ code: 'DUPLICATE_KEY' });
        expect((await materializer.listMaterializations(f)).map((m) => m.id)).toEqual([ok.id]);
        expect(await store.withParams({}).getFeatures(f).toArray()).toEqual([{ origin: 'SFO' }]);
      });

      it('duplicated and null keys in a big result, named in the error', async () => {
        // Past the row count a store checks keys as they stream, so its database checks them.
        const routes = Array.from({ length: 40_000 }, (_, i) => ({
          origin: `A${i % 200}`,
          day: new Date(Date.UTC(2001, 0, 1) + Math.floor(i / 200) * 86_400_000),
          n: i,
        }));
        routes.push({ origin: 'A7', day: new Date(Date.UTC(2001, 0, 3)), n: -1 });
        const composite = ['origin', 'day'];
        const dup = store.feature({ module: 'flights', entity: composite }, async function bigDup() {
          return routes;
        });
        await expectRefused(
          () => materializer.materialize(dup, {}),
          'DUPLICATE_KEY',
          'origin = "A7"',
          '2001-01-03',
        );
        const withNull = store.feature({ module: 'flights', entity: composite }, async function bigNull() {
          return [...routes.slice(0, -1), { origin: null, day: new Date(0), n: 0 }];
        });
        await expectRefused(() => materializer.materialize(withNull, {}), 'NULL_KEY', 'flights.bigNull');
        const ok = store.feature({ module: 'flights', entity: composite }, async function bigOk() {
          return routes.slice(0, -1);
        });
        expect((await materializer.materialize(ok, {})).rows).toBe(40_000);
      });

      it('a null key', async () => {
        const f = store.feature({ module: 'flights', entity: 'origin' }, async function nullKey() {
          return [
            { origin: 'SFO', n: 1 },
            { origin: null, n: 2 },
          ];
        });
        await expectRefused(() => materializer.materialize(f, {}), 'NULL_KEY', 'flights.nullKey');
      });

      it('a result that is not a frame', async () => {
        const f = store.feature({ module: 'flights' }, async function notAFrame() {
          return 42;
        });
        await expectRefused(
          () => materializer.materialize(f, { when: day(1) }),
          'UNSUPPORTED_RESULT',
          'flights.notAFrame',
          'the number 42',
          'rows',
        );
      });

      it('a result whose stream fails after the first batch', async () => {
        const f = store.feature({ module: 'flights', entity: 'origin' }, async function failsMidway() {
          return new FailingStream(2);
        });
        await expectRefused(
          () => materializer.materialize(f, {}),
          'FEATURE_FAILED',
          'stream broke after 2 batches',
          'after 2000 row(s)',
        );
        expect(await materializer.listMaterializations(f)).toEqual([]);
      });

      it('a streamed result is released when it is refused, before or during the load', async () => {
        const noKey = new TrackedStream('airport');
        const f = store.feature({ module: 'flights', entity: 'origin' }, async function trackedNoKey() {
          return noKey;
        });
        await expectRefused(() => materializer.materialize(f, {}), 'MISSING_KEY_COLUMN', '"airport"');
        expect(noKey.closed).toBe(true);

        const invalid = new TrackedStream('origin');
        const schema = {
          '~standard': {
            version: 1 as const,
            vendor: 'test',
            validate: (row: unknown) =>
              (row as { n: number }).n >= 250
                ? { issues: [{ message: 'n must stay below 250', path: ['n'] }] }
                : { value: row },
          },
        };
        const g = store.feature(
          { module: 'flights', entity: 'origin', schema },
          async function trackedInvalid() {
            return invalid;
          },
        );
        await expectRefused(
          () => materializer.materialize(g, {}),
          'INVALID_VALUE',
          'origin = "K2_50"',
          'n must stay below 250',
        );
        expect(invalid.closed).toBe(true);
        expect(await materializer.listMaterializations(g)).toEqual([]);
      });

      it('a function that throws', async () => {
        const f = store.feature({ module: 'flights' }, async function broken(): Promise<Row[]> {
          throw new Error('source table missing');
        });
        await expectRefused(
          () => materializer.materialize(f, { when: day(1) }),
          'FEATURE_FAILED',
          'source table missing',
        );
      });

      it('a parameter of an unsupported type', async () => {
        await expectRefused(
          () => materializer.materialize(departures, { when: { at: 'tomorrow' } as unknown as Date }),
          'UNSUPPORTED_PARAMETER',
          '"when"',
          'plain object',
        );
      });

      it('an unregistered function', async () => {
        const plain = async () => [{ origin: 'SFO' }];
        await expectRefused(
          () => materializer.materialize(plain as never, {}),
          'UNKNOWN_FEATURE',
          'feature(',
        );
      });
    });

    it('refuses calls after close()', async () => {
      await materializer.close();
      await expect(materializer.listMaterializations(departures)).rejects.toMatchObject({ code: 'CLOSED' });
      await expect(materializer.materialize(departures, { when: day(1) })).rejects.toMatchObject({
        code: 'CLOSED',
      });
    });

    describe('versions and freshness', () => {
      /** A store that allows redefinition, with `f` (computing `n`) materialized at day 1. */
      async function materializedThen(n: number, options: { version?: string } = {}) {
        const own = new FeatureStore();
        own.config.interactive = true;
        own.addDecorator(materializer.decorator);
        const f = own.feature(
          { module: 'fresh', entity: 'origin', ...options },
          n === 1
            ? async function level(_: { when: Date }) {
                return [{ origin: 'SFO', n: 1 }];
              }
            : async function level(_: { when: Date }) {
                return [{ origin: 'SFO', n: 2 }];
              },
        );
        return { own, f };
      }

      it('records the version and lineage each materialization was computed with', async () => {
        const own = new FeatureStore();
        own.addDecorator(materializer.decorator);
        const inner = own.feature(
          { module: 'fresh', entity: 'origin' },
          async function inner(_: { when: Date }) {
            return [{ origin: 'SFO', a: 1 }];
          },
        );
        const outer = own.feature(
          { module: 'fresh', entity: 'origin' },
          async function outer(p: { when: Date }) {
            return (await inner(p)).map((r) => ({ origin: r.origin, b: r.a + 1 }));
          },
        );
        const record = await materializer.materialize(outer, { when: day(1) });
        expect(record.version).toBe(own.versionOf(outer));
        expect(record.version).not.toBe(outer.info.version);
        expect(record.lineage).toEqual({ 'fresh.inner': inner.info.version });
        const [listed] = await materializer.listMaterializations(outer);
        expect(listed).toMatchObject({ version: record.version, lineage: record.lineage, stale: false });
        expect(listed!.age).toBeGreaterThanOrEqual(0);
        expect(listed!.age).toBeLessThan(60_000);
      });

      it('a changed body, a changed called feature or a changed version option makes earlier ones stale', async () => {
        // The body.
        const { own, f } = await materializedThen(1);
        await materializer.materialize(f, { when: day(1) });
        expect((await materializer.listMaterializations(f)).map((m) => m.stale)).toEqual([false]);
        own.feature({ module: 'fresh', entity: 'origin' }, async function level(_: { when: Date }) {
          return [{ origin: 'SFO', n: 3 }];
        });
        expect((await materializer.listMaterializations(f)).map((m) => m.stale)).toEqual([true]);
        expect((await materializer.listMaterializations('fresh.level')).map((m) => m.stale)).toEqual([
          undefined,
        ]);

        // A called feature.
        const inner = own.feature(
          { module: 'fresh', entity: 'origin' },
          async function inner(_: { when: Date }) {
            return [{ origin: 'SFO', a: 1 }];
          },
        );
        const outer = own.feature(
          { module: 'fresh', entity: 'origin' },
          async function outer(p: { when: Date }) {
            return (await inner(p)).map((r) => ({ origin: r.origin, b: r.a + 1 }));
          },
        );
        await materializer.materialize(outer, { when: day(1) });
        expect((await materializer.listMaterializations(outer)).map((m) => m.stale)).toEqual([false]);
        own.feature({ module: 'fresh', entity: 'origin' }, async function inner(_: { when: Date }) {
          return [{ origin: 'SFO', a: 10 }];
        });
        expect((await materializer.listMaterializations(outer)).map((m) => m.stale)).toEqual([true]);

        // The version option, with the very same function.
        const body = async function versioned(_: { when: Date }) {
          return [{ origin: 'SFO', n: 1 }];
        };
        const v = own.feature({ module: 'fresh', entity: 'origin' }, body);
        await materializer.materialize(v, { when: day(1) });
        own.feature({ module: 'fresh', entity: 'origin' }, body);
        expect((await materializer.listMaterializations(v)).map((m) => m.stale)).toEqual([false]);
        own.feature({ module: 'fresh', entity: 'origin', version: '2' }, body);
        expect((await materializer.listMaterializations(v)).map((m) => m.stale)).toEqual([true]);
      });

      /** `f` materialized with n = 1, then redefined to compute n = 2. */
      async function staleSetup() {
        const { own, f } = await materializedThen(1);
        await materializer.materialize(f, { when: day(1) });
        own.feature({ module: 'fresh', entity: 'origin' }, async function level(_: { when: Date }) {
          return [{ origin: 'SFO', n: 2 }];
        });
        const read = () => own.withParams({ when: Last() }).getFeatures(f).toArray();
        const call = async () => (await f({ when: day(1) })) as Row[];
        return { own, f, read, call };
      }

      function countWarnings() {
        const seen: string[] = [];
        const listener = (warning: Error) => {
          if (warning.name === 'StaleMaterializationWarning') seen.push(warning.message);
        };
        process.on('warning', listener);
        return { seen, stop: () => process.off('warning', listener) };
      }

      it('applies onStale to the next read of a frame once its feature is redefined', async () => {
        const { own, f } = await materializedThen(1);
        await materializer.materialize(f, { when: day(1) });
        own.config.onStale = 'compute';
        const frame = own.withParams({ when: Last() }).getFeatures(f);
        const anew = () => own.withParams({ when: Last() }).getFeatures(f).toArray();
        expect(await frame.toArray()).toEqual([{ origin: 'SFO', n: 1 }]);
        expect(await anew()).toEqual([{ origin: 'SFO', n: 1 }]);
        own.feature({ module: 'fresh', entity: 'origin' }, async function level(_: { when: Date }) {
          return [{ origin: 'SFO', n: 2 }];
        });
        expect(await frame.toArray()).toEqual([{ origin: 'SFO', n: 2 }]);
        expect(await anew()).toEqual([{ origin: 'SFO', n: 2 }]);
      });

      it("onStale 'warn' (default) serves the stored values and warns once per feature and version", async () => {
        const { own, read, call } = await staleSetup();
        expect(own.config.onStale).toBe('warn');
        const warnings = countWarnings();
        try {
          for (let i = 0; i < 3; i++) {
            expect(await read()).toEqual([{ origin: 'SFO', n: 1 }]);
            expect(await call()).toEqual([{ origin: 'SFO', n: 1 }]);
          }
          await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
          expect(warnings.seen).toHaveLength(1);
          expect(warnings.seen[0]).toMatch(
            /fresh\.level.*version [0-9a-f]{12}.*version [0-9a-f]{12}.*re-materialize/s,
          );
        } finally {
          warnings.stop();
        }
      });

      it("onStale 'serve' serves silently, 'compute' runs the code, 'error' refuses", async () => {
        const { own, f, read, call } = await staleSetup();
        const warnings = countWarnings();
        try {
          own.config.onStale = 'serve';
          expect(await read()).toEqual([{ origin: 'SFO', n: 1 }]);
          expect(await call()).toEqual([{ origin: 'SFO', n: 1 }]);
          expect(await own.withParams({ when: Last() }).getFeatures(f).explain()).toMatch(
            /stale materialization: fresh\.level \(onStale 'serve': served\)/,
          );
          await new Promise((resolve) => setImmediate(resolve));
          expect(warnings.seen).toEqual([]);
        } finally {
          warnings.stop();
        }

        own.config.onStale = 'compute';
        expect(await read()).toEqual([{ origin: 'SFO', n: 2 }]);
        expect(await call()).toEqual([{ origin: 'SFO', n: 2 }]);
        expect(await own.withParams({ when: Last() }).getFeatures(f).explain()).toMatch(
          /computes live: .*stale/,
        );

        own.config.onStale = 'error';
        expect(await own.withParams({ when: Last() }).getFeatures(f).explain()).toMatch(/the read will fail/);
        for (const attempt of [read, call]) {
          const error = await attempt().catch((e: unknown) => e);
          expect(error).toBeInstanceOf(FeatureStoreError);
          expect((error as FeatureStoreError).code).toBe('STALE_MATERIALIZATION');
          expect((error as FeatureStoreError).message).toMatch(
            /fresh\.level.*version .* but the code now running is version/s,
          );
        }

        // Materialized again with the current code: fresh, served whatever the mode.
        await materializer.materialize(f, { when: day(1) });
        expect(await read()).toEqual([{ origin: 'SFO', n: 2 }]);
      });

      it('keeps each feature’s metadata in the catalog, read back by another process without the feature code', async () => {
        const { documentedStore, nFavorites, lastLogin, undocumented } = await import(
          './fixtures/documented-features.js'
        );
        const detach = documentedStore.addDecorator(materializer.decorator);
        try {
          await materializer.materialize(nFavorites, { when: day(1), app: 'ios' });
          await materializer.materialize(lastLogin, { when: day(1) });
          await materializer.materialize(undocumented, { when: day(1) });
        } finally {
          detach();
        }
        const expected = {
          'events.nFavorites': {
            name: 'events.nFavorites',
            version: documentedStore.versionOf(nFavorites),
            summary: 'How many favorites each user made up to `when`, counted over every app.',
            description:
              'How many favorites each user made up to `when`,\ncounted over every app.\n\nDeleted favorites are not counted.',
            maintainer: 'John Smith <john@example.com>',
            status: 'production',
            tags: ['PII', 'appteam'],
            entity: ['user_id'],
            params: [
              { name: 'app', description: "which app's favorites" },
              { name: 'when', description: 'the point in time to count up to' },
            ],
            columns: [
              { name: 'favorites', type: 'int32' },
              { name: 'ratio', type: 'float64' },
            ],
            calls: {},
            definedAt: nFavorites.info.definedAt,
          },
          'events.lastLogin': {
            name: 'events.lastLogin',
            summary: "Users' last login, on one line.",
            description: "Users' last login, on one line.",
            maintainer: 'Ana <ana@example.com>',
            status: undefined,
            tags: [],
            entity: ['user_id'],
            params: [{ name: 'when', description: undefined }],
          },
          'events.undocumented': {
            name: 'events.undocumented',
            summary: undefined,
            description: undefined,
            maintainer: undefined,
            status: undefined,
            tags: [],
            params: [{ name: 'when', description: undefined }],
            calls: {},
          },
        };
        const here = await materializer.listFeatures();
        expect(here.map((f) => f.name)).toEqual([
          'events.lastLogin',
          'events.nFavorites',
          'events.undocumented',
        ]);
        expect(await materializer.describeFeature('events.nFavorites')).toMatchObject(
          expected['events.nFavorites'],
        );
        expect(await materializer.describeFeature('events.unknown')).toBeUndefined();
        if (elsewhere === undefined) return; // a store no other process can open (DuckDB in memory)

        await materializer.close(); // a DuckDB file is open in one process at a time
        const { execFileSync } = await import('node:child_process');
        const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
        const { join } = await import('node:path');
        const { fileURLToPath } = await import('node:url');
        const root = fileURLToPath(new URL('../../', import.meta.url));
        const dir = mkdtempSync(join(root, 'node_modules', '.featurefn-tool-'));
        try {
          const script = join(dir, 'tool.mts'); // .mts: an ES module wherever it lies
          writeFileSync(
            script,
            `${elsewhere.imports}\n` +
              `const m = ${elsewhere.create};\n` +
              'const out = { list: await m.listFeatures(), one: await m.describeFeature(process.argv[2]) };\n' +
              'await m.close();\n' +
              'console.log(JSON.stringify(out));\n',
          );
          const output = execFileSync(join(root, 'node_modules/.bin/tsx'), [script, 'events.nFavorites'], {
            encoding: 'utf8',
          });
          const { list, one } = JSON.parse(output) as {
            list: Record<string, unknown>[];
            one: Record<string, unknown>;
          };
          const plain = (v: unknown) => JSON.parse(JSON.stringify(v));
          expect(list.map((f) => f.name)).toEqual([
            'events.lastLogin',
            'events.nFavorites',
            'events.undocumented',
          ]);
          expect(one).toMatchObject(plain(expected['events.nFavorites']));
          for (const f of list) {
            expect(f).toMatchObject(plain(expected[f.name as keyof typeof expected]));
            expect(f).toEqual(plain(here.find((h) => h.name === f.name)));
          }
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }, 120_000); // a tsx process starting on a loaded machine
    });
  });
}

/**
 * Runs `body` in another process, synchronously, with `m` a materializer made by `elsewhere` (closed
 * after `body`); resolves to what it printed.
 */
async function runElsewhere(
  elsewhere: { readonly imports: string; readonly create: string },
  body: string,
): Promise<string> {
  const { execFileSync } = await import('node:child_process');
  const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const dir = mkdtempSync(join(root, 'node_modules', '.featurefn-writer-'));
  try {
    const script = join(dir, 'writer.mts');
    const featurefn = JSON.stringify(new URL('../../src/index.ts', import.meta.url).href);
    writeFileSync(
      script,
      `${elsewhere.imports}\n${body.replaceAll("from 'featurefn'", `from ${featurefn}`).replace(/^/, `const m = ${elsewhere.create};\n`)}` +
        'await m.close();\n',
    );
    return execFileSync(join(root, 'node_modules/.bin/tsx'), [script], { encoding: 'utf8' }).trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const byId = (a: Row, b: Row) => String(a.id).localeCompare(String(b.id));
const byUser = (a: Row, b: Row) => String(a.user_id).localeCompare(String(b.user_id));
