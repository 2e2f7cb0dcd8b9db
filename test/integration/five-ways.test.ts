/**
 * The same feature written five ways (examples/five-ways): rows, Arrow, polars, DuckDB SQL and
 * Kysely on PostgreSQL, over the same real flights. Each gives the departures hand-written DuckDB
 * SQL gives, materializes into DuckDB and into PostgreSQL, and a decorated call of a materialized
 * feature returns the kind the function returns. The `sql` tag on PostgreSQL, a variant of the
 * fifth, is also materialized inside PostgreSQL.
 *
 * Runs on the first 400,000 flights (January 2001) to stay quick; the bench runs all 3 million.
 */
import { timestampValue } from '@duckdb/node-api';
import { Table } from 'apache-arrow';
import { defaultStore, type FeatureDecorator, type Materializer, SqlQuery } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { polarsAdapter } from 'featurefn/polars';
import { PostgresMaterializer } from 'featurefn/postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Way, ways } from '../../examples/five-ways/features.js';
import {
  closeFlights,
  configureFlights,
  flightRows,
  flightsArrow,
  flightsDuckDB,
  flightsPolars,
  flightsPostgres,
} from '../../examples/five-ways/flights.js';
import { kyselyAdapter } from '../../src/frame/kysely/kysely-adapter.js';
import { dropSchema, requirePostgres, uniqueSchema } from '../support/postgres.js';

const FLIGHTS = 400_000;
/** Mid-January: the first 400,000 flights run to January 25th, so the filter drops some. */
const when = new Date('2001-01-15T12:00:00Z');

const server = await requirePostgres();
const dataSchema = uniqueSchema('five_ways');
configureFlights({ limit: FLIGHTS, postgresUrl: server.url, postgresSchema: dataSchema });

const inProcess = ['rows', 'arrow', 'polars', 'duckdbSql'] as const satisfies readonly Way[];
/** The five ways, and the `sql` tag on PostgreSQL, a variant of the fifth. */
const all = [...inProcess, 'kysely', 'postgresSql'] as const satisfies readonly Way[];
const available: readonly Way[] = server.available ? all : inProcess;

/**
 * One decorator on the `fiveWays` module that forwards to whichever materializer is current, so
 * each test chooses the store that serves the calls.
 */
let current: Materializer | undefined;
const switchable: FeatureDecorator = (next, info) => (params) =>
  current === undefined ? next(params) : current.decorator(next, info)(params);
// `getFeatures` reads go to the decorator's `materializer`: the current one.
Object.defineProperty(switchable, 'materializer', { get: () => current });
defaultStore.addDecorator(switchable, 'fiveWays');

/** Departures per origin from any of the five kinds of result, by shape. */
async function departuresOf(result: unknown): Promise<Map<string, number>> {
  let rows: Record<string, unknown>[];
  if (result instanceof Table) rows = result.toArray().map((row) => row.toJSON());
  else if (result instanceof SqlQuery) rows = await result.toArray();
  else if (polarsAdapter.canAdapt(result)) rows = result.toRecords();
  else if (kyselyAdapter.canAdapt(result) && !Array.isArray(result)) rows = await result.execute();
  else if (Array.isArray(result)) rows = result as Record<string, unknown>[];
  else throw new Error(`unexpected result ${String(result)}`);
  return new Map(rows.map((r) => [r.origin as string, Number(r.departures)]));
}

/** Runs `ways[way]` through its registered callable, whatever it returns. */
function call(way: Way): Promise<unknown> {
  return ways[way]({ when });
}

let expected: Map<string, number>;

beforeAll(async () => {
  const { instance } = await flightsDuckDB();
  const c = await instance.connect();
  try {
    // The hand-written answer, straight from DuckDB.
    const result = await c.runAndReadAll(
      'SELECT origin, count(*) AS departures FROM flights WHERE date <= $1 GROUP BY origin',
      [timestampValue(BigInt(when.getTime()) * 1000n)],
    );
    expected = new Map(result.getRowObjectsJS().map((r) => [r.origin as string, Number(r.departures)]));
    const total = (await c.runAndReadAll('SELECT count(*)::INTEGER FROM flights')).getRows()[0]![0];
    expect(total).toBe(FLIGHTS);
  } finally {
    c.closeSync();
  }
  // Load every form up front, so that no test pays for it.
  await Promise.all([
    flightRows(),
    flightsArrow(),
    flightsPolars(),
    server.available ? flightsPostgres() : null,
  ]);
}, 120_000);

afterAll(async () => {
  current = undefined;
  await closeFlights();
  if (server.available) await dropSchema(dataSchema);
});

describe('the same feature, five ways', () => {
  it('holds the same flights in every form', async () => {
    expect((await flightRows()).length).toBe(FLIGHTS);
    expect((await flightsArrow()).numRows).toBe(FLIGHTS);
    expect((await flightsPolars()).height).toBe(FLIGHTS);
    expect(expected.size).toBeGreaterThan(200);
    const total = [...expected.values()].reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThan(100_000);
    expect(total).toBeLessThan(FLIGHTS); // `when` leaves the later flights out
  });

  it.each(available)('%s gives the departures hand-written DuckDB SQL gives', async (way) => {
    expect(await departuresOf(await call(way))).toEqual(expected);
  });

  it('each undecorated call returns what the function returns', async () => {
    expect(Array.isArray(await ways.rows({ when }))).toBe(true);
    expect(await ways.arrow({ when })).toBeInstanceOf(Table);
    expect(polarsAdapter.canAdapt(await ways.polars({ when }))).toBe(true);
    const query = await ways.duckdbSql({ when });
    expect(query).toBeInstanceOf(SqlQuery);
    expect(query.source.database).toBe((await flightsDuckDB()).instance);
    if (server.available) {
      const kysely = await ways.kysely({ when });
      expect(kysely.compile().sql).toBe(
        `select "origin", cast(count(*) as integer) as "departures" from "${dataSchema}"."flights" where "date" <= $1 group by "origin"`,
      );
    }
  });

  it('materializes every way into DuckDB and reads each back as the kind it returns', async () => {
    const duckdb = new DuckDBMaterializer({ path: ':memory:' });
    current = duckdb;
    try {
      // A Kysely query cannot come back from DuckDB as a Kysely query: the store refuses it.
      const stored = available.filter((way) => way !== 'kysely');
      if (server.available) {
        await expect(duckdb.materialize(ways.kysely, { when })).rejects.toMatchObject({
          code: 'UNSUPPORTED_RESULT',
          feature: 'fiveWays.kysely.departures',
        });
        expect(await duckdb.listMaterializations(ways.kysely)).toEqual([]);
      }
      for (const way of stored) {
        const record = await duckdb.materialize(ways[way], { when });
        expect(record.featureName).toBe(`fiveWays.${way}.departures`);
        expect(record.rows).toBe(expected.size);
        expect(record.key).toEqual(['origin']);
      }
      const kinds = await Promise.all(
        stored.map(async (way) => (await duckdb.listMaterializations(ways[way]))[0]!.kind),
      );
      expect(kinds).toEqual(['rows', 'arrow', 'polars', 'sql', 'sql'].slice(0, stored.length));

      const rows = await ways.rows({ when });
      expect(Array.isArray(rows)).toBe(true);
      const arrow = await ways.arrow({ when });
      expect(arrow).toBeInstanceOf(Table);
      const polars = await ways.polars({ when });
      expect(polarsAdapter.canAdapt(polars)).toBe(true);
      const sql = await ways.duckdbSql({ when });
      expect(sql).toBeInstanceOf(SqlQuery);
      // Served from the store: a query over the stored table, on the store's database.
      expect(sql.source.database).not.toBe((await flightsDuckDB()).instance);
      expect(sql.source.dialect).toBe('duckdb');
      const served: unknown[] = [rows, arrow, polars, sql];
      if (server.available) {
        const postgresSql = await ways.postgresSql({ when });
        expect(postgresSql.source.dialect).toBe('duckdb');
        served.push(postgresSql);
      }
      for (const [i, result] of served.entries()) {
        expect(await departuresOf(result), stored[i]).toEqual(expected);
      }
      const frame = defaultStore.withParams({ when }).getFeatures(ways.rows).filter({ origin: 'SFO' });
      expect(await frame.explain()).toContain('-- served by duckdb');
      expect(await frame.toArray()).toEqual([{ origin: 'SFO', departures: expected.get('SFO') }]);
    } finally {
      current = undefined;
      await duckdb.close();
    }
  });

  it.skipIf(!server.available)(
    `materializes every way into PostgreSQL; Kysely reads back as a Kysely query${server.reason}`,
    async () => {
      const schema = uniqueSchema();
      const postgres = new PostgresMaterializer({ connection: server.url, schema, poolSize: 2 });
      current = postgres;
      try {
        for (const way of all) {
          const record = await postgres.materialize(ways[way], { when });
          expect(record.rows).toBe(expected.size);
        }
        const rows = await ways.rows({ when });
        expect(Array.isArray(rows)).toBe(true);
        const arrow = await ways.arrow({ when });
        expect(arrow).toBeInstanceOf(Table);
        const polars = await ways.polars({ when });
        expect(polarsAdapter.canAdapt(polars)).toBe(true);
        const sql = await ways.duckdbSql({ when });
        expect(sql).toBeInstanceOf(SqlQuery);
        expect(sql.source.dialect).toBe('postgres');
        const kysely = await ways.kysely({ when });
        expect(kyselyAdapter.canAdapt(kysely) && !Array.isArray(kysely)).toBe(true);
        const [record] = await postgres.listMaterializations(ways.kysely);
        expect(record!.kind).toBe('kysely');
        // A small result: its rows in its shape's shared table, selected by materialization id.
        expect(kysely.compile().sql).toMatch(
          new RegExp(
            `^select "origin", "v1" as "departures" from "${schema}"\\."s_[0-9a-f]{16}" where "_m" = \\$1$`,
          ),
        );
        expect(kysely.compile().parameters).toEqual([record!.id]);
        // A real Kysely query: it can be refined before it runs.
        expect(await kysely.where('origin', '=', 'SFO').execute()).toEqual([
          { origin: 'SFO', departures: expected.get('SFO') },
        ]);
        // The `sql` tag on the store's own database: materialized inside PostgreSQL, read back as
        // a query over the stored table there.
        const query = await ways.postgresSql.compute({ when });
        expect(query.source.database).toBe(postgres.source.database);
        const postgresSql = await ways.postgresSql({ when });
        expect(postgresSql.source.dialect).toBe('postgres');
        expect(postgresSql.render((i) => `$${i}`).text).toMatch(new RegExp(`"${schema}"\\."s_[0-9a-f]{16}"`));
        for (const [i, result] of [rows, arrow, polars, sql, kysely, postgresSql].entries()) {
          expect(await departuresOf(result), all[i]).toEqual(expected);
        }
      } finally {
        current = undefined;
        await postgres.close();
        await dropSchema(schema);
      }
    },
  );
});
