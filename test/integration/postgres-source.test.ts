import type { RecordBatch } from 'apache-arrow';
import { FeatureStoreError } from 'featurefn';
import { PostgresMaterializer, postgresSource } from 'featurefn/postgres';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { databaseIdentity } from '../../src/engines/postgres/source.js';
import { columnsOf, tableToRows } from '../../src/frame/columns.js';
import { dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';

const server = await requirePostgres();

describe('databaseIdentity', () => {
  it('names the server, user and database pg connects to, however the connection is spelled', () => {
    const spellings: (string | pg.ClientConfig)[] = [
      'postgres://alice@/sales?host=db.example.com&port=5433',
      'postgres://alice:p%40ss%2Fw0rd@db.example.com/sales',
      'postgres://alice@%2Fvar%2Frun%2Fpostgresql/sales',
      'postgres:///sales?host=/var/run/postgresql&user=alice',
      'socket:/var/run/postgresql?db=sales&user=alice',
      { user: 'alice', host: '/var/run/postgresql', port: 5433, database: 'sales' },
      { connectionString: 'postgres://alice@db.example.com/sales?host=other.example.com', user: 'bob' },
    ];
    for (const spelling of spellings) {
      const client = new pg.Client(spelling) as unknown as Record<
        'user' | 'host' | 'port' | 'database',
        string
      >;
      const host = client.host.startsWith('/') ? encodeURIComponent(client.host) : client.host.toLowerCase();
      expect(databaseIdentity(spelling), JSON.stringify(spelling)).toBe(
        `postgres://${client.user}@${host}:${client.port}/${client.database}`,
      );
    }
  });

  it('gives two spellings of the same connection the same identity, and other databases others', () => {
    const a = databaseIdentity('postgres://alice:secret@DB.example.com/sales');
    expect(a).toBe('postgres://alice@db.example.com:5432/sales');
    expect(databaseIdentity('postgresql://alice:other@db.example.com:5432/sales?application_name=x')).toBe(a);
    expect(
      databaseIdentity({ user: 'alice', host: 'db.example.com', database: 'sales', password: 'p' }),
    ).toBe(a);
    expect(
      databaseIdentity({ connectionString: 'postgres://alice@db.example.com/sales', database: 'x' }),
    ).toBe(a);
    expect(databaseIdentity('postgres://alice@db.example.com/other')).not.toBe(a);
    expect(databaseIdentity('postgres://bob@db.example.com/sales')).not.toBe(a);
    expect(databaseIdentity('postgres://alice@db.example.com:5433/sales')).not.toBe(a);
    // Session options may change what names mean (search_path).
    const analytics = databaseIdentity(
      'postgres://alice@db.example.com/sales?options=-c%20search_path%3Danalytics',
    );
    expect(analytics).not.toBe(a);
    expect(
      databaseIdentity({
        ...{ user: 'alice', host: 'db.example.com', database: 'sales' },
        options: '-c search_path=analytics',
      }),
    ).toBe(analytics);
  });
});

describe.skipIf(!server.available)(`postgresSource${server.reason}`, () => {
  let pool: pg.Pool;

  beforeEach(() => {
    pool = new pg.Pool({ connectionString: postgresUrl(), max: 3 });
    pool.on('error', () => undefined);
  });
  afterEach(async () => {
    await pool.end();
  });

  async function collect(batches: AsyncIterable<RecordBatch>): Promise<RecordBatch[]> {
    const out: RecordBatch[] = [];
    for await (const batch of batches) out.push(batch);
    return out;
  }

  it('maps every supported PostgreSQL type to its column type and keeps the values', async () => {
    const db = postgresSource(pool);
    const table = await db.sql`
      SELECT 1::int2 AS i2, 2::int4 AS i4, ${2n ** 60n}::int8 AS i8, ${2 ** 53 - 1}::int8 AS i8safe,
             0.1::float4 AS f4, ${0.1 + 0.2}::float8 AS f8, 12.375::numeric AS num,
             'héllo "wörld" 🌍'::text AS t, 'v'::varchar(3) AS vc, 'c'::char(1) AS ch, true AS b,
             '1969-12-31 23:59:59.9985+00'::timestamptz AS tz, '2001-03-01 10:20:30.123456'::timestamp AS ts,
             '0044-03-15 BC'::date AS bc, '2001-03-01'::date AS d,
             '{"a": [1, {"b": null}]}'::json AS j, '{"k": "v"}'::jsonb AS jb,
             '{0.5,-1.25,NULL}'::float8[] AS emb, '{1.5}'::float4[] AS f4a, '{1,2}'::int4[] AS i4a,
             '{}'::int8[] AS empty, '[0:1]={7,8}'::numeric[] AS bounded,
             NULL::int4 AS nothing`.toArrow();
    expect(Object.fromEntries(columnsOf(table).map((c) => [c.name, c.type]))).toEqual({
      i2: 'int16',
      i4: 'int32',
      i8: 'int64',
      i8safe: 'int64',
      f4: 'float32',
      f8: 'float64',
      num: 'float64',
      t: 'string',
      vc: 'string',
      ch: 'string',
      b: 'boolean',
      tz: 'timestamp',
      ts: 'timestamp',
      bc: 'date',
      d: 'date',
      j: 'json',
      jb: 'json',
      emb: 'float64[]',
      f4a: 'float64[]',
      i4a: 'float64[]',
      empty: 'float64[]',
      bounded: 'float64[]',
      nothing: 'int32',
    });
    const bc = new Date(Date.UTC(2000, 2, 15));
    bc.setUTCFullYear(-43);
    expect(tableToRows(table)).toEqual([
      {
        i2: 1,
        i4: 2,
        i8: 2n ** 60n,
        i8safe: 2 ** 53 - 1,
        f4: Math.fround(0.1),
        f8: 0.1 + 0.2,
        num: 12.375,
        t: 'héllo "wörld" 🌍',
        vc: 'v',
        ch: 'c',
        b: true,
        tz: new Date(-2), // 1.5 ms before 1970 rounds down, as everywhere in featurefn
        ts: new Date(Date.UTC(2001, 2, 1, 10, 20, 30, 123)),
        bc,
        d: new Date(Date.UTC(2001, 2, 1)),
        j: { a: [1, { b: null }] },
        jb: { k: 'v' },
        emb: [0.5, -1.25, null],
        f4a: [1.5],
        i4a: [1, 2],
        empty: [],
        bounded: [7, 8],
        nothing: null,
      },
    ]);
  });

  it('reads timestamps right whatever the session time zone', async () => {
    const kolkata = new pg.Pool({
      connectionString: postgresUrl(),
      max: 1,
      options: '-c TimeZone=Asia/Kolkata',
    });
    try {
      const at = new Date(Date.UTC(2001, 2, 1, 0, 0, 0, 250));
      const rows = await postgresSource(kolkata)
        .sql`SELECT ${at}::timestamptz AS at, now() AT TIME ZONE 'UTC' > '2000-01-01' AS ok`.toArray();
      expect(rows).toEqual([{ at, ok: true }]);
    } finally {
      await kolkata.end();
    }
  });

  it('binds values as parameters, never as SQL text', async () => {
    const db = postgresSource(pool);
    const hostile = `x'); DROP TABLE pg_class; --`;
    const rows =
      await db.sql`SELECT ${hostile}::text AS s, ${new Date(0)}::timestamptz AS at, ${42n}::int8 AS n, ${null}::text AS z`.toArray();
    expect(rows).toEqual([{ s: hostile, at: new Date(0), n: 42, z: null }]);
  });

  it('streams a large result in batches of rowsPerBatch rows, on one connection', async () => {
    const db = postgresSource(pool, { rowsPerBatch: 1000 });
    const batches = await collect(
      db.stream(
        db.sql`SELECT g AS id, g * 0.5 AS half, 'k' || g AS label FROM generate_series(1, ${4500}::int) g`,
      ),
    );
    expect(batches.map((b) => b.numRows)).toEqual([1000, 1000, 1000, 1000, 500]);
    const ids = batches.flatMap((b) => Array.from(b.getChild('id')!.toArray() as Int32Array));
    expect(ids).toEqual(Array.from({ length: 4500 }, (_, i) => i + 1));
    expect(pool.totalCount).toBe(1);
    expect(pool.idleCount).toBe(1);
    const exact = await collect(db.stream(db.sql`SELECT g FROM generate_series(1, 3000) g`));
    expect(exact.map((b) => b.numRows)).toEqual([1000, 1000, 1000]);
  });

  it('gives an empty result as one empty batch that keeps the column types', async () => {
    const db = postgresSource(pool);
    const batches = await collect(db.stream(db.sql`SELECT 1::int8 AS id, 'x'::text AS s WHERE false`));
    expect(batches).toHaveLength(1);
    expect(batches[0]!.numRows).toBe(0);
    expect(columnsOf(await db.sql`SELECT 1::int8 AS id, 'x'::text AS s WHERE false`.toArrow())).toEqual([
      { name: 'id', type: 'int64' },
      { name: 's', type: 'string' },
    ]);
  });

  it('closes the cursor and gives the connection back when the reader stops early', async () => {
    const db = postgresSource(pool, { rowsPerBatch: 100 });
    let seen = 0;
    for await (const batch of db.stream(db.sql`SELECT g FROM generate_series(1, 100000) g`)) {
      seen += batch.numRows;
      break;
    }
    expect(seen).toBe(100);
    expect(pool.idleCount).toBe(pool.totalCount);
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM pg_cursors');
    expect(rows[0].n).toBe(0);
    expect(await db.sql`SELECT 1 AS one`.toArray()).toEqual([{ one: 1 }]);
  });

  it('refuses a column type it cannot store, naming the column and its type', async () => {
    const db = postgresSource(pool);
    const error = await db.sql`SELECT 1 AS id, '127.0.0.1'::inet AS address`
      .toArrow()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FeatureStoreError);
    expect((error as FeatureStoreError).code).toBe('UNSUPPORTED_COLUMN_TYPE');
    expect((error as FeatureStoreError).message).toContain('"address"');
    expect((error as FeatureStoreError).message).toContain('inet');
    expect(pool.idleCount).toBe(pool.totalCount);
  });

  it('refuses infinite timestamps, naming the column', async () => {
    const db = postgresSource(pool);
    await expect(db.sql`SELECT 'infinity'::timestamptz AS until`.toArrow()).rejects.toMatchObject({
      code: 'UNSUPPORTED_RESULT',
      message: expect.stringContaining('"until"'),
    });
  });

  it('reports a query error as the query’s fault, with its SQL', async () => {
    const db = postgresSource(pool);
    const error = await db.sql`SELEC 1`.toArrow().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'FEATURE_FAILED', sql: 'SELEC 1' });
    expect((error as Error).message).toContain('syntax error');
    const failing = await db.sql`SELECT 1 / (g - 3) AS x FROM generate_series(1, 5) g`
      .toArrow()
      .catch((e) => e);
    expect(failing).toMatchObject({
      code: 'FEATURE_FAILED',
      message: expect.stringContaining('division by zero'),
    });
    expect(pool.idleCount).toBe(pool.totalCount);
  });

  it('creates its own pool from a URL and ends it on close()', async () => {
    const db = postgresSource(postgresUrl());
    expect(await db.sql`SELECT 2 AS two`.toArray()).toEqual([{ two: 2 }]);
    await db.close();
    expect(db.database).toBe(databaseIdentity(postgresUrl()));
  });

  it('is the same database as a PostgresMaterializer on the same pool or URL, and not another', async () => {
    const schema = uniqueSchema();
    const onPool = new PostgresMaterializer({ connection: pool, schema });
    const onUrl = new PostgresMaterializer({ connection: postgresUrl(), schema });
    try {
      expect(onPool.source.database).toBe(postgresSource(pool).database);
      expect(onPool.source.database).toBe(pool);
      expect(onUrl.source.database).toBe(postgresSource(postgresUrl()).database);
      expect(onUrl.source.database).not.toBe(onPool.source.database);
      expect(onPool.source.dialect).toBe('postgres');
      expect(await onUrl.source.sql`SELECT ${'x'}::text AS x`.toArray()).toEqual([{ x: 'x' }]);
    } finally {
      await onPool.close();
      await onUrl.close();
      await dropSchema(schema);
    }
  });
});
