/**
 * The same feature written five ways (examples/five-ways: rows, Arrow, polars, DuckDB SQL, Kysely
 * on PostgreSQL, plus the `sql` tag on PostgreSQL), on the same 3,000,000 real flights, for one
 * `when` (2001-04-01, about half of the flights). For each way, the median of a few runs of:
 *
 * (a) compute: the decorated call with no store attached, and for a query (SQL, Kysely) running it
 *     (`toArray()`, `execute()`). Hand-written: for SQL ways, the same SQL run directly with the
 *     driver (DuckDB `runAndReadAll`, `pg` `pool.query`); for the in-process ways there is no SQL,
 *     so the baseline is the function itself (`.compute()`, no decorators).
 * (b) materialize into a DuckDB store (`:memory:`, not the flights' database) and (c) into a
 *     PostgreSQL store. Hand-written: the same result computed by hand (as in (a)) and stored in a
 *     table with the same primary key: a DuckDB appender, or a `pg` INSERT … unnest, ANALYZE.
 * (d) in-engine: a SQL feature whose store is its own database, DuckDB (`new DuckDBMaterializer({
 *     instance })`) or PostgreSQL (a `postgresSource` on the store's URL): `CREATE TABLE … AS`,
 *     no row through Node. Hand-written: the same `CREATE TABLE … AS` plus the key index.
 *
 * featurefn and hand-written alternate which goes first, run by run. Every result is checked
 * against hand-written DuckDB SQL before timing.
 */
import { type DuckDBConnection, DuckDBInstance, timestampValue } from '@duckdb/node-api';
import type { Table } from 'apache-arrow';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { PostgresMaterializer } from 'featurefn/postgres';
import type { DataFrame } from 'nodejs-polars';
import type pg from 'pg';
import { type Way, ways } from '../examples/five-ways/features.js';
import {
  closeFlights,
  flightRows,
  flightsArrow,
  flightsDuckDB,
  flightsPolars,
  flightsPool,
  flightsPostgres,
  flightsPostgresSource,
  postgresFlightsTable,
} from '../examples/five-ways/flights.js';
import {
  type BenchResult,
  collectGarbage,
  formatMs,
  median,
  msSince,
  now,
  POSTGRES_URL,
  ratioOf,
  sampleInterleaved,
} from './bench-kit.js';

const RUNS = 7;
const WARMUP = 1;
const URL = POSTGRES_URL;
const when = new Date('2001-04-01T00:00:00Z');

const WAYS: readonly Way[] = ['rows', 'arrow', 'polars', 'duckdbSql', 'kysely', 'postgresSql'];
const LABEL: Record<Way, string> = {
  rows: 'rows',
  arrow: 'Arrow',
  polars: 'polars',
  duckdbSql: 'DuckDB SQL',
  kysely: 'Kysely (PostgreSQL)',
  postgresSql: 'sql tag (PostgreSQL)',
};

const DEPARTURES_SQL = 'SELECT origin, count(*) AS departures FROM flights WHERE date <= $1 GROUP BY origin';

interface Departure {
  origin: string;
  departures: number;
}

export async function run(): Promise<BenchResult[]> {
  const schema = `bench_five_ways_${process.pid}`;
  const hand = await DuckDBInstance.create(':memory:');
  const handDuckDB = await hand.connect();
  let pool: pg.Pool | undefined;
  const opened: { close(): Promise<void> }[] = [];
  try {
    const { instance } = await flightsDuckDB();
    const flights = await instance.connect();
    opened.push({ close: async () => flights.closeSync() });
    const sizes = await loadAll(flights);
    pool = await flightsPool();
    const pgFlights = postgresFlightsTable();
    const handPgSql = `SELECT origin, count(*)::int AS departures FROM ${pgFlights} WHERE date <= $1 GROUP BY origin`;

    // The hand-written answer; every way must give it before it is timed.
    const expected = byOrigin(await duckdbRows(flights, DEPARTURES_SQL));
    log(`when = ${when.toISOString()}: ${expected.size} origins, ${sum(expected)} departures`);
    for (const way of WAYS) {
      const got = byOrigin(await resultRows(way, await ways[way]({ when })));
      if (!sameMap(got, expected)) throw new Error(`${way} gives other departures than hand-written SQL`);
    }

    /** What a user writes instead of featurefn: compute, then turn the result into rows. */
    const handCompute = async (way: Way): Promise<Departure[]> => {
      switch (way) {
        case 'duckdbSql':
          return (await duckdbRows(flights, DEPARTURES_SQL)).map((r) => ({
            origin: r.origin as string,
            departures: Number(r.departures),
          }));
        case 'kysely':
        case 'postgresSql':
          return (await pool!.query<Departure>(handPgSql, [when])).rows;
        default:
          return resultRows(way, await ways[way].compute({ when }));
      }
    };

    const results: BenchResult[] = [];
    // (a) compute
    for (const way of WAYS) {
      const sqlWay = way === 'duckdbSql' || way === 'kysely' || way === 'postgresSql';
      const { a, b } = await sampleInterleaved(
        async () => resultRows(way, await ways[way]({ when })),
        () => handCompute(way),
        { iterations: RUNS, warmup: WARMUP },
      );
      results.push(
        result(
          `five-ways ${LABEL[way]}: compute`,
          a,
          b,
          sqlWay ? '< 1.2' : '< 1.1',
          {
            rows: 'vs the function itself (.compute)',
            arrow: 'vs the function itself (.compute)',
            polars: 'vs the function itself (.compute)',
            duckdbSql: 'vs the SQL run with runAndReadAll',
            kysely: 'execute() vs the SQL run with pool.query',
            postgresSql: 'toArray() (a cursor: no parallel plan) vs the SQL run with pool.query',
          }[way],
        ),
      );
    }

    // (b) materialize into a DuckDB store of its own (not Kysely: DuckDB refuses it, UNSUPPORTED_RESULT)
    const duckdbStore = new DuckDBMaterializer({ path: ':memory:' });
    opened.push(duckdbStore);
    for (const way of WAYS.filter((w) => w !== 'kysely')) {
      const { a, b } = await sampleInterleaved(
        () => duckdbStore.materialize(ways[way], { when }),
        async () => handStoreDuckDB(handDuckDB, way, await handCompute(way)),
        { iterations: RUNS, warmup: WARMUP },
      );
      results.push(
        result(`five-ways ${LABEL[way]}: materialize → DuckDB`, a, b, '< 1.5', notes(way, 'duckdb', false)),
      );
    }

    // (c) materialize into a PostgreSQL store
    const postgresStore = new PostgresMaterializer({ connection: URL, schema, poolSize: 2 });
    opened.push(postgresStore);
    await pool.query(`CREATE SCHEMA IF NOT EXISTS "${schema}_hand"`);
    for (const way of WAYS) {
      const inEngine =
        way === 'postgresSql' &&
        (await ways.postgresSql.compute({ when })).source.database === postgresStore.source.database;
      const { a, b } = await sampleInterleaved(
        () => postgresStore.materialize(ways[way], { when }),
        async () =>
          inEngine
            ? handCreateTableAs(pool!, `"${schema}_hand"."departures_${way}"`, handPgSql)
            : handStorePostgres(pool!, `"${schema}_hand"."departures_${way}"`, await handCompute(way)),
        { iterations: RUNS, warmup: WARMUP },
      );
      results.push(
        result(
          `five-ways ${LABEL[way]}: materialize → PostgreSQL`,
          a,
          b,
          '< 1.5',
          notes(way, 'postgres', inEngine),
        ),
      );
    }

    // (d) DuckDB SQL into a store in the flights' own DuckDB: in-engine
    const sameDuckDB = new DuckDBMaterializer({ instance, schema: 'bench_five_ways' });
    opened.push(sameDuckDB);
    {
      const { a, b } = await sampleInterleaved(
        () => sameDuckDB.materialize(ways.duckdbSql, { when }),
        async () => {
          await flights.run(`CREATE OR REPLACE TABLE hand_departures AS ${DEPARTURES_SQL}`, [at(when)]);
          await flights.run('CREATE INDEX hand_departures_key ON hand_departures (origin)');
        },
        { iterations: RUNS, warmup: WARMUP },
      );
      results.push(
        result(
          'five-ways DuckDB SQL: materialize → the same DuckDB',
          a,
          b,
          '< 1.5',
          'in-engine CREATE TABLE AS; hand: the same + index',
        ),
      );
    }

    log(
      `data: 3,000,000 flights; in memory: rows ${sizes.rows}, Arrow ${sizes.arrow}, polars ${sizes.polars}; ` +
        `DuckDB ${sizes.duckdb}; PostgreSQL table ${sizes.postgres}`,
    );
    log(`loading: ${sizes.loading}`);
    return results;
  } finally {
    for (const o of opened.reverse()) await o.close().catch(() => undefined);
    if (pool !== undefined) {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}_hand" CASCADE`).catch(() => undefined);
    }
    handDuckDB.closeSync();
    hand.closeSync();
    await closeFlights();
  }
}

/** Loads every form of the flights, timing each, and measures what each holds. */
async function loadAll(flights: DuckDBConnection): Promise<Record<string, string>> {
  const took: string[] = [];
  const step = async <T>(label: string, load: () => Promise<T>): Promise<T> => {
    const start = now();
    const value = await load();
    took.push(`${label} ${formatMs(msSince(start))}`);
    return value;
  };
  const heap = () => {
    collectGarbage();
    return process.memoryUsage().heapUsed;
  };
  const table = await step('Arrow (from DuckDB)', flightsArrow);
  const before = heap();
  const rows = await step('rows (from Arrow)', flightRows);
  const rowsBytes = heap() - before;
  const df = await step('polars (from Arrow)', flightsPolars);
  await step('PostgreSQL (COPY, skipped when already loaded)', flightsPostgres);
  await flightsPostgresSource();
  const pool = await flightsPool();
  const pgSize = (
    await pool.query<{ size: string }>(
      'SELECT pg_size_pretty(pg_total_relation_size($1::regclass)) AS size',
      [postgresFlightsTable()],
    )
  ).rows[0]!.size;
  const duckdbSize = (await flights.runAndReadAll('PRAGMA database_size')).getRowObjectsJS()[0]!.memory_usage;
  log(`loaded ${rows.length.toLocaleString('en-US')} flights`);
  return {
    rows: `${mib(rowsBytes)} of heap${typeof (globalThis as { gc?: unknown }).gc === 'function' ? '' : ' (approx.: run node with --expose-gc)'}`,
    arrow: mib(arrowBytes(table)),
    polars: mib(polarsBytes(df)),
    duckdb: String(duckdbSize),
    postgres: pgSize,
    loading: took.join(', '),
  };
}

/** A result of `way`'s kind as departure rows: what the user does to use it. */
async function resultRows(way: Way, result: unknown): Promise<Departure[]> {
  switch (way) {
    case 'rows':
    case 'kysely':
      return Array.isArray(result)
        ? (result as Departure[])
        : ((await (result as { execute(): Promise<unknown[]> }).execute()) as Departure[]);
    case 'arrow':
      return (result as Table).toArray().map((row) => row.toJSON() as Departure);
    case 'polars':
      return (result as DataFrame).toRecords() as unknown as Departure[];
    case 'duckdbSql':
    case 'postgresSql':
      return (await (result as { toArray(): Promise<unknown[]> }).toArray()) as Departure[];
  }
}

/** The user's own table of departures in DuckDB: an appender, then the key index. */
async function handStoreDuckDB(c: DuckDBConnection, way: Way, rows: readonly Departure[]): Promise<void> {
  const table = `departures_${way}`;
  await c.run(`CREATE OR REPLACE TABLE ${table} (origin VARCHAR, departures BIGINT)`);
  const appender = await c.createAppender(table);
  for (const r of rows) {
    appender.appendVarchar(r.origin);
    appender.appendBigInt(BigInt(r.departures));
    appender.endRow();
  }
  appender.closeSync();
  await c.run(`CREATE UNIQUE INDEX ${table}_key ON ${table} (origin)`);
}

/** The user's own table of departures in PostgreSQL, replaced in one transaction. */
async function handStorePostgres(pool: pg.Pool, table: string, rows: readonly Departure[]): Promise<void> {
  await inTransaction(pool, async (client) => {
    await client.query(`DROP TABLE IF EXISTS ${table}`);
    await client.query(`CREATE TABLE ${table} (origin text, departures bigint)`);
    await client.query({
      text: `INSERT INTO ${table} SELECT * FROM unnest($1::text[], $2::bigint[])`,
      values: [rows.map((r) => r.origin), rows.map((r) => r.departures)],
    });
    await client.query(`ALTER TABLE ${table} ADD PRIMARY KEY (origin)`);
    await client.query(`ANALYZE ${table}`);
  });
}

/** `CREATE TABLE … AS` the query, inside PostgreSQL, with the key and statistics. */
async function handCreateTableAs(pool: pg.Pool, table: string, sql: string): Promise<void> {
  await inTransaction(pool, async (client) => {
    await client.query(`DROP TABLE IF EXISTS ${table}`);
    await client.query({ text: `CREATE TABLE ${table} AS ${sql}`, values: [when] });
    await client.query(`ALTER TABLE ${table} ADD PRIMARY KEY (origin)`);
    await client.query(`ANALYZE ${table}`);
  });
}

async function inTransaction(pool: pg.Pool, body: (client: pg.PoolClient) => Promise<void>): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await body(client);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

function notes(way: Way, store: 'duckdb' | 'postgres', inEngine: boolean): string {
  if (inEngine) return 'in-engine CREATE TABLE AS; hand: the same + primary key, ANALYZE';
  const via = way === 'kysely' ? 'execute(), then' : way.endsWith('Sql') ? 'rows streamed out, then' : '';
  return `${via} ${store === 'duckdb' ? 'appender + index' : 'COPY + primary key'}; hand: compute + ${
    store === 'duckdb' ? 'appender + index' : 'INSERT unnest + primary key'
  }`.trim();
}

function result(
  name: string,
  featurefn: number[],
  hand: number[],
  target: string,
  note: string,
): BenchResult {
  const ff = median(featurefn);
  const hw = median(hand);
  log(
    `${name}: featurefn ${formatMs(ff)} (min ${formatMs(Math.min(...featurefn))}), ` +
      `hand-written ${formatMs(hw)} (min ${formatMs(Math.min(...hand))})`,
  );
  return {
    name,
    featurefn: formatMs(ff),
    handWritten: formatMs(hw),
    ratio: ratioOf(ff, hw),
    target,
    notes: `median of ${featurefn.length}; ${note}`,
  };
}

async function duckdbRows(c: DuckDBConnection, sql: string): Promise<Record<string, unknown>[]> {
  return (await c.runAndReadAll(sql, [at(when)])).getRowObjectsJS();
}

function at(date: Date) {
  return timestampValue(BigInt(date.getTime()) * 1000n);
}

function byOrigin(rows: readonly object[]): Map<string, number> {
  return new Map(rows.map((r) => [(r as Departure).origin, Number((r as Departure).departures)]));
}

function sameMap(a: Map<string, number>, b: Map<string, number>): boolean {
  return a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
}

function sum(map: Map<string, number>): number {
  let total = 0;
  for (const v of map.values()) total += v;
  return total;
}

function arrowBytes(table: Table): number {
  return table.batches.reduce((total, batch) => total + batch.data.byteLength, 0);
}

/** Size of the frame written as Arrow IPC: close to what it holds (nodejs-polars has no size call). */
function polarsBytes(df: DataFrame): number {
  return df.writeIPC().byteLength;
}

function mib(bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / 2 ** 20).toFixed(0)} MiB` : 'n/a';
}

function log(message: string): void {
  console.log(`  five-ways  ${message}`);
}
