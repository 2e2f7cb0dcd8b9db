import { FeatureStore, type Row } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { PostgresMaterializer } from 'featurefn/postgres';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { kyselyAdapter } from '../../src/frame/kysely/kysely-adapter.js';
import { adminClient, dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';

const server = await requirePostgres();

type Tables = Record<string, Record<string, unknown>>;

const byOrigin = (a: Row, b: Row) => String(a.origin).localeCompare(String(b.origin));

describe.skipIf(!server.available)(`Kysely features on PostgreSQL${server.reason}`, () => {
  let data: string;
  let schema: string;
  let pool: pg.Pool;
  let db: Kysely<Tables>;
  let store: FeatureStore;
  let calls: number;

  beforeEach(async () => {
    data = uniqueSchema('data');
    schema = uniqueSchema();
    const admin = await adminClient();
    try {
      await admin.query(`CREATE SCHEMA "${data}"`);
      await admin.query(
        `CREATE TABLE "${data}".flights AS
         SELECT g AS flight_id, (ARRAY['SFO', 'LAX', 'JFK', 'ORD'])[1 + g % 4] AS origin,
                (g * 37) % 150 - 20 AS delay, timestamptz '2001-03-01' + g * interval '7 minutes' AS date,
                jsonb_build_object('gate', 'G' || (g % 9)) AS meta, ARRAY[g * 0.5, -g]::float8[] AS embedding
         FROM generate_series(1, 400) g`,
      );
    } finally {
      await admin.end();
    }
    pool = new pg.Pool({ connectionString: postgresUrl(), max: 4 });
    pool.on('error', () => undefined);
    db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) });
    store = new FeatureStore();
    calls = 0;
  });

  afterEach(async () => {
    await db.destroy(); // ends the pool
    await dropSchema(schema);
    await dropSchema(data);
  });

  function features(on: FeatureStore) {
    const departures = on.feature(
      { module: 'flights', entity: 'origin' },
      async function departures({ when }: { when: Date }) {
        calls++;
        return db
          .withSchema(data)
          .selectFrom('flights')
          .select([
            'origin',
            sql<number>`count(*)::int`.as('departures'),
            sql<number>`avg(delay)::float8`.as('mean_delay'),
            sql<Date>`max(date)`.as('last_departure'),
          ])
          .where('date', '<=', when)
          .groupBy('origin');
      },
    );
    const lastFlight = on.feature({ module: 'flights', entity: 'flight_id' }, async function lastFlights() {
      calls++;
      return db
        .withSchema(data)
        .selectFrom('flights')
        .select(['flight_id', 'meta', 'embedding'])
        .where('flight_id', '>', 395);
    });
    return { departures, lastFlight };
  }

  it('materializes a Kysely feature and reads it back as a Kysely query over the stored table', async () => {
    const materializer = new PostgresMaterializer({ connection: pool, schema });
    store.addDecorator(materializer.decorator);
    const { departures } = features(store);
    const when = new Date('2001-03-01T20:00:00Z');
    const computed = (await (await departures.compute({ when })).execute()).sort(byOrigin);
    const record = await materializer.materialize(departures, { when });
    expect(record.kind).toBe('kysely');
    expect(record.rows).toBe(4);
    expect(record.columns.map((c) => c.type)).toEqual(['string', 'int32', 'float64', 'timestamp']);

    calls = 0;
    const back = await departures({ when });
    expect(calls).toBe(0);
    expect(kyselyAdapter.canAdapt(back)).toBe(true);
    // A small result: its rows in its shape's shared table, selected by materialization id.
    const compiled = back.compile();
    expect(compiled.sql).toMatch(
      new RegExp(
        `^select "origin", "v1" as "departures", "v2" as "mean_delay", "v3" as "last_departure" from "${schema}"\\."s_[0-9a-f]{16}" where "_m" = \\$1$`,
      ),
    );
    expect(compiled.parameters).toEqual([record.id]);
    expect((await back.execute()).sort(byOrigin)).toEqual(computed);
    // A real query: it can be refined before it runs.
    expect(await back.where('origin', '=', 'SFO').execute()).toEqual(
      computed.filter((r) => r.origin === 'SFO'),
    );
    expect(
      await store.withParams({ when }).getFeatures(departures).filter({ origin: 'LAX' }).toArray(),
    ).toEqual(computed.filter((r) => r.origin === 'LAX'));

    // Closing the store destroys its Kysely instance, not the pool the user passed in.
    await materializer.close();
    expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    expect(await db.selectFrom(sql`(SELECT 2 AS two)`.as('t')).selectAll().execute()).toEqual([{ two: 2 }]);
  });

  it('keeps JSON objects and embeddings of a Kysely feature, filtered by key', async () => {
    const materializer = new PostgresMaterializer({ connection: postgresUrl(), schema, poolSize: 2 });
    try {
      store.addDecorator(materializer.decorator);
      const { lastFlight } = features(store);
      const computed = await (await lastFlight.compute()).execute();
      expect(computed).toHaveLength(5);
      const record = await materializer.materialize(lastFlight, {});
      expect(record.columns.map((c) => c.type)).toEqual(['int32', 'json', 'float64[]']);
      const back = await lastFlight();
      expect(kyselyAdapter.canAdapt(back)).toBe(true);
      expect(await back.where('flight_id', '=', 398).execute()).toEqual(
        computed.filter((r) => r.flight_id === 398),
      );
      expect(await store.withParams({}).getFeatures(lastFlight).filter({ flight_id: 397 }).toArray()).toEqual(
        [{ flight_id: 397, meta: { gate: 'G1' }, embedding: [198.5, -397] }],
      );
    } finally {
      await materializer.close();
    }
  });

  it('refuses to materialize a Kysely feature in a DuckDB store, which cannot give back a Kysely query', async () => {
    const duckdb = new DuckDBMaterializer();
    try {
      store.addDecorator(duckdb.decorator);
      const { departures } = features(store);
      const when = new Date('2001-03-02T00:00:00Z');
      await expect(duckdb.materialize(departures, { when })).rejects.toMatchObject({
        code: 'UNSUPPORTED_RESULT',
        message: expect.stringContaining('Kysely query'),
      });
      expect(await duckdb.listMaterializations(departures)).toEqual([]);
    } finally {
      await duckdb.close();
    }
  });
});
