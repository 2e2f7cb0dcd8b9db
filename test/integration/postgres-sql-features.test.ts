import type { RecordBatch } from 'apache-arrow';
import { FeatureStore, FeatureStoreError, type Row } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { PostgresMaterializer, type PostgresSource, postgresSource } from 'featurefn/postgres';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { sqlAdapter } from '../../src/frame/sql/sql-adapter.js';
import { isSqlQuery, type SqlQuery, type SqlSource, sqlTag } from '../../src/sql/sql-query.js';
import {
  adminClient,
  dropSchema,
  postgresUrl,
  requirePostgres,
  storedRowsOf,
  uniqueSchema,
} from '../support/postgres.js';
import { seeded } from '../support/seeded.js';

const server = await requirePostgres();

const AIRPORTS = ['SFO', 'LAX', 'JFK', 'ORD', 'SEA', 'O\'HARE"; --'] as const;
const FLIGHTS = 3000;
const day = (d: number) => new Date(Date.UTC(2001, 2, d));

type Counting = SqlSource & { streams: number; rows: number };

/** A source that counts the queries it streams and the rows that pass through Node. */
function counting(inner: SqlSource): Counting {
  const source: Counting = {
    dialect: inner.dialect,
    database: inner.database,
    streams: 0,
    rows: 0,
    sql: sqlTag(() => source),
    stream(query: SqlQuery): AsyncIterable<RecordBatch> {
      source.streams++;
      return (async function* () {
        for await (const batch of inner.stream(query)) {
          source.rows += batch.numRows;
          yield batch;
        }
      })();
    },
  };
  return source;
}

const byOrigin = (a: Row, b: Row) => String(a.origin).localeCompare(String(b.origin));

describe.skipIf(!server.available)(`SQL features on PostgreSQL${server.reason}`, () => {
  let admin: pg.Client;
  /** Where the user's data lives: the `flights` table. */
  let data: string;
  /** The store's schema. */
  let schema: string;
  let pool: pg.Pool;
  let source: PostgresSource;
  let db: ReturnType<typeof counting>;
  let materializer: PostgresMaterializer;
  let store: FeatureStore;
  let calls: Record<string, number>;

  beforeAll(async () => {
    admin = await adminClient();
  });
  afterAll(async () => {
    await admin?.end();
  });

  beforeEach(async () => {
    data = uniqueSchema('data');
    schema = uniqueSchema();
    const random = seeded(42);
    await admin.query(`CREATE SCHEMA "${data}"`);
    await admin.query(
      `CREATE TABLE "${data}".flights (flight_id int PRIMARY KEY, date timestamp NOT NULL, origin text NOT NULL,
         destination text NOT NULL, delay int NOT NULL, distance numeric NOT NULL)`,
    );
    const rows = Array.from({ length: FLIGHTS }, (_, i) => [
      i,
      new Date(day(1).getTime() + random.int(0, 9 * 24 * 60) * 60_000).toISOString(),
      random.pick(AIRPORTS),
      random.pick(AIRPORTS),
      random.int(-20, 120),
      random.int(100, 3000) + 0.5,
    ]);
    await admin.query({
      text: `INSERT INTO "${data}".flights
             SELECT * FROM unnest($1::int[], $2::timestamp[], $3::text[], $4::text[], $5::int[], $6::numeric[])`,
      values: [0, 1, 2, 3, 4, 5].map((c) => rows.map((r) => r[c])),
    });
    pool = new pg.Pool({ connectionString: postgresUrl(), max: 4 });
    pool.on('error', () => undefined);
    // Small batches, so that streamed results come in several.
    source = postgresSource(pool, { rowsPerBatch: 1000 });
    db = counting(source);
    materializer = new PostgresMaterializer({ connection: pool, schema });
    store = new FeatureStore();
    store.addDecorator(materializer.decorator);
    calls = {};
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    await materializer.close();
    await pool.end();
    await dropSchema(schema);
    await dropSchema(data);
  });

  const count = (name: string) => {
    calls[name] = (calls[name] ?? 0) + 1;
  };

  /** Per origin as of `when`: departures, mean delay (numeric → float64), last departure (timestamp → UTC). */
  const departuresSql = (when: Date) => ({
    text: `SELECT origin, count(*)::int AS departures, avg(delay) AS mean_delay, max(date) AS last_departure
           FROM "${data}".flights WHERE date <= $1 GROUP BY origin`,
    values: [when.toISOString()],
  });

  function departuresFeature(on: FeatureStore = store) {
    return on.feature(
      { module: 'flights', entity: 'origin' },
      async function departures({ when }: { when: Date }) {
        count('departures');
        return db.sql`SELECT origin, count(*)::int AS departures, avg(delay) AS mean_delay, max(date) AS last_departure
                    FROM ${db.sql.id(data, 'flights')} WHERE date <= ${when} GROUP BY origin`;
      },
    );
  }

  /** The hand-written query's rows, as featurefn gives them. */
  async function expectedDepartures(when: Date): Promise<Row[]> {
    const { rows } = await admin.query({
      // A timestamp without time zone is read as UTC.
      text: `SELECT origin, departures, mean_delay::float8 AS mean_delay,
                    (extract(epoch FROM last_departure) * 1000)::float8 AS last_ms
             FROM (${departuresSql(when).text}) q`,
      values: departuresSql(when).values,
    });
    return rows
      .map((r) => ({
        origin: r.origin,
        departures: r.departures,
        mean_delay: r.mean_delay,
        last_departure: new Date(r.last_ms),
      }))
      .sort(byOrigin);
  }

  /** Tables in the store's schema, to check a failure left nothing behind. */
  async function storeTables(): Promise<string[]> {
    const { rows } = await admin.query(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
      [schema],
    );
    return rows.map((r) => r.table_name as string);
  }

  it('materializes a SQL feature on the store’s own database inside PostgreSQL: no row passes through Node', async () => {
    // The server session's zone must not matter: timestamps without zone are UTC.
    const departures = departuresFeature();
    const toBatches = vi.spyOn(sqlAdapter, 'toBatches');
    const when = day(5);
    const record = await materializer.materialize(departures, { when });

    expect(db.streams).toBe(0);
    expect(db.rows).toBe(0);
    expect(toBatches).not.toHaveBeenCalled();
    const { rows: hand } = await admin.query(
      `SELECT count(*)::int AS n FROM (${departuresSql(when).text}) q`,
      departuresSql(when).values,
    );
    expect(record.rows).toBe(hand[0].n);
    expect(record.rows).toBe(AIRPORTS.length);
    expect(record.kind).toBe('sql');
    expect(record.key).toEqual(['origin']);
    expect(record.columns).toEqual([
      { name: 'origin', type: 'string' },
      { name: 'departures', type: 'int32' },
      { name: 'mean_delay', type: 'float64' },
      { name: 'last_departure', type: 'timestamp' },
    ]);
    // Stored in the types a COPY load gives, with the entity key in the primary key: a small result
    // moves to its shape's shared table, after the materialization id, its value columns as v1, v2, ….
    const stored = await storedRowsOf(admin, schema, record.id);
    expect(stored.idColumn).toBe('_m');
    const { rows: types } = await admin.query(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, c.collname AS collation
       FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation AND a.attcollation <> 0
       WHERE a.attrelid = $1::regclass AND a.attnum > 0 ORDER BY a.attnum`,
      [stored.table],
    );
    expect(types).toEqual([
      { name: '_m', type: 'bigint', collation: null },
      { name: 'origin', type: 'text', collation: 'C' },
      { name: 'v1', type: 'integer', collation: null },
      { name: 'v2', type: 'double precision', collation: null },
      { name: 'v3', type: 'timestamp with time zone', collation: null },
    ]);
    const { rows: key } = await admin.query(
      `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'`,
      [stored.table],
    );
    expect(key).toEqual([{ def: 'PRIMARY KEY (_m, origin)' }]);
    const { rows: catalog } = await admin.query(`SELECT row_count::int AS n, kind FROM "${schema}".catalog`);
    expect(catalog).toEqual([{ n: hand[0].n, kind: 'sql' }]);

    // Read back: a decorated call gives a query on the stored table; getFeatures reads it by key.
    const expected = await expectedDepartures(when);
    calls = {};
    const back = await departures({ when });
    expect(isSqlQuery(back)).toBe(true);
    expect((await back.toArray()).sort(byOrigin)).toEqual(expected);
    expect(calls).toEqual({});
    expect(
      await store.withParams({ when }).getFeatures(departures).filter({ origin: 'SFO' }).toArray(),
    ).toEqual(expected.filter((r) => r.origin === 'SFO'));
  });

  it('streams the same feature through Node into a store on another pool, with the same rows', async () => {
    const departures = departuresFeature();
    const when = day(7);
    const inEngine = await materializer.materialize(departures, { when });
    expect(db.streams).toBe(0);

    const otherSchema = uniqueSchema();
    // Another pool identity (a URL): the store cannot see that the data is in its database.
    const other = new PostgresMaterializer({ connection: postgresUrl(), schema: otherSchema });
    try {
      const toBatches = vi.spyOn(sqlAdapter, 'toBatches');
      const streamed = await other.materialize(departures, { when });
      expect(db.streams).toBe(1);
      expect(db.rows).toBe(AIRPORTS.length);
      expect(toBatches).toHaveBeenCalledTimes(1);
      expect(streamed.rows).toBe(inEngine.rows);
      expect(streamed.columns).toEqual(inEngine.columns);
      expect(streamed.kind).toBe('sql');
      const plan = (m: typeof other | typeof materializer) => {
        const s = new FeatureStore();
        s.addDecorator(m.decorator);
        return s.withParams({ when }).getFeatures(departuresFeature(s)).toArray();
      };
      const a = (await plan(materializer)).sort(byOrigin);
      expect((await plan(other)).sort(byOrigin)).toEqual(a);
      expect(a).toEqual(await expectedDepartures(when));
    } finally {
      await other.close();
      await dropSchema(otherSchema);
    }
  });

  it('recognises the same database from two spellings of its URL, and runs in-engine', async () => {
    const url = new URL(postgresUrl());
    const spelled = `postgresql://${url.username}:ignored@${url.hostname.toUpperCase()}:${url.port || 5432}${url.pathname}?application_name=x`;
    const inner = postgresSource(spelled);
    const byUrl = counting(inner);
    const otherSchema = uniqueSchema();
    const onUrl = new PostgresMaterializer({ connection: postgresUrl(), schema: otherSchema });
    try {
      const f = store.feature({ module: 'flights', entity: 'origin' }, async function byUrlFeature() {
        return byUrl.sql`SELECT origin, count(*)::int AS n FROM ${byUrl.sql.id(data, 'flights')} GROUP BY origin`;
      });
      const record = await onUrl.materialize(f, {});
      expect(byUrl.streams).toBe(0);
      expect(record.rows).toBe(AIRPORTS.length);
      const { rows } = await admin.query(
        `SELECT sum(n)::int AS n FROM ${(await storedRowsOf(admin, otherSchema, record.id)).rows}`,
      );
      expect(rows[0].n).toBe(FLIGHTS);
    } finally {
      await onUrl.close();
      await inner.close();
      await dropSchema(otherSchema);
    }
  });

  it('streams a result of many batches into the store, every row intact', async () => {
    const perFlight = store.feature({ module: 'flights', entity: 'flight_id' }, async function perFlight() {
      return db.sql`SELECT flight_id, origin, delay - avg(delay) OVER (PARTITION BY origin) AS relative_delay
                    FROM ${db.sql.id(data, 'flights')}`;
    });
    const otherSchema = uniqueSchema();
    const other = new PostgresMaterializer({ connection: postgresUrl(), schema: otherSchema });
    try {
      const record = await other.materialize(perFlight, {});
      expect(record.rows).toBe(FLIGHTS);
      expect(db.rows).toBe(FLIGHTS);
      const { rows } = await admin.query(
        `SELECT count(*)::int AS n FROM ${(await storedRowsOf(admin, otherSchema, record.id, 's')).rows}
         JOIN (SELECT flight_id, delay - avg(delay) OVER (PARTITION BY origin) AS r FROM "${data}".flights) h
           ON h.flight_id = s.flight_id AND h.r::float8 = s.relative_delay`,
      );
      expect(rows[0].n).toBe(FLIGHTS);
    } finally {
      await other.close();
      await dropSchema(otherSchema);
    }
  });

  it('serves the inner feature of a derived SQL feature from the store, as a subquery', async () => {
    const departures = departuresFeature();
    const busy = store.feature(
      { module: 'flights', entity: 'origin' },
      async function busyOrigins({ when, min }: { when: Date; min: number }) {
        count('busyOrigins');
        return db.sql`SELECT origin, departures FROM ${await departures({ when })} t WHERE departures >= ${min}`;
      },
    );
    const when = day(6);
    await materializer.materialize(departures, { when });
    // Change the data: a recomputed inner feature would see this, the stored one does not.
    await admin.query(`UPDATE "${data}".flights SET origin = 'ZZZ' WHERE flight_id % 2 = 0`);
    calls = {};
    const record = await materializer.materialize(busy, { when, min: 300 });
    expect(calls).toEqual({ busyOrigins: 1 });
    expect(db.streams).toBe(0);
    const stored = (await materializer.listMaterializations(departures))[0]!;
    const { rows: hand } = await admin.query(
      `SELECT origin, departures FROM ${(await storedRowsOf(admin, schema, stored.id)).rows} WHERE departures >= 300 ORDER BY origin COLLATE "C"`,
    );
    expect(hand.length).toBeGreaterThan(0);
    expect(hand.map((r) => r.origin)).not.toContain('ZZZ');
    expect(record.rows).toBe(hand.length);
    const rows = await store.withParams({ when, min: 300 }).getFeatures(busy).toArray();
    expect(rows.sort(byOrigin)).toEqual(hand.sort(byOrigin));
  });

  describe('bad input is refused and leaves the store as it was', () => {
    async function expectRefused(
      query: (when: Date) => SqlQuery,
      entity: string,
      code: string,
      ...inMessage: string[]
    ): Promise<FeatureStoreError> {
      const departures = departuresFeature();
      await materializer.materialize(departures, { when: day(3) });
      const before = await materializer.listMaterializations(departures);
      const tablesBefore = await storeTables();
      const bad = store.feature(
        { module: 'flights', entity },
        async function badFeature({ when }: { when: Date }) {
          return query(when);
        },
      );
      const error = await materializer.materialize(bad, { when: day(3) }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(FeatureStoreError);
      const e = error as FeatureStoreError;
      expect(e.code).toBe(code);
      expect(e.feature).toBe('flights.badFeature');
      expect(e.message).toContain('2001-03-03');
      for (const text of inMessage) expect(e.message).toContain(text);
      expect(await materializer.listMaterializations(bad)).toEqual([]);
      expect(await materializer.listMaterializations(departures)).toEqual(before);
      expect(await storeTables()).toEqual(tablesBefore);
      expect(db.streams).toBe(0);
      return e;
    }

    it('a JSON column as key', async () => {
      await expectRefused(
        (when) => db.sql`SELECT json_build_object('o', origin) AS k, count(*) AS n
                         FROM ${db.sql.id(data, 'flights')} WHERE date <= ${when} GROUP BY origin`,
        'k',
        'UNSUPPORTED_COLUMN_TYPE',
        'key column "k"',
      );
    });

    it('a duplicated key, named in the error', async () => {
      const error = await expectRefused(
        (when) => db.sql`SELECT origin, delay FROM ${db.sql.id(data, 'flights')} WHERE date <= ${when}`,
        'origin',
        'DUPLICATE_KEY',
        'origin = "',
      );
      expect(AIRPORTS).toContain(error.details?.key && (error.details.key as Row).origin);
    });

    it('a null key', async () => {
      await expectRefused(
        (when) => db.sql`SELECT NULLIF(origin, 'SFO') AS origin, count(*) AS n
                         FROM ${db.sql.id(data, 'flights')} WHERE date <= ${when} GROUP BY 1`,
        'origin',
        'NULL_KEY',
      );
    });

    it('a missing key column', async () => {
      await expectRefused(
        (when) => db.sql`SELECT origin AS airport FROM ${db.sql.id(data, 'flights')} WHERE date <= ${when}`,
        'origin',
        'MISSING_KEY_COLUMN',
        '"airport"',
      );
    });

    it('a syntax error', async () => {
      const error = await expectRefused(
        (when) => db.sql`SELEC origin FROM ${db.sql.id(data, 'flights')} WHERE date <= ${when}`,
        'origin',
        'FEATURE_FAILED',
        'syntax error',
      );
      expect(error.sql).toContain('SELEC origin');
    });

    it('an error while the query runs', async () => {
      await expectRefused(
        (when) => db.sql`SELECT origin, 1 / (count(*) - count(*)) AS n
                         FROM ${db.sql.id(data, 'flights')} WHERE date <= ${when} GROUP BY origin`,
        'origin',
        'FEATURE_FAILED',
        'division by zero',
      );
    });

    it('a column type featurefn cannot store', async () => {
      await expectRefused(
        (when) => db.sql`SELECT origin, '127.0.0.1'::inet AS address
                         FROM ${db.sql.id(data, 'flights')} WHERE date <= ${when} GROUP BY origin`,
        'origin',
        'UNSUPPORTED_COLUMN_TYPE',
        '"address"',
        'inet',
      );
    });

    it('a duplicate that replaces an existing materialization keeps the old one', async () => {
      let duplicate = false;
      const flaky = store.feature({ module: 'flights', entity: 'origin' }, async function flaky() {
        return duplicate
          ? db.sql`SELECT origin FROM ${db.sql.id(data, 'flights')}`
          : db.sql`SELECT DISTINCT origin FROM ${db.sql.id(data, 'flights')}`;
      });
      const ok = await materializer.materialize(flaky, {});
      duplicate = true;
      await expect(materializer.materialize(flaky, {})).rejects.toMatchObject({ code: 'DUPLICATE_KEY' });
      expect((await materializer.listMaterializations(flaky)).map((m) => m.id)).toEqual([ok.id]);
      expect(await store.withParams({}).getFeatures(flaky).toArray()).toHaveLength(AIRPORTS.length);
    });
  });

  it('streams a SQL feature on PostgreSQL into a DuckDB store', async () => {
    const departures = departuresFeature();
    const duckdb = new DuckDBMaterializer({ path: ':memory:' });
    try {
      const toBatches = vi.spyOn(sqlAdapter, 'toBatches');
      const when = day(8);
      const record = await duckdb.materialize(departures, { when });
      expect(toBatches).toHaveBeenCalledTimes(1);
      expect(db.streams).toBe(1);
      expect(db.rows).toBe(AIRPORTS.length);
      expect(record.rows).toBe(AIRPORTS.length);
      expect(record.kind).toBe('sql');
      const s = new FeatureStore();
      s.addDecorator(duckdb.decorator);
      const rows = await s.withParams({ when }).getFeatures(departuresFeature(s)).toArray();
      expect(rows.sort(byOrigin)).toEqual(await expectedDepartures(when));
    } finally {
      await duckdb.close();
    }
  });
});
