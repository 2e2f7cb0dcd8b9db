/**
 * A year of daily runs: F features, each materialized once per day for D days with
 * `materializer.materialize(f, { when })`, each result one row per airport (229 rows), on DuckDB
 * (a file in a temp dir) and on PostgreSQL (a schema of its own, dropped at the end).
 *
 * The hand-written side is what a user writes instead: one table per feature with a `day` column
 * and primary key `(day, origin)`, and the day's rows appended (DuckDB appender) or inserted in
 * one `INSERT … SELECT FROM unnest(…)` (PostgreSQL). Both sides store the same values, feature by
 * feature and day by day, taking turns (which side goes first alternates).
 *
 * Reported per store: disk per materialization and in total (DuckDB: file + `.wal` after the store
 * is closed; PostgreSQL: `sum(pg_total_relation_size)` of the schema's tables), extrapolated
 * linearly to the issue's shape (F=50, D=365: 18,250 materializations) unless that shape is the
 * one run; the median time of the first 100 and of the last 100 publications and their ratio; and
 * disk after `prune({ keep: 7 })` + `vacuum()` against the hand-written `DELETE` of older days.
 *
 * Shape: F=50, D=30 (1,500 materializations per store); `FEATUREFN_BENCH_FULL=1` runs F=50, D=365.
 * `FEATUREFN_BENCH_STORES` (a comma list of `duckdb`, `postgres`; default both) picks the stores.
 *
 * Data: the real flights of `vega-datasets` (examples/flights), 2001-01-01 to 2001-07-01. Daily
 * departures and delay sums per airport are computed once in DuckDB; feature `k` is, per airport,
 * the departures (even `k`) or the mean departure delay (odd `k`) over the `k/2 + 1` days up to
 * `when`, from those daily sums, so a call costs microseconds and the times measured are the
 * stores'. Days after the data ends give 0 departures and null delays (still 229 rows).
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, dateValue } from '@duckdb/node-api';
import {
  Field,
  Float64,
  Int32,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  Table,
  Utf8,
  vectorFromArray,
} from 'apache-arrow';
import { type Feature, FeatureStore, Last, type Materializer } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { PostgresMaterializer } from 'featurefn/postgres';
import pg from 'pg';
import { flightsDatabase } from '../examples/flights/flights-data.js';
import {
  assertPostgresReachable,
  type BenchResult,
  BenchUnavailable,
  formatMs,
  median,
  msSince,
  now,
  POSTGRES_URL,
  ratioOf,
} from './bench-kit.js';

const FULL = process.env.FEATUREFN_BENCH_FULL === '1';
const STORES = new Set(
  (process.env.FEATUREFN_BENCH_STORES ?? 'duckdb,postgres').split(',').map((s) => s.trim()),
);
const FEATURES = 50;
const DAYS = FULL ? 365 : 30;
/** The issue's shape, which the disk figures are extrapolated to. */
const TARGET_MATERIALIZATIONS = 50 * 365;
const EDGE = 100;
const KEEP = 7;
const DAY_MS = 86_400_000;
const START = Date.UTC(2001, 0, 1);
/** `when` of run `d`: midnight after day `d`, so the run covers days up to and including `d`. */
const whenOf = (d: number) => new Date(START + (d + 1) * DAY_MS);

type HistoryFeature = Feature<(params: { when: Date }) => Promise<Table>>;

interface Daily {
  origins: string[];
  /** Prefix sums per airport over days: `departures[o][d + 1]` = flights of days 0..d. */
  departures: Float64Array[];
  delays: Float64Array[];
}

/** Daily departures and delay sums per airport, computed once from the real flights. */
async function loadDaily(): Promise<Daily> {
  const flights = await flightsDatabase();
  const reader = await flights.runAndReadAll(
    `SELECT origin, datediff('day', DATE '2001-01-01', CAST(date AS DATE))::INTEGER AS day,
            count(*)::DOUBLE AS departures, sum(delay)::DOUBLE AS delay_sum
     FROM flights GROUP BY ALL ORDER BY origin, day`,
  );
  const rows = reader.getRowObjectsJS() as {
    origin: string;
    day: number;
    departures: number;
    delay_sum: number;
  }[];
  const origins = [...new Set(rows.map((r) => r.origin))].sort();
  const index = new Map(origins.map((o, i) => [o, i]));
  const departures = origins.map(() => new Float64Array(DAYS + 1));
  const delays = origins.map(() => new Float64Array(DAYS + 1));
  for (const r of rows) {
    if (r.day < 0 || r.day >= DAYS) continue;
    departures[index.get(r.origin)!]![r.day + 1] = r.departures;
    delays[index.get(r.origin)!]![r.day + 1] = r.delay_sum;
  }
  for (const list of [departures, delays])
    for (const sums of list) for (let d = 1; d <= DAYS; d++) sums[d]! += sums[d - 1]!;
  return { origins, departures, delays };
}

/** Name, value type and window of feature `k`. */
function spec(k: number): { name: string; type: 'INTEGER' | 'DOUBLE'; window: number } {
  const window = (k >> 1) + 1;
  return k % 2 === 0
    ? { name: `departures_${window}d`, type: 'INTEGER', window }
    : { name: `mean_delay_${window}d`, type: 'DOUBLE', window };
}

/** Feature `k`'s values on day `d`, one per airport in `daily.origins` order (null: no flights). */
function values(daily: Daily, k: number, d: number): (number | null)[] {
  const { type, window } = spec(k);
  const from = Math.max(0, d + 1 - window);
  return daily.origins.map((_, o) => {
    const count = daily.departures[o]![d + 1]! - daily.departures[o]![from]!;
    if (type === 'INTEGER') return count;
    return count === 0 ? null : (daily.delays[o]![d + 1]! - daily.delays[o]![from]!) / count;
  });
}

function dayOf(when: Date): number {
  return Math.round((when.getTime() - START) / DAY_MS) - 1;
}

/** F features in a store of their own, each `({ when }) => table of (origin, <name>)`. */
function historyFeatures(daily: Daily): { store: FeatureStore; features: HistoryFeature[] } {
  const store = new FeatureStore();
  const origins = vectorFromArray(daily.origins, new Utf8()).data[0]!;
  const features = Array.from({ length: FEATURES }, (_, k) => {
    const { name, type } = spec(k);
    const fields = [
      new Field('origin', new Utf8(), false),
      new Field(name, type === 'INTEGER' ? new Int32() : new Float64(), type === 'DOUBLE'),
    ];
    return store.feature({ module: 'history', entity: 'origin', name }, async ({ when }: { when: Date }) => {
      const column = vectorFromArray(values(daily, k, dayOf(when)), fields[1]!.type).data[0]!;
      const data = makeData({
        type: new Struct(fields),
        length: daily.origins.length,
        children: [origins, column],
      });
      return new Table(new RecordBatch(new Schema(fields), data));
    });
  });
  return { store, features };
}

/** One store's run: how to open featurefn's store, insert by hand, and measure disk. */
interface Side {
  engine: 'duckdb' | 'postgres';
  open(retainReplaced?: number): Materializer;
  /** Bytes featurefn's store takes once `materializer` is closed. */
  featurefnBytes(): Promise<number>;
  handBytes(): Promise<number>;
  handCreate(k: number): Promise<void>;
  handInsert(k: number, d: number, values: (number | null)[]): Promise<void>;
  handPrune(keepFromDay: number): Promise<void>;
  handLast(k: number, origin: string): Promise<unknown>;
  close(): Promise<void>;
}

export async function run(): Promise<BenchResult[]> {
  const daily = await loadDaily();
  handOrigins = daily.origins;
  log(
    `${FEATURES} features × ${DAYS} days = ${FEATURES * DAYS} materializations per store, ${daily.origins.length} rows each${FULL ? '' : ' (FEATUREFN_BENCH_FULL=1 for 365 days)'}`,
  );
  const results: BenchResult[] = [];
  if (STORES.has('postgres')) {
    try {
      await assertPostgresReachable();
      results.push(...(await history(daily, await postgresSide())));
    } catch (error) {
      if (!(error instanceof BenchUnavailable)) throw error;
      log(`PostgreSQL skipped: ${error.message}`);
    }
  }
  if (STORES.has('duckdb')) results.push(...(await history(daily, await duckdbSide())));
  return results;
}

async function history(daily: Daily, side: Side): Promise<BenchResult[]> {
  const { engine } = side;
  try {
    const { store, features } = historyFeatures(daily);
    for (let k = 0; k < FEATURES; k++) await side.handCreate(k);
    let materializer = side.open();
    const ff: number[] = [];
    const hw: number[] = [];
    let afterFirstDay = { featurefn: 0, hand: 0 };
    const started = now();
    for (let d = 0; d < DAYS; d++) {
      const when = whenOf(d);
      for (let k = 0; k < FEATURES; k++) {
        const ours = async () => {
          const start = now();
          await materializer.materialize(features[k]!, { when });
          ff.push(msSince(start));
        };
        const theirs = async () => {
          const start = now();
          await side.handInsert(k, d, values(daily, k, d));
          hw.push(msSince(start));
        };
        if ((d * FEATURES + k) % 2 === 0) {
          await ours();
          await theirs();
        } else {
          await theirs();
          await ours();
        }
      }
      if (d === 0) {
        // Disk of one day's runs, to extrapolate from the marginal cost, not the fixed one.
        await materializer.close();
        afterFirstDay = { featurefn: await side.featurefnBytes(), hand: await side.handBytes() };
        materializer = side.open();
      }
      if ((d + 1) % 30 === 0) {
        const block = (list: number[]) => formatMs(median(list.slice(-30 * FEATURES)));
        log(
          `${engine}: day ${d + 1}/${DAYS}, ${(msSince(started) / 1000).toFixed(0)} s; median of the last 30 days: featurefn ${block(ff)}, hand ${block(hw)}`,
        );
      }
    }
    await checkSameAnswers(side, materializer, store, features, daily);
    await materializer.close();
    const bytes = { featurefn: await side.featurefnBytes(), hand: await side.handBytes() };

    // Retire all but the last KEEP days on both sides.
    const pruner = side.open(0);
    const retired = await pruner.prune({ keep: KEEP });
    await (pruner as unknown as { vacuum(): Promise<unknown> }).vacuum();
    await pruner.close();
    await side.handPrune(DAYS - KEEP);
    const pruned = { featurefn: await side.featurefnBytes(), hand: await side.handBytes() };
    log(`${engine}: prune({ keep: ${KEEP} }) retired ${retired.length} materializations`);
    return report(engine, ff, hw, afterFirstDay, bytes, pruned);
  } finally {
    await side.close();
  }
}

function report(
  engine: string,
  ff: number[],
  hw: number[],
  afterFirstDay: { featurefn: number; hand: number },
  bytes: { featurefn: number; hand: number },
  pruned: { featurefn: number; hand: number },
): BenchResult[] {
  const n = ff.length;
  const shape = `F=${FEATURES}, D=${DAYS}, ${n.toLocaleString('en-US')} materializations`;
  const perMaterialization = (total: number, first: number) => (total - first) / (n - FEATURES);
  const extrapolate = (total: number, first: number) =>
    first + perMaterialization(total, first) * (TARGET_MATERIALIZATIONS - FEATURES);
  const perFf = perMaterialization(bytes.featurefn, afterFirstDay.featurefn);
  const perHw = perMaterialization(bytes.hand, afterFirstDay.hand);
  const timing = (list: number[]) => ({
    first: median(list.slice(0, EDGE)),
    last: median(list.slice(-EDGE)),
  });
  const t = { ff: timing(ff), hw: timing(hw) };
  log(
    `${engine}: disk ${formatBytes(bytes.featurefn)} (hand ${formatBytes(bytes.hand)}), after day 1 ${formatBytes(afterFirstDay.featurefn)} (hand ${formatBytes(afterFirstDay.hand)}); ` +
      `publication first/last ${formatMs(t.ff.first)} / ${formatMs(t.ff.last)} = ${ratioOf(t.ff.last, t.ff.first)} (hand ${formatMs(t.hw.first)} / ${formatMs(t.hw.last)})`,
  );
  const results: BenchResult[] = [
    {
      name: `history ${engine}: disk after ${n.toLocaleString('en-US')} daily materializations`,
      featurefn: formatBytes(bytes.featurefn),
      handWritten: formatBytes(bytes.hand),
      ratio: ratioOf(bytes.featurefn, bytes.hand),
      target: '—',
      notes: `${shape}; ${engine === 'duckdb' ? 'file + .wal after close' : 'sum(pg_total_relation_size) of the schema'}`,
    },
    {
      name: `history ${engine}: disk per materialization (marginal, after day 1)`,
      featurefn: formatBytes(perFf),
      handWritten: formatBytes(perHw),
      ratio: ratioOf(perFf, perHw),
      target: '—',
      notes: `(size at end − size after day 1) ÷ ${(n - FEATURES).toLocaleString('en-US')}`,
    },
  ];
  if (n !== TARGET_MATERIALIZATIONS) {
    const xf = extrapolate(bytes.featurefn, afterFirstDay.featurefn);
    const xh = extrapolate(bytes.hand, afterFirstDay.hand);
    results.push({
      name: `history ${engine}: disk EXTRAPOLATED to F=50, D=365 (18,250)`,
      featurefn: formatBytes(xf),
      handWritten: formatBytes(xh),
      ratio: ratioOf(xf, xh),
      target: engine === 'duckdb' ? 'featurefn < 200 MB' : '—',
      notes: `not measured: size after day 1 + marginal × 18,200${engine === 'duckdb' ? `; ${xf < 200e6 ? 'met' : 'NOT met'}` : ''}`,
    });
  } else if (engine === 'duckdb') {
    results[0]!.target = 'featurefn < 200 MB';
    results[0]!.notes += `; ${bytes.featurefn < 200e6 ? 'met' : 'NOT met'}`;
  }
  results.push(
    {
      name: `history ${engine}: publication, last ${EDGE} ÷ first ${EDGE} (medians)`,
      featurefn: `${formatMs(t.ff.first)} → ${formatMs(t.ff.last)}`,
      handWritten: `${formatMs(t.hw.first)} → ${formatMs(t.hw.last)}`,
      ratio: ratioOf(t.ff.last, t.ff.first),
      target: '< 1.5',
      notes: `ratio is featurefn's last ÷ its first; hand-written's is ${ratioOf(t.hw.last, t.hw.first).toFixed(2)}`,
    },
    {
      name: `history ${engine}: publication time, all ${n.toLocaleString('en-US')} (median)`,
      featurefn: formatMs(median(ff)),
      handWritten: formatMs(median(hw)),
      ratio: ratioOf(median(ff), median(hw)),
      target: '—',
      notes: `${engine === 'duckdb' ? 'hand: appender' : 'hand: INSERT … SELECT FROM unnest'} of ${'the day’s rows'} into one table per feature, primary key (day, origin)`,
    },
    {
      name: `history ${engine}: disk after prune({ keep: ${KEEP} }) + vacuum()`,
      featurefn: formatBytes(pruned.featurefn),
      handWritten: formatBytes(pruned.hand),
      ratio: ratioOf(pruned.featurefn, pruned.hand),
      target: '—',
      notes: `hand: DELETE of days before the last ${KEEP}, then ${engine === 'duckdb' ? 'CHECKPOINT' : 'VACUUM'}`,
    },
  );
  return results;
}

/** featurefn's `Last()` and the hand-written table's last day must agree, or the comparison means nothing. */
async function checkSameAnswers(
  side: Side,
  materializer: Materializer,
  store: FeatureStore,
  features: readonly HistoryFeature[],
  daily: Daily,
): Promise<void> {
  store.addDecorator(materializer.decorator);
  for (const k of [0, 1, FEATURES - 1]) {
    for (const origin of [daily.origins[0]!, daily.origins.at(-1)!]) {
      const rows = await store
        .withParams({ when: Last() })
        .getFeatures(features[k]!)
        .filter({ origin })
        .toArray();
      const ours = rows[0]?.[spec(k).name] ?? null;
      const theirs = await side.handLast(k, origin);
      if (rows.length !== 1 || Number(ours) !== Number(theirs) || (ours === null) !== (theirs === null))
        throw new Error(
          `${side.engine}: featurefn and the hand-written table disagree for ${spec(k).name} at ${origin}: ${String(ours)} vs ${String(theirs)}`,
        );
    }
  }
}

async function duckdbSide(): Promise<Side> {
  const dir = await mkdtemp(join(tmpdir(), 'featurefn-bench-history-'));
  const path = join(dir, 'features.duckdb');
  const handPath = join(dir, 'hand.duckdb');
  const instance = await DuckDBInstance.create(handPath);
  const connection = await instance.connect();
  const fileBytes = async (file: string) => {
    let total = 0;
    for (const f of [file, `${file}.wal`])
      total += await stat(f).then(
        (s) => s.size,
        () => 0,
      );
    return total;
  };
  return {
    engine: 'duckdb',
    open: (retainReplaced) =>
      new DuckDBMaterializer({ path, ...(retainReplaced === undefined ? {} : { retainReplaced }) }),
    featurefnBytes: () => fileBytes(path),
    handBytes: async () => {
      await connection.run('CHECKPOINT');
      return fileBytes(handPath);
    },
    handCreate: async (k) => {
      const { name, type } = spec(k);
      await connection.run(
        `CREATE TABLE ${name} (day DATE NOT NULL, origin VARCHAR NOT NULL, ${name} ${type}, PRIMARY KEY (day, origin))`,
      );
    },
    handInsert: async (k, d, list) => {
      const { type } = spec(k);
      const appender = await connection.createAppender(spec(k).name);
      const day = dateValue(Math.round((START + d * DAY_MS) / DAY_MS));
      const origins = handOrigins;
      for (let o = 0; o < list.length; o++) {
        appender.appendDate(day);
        appender.appendVarchar(origins[o]!);
        const v = list[o]!;
        if (v === null) appender.appendNull();
        else if (type === 'INTEGER') appender.appendInteger(v);
        else appender.appendDouble(v);
        appender.endRow();
      }
      appender.closeSync();
    },
    handPrune: async (keepFromDay) => {
      const day = dateValue(Math.round((START + keepFromDay * DAY_MS) / DAY_MS));
      for (let k = 0; k < FEATURES; k++)
        await connection.run(`DELETE FROM ${spec(k).name} WHERE day < $1`, [day]);
      await connection.run('CHECKPOINT');
    },
    handLast: async (k, origin) => {
      const reader = await connection.runAndReadAll(
        `SELECT ${spec(k).name} AS v FROM ${spec(k).name} WHERE origin = $1 ORDER BY day DESC LIMIT 1`,
        [origin],
      );
      return reader.getRowObjectsJS()[0]?.v ?? null;
    },
    close: async () => {
      connection.closeSync();
      instance.closeSync();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The airports in the order every side stores them, set once the data is loaded. */
let handOrigins: string[] = [];

async function postgresSide(): Promise<Side> {
  const suffix = `${process.pid}_${Date.now().toString(36)}`;
  const schema = `bench_history_${suffix}`;
  const handSchema = `bench_history_hand_${suffix}`;
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 4 });
  pool.on('error', () => undefined);
  const hand = await pool.connect();
  await hand.query(`CREATE SCHEMA "${handSchema}"`);
  const schemaBytes = async (name: string) => {
    const { rows } = await pool.query<{ bytes: string | null }>(
      `SELECT sum(pg_total_relation_size(c.oid))::bigint AS bytes
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'm')`,
      [name],
    );
    return Number(rows[0]?.bytes ?? 0);
  };
  const table = (k: number) => `"${handSchema}"."${spec(k).name}"`;
  return {
    engine: 'postgres',
    open: (retainReplaced) =>
      new PostgresMaterializer({
        connection: POSTGRES_URL,
        schema,
        poolSize: 2,
        ...(retainReplaced === undefined ? {} : { retainReplaced }),
      }),
    featurefnBytes: () => schemaBytes(schema),
    handBytes: () => schemaBytes(handSchema),
    handCreate: async (k) => {
      const { name, type } = spec(k);
      await hand.query(
        `CREATE TABLE ${table(k)} (day date NOT NULL, origin text NOT NULL, ${name} ${type === 'INTEGER' ? 'integer' : 'double precision'}, PRIMARY KEY (day, origin))`,
      );
    },
    handInsert: async (k, d, list) => {
      const { type } = spec(k);
      await hand.query({
        name: `history_insert_${k}`,
        text: `INSERT INTO ${table(k)} SELECT $1::date, * FROM unnest($2::text[], $3::${type === 'INTEGER' ? 'integer' : 'float8'}[])`,
        values: [new Date(START + d * DAY_MS).toISOString().slice(0, 10), handOrigins, list],
      });
    },
    handPrune: async (keepFromDay) => {
      const day = new Date(START + keepFromDay * DAY_MS).toISOString().slice(0, 10);
      for (let k = 0; k < FEATURES; k++) {
        await hand.query(`DELETE FROM ${table(k)} WHERE day < $1::date`, [day]);
        await hand.query(`VACUUM ${table(k)}`);
      }
    },
    handLast: async (k, origin) => {
      const { rows } = await hand.query(
        `SELECT ${spec(k).name} AS v FROM ${table(k)} WHERE origin = $1 ORDER BY day DESC LIMIT 1`,
        [origin],
      );
      return rows[0]?.v ?? null;
    },
    close: async () => {
      hand.release();
      for (const name of [schema, handSchema]) await dropSchema(pool, name).catch(() => undefined);
      await pool.end();
    },
  };
}

/**
 * Drops a schema of thousands of tables a few hundred at a time: one `DROP SCHEMA … CASCADE`
 * takes a lock per table and runs out of lock memory (`max_locks_per_transaction`).
 */
async function dropSchema(pool: pg.Pool, name: string): Promise<void> {
  for (;;) {
    const { rows } = await pool.query<{ name: string }>(
      `SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables WHERE schemaname = $1 LIMIT 200`,
      [name],
    );
    if (rows.length === 0) break;
    await pool.query(`DROP TABLE ${rows.map((r) => r.name).join(', ')} CASCADE`);
  }
  await pool.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
}

function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  if (Math.abs(bytes) < 1e3) return `${bytes.toFixed(0)} B`;
  if (Math.abs(bytes) < 1e6) return `${(bytes / 1e3).toFixed(1)} kB`;
  if (Math.abs(bytes) < 1e9) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${(bytes / 1e9).toFixed(2)} GB`;
}

function log(message: string): void {
  console.error(`[history] ${message}`);
}
