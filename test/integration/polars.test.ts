import { FeatureStore, FeatureStoreError, Last } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { polarsAdapter, toPolars } from 'featurefn/polars';
import pl from 'nodejs-polars';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { seeded } from '../support/seeded.js';

const ORIGINS = ['SFO', 'LAX', 'JFK', 'ORD', 'SEA'] as const;
const DAY = 86_400_000;
const march = (day: number) => new Date(Date.UTC(2001, 2, day));

/** Synthetic flights, seeded: origin, departure time in March 2001, delay in minutes. */
function syntheticFlights(seed: number, count: number): pl.DataFrame {
  const rng = seeded(seed);
  const origin: string[] = [];
  const date: Date[] = [];
  const delay: (number | null)[] = [];
  for (let i = 0; i < count; i++) {
    origin.push(rng.pick(ORIGINS));
    // Millisecond instants across the first ten days of March.
    date.push(new Date(march(1).getTime() + rng.int(0, 10 * DAY - 1)));
    delay.push(rng.chance(0.1) ? null : rng.int(-15, 120));
  }
  return pl.DataFrame({ origin, date, delay }).withColumns(pl.col('date').cast(pl.Datetime('ms')));
}

const FLIGHTS = syntheticFlights(20_010_301, 400);

/** Per origin up to `when`: departures, mean delay, last departure and the last three delays. */
function departuresAsOf(when: Date): pl.LazyDataFrame {
  return FLIGHTS.lazy()
    .filter(pl.col('date').ltEq(pl.lit(when)))
    .sort('date')
    .groupBy('origin')
    .agg(
      pl.len().cast(pl.Int64).alias('departures'),
      pl.col('delay').mean().alias('mean_delay'),
      pl.col('date').max().alias('last_departure'),
      pl.col('delay').dropNulls().cast(pl.Float64).tail(3).alias('recent_delays'),
    )
    .sort('origin');
}

const byOrigin = (df: pl.DataFrame) => df.sort('origin');

describe('nodejs-polars features on a DuckDB store', () => {
  let store: FeatureStore;
  let materializer: DuckDBMaterializer;
  let calls: number;

  beforeEach(() => {
    store = new FeatureStore();
    materializer = new DuckDBMaterializer({ path: ':memory:' });
    store.addDecorator(materializer.decorator);
    calls = 0;
  });

  afterEach(async () => {
    await materializer.close();
  });

  const departuresFeature = () =>
    store.feature(
      { module: 'flights', entity: 'origin' },
      async function departures({ when }: { when: Date }) {
        calls++;
        return departuresAsOf(when).collect();
      },
    );

  it('a decorated call returns the stored polars DataFrame, equal to what the function returns', async () => {
    const departures = departuresFeature();
    const when = march(6);
    const record = await materializer.materialize(departures, { when });
    expect(record.kind).toBe('polars');
    expect(record.rows).toBe(ORIGINS.length);
    expect(record.columns).toEqual([
      { name: 'origin', type: 'string' },
      { name: 'departures', type: 'int64' },
      { name: 'mean_delay', type: 'float64' },
      { name: 'last_departure', type: 'timestamp' },
      { name: 'recent_delays', type: 'float64[]' },
    ]);

    const expected = await departures.compute({ when });
    const callsBefore = calls;
    const stored = await departures({ when });
    expect(calls).toBe(callsBefore); // served from the store, not computed
    expect(polarsAdapter.canAdapt(stored)).toBe(true);
    expect(stored).not.toBe(expected);
    expect(stored.schema).toEqual(expected.schema);
    expect(byOrigin(stored).frameEqual(byOrigin(expected), true)).toBe(true);
    expect(byOrigin(stored).toRecords()).toEqual(byOrigin(expected).toRecords());
    // A sanity check on the data itself: every flight up to `when` is counted once.
    const total = FLIGHTS.filter(pl.col('date').ltEq(pl.lit(when))).height;
    expect(Number(stored.getColumn('departures').sum())).toBe(total);
  });

  it('toPolars() on a filtered frame at Last() returns the one row of the latest materialization', async () => {
    const departures = departuresFeature();
    await materializer.materialize(departures, { when: march(3) });
    await materializer.materialize(departures, { when: march(8) });

    const frame = store.withParams({ when: Last() }).getFeatures(departures).filter({ origin: 'SFO' });
    const df = await frame.toPolars();
    expect(polarsAdapter.canAdapt(df)).toBe(true);
    expect(df.height).toBe(1);
    expect(df.columns).toEqual(['origin', 'departures', 'mean_delay', 'last_departure', 'recent_delays']);
    const expected = (await departures.compute({ when: march(8) })).filter(
      pl.col('origin').eq(pl.lit('SFO')),
    );
    expect(df.toRecords()).toEqual(expected.toRecords());
    expect(await frame.explain()).toContain('served by duckdb');

    // The helper gives the same frame from a lazy frame of features or from rows.
    expect((await toPolars(frame)).toRecords()).toEqual(df.toRecords());
    expect((await toPolars(await frame.toArray())).toRecords()).toEqual(df.toRecords());
  });

  it('a LazyFrame feature reads back as a LazyFrame holding the stored rows', async () => {
    const lazyDepartures = store.feature(
      { module: 'flights', entity: 'origin' },
      async function lazyDepartures({ when }: { when: Date }) {
        calls++;
        return departuresAsOf(when);
      },
    );
    const when = march(10);
    const record = await materializer.materialize(lazyDepartures, { when });
    expect(record.kind).toBe('polars-lazy');

    const callsBefore = calls;
    const stored = await lazyDepartures({ when });
    expect(calls).toBe(callsBefore);
    expect(Object.prototype.toString.call(stored)).toBe('[object LazyDataFrame]');
    const collected = await stored.sort('origin').collect();
    const expected = await (await lazyDepartures.compute({ when })).collect();
    expect(collected.frameEqual(expected, true)).toBe(true);
    // Lazy operations still work on what came back.
    const sfo = await stored
      .filter(pl.col('origin').eq(pl.lit('SFO')))
      .select('departures')
      .collect();
    expect(sfo.toRecords()).toEqual(
      expected
        .filter(pl.col('origin').eq(pl.lit('SFO')))
        .select('departures')
        .toRecords(),
    );
  });

  it('struct columns are stored as JSON: rows read them parsed, polars reads JSON text', async () => {
    const summary = store.feature(
      { module: 'flights', entity: 'origin' },
      async function summary({ when }: { when: Date }) {
        return departuresAsOf(when)
          .select(pl.col('origin'), pl.struct([pl.col('departures'), pl.col('mean_delay')]).alias('stats'))
          .collect();
      },
    );
    const when = march(5);
    const record = await materializer.materialize(summary, { when });
    expect(record.columns).toEqual([
      { name: 'origin', type: 'string' },
      { name: 'stats', type: 'json' },
    ]);
    const expected = (await summary.compute({ when })).toRecords() as unknown as {
      origin: string;
      stats: { departures: bigint | number; mean_delay: number };
    }[];
    const rows = await store.withParams({ when }).getFeatures(summary).toArray();
    expect(rows.sort((a, b) => String(a.origin).localeCompare(String(b.origin)))).toEqual(
      expected.map((r) => ({
        origin: r.origin,
        stats: { departures: Number(r.stats.departures), mean_delay: r.stats.mean_delay },
      })),
    );

    // Read back through polars, the column is JSON text; storing that frame again keeps it JSON.
    const stored = await summary({ when });
    expect(String(stored.schema.stats)).toBe(String(pl.String));
    const again = store.feature({ module: 'flights', entity: 'origin' }, async function again() {
      return stored;
    });
    const second = await materializer.materialize(again, {});
    expect(second.columns).toEqual(record.columns);
  });
});

describe('without nodejs-polars installed', () => {
  afterEach(() => {
    vi.doUnmock('nodejs-polars');
    vi.resetModules();
  });

  it('toPolars() fails with a FeatureStoreError that says what to install, before running anything', async () => {
    vi.resetModules();
    vi.doMock('nodejs-polars', () => {
      throw new Error("Cannot find module 'nodejs-polars'");
    });
    const featurefn = await import('featurefn');
    const isolated = new featurefn.FeatureStore();
    let ran = false;
    const f = isolated.feature({ module: 'm', entity: 'k' }, async function f() {
      ran = true;
      return [{ k: 'a', v: 1 }];
    });
    const error = await isolated
      .withParams({})
      .getFeatures(f)
      .toPolars()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(featurefn.FeatureStoreError);
    expect(error).not.toBeInstanceOf(FeatureStoreError); // a fresh module instance, as mocked
    expect((error as FeatureStoreError).code).toBe('UNSUPPORTED_RESULT');
    expect((error as FeatureStoreError).message).toMatch(/npm install nodejs-polars/);
    expect(ran).toBe(false);
  });
});
