/**
 * featurefn on DuckDB against the DuckDB code a competent user would write instead, in the same
 * run, on the same data (the 3-million-row flight records loaded by examples/flights) and with the
 * same DuckDB settings on both sides.
 *
 * (a) Materialization: `materializer.materialize(departures | meanDelay7d, { when })` into a
 *     DuckDBMaterializer file, against `CREATE OR REPLACE TABLE … AS SELECT …` into a DuckDB file
 *     of the user's own, attached to the same flights database. One operation = both features
 *     for one `when`; featurefn and hand-written alternate when by when. The same for
 *     `routeDelayShare` (~3,300 rows, composite key), for scale only: it has no target.
 * (b) Key lookup: `store.withParams({ when: Last() }).getFeatures(departures, meanDelay7d)
 *     .filter({ origin }).toArray()` against one prepared statement joining the user's two
 *     tables `WHERE d.origin = $1`, prepared once, bound per call, read with getRowObjectsJS.
 *     Calls alternate between the two sides over a rotating set of airports.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DuckDBConnection, DuckDBInstance, timestampValue } from '@duckdb/node-api';
import { defaultStore, type Feature, FeatureStore, Last } from 'featurefn';
import { DuckDBMaterializer, duckdbSource } from 'featurefn/duckdb';
import { departures, meanDelay7d, routeDelayShare } from '../examples/flights/features.js';
import { FLIGHTS_PARQUET, flightsDatabase } from '../examples/flights/flights-data.js';
import {
  attachScoped,
  type BenchResult,
  formatMs,
  formatP50P99,
  median,
  msSince,
  now,
  ratioOf,
  rotation,
  sampleInterleaved,
  summarize,
} from './bench-kit.js';

/** Timed materializations per side, after {@link MATERIALIZE_WARMUP} untimed ones. */
const MATERIALIZE_RUNS = 20;
const MATERIALIZE_WARMUP = 2;
const ROUTE_RUNS = 8;
const ROUTE_WARMUP = 1;
/** Timed lookups per side, after {@link READ_WARMUP} untimed ones. */
const READ_CALLS = 2000;
const READ_WARMUP = 300;

const DAY = 86_400_000;
const at = (when: Date) => timestampValue(BigInt(when.getTime()) * 1000n);

/** What the user writes instead of featurefn: one statement per feature, computed and stored in DuckDB. */
const HAND_MATERIALIZE = [
  `CREATE OR REPLACE TABLE hand.departures_cache AS
     SELECT origin, count(*) AS departures FROM flights WHERE date <= $1 GROUP BY origin`,
  `CREATE OR REPLACE TABLE hand.mean_delay_cache AS
     SELECT origin, avg(delay) AS mean_delay_7d
     FROM flights WHERE date > $1::TIMESTAMP - INTERVAL 7 DAY AND date <= $1 GROUP BY origin`,
];

const HAND_ROUTES = `CREATE OR REPLACE TABLE hand.route_delay_cache AS
  SELECT origin, destination, count(*) AS flights, avg(CASE WHEN delay > 15 THEN 1.0 ELSE 0.0 END) AS delayed_share
  FROM flights WHERE date <= $1 GROUP BY origin, destination`;

/** The user's lookup of both values for one airport. */
const HAND_LOOKUP = `SELECT d.origin, d.departures, m.mean_delay_7d
  FROM departures_cache AS d LEFT JOIN mean_delay_cache AS m ON m.origin = d.origin
  WHERE d.origin = $1`;

export async function run(): Promise<BenchResult[]> {
  const dir = await mkdtemp(join(tmpdir(), 'featurefn-bench-duckdb-'));
  const featurefnPath = join(dir, 'features.duckdb');
  const handPath = join(dir, 'hand.duckdb');
  const scope = scopedDecorators();
  try {
    const flights = await flightsDatabase();
    const [flightCount, origins] = await dataShape(flights);
    log(`data: ${flightCount.toLocaleString('en-US')} flights, ${origins.length} origins; files in ${dir}`);

    // (a) materialization
    const materializer = new DuckDBMaterializer({ path: featurefnPath });
    scope.add(materializer);
    await flights.run(`ATTACH '${handPath.replaceAll("'", "''")}' AS hand`);
    const whens = weekly(MATERIALIZE_WARMUP + MATERIALIZE_RUNS);
    const results: BenchResult[] = [
      await materializations(flights, materializer, {
        name: 'duckdb: materialize departures + meanDelay7d, one when (median)',
        features: [departures, meanDelay7d],
        hand: HAND_MATERIALIZE,
        whens,
        warmup: MATERIALIZE_WARMUP,
        target: '< 1.5',
      }),
      // Not a target: shows how featurefn's fixed cost per materialization weighs on a bigger result.
      await materializations(flights, materializer, {
        name: 'duckdb: materialize routeDelayShare, one when (median)',
        features: [routeDelayShare],
        hand: [HAND_ROUTES],
        whens: weekly(ROUTE_WARMUP + ROUTE_RUNS),
        warmup: ROUTE_WARMUP,
        target: '—',
      }),
    ];
    await flights.run('DETACH hand');
    await materializer.close();
    results.push(await inEngine(join(dir, 'in-engine.duckdb'), whens));

    // (b) key lookups, with DuckDB's default threads and then with threads = 1 on both sides.
    for (const threads of [undefined, 1]) {
      results.push(...(await lookups(scope, featurefnPath, handPath, origins, whens.at(-1)!, threads)));
    }
    return results;
  } finally {
    await scope.closeAll();
    await (await flightsDatabase()).run('DETACH DATABASE IF EXISTS hand').catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The same two features written as SQL features (`source.sql`) on a database that also holds the
 * store (`new DuckDBMaterializer({ instance })`): featurefn then materializes them inside DuckDB
 * with `CREATE TABLE … AS`, and no row crosses into Node. The hand side runs its CTAS in the same
 * database. Registered in a store of their own, so `defaultStore` is untouched.
 */
async function inEngine(path: string, whens: readonly Date[]): Promise<BenchResult> {
  const instance = await DuckDBInstance.create(path);
  const connection = await instance.connect();
  const materializer = new DuckDBMaterializer({ instance });
  try {
    await connection.run(
      `CREATE TABLE flights AS SELECT * FROM read_parquet('${FLIGHTS_PARQUET.replaceAll("'", "''")}')`,
    );
    await connection.run('CREATE SCHEMA hand');
    const flights = duckdbSource(instance);
    const store = new FeatureStore();
    const sqlDepartures = store.feature(
      { module: 'flights', entity: 'origin', name: 'departures' },
      async ({ when }: { when: Date }) =>
        flights.sql`SELECT origin, count(*) AS departures FROM flights WHERE date <= ${when} GROUP BY origin`,
    );
    const sqlMeanDelay7d = store.feature(
      { module: 'flights', entity: 'origin', name: 'meanDelay7d' },
      async ({ when }: { when: Date }) =>
        flights.sql`SELECT origin, avg(delay) AS mean_delay_7d
          FROM flights WHERE date > ${when}::TIMESTAMP - INTERVAL 7 DAY AND date <= ${when} GROUP BY origin`,
    );
    store.addDecorator(materializer.decorator);
    return await materializations(connection, materializer, {
      name: 'duckdb: materialize the same two as SQL features, in-engine (median)',
      features: [sqlDepartures, sqlMeanDelay7d],
      hand: HAND_MATERIALIZE,
      whens,
      warmup: MATERIALIZE_WARMUP,
      target: '—',
    });
  } finally {
    await materializer.close();
    connection.closeSync();
    instance.closeSync();
  }
}

interface MaterializeCase {
  name: string;
  /** Materialized one after the other for each `when`: one operation. */
  features: readonly Feature<(params: { when: Date }) => Promise<unknown>>[];
  /** The user's statements for the same operation, each bound to the `when`. */
  hand: readonly string[];
  whens: readonly Date[];
  /** The first `warmup` whens are not timed. */
  warmup: number;
  target: string;
}

/** Times one materialization operation per `when`, featurefn and hand-written alternating which goes first. */
async function materializations(
  flights: DuckDBConnection,
  materializer: DuckDBMaterializer,
  spec: MaterializeCase,
): Promise<BenchResult> {
  const featurefnMs: number[] = [];
  const handMs: number[] = [];
  const rows: number[][] = [];
  for (const [i, when] of spec.whens.entries()) {
    const viaFeaturefn = async () => {
      const start = now();
      const counts: number[] = [];
      for (const feature of spec.features)
        counts.push((await materializer.materialize(feature, { when })).rows);
      const ms = msSince(start);
      rows.push(counts);
      return ms;
    };
    const byHand = async () => {
      const start = now();
      for (const sql of spec.hand) await flights.run(sql, [at(when)]);
      return msSince(start);
    };
    // Alternate which side goes first, so neither always finds the flights table warmer.
    let ff: number;
    let hw: number;
    if (i % 2 === 0) {
      ff = await viaFeaturefn();
      hw = await byHand();
    } else {
      hw = await byHand();
      ff = await viaFeaturefn();
    }
    if (i < spec.warmup) continue;
    featurefnMs.push(ff);
    handMs.push(hw);
  }
  const timedRows = rows.slice(spec.warmup);
  const rowText = spec.features
    .map((_, k) => {
      const counts = timedRows.map((r) => r[k]!);
      const [lo, hi] = [Math.min(...counts), Math.max(...counts)];
      return lo === hi ? String(lo) : `${lo}–${hi}`;
    })
    .join(' + ');
  const ff = median(featurefnMs);
  const hw = median(handMs);
  log(
    `${spec.features.map((f) => f.info.localName).join(' + ')}: featurefn median ${formatMs(ff)} ` +
      `(min ${formatMs(Math.min(...featurefnMs))}), hand-written median ${formatMs(hw)} ` +
      `(min ${formatMs(Math.min(...handMs))}), ${rowText} rows per when`,
  );
  return {
    name: spec.name,
    featurefn: formatMs(ff),
    handWritten: formatMs(hw),
    ratio: ratioOf(ff, hw),
    target: spec.target,
    notes: `${featurefnMs.length} whens, ${rowText} rows each; hand: CREATE OR REPLACE TABLE … AS SELECT`,
  };
}

/** `n` Thursdays a week apart from 2001-02-01, inside the data's range. */
function weekly(n: number): Date[] {
  return Array.from({ length: n }, (_, i) => new Date(Date.UTC(2001, 1, 1) + i * 7 * DAY));
}

async function lookups(
  scope: ReturnType<typeof scopedDecorators>,
  featurefnPath: string,
  handPath: string,
  origins: readonly string[],
  lastWhen: Date,
  threads: number | undefined,
): Promise<BenchResult[]> {
  const materializer = new DuckDBMaterializer(
    threads === undefined ? { path: featurefnPath } : { path: featurefnPath, threads },
  );
  scope.add(materializer);
  const instance = await DuckDBInstance.create(
    handPath,
    threads === undefined ? {} : { threads: String(threads) },
  );
  const connection = await instance.connect();
  const statement = await connection.prepare(HAND_LOOKUP);
  try {
    const featurefn = (origin: string) =>
      defaultStore
        .withParams({ when: Last() })
        .getFeatures(departures, meanDelay7d)
        .filter({ origin })
        .toArray();
    const hand = async (origin: string) => {
      statement.bind([origin]);
      return (await statement.runAndReadAll()).getRowObjectsJS();
    };
    await checkSameAnswers(featurefn, hand, origins, lastWhen, materializer);

    const keys = rotation(origins);
    const key = (i: number) => keys[i % keys.length]!;
    const { a, b } = await sampleInterleaved(
      (i) => featurefn(key(i)),
      (i) => hand(key(i)),
      { iterations: READ_CALLS, warmup: READ_WARMUP },
    );
    const ff = summarize(a);
    const hw = summarize(b);
    const setting = threads === undefined ? 'default threads' : `threads=${threads}`;
    log(`lookup (${setting}): featurefn p50/p99 ${formatP50P99(ff)}, hand-written ${formatP50P99(hw)}`);
    const label = `duckdb: Last() read, 2 features, 1 key, ${setting}`;
    const notes = `${READ_CALLS} calls per side, ${origins.length} keys rotating`;
    return [
      {
        name: `${label} (p50)`,
        featurefn: formatMs(ff.p50),
        handWritten: formatMs(hw.p50),
        ratio: ratioOf(ff.p50, hw.p50),
        target: '< 1.3',
        notes,
      },
      {
        name: `${label} (p99)`,
        featurefn: formatMs(ff.p99),
        handWritten: formatMs(hw.p99),
        ratio: ratioOf(ff.p99, hw.p99),
        target: '—',
        notes: 'tails move 1.3–1.6× between runs',
      },
    ];
  } finally {
    statement.destroySync();
    connection.closeSync();
    instance.closeSync();
    await materializer.close();
  }
}

/** Both sides must return the same values, or the comparison means nothing. */
async function checkSameAnswers(
  featurefn: (origin: string) => Promise<Record<string, unknown>[]>,
  hand: (origin: string) => Promise<Record<string, unknown>[]>,
  origins: readonly string[],
  lastWhen: Date,
  materializer: DuckDBMaterializer,
): Promise<void> {
  const explained = await defaultStore
    .withParams({ when: Last() })
    .getFeatures(departures, meanDelay7d)
    .explain();
  if (!explained.includes(lastWhen.toISOString()) || !explained.includes(`served by ${materializer.name}`)) {
    throw new Error(`the featurefn read is not served by the last materialization:\n${explained}`);
  }
  for (const origin of origins) {
    const xs = await featurefn(origin);
    const ys = await hand(origin);
    const [x] = xs;
    const [y] = ys;
    if (xs.length === 0 && ys.length === 0) continue; // no departures from this airport yet
    const same =
      xs.length === 1 &&
      ys.length === 1 &&
      x !== undefined &&
      y !== undefined &&
      x.origin === y.origin &&
      Number(x.departures) === Number(y.departures) &&
      (x.mean_delay_7d ?? null) === (y.mean_delay_7d ?? null);
    if (!same)
      throw new Error(
        `featurefn and hand-written reads differ for ${origin}: ${JSON.stringify([x, y], bigints)}`,
      );
  }
}

async function dataShape(flights: DuckDBConnection): Promise<[number, string[]]> {
  const count = (await flights.runAndReadAll('SELECT count(*) FROM flights')).getRows()[0]![0];
  const origins = (
    await flights.runAndReadAll('SELECT DISTINCT origin FROM flights ORDER BY origin')
  ).getRows();
  return [Number(count), origins.map((r) => r[0] as string)];
}

/** The keys in a fixed pseudo-random order, so consecutive lookups hit different airports. */
/** Attaches each materializer to `defaultStore` for this file only (see `attachScoped`). */
function scopedDecorators() {
  const opened: { materializer: DuckDBMaterializer; detach: () => void }[] = [];
  return {
    add(materializer: DuckDBMaterializer): void {
      opened.push({ materializer, detach: attachScoped(materializer) });
    },
    async closeAll(): Promise<void> {
      for (const { detach } of opened) detach();
      for (const { materializer } of opened) await materializer.close();
    },
  };
}

function bigints(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? String(value) : value;
}

function log(message: string): void {
  console.log(`  duckdb  ${message}`);
}
