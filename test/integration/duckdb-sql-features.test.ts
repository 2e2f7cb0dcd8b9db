import { DuckDBInstance, timestampValue } from '@duckdb/node-api';
import { FeatureStore, FeatureStoreError, Last, SqlQuery, type SqlSource } from 'featurefn';
import { DuckDBMaterializer, duckdbSource } from 'featurefn/duckdb';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { shapeLayoutOf } from '../../src/materializer/shape-table.js';
import { seeded } from '../support/seeded.js';

const AIRPORTS = ['SFO', 'LAX', 'JFK', 'ORD', 'SEA'];
const when = new Date(Date.UTC(2001, 2, 15));

/** 2,000 seeded synthetic flights in a `flights` table of `instance`. */
async function loadFlights(instance: DuckDBInstance): Promise<void> {
  const random = seeded(7);
  const c = await instance.connect();
  await c.run(
    'CREATE TABLE flights (flight_id INTEGER, date TIMESTAMP, origin VARCHAR, destination VARCHAR, delay INTEGER)',
  );
  const appender = await c.createAppender('flights');
  for (let i = 0; i < 2000; i++) {
    appender.appendInteger(i);
    appender.appendTimestamp(timestampValue(BigInt(Date.UTC(2001, 2, random.int(1, 28))) * 1000n));
    appender.appendVarchar(random.pick(AIRPORTS));
    appender.appendVarchar(random.pick(AIRPORTS));
    appender.appendInteger(random.int(-10, 90));
    appender.endRow();
  }
  appender.closeSync();
  c.closeSync();
}

/** A source that counts how often rows were streamed out of it into Node. */
function counted(source: SqlSource): { source: SqlSource; streamed: () => number } {
  let streamed = 0;
  const wrapped: SqlSource = {
    dialect: source.dialect,
    database: source.database,
    stream: (query) => {
      streamed++;
      return source.stream(query);
    },
    sql: Object.assign(
      (strings: TemplateStringsArray, ...values: Parameters<SqlSource['sql']>[1][]) =>
        new SqlQuery(wrapped, strings, values),
      { id: source.sql.id, raw: source.sql.raw },
    ),
  };
  return { source: wrapped, streamed: () => streamed };
}

describe('SQL features on DuckDB', () => {
  let instance: DuckDBInstance;
  let materializer: DuckDBMaterializer;
  let store: FeatureStore;

  beforeEach(async () => {
    instance = await DuckDBInstance.create(':memory:');
    await loadFlights(instance);
    materializer = new DuckDBMaterializer({ instance });
    store = new FeatureStore();
    store.addDecorator(materializer.decorator);
  });

  afterEach(async () => {
    await materializer.close();
    instance.closeSync();
  });

  async function handWritten(sql: string) {
    const c = await instance.connect();
    try {
      return (await c.runAndReadAll(sql, [timestampValue(BigInt(when.getTime()) * 1000n)])).getRowObjectsJS();
    } finally {
      c.closeSync();
    }
  }

  it('materializes inside DuckDB when the query runs on the store’s own database: no row crosses into Node', async () => {
    const { source: flights, streamed } = counted(duckdbSource(instance));
    let computed = 0;
    const departures = store.feature(
      { module: 'sql', entity: 'origin' },
      async function departures({ when }: { when: Date }) {
        computed++;
        return flights.sql`SELECT origin, count(*) AS departures FROM flights WHERE date <= ${when} GROUP BY origin`;
      },
    );
    const record = await materializer.materialize(departures, { when });
    expect(computed).toBe(1);
    expect(record.kind).toBe('sql');
    const expected = await handWritten(
      'SELECT origin, count(*) AS n FROM flights WHERE date <= $1 GROUP BY origin ORDER BY origin',
    );
    expect(record.rows).toBe(expected.length);
    expect(record.columns).toEqual([
      { name: 'origin', type: 'string' },
      { name: 'departures', type: 'int64' },
    ]);
    expect(streamed()).toBe(0);
    const rows = await store
      .withParams({ when: Last() })
      .getFeatures(departures)
      .filter({ origin: 'SFO' })
      .toArray();
    expect(rows).toEqual([
      { origin: 'SFO', departures: Number(expected.find((e) => e.origin === 'SFO')!.n) },
    ]);
  });

  it('materializes queries ending in a semicolon or a line comment, and queries nesting them', async () => {
    const flights = duckdbSource(instance);
    const inner = flights.sql`SELECT origin, count(*) AS n FROM flights WHERE date <= ${when} GROUP BY origin; -- per origin`;
    const texts = {
      semicolon: flights.sql`SELECT origin, count(*) AS n FROM flights WHERE date <= ${when} GROUP BY origin;`,
      comment: flights.sql`SELECT origin, count(*) AS n FROM flights WHERE date <= ${when} GROUP BY origin -- ';' "x`,
      nested: flights.sql`SELECT origin, n FROM ${inner} AS q; /* done */`,
    };
    const expected = await handWritten(
      'SELECT origin, count(*) AS n FROM flights WHERE date <= $1 GROUP BY origin ORDER BY origin',
    );
    for (const [name, query] of Object.entries(texts)) {
      const f = store.feature({ module: 'endings', entity: 'origin' }, { [name]: async () => query }[name]!);
      const record = await materializer.materialize(f, {});
      expect(record.rows, name).toBe(expected.length);
      expect((await query.toArray()).length, name).toBe(expected.length);
    }
  });

  it('proves the in-engine path streams nothing, and another database streams everything', async () => {
    const own = counted(duckdbSource(instance));
    const feature = store.feature(
      { module: 'sql', entity: 'origin' },
      async function meanDelay({ when }: { when: Date }) {
        return own.source
          .sql`SELECT origin, avg(delay) AS mean_delay FROM flights WHERE date <= ${when} GROUP BY origin`;
      },
    );
    await materializer.materialize(feature, { when });
    expect(own.streamed()).toBe(0);

    const elsewhere = new DuckDBMaterializer();
    try {
      const record = await elsewhere.materialize(feature, { when });
      expect(own.streamed()).toBe(1);
      const inEngine = (await materializer.listMaterializations(feature))[0]!;
      expect(record.rows).toBe(inEngine.rows);
      expect(record.columns).toEqual(inEngine.columns);
    } finally {
      await elsewhere.close();
    }
  });

  it('a decorated call gives back a query over the stored table, and a derived SQL feature embeds it in-engine', async () => {
    const flights = duckdbSource(instance);
    let inner = 0;
    const departures = store.feature(
      { module: 'sql', entity: 'origin' },
      async function departures({ when }: { when: Date }) {
        inner++;
        return flights.sql`SELECT origin, count(*) AS departures FROM flights WHERE date <= ${when} GROUP BY origin`;
      },
    );
    const busy = store.feature(
      { module: 'sql', entity: 'origin' },
      async function busy({ when }: { when: Date }) {
        return flights.sql`SELECT origin, departures >= ${400} AS busy FROM ${await departures({ when })} AS d`;
      },
    );
    await materializer.materialize(departures, { when });
    const served = await departures({ when });
    expect(inner).toBe(1);
    expect(served.source.database).toBe(instance);
    expect((await served.toArray()).length).toBe(
      (await materializer.listMaterializations(departures))[0]!.rows,
    );

    const record = await materializer.materialize(busy, { when });
    expect(inner).toBe(1);
    expect(record.kind).toBe('sql');
    const expected = await handWritten(
      'SELECT origin, count(*) >= 400 AS busy FROM flights WHERE date <= $1 GROUP BY origin',
    );
    const rows = await store.withParams({ when: Last() }).getFeatures(departures, busy).toArray();
    expect(rows.map((r) => [r.origin, r.busy]).sort()).toEqual(
      expected.map((e) => [e.origin, e.busy]).sort(),
    );
  });

  it('refuses bad queries with a clear error and leaves the store as it was', async () => {
    const flights = duckdbSource(instance);
    const ok = store.feature({ module: 'sql', entity: 'origin' }, async function ok() {
      return flights.sql`SELECT origin, count(*) AS n FROM flights GROUP BY origin`;
    });
    await materializer.materialize(ok);
    const before = await materializer.listMaterializations(ok);
    const cases: [string, () => ReturnType<SqlSource['sql']>, string, RegExp][] = [
      [
        'duplicated',
        () => flights.sql`SELECT origin, delay FROM flights`,
        'DUPLICATE_KEY',
        /the key \(origin = "/,
      ],
      [
        'json key',
        () => flights.sql`SELECT to_json(origin) AS origin, 1 AS n FROM flights GROUP BY 1`,
        'UNSUPPORTED_COLUMN_TYPE',
        /key column "origin" holds json/,
      ],
      ['syntax', () => flights.sql`SELEC origin FROM flights`, 'FEATURE_FAILED', /syntax error/i],
      [
        'no key',
        () => flights.sql`SELECT count(*) AS n FROM flights`,
        'MISSING_KEY_COLUMN',
        /no key column "origin"/,
      ],
    ];
    for (const [name, query, code, message] of cases) {
      const bad = store.feature(
        { module: 'sql', name: `bad_${name.replace(' ', '_')}`, entity: 'origin' },
        async () => query(),
      );
      const error = await materializer.materialize(bad).catch((e: unknown) => e);
      expect(error, name).toBeInstanceOf(FeatureStoreError);
      expect((error as FeatureStoreError).code, name).toBe(code);
      expect((error as FeatureStoreError).message, name).toMatch(message);
      expect((error as FeatureStoreError).message, name).toContain(`sql.bad_`);
      expect(await materializer.listMaterializations(bad)).toEqual([]);
    }
    expect(await materializer.listMaterializations(ok)).toEqual(before);
    const c = await instance.connect();
    const tables = (
      await c.runAndReadAll(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'featurefn' AND regexp_full_match(table_name, '(m|f|s)_[0-9a-f]+')",
      )
    ).getRows();
    c.closeSync();
    // The small result moved into its shape's shared table; no failed one left a table.
    expect(tables.map(([t]) => String(t))).toEqual([shapeLayoutOf(['origin'], before[0]!.columns).table]);
  });

  it('close() leaves an instance you passed open', async () => {
    await materializer.close();
    const c = await instance.connect();
    expect(Number((await c.runAndReadAll('SELECT count(*) FROM flights')).getRows()[0]![0])).toBe(2000);
    c.closeSync();
  });
});

describe('DuckDB reads planned on a replaced table', () => {
  it('plan again on the new table, as a read an instant later would', async () => {
    const instance = await DuckDBInstance.create(':memory:');
    const reader = new DuckDBMaterializer({ instance });
    const writer = new DuckDBMaterializer({ instance });
    try {
      let version = 1;
      const define = (store: FeatureStore) =>
        store.feature({ module: 'replace', entity: 'k' }, async function versioned() {
          return [{ k: 'a', version }];
        });
      const readerStore = new FeatureStore();
      const readerFeature = define(readerStore);
      readerStore.addDecorator(reader.decorator);
      const writerFeature = define(new FeatureStore());
      await writer.materialize(writerFeature);
      expect(await readerStore.withParams({}).getFeatures(readerFeature).toArray()).toEqual([
        { k: 'a', version: 1 },
      ]);
      version = 2;
      await writer.materialize(writerFeature); // drops the table the reader's cached catalog names
      expect(await readerStore.withParams({}).getFeatures(readerFeature).toArray()).toEqual([
        { k: 'a', version: 2 },
      ]);
    } finally {
      await reader.close();
      await writer.close();
      instance.closeSync();
    }
  });
});
