import {
  Bool,
  type DataType,
  DateDay,
  DateMillisecond,
  Dictionary,
  Field,
  Float32,
  Float64,
  Int8,
  Int16,
  Int32,
  Int64,
  List,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  Table,
  TimestampMicrosecond,
  TimestampNanosecond,
  TimestampSecond,
  Uint8,
  Uint16,
  Uint32,
  Utf8,
  type Vector,
  vectorFromArray,
} from 'apache-arrow';
import { FeatureStore, FeatureStoreError, gt, Last, type Row } from 'featurefn';
import { POSTGRES_FORMAT_VERSION, PostgresMaterializer } from 'featurefn/postgres';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { adminClient, dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';
import { seeded } from '../support/seeded.js';

const server = await requirePostgres();

/** The SQL and bound values out of `explain()`, to run EXPLAIN on exactly what a read runs. */
function statementOf(explained: string): { text: string; values: unknown[] } {
  const lines = explained.split('\n');
  const text = lines.filter((l) => !l.startsWith('--') && !l.startsWith('  $')).join('\n');
  // The bound values as explain() lists them: `  $1 = "A01234" (string)`, `  $2 = 17 (int64)`.
  const values = lines
    .filter((l) => l.startsWith('  $'))
    .map((l) => {
      const shown = /^ {2}\$\d+ = (.*) \([\w[\]]+\)$/.exec(l)![1]!;
      return shown.startsWith('"') ? JSON.parse(shown) : shown.replace(/n$/, '');
    });
  return { text, values };
}

/** The table a materialization's rows are in, as the catalog records it. */
async function storedIn(admin: pg.Client, schema: string, id: string): Promise<string> {
  const { rows } = await admin.query<{ stored_in: string }>({
    text: `SELECT stored_in FROM "${schema}".catalog WHERE id = $1`,
    values: [id],
  });
  return rows[0]!.stored_in;
}

/** Every node of a JSON EXPLAIN plan. */
function planNodes(plan: Record<string, unknown>): Record<string, unknown>[] {
  const children = (plan.Plans as Record<string, unknown>[] | undefined) ?? [];
  return [plan, ...children.flatMap(planNodes)];
}

describe.skipIf(!server.available)(`PostgreSQL store${server.reason}`, () => {
  let admin: pg.Client;
  let schema: string;
  let materializer: PostgresMaterializer;
  let store: FeatureStore;

  beforeAll(async () => {
    admin = await adminClient();
  });
  afterAll(async () => {
    await admin?.end();
  });
  beforeEach(() => {
    schema = uniqueSchema();
    materializer = new PostgresMaterializer({ connection: postgresUrl(), schema, poolSize: 3 });
    store = new FeatureStore();
    store.addDecorator(materializer.decorator);
  });
  afterEach(async () => {
    await materializer.close();
    await dropSchema(schema);
  });

  /** A few thousand airports' worth of keys: realistic enough for the planner to prefer an index. */
  function airportFeatures(keys: number, on: FeatureStore = store) {
    const random = seeded(7);
    const codes = Array.from({ length: keys }, (_, i) => `A${String(i).padStart(5, '0')}`);
    const departures = on.feature(
      { module: 'flights', entity: 'origin' },
      async function departures({ when }: { when: Date }) {
        return codes.map((origin) => ({ origin, departures: random.int(0, 10_000) + when.getUTCDate() }));
      },
    );
    const meanDelay = on.feature(
      { module: 'flights', entity: 'origin' },
      async function meanDelay({ when }: { when: Date }) {
        return codes.map((origin) => ({ origin, mean_delay: random.float(-10, 60) + when.getUTCDate() }));
      },
    );
    const routes = on.feature(
      { module: 'flights', entity: ['origin', 'destination'] },
      async function routes() {
        return codes.flatMap((origin, i) =>
          [1, 2, 3].map((k) => ({ origin, destination: codes[(i + k) % codes.length]!, flights: k })),
        );
      },
    );
    return { codes, departures, meanDelay, routes };
  }

  it('creates its schema on first use: catalog, meta with the format version, small results in their shape’s keyed table', async () => {
    const { departures, routes } = airportFeatures(50);
    const when = new Date('2001-03-01T00:00:00Z');
    const record = await materializer.materialize(departures, { when });
    const route = await materializer.materialize(routes, {});

    const { rows: meta } = await admin.query(`SELECT name, value FROM "${schema}".meta`);
    expect(meta).toEqual([{ name: 'format_version', value: String(POSTGRES_FORMAT_VERSION) }]);
    const { rows: catalog } = await admin.query(
      `SELECT id::text AS id, feature_name, params_key, params, source_hash, row_count::int AS row_count, status, kind,
              key_columns, "columns", created_at FROM "${schema}".catalog ORDER BY id`,
    );
    expect(catalog[0]).toEqual({
      id: record.id,
      feature_name: 'flights.departures',
      params_key: record.paramsKey,
      params: { when: '2001-03-01T00:00:00.000Z' },
      source_hash: departures.info.sourceHash,
      row_count: 50,
      status: 'complete',
      kind: 'rows',
      key_columns: ['origin'],
      columns: [
        { name: 'origin', type: 'string' },
        { name: 'departures', type: 'int32' },
      ],
      created_at: record.createdAt,
    });
    // Each shape's table is keyed on the materialization id, then the entity key (composite where it is).
    const tables = [await storedIn(admin, schema, record.id), await storedIn(admin, schema, route.id)];
    for (const table of tables) expect(table).toMatch(/^s_[0-9a-f]{16}$/);
    const { rows: keys } = await admin.query<{ table: string; key: string }>(
      `SELECT c.relname AS table, pg_get_constraintdef(k.oid) AS key
       FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND k.contype = 'p' AND c.relname LIKE 's\\_%'`,
      [schema],
    );
    expect(keys).toEqual(
      expect.arrayContaining([
        { table: tables[0], key: 'PRIMARY KEY (_m, origin)' },
        { table: tables[1], key: 'PRIMARY KEY (_m, origin, destination)' },
      ]),
    );
    expect(keys).toHaveLength(2);
    const { rows: counted } = await admin.query(
      `SELECT _m::text AS id, count(*)::int AS n FROM "${schema}"."${tables[0]}" GROUP BY 1`,
    );
    expect(counted).toEqual([{ id: record.id, n: 50 }]);
  });

  it('reads one key of Last() as one index probe per feature table', async () => {
    const { departures, meanDelay, routes } = airportFeatures(5000);
    for (const day of [1, 8]) {
      const when = new Date(Date.UTC(2001, 2, day));
      await materializer.materialize(departures, { when });
      await materializer.materialize(meanDelay, { when });
    }
    await materializer.materialize(routes, {});
    const frame = store
      .withParams({ when: Last() })
      .getFeatures(departures, meanDelay)
      .filter({ origin: 'A01234' });
    const rows = await frame.toArray();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ origin: 'A01234' });

    const explained = await frame.explain();
    expect(explained).toContain('2001-03-08T00:00:00.000Z');
    const statement = statementOf(explained);
    const ids = (await materializer.listMaterializations(departures))
      .concat(await materializer.listMaterializations(meanDelay))
      .filter((m) => (m.params.when as Date).getUTCDate() === 8)
      .map((m) => m.id);
    const tables = await Promise.all(ids.map((id) => storedIn(admin, schema, id)));
    for (const mode of ['auto', 'force_generic_plan']) {
      // The custom plan for these values, and the generic plan a prepared statement settles on.
      await admin.query(`SET plan_cache_mode = ${mode}`);
      const { rows: plan } = await admin.query({
        text: `EXPLAIN (FORMAT JSON) ${statement.text}`,
        values: statement.values,
      });
      const nodes = planNodes((plan[0]['QUERY PLAN'] as { Plan: Record<string, unknown> }[])[0]!.Plan);
      const scans = nodes.filter((n) => String(n['Node Type']).includes('Scan'));
      expect(scans.map((n) => n['Relation Name']).sort()).toEqual([...tables].sort());
      for (const scan of scans) expect(scan['Node Type']).toMatch(/^Index (Only )?Scan$/);
    }
    await admin.query('RESET plan_cache_mode');

    // A composite key: both columns in one probe of the primary key.
    const route = store
      .withParams({})
      .getFeatures(routes)
      .filter({ origin: 'A00010', destination: 'A00012' });
    expect(await route.toArray()).toEqual([{ origin: 'A00010', destination: 'A00012', flights: 2 }]);
    const { rows: plan } = await admin.query({
      ...(({ text, values }) => ({ text: `EXPLAIN (FORMAT JSON) ${text}`, values }))(
        statementOf(await route.explain()),
      ),
    });
    const [scan] = planNodes((plan[0]['QUERY PLAN'] as { Plan: Record<string, unknown> }[])[0]!.Plan);
    expect(scan!['Node Type']).toMatch(/^Index (Only )?Scan$/);
    expect(String(scan!['Index Cond'])).toMatch(/origin.*destination/);
  });

  it('analyzes a shape table once it holds 100,000 rows and a tenth of them are new, and not before', async () => {
    const { departures } = airportFeatures(40_000);
    const reltuples = async () => {
      const { rows } = await admin.query<{ n: number }>(
        `SELECT c.reltuples::float8 AS n FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
         WHERE s.nspname = $1 AND c.relkind = 'r' AND c.relname ~ '^s_'`,
        [schema],
      );
      return rows.map((r) => r.n);
    };
    for (const day of [1, 2])
      await materializer.materialize(departures, { when: new Date(Date.UTC(2001, 2, day)) });
    // 80,000 rows: PostgreSQL's own figures would make a scan of a small table look cheaper than a probe.
    expect((await reltuples())[0]).toBeLessThan(80_000);
    await materializer.materialize(departures, { when: new Date(Date.UTC(2001, 2, 3)) });
    // 120,000 rows, analyzed before the publication returned: reads are planned on real figures.
    expect(await reltuples()).toEqual([120_000]);
  });

  it('binds fresh values into a read compiled earlier for the same shape', async () => {
    const { departures, meanDelay } = airportFeatures(300);
    const when = new Date('2001-03-01T00:00:00Z');
    await materializer.materialize(departures, { when });
    await materializer.materialize(meanDelay, { when });
    const base = store.withParams({ when: Last() }).getFeatures(departures, meanDelay);
    const all = await base.toArray();
    const byOrigin = new Map(all.map((r) => [r.origin as string, r]));
    const sorted = (rows: Row[]) => rows.map((r) => r.origin as string).sort();
    // The same shapes again and again with other values: each answer must follow its own values.
    for (const [a, b] of [
      ['A00001', 'A00002'],
      ['A00150', 'A00299'],
      ['A00007', 'A00007'],
    ] as const) {
      expect(await base.filter({ origin: a }).toArray()).toEqual([byOrigin.get(a)]);
      expect(sorted(await base.filter({ origin: [a, b, null] }).toArray())).toEqual(
        [...new Set([a, b])].sort(),
      );
      const threshold = byOrigin.get(a)!.departures as number;
      const above = await base
        .filter({ departures: gt(threshold) })
        .select('origin')
        .toArray();
      expect(sorted(above)).toEqual(
        sorted(all.filter((r) => (r.departures as number) > threshold).map((r) => ({ origin: r.origin }))),
      );
      expect(
        await base
          .filter({ origin: [a, b] })
          .limit(1)
          .toArray(),
      ).toHaveLength(1);
    }
    // Values are still checked when the statement comes from the cache.
    await base.filter({ origin: 'A00001' }).toArray();
    await expect(base.filter({ origin: 42 }).toArray()).rejects.toMatchObject({ code: 'INVALID_QUERY' });
    await expect(base.filter({ origin: ['A00001', 42] }).toArray()).rejects.toMatchObject({
      code: 'INVALID_QUERY',
    });
  });

  it('moves a frame read again to what another store on the schema published, once it is notified', async () => {
    const { departures } = airportFeatures(50);
    const writer = new PostgresMaterializer({ connection: postgresUrl(), schema, poolSize: 1 });
    try {
      await writer.materialize(departures, { when: new Date('2001-03-01T00:00:00Z') });
      const frame = store.withParams({ when: Last() }).getFeatures(departures).filter({ origin: 'A00001' });
      const first = (await frame.toArray())[0]!.departures as number;
      expect(await frame.toArray()).toEqual([{ origin: 'A00001', departures: first }]);
      // Another `when` gives other values (the seeded generator has moved on).
      await writer.materialize(departures, { when: new Date('2001-03-02T00:00:00Z') });
      let moved = false;
      for (let i = 0; i < 100 && !moved; i++) {
        moved = (await frame.toArray())[0]!.departures !== first;
        if (!moved) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(moved).toBe(true);
      expect(await frame.resolvedParams()).toEqual({ when: new Date('2001-03-02T00:00:00Z') });
    } finally {
      await writer.close();
    }
  });

  it('runs reads as named prepared statements and never queries the catalog per read', async () => {
    // A pool of the user's: the materializer takes one connection to listen, the other serves reads.
    const pool = new pg.Pool({ connectionString: postgresUrl(), max: 2 });
    const texts: string[] = [];
    // Every query sent on the pool's connections, whichever way they are reached.
    pool.on('connect', (client) => {
      const query = client.query.bind(client);
      client.query = ((config: unknown, ...rest: unknown[]) => {
        texts.push(typeof config === 'string' ? config : (config as { text: string }).text);
        return (query as (...args: unknown[]) => unknown)(config, ...rest);
      }) as typeof client.query;
    });
    const own = new PostgresMaterializer({ connection: pool, schema });
    const local = new FeatureStore();
    local.addDecorator(own.decorator);
    const { departures, meanDelay } = airportFeatures(100, local);
    try {
      const when = new Date('2001-03-01T00:00:00Z');
      await own.materialize(departures, { when });
      await own.materialize(meanDelay, { when });
      const read = (origin: string) =>
        local.withParams({ when: Last() }).getFeatures(departures, meanDelay).filter({ origin }).toArray();
      expect(await read('A00001')).toHaveLength(1);
      texts.length = 0;
      for (let i = 0; i < 50; i++)
        expect((await read(`A000${String(i).padStart(2, '0')}`))[0]?.origin).toBe(
          `A000${String(i).padStart(2, '0')}`,
        );
      expect(texts.filter((t) => t.includes('.catalog'))).toEqual([]);
      expect(new Set(texts).size).toBe(1);

      const { rows } = await pool.query<{ name: string; statement: string }>(
        "SELECT name, statement FROM pg_prepared_statements WHERE name LIKE 'featurefn\\_%'",
      );
      expect(rows).toHaveLength(1);
      expect(rows[0]!.statement).toBe(texts[0]);
      // The key is bound once: the other feature's probe and the outer WHERE share its placeholder.
      // Rows of the shape tables are selected by materialization id, bound like the key.
      expect(rows[0]!.statement).toContain('WHERE t1."origin" = $1 AND t1."_m" = $2) AS "mean_delay" FROM');
      expect(rows[0]!.statement).toContain('WHERE t0."_m" = $3 AND t0."origin" = $1');

      // Later publications are read with the same statement, prepared once: their rows are in the
      // same shape tables, and only the bound ids change.
      for (const day of [2, 3]) {
        await own.materialize(departures, { when: new Date(Date.UTC(2001, 2, day)) });
        await own.materialize(meanDelay, { when: new Date(Date.UTC(2001, 2, day)) });
        texts.length = 0;
        expect(await read('A00003')).toHaveLength(1);
        expect(texts.filter((t) => !t.includes('.catalog'))).toEqual([rows[0]!.statement]);
      }
      const { rows: after } = await pool.query<{ name: string; statement: string }>(
        "SELECT name, statement FROM pg_prepared_statements WHERE name LIKE 'featurefn\\_%'",
      );
      expect(after).toEqual(rows);
    } finally {
      await own.close();
      // A pool passed in stays open for its owner; only the listening connection was closed.
      expect(pool.totalCount).toBe(1);
      expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await pool.end();
    }
  });

  it('lets several stores create a feature’s shape table at once: every publication lands in the one table', async () => {
    const writers = Array.from(
      { length: 6 },
      () => new PostgresMaterializer({ connection: postgresUrl(), schema, poolSize: 1 }),
    );
    try {
      await Promise.all(writers.map((w) => w.listMaterializations('none'))); // the schema exists
      const local = new FeatureStore();
      const { departures } = airportFeatures(20, local);
      const records = await Promise.all(
        writers.map((w, i) => w.materialize(departures, { when: new Date(Date.UTC(2001, 2, i + 1)) })),
      );
      const { rows } = await admin.query(
        `SELECT stored_in, count(*)::int AS n FROM "${schema}".catalog GROUP BY stored_in`,
      );
      expect(rows).toEqual([{ stored_in: expect.stringMatching(/^s_[0-9a-f]{16}$/), n: 6 }]);
      const { rows: stored } = await admin.query(
        `SELECT _m::text AS id, count(*)::int AS n FROM "${schema}"."${rows[0].stored_in}" GROUP BY 1 ORDER BY 1`,
      );
      expect(stored).toEqual(
        records.map((r) => ({ id: r.id, n: 20 })).sort((a, b) => Number(a.id) - Number(b.id)),
      );
    } finally {
      for (const w of writers) await w.close();
    }
  });

  it('accepts a pg PoolConfig and sizes its pool by poolSize', async () => {
    const own = new PostgresMaterializer({
      connection: { connectionString: postgresUrl(), application_name: `featurefn-${schema}` },
      schema,
      poolSize: 2,
    });
    try {
      const local = new FeatureStore();
      local.addDecorator(own.decorator);
      const { departures } = airportFeatures(2000, local);
      await own.materialize(departures, { when: new Date('2001-03-01T00:00:00Z') });
      const reads = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          local
            .withParams({ when: Last() })
            .getFeatures(departures)
            .filter({ origin: `A0000${i % 10}` })
            .toArray(),
        ),
      );
      expect(reads.map((r) => r[0]?.origin)).toEqual(Array.from({ length: 20 }, (_, i) => `A0000${i % 10}`));
      const { rows } = await admin.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
        [`featurefn-${schema}`],
      );
      // poolSize connections, plus the one that listens for publications.
      expect(rows[0]!.n).toBeLessThanOrEqual(3);
    } finally {
      await own.close();
    }
    await expect(own.listMaterializations('x')).rejects.toMatchObject({ code: 'CLOSED' });
  });

  it('round-trips every column type and Arrow layout through binary COPY', async () => {
    const long = 'é'.repeat(200_000); // longer than one COPY chunk
    const n = 6;
    const vector = (values: unknown[], type: DataType): Vector =>
      vectorFromArray(values as never, type as never);
    const columns = {
      id: vector(['a', 'b', 'c', 'd', 'e', 'f'], new Utf8()),
      i8: vector([1, -128, 127, null, 0, 5], new Int8()),
      u8: vector([255, 0, 1, null, 2, 3], new Uint8()),
      i16: vector([-32768, 32767, null, 1, 2, 3], new Int16()),
      u16: vector([65535, 0, null, 1, 2, 3], new Uint16()),
      i32: vector([-2147483648, 2147483647, null, 1, 2, 3], new Int32()),
      u32: vector([4294967295, 0, null, 1, 2, 3], new Uint32()),
      i64: vector([2n ** 62n, -(2n ** 40n), null, 1n, 0n, -1n], new Int64()),
      f32: vector([0.1, -1.5, null, Number.POSITIVE_INFINITY, 0, 3.25], new Float32()),
      f64: vector([0.1, Number.NaN, null, -0, 1e300, -2.5], new Float64()),
      ok: vector([true, false, null, true, true, false], new Bool()),
      label: vector(['plain', 'ünïcode ✓ 日本', null, '', long, 'quote \' and " and \\'], new Utf8()),
      dict: vector(['x', 'y', null, 'x', 'z', 'y'], new Dictionary(new Utf8(), new Int32())),
      ts_s: vector(
        [
          new Date('1969-12-31T23:59:59Z'),
          new Date('2001-03-01T12:00:00Z'),
          null,
          new Date('1999-12-31T23:59:59Z'),
          new Date('2000-01-01T00:00:00Z'),
          new Date('2100-06-01T00:00:00Z'),
        ],
        new TimestampSecond(),
      ),
      ts_us: vector(
        [
          new Date('1969-12-31T23:59:59.123Z'),
          new Date('2001-03-01T12:00:00.5Z'),
          null,
          new Date('1900-01-01T00:00:00Z'),
          new Date('2000-01-01T00:00:00.001Z'),
          new Date('2038-01-19T03:14:08Z'),
        ],
        new TimestampMicrosecond(),
      ),
      ts_ns: vector(
        [
          new Date('2001-03-01T12:00:00.007Z'),
          null,
          new Date('1970-01-01T00:00:00Z'),
          new Date('2262-01-01T00:00:00Z'),
          new Date('1677-09-22T00:00:00Z'),
          new Date('2000-02-29T00:00:00Z'),
        ],
        new TimestampNanosecond(),
      ),
      day: vector(
        [
          new Date('2001-03-01T00:00:00Z'),
          new Date('1950-07-04T00:00:00Z'),
          null,
          new Date('2000-01-01T00:00:00Z'),
          new Date('1999-12-31T00:00:00Z'),
          new Date('2400-02-29T00:00:00Z'),
        ],
        new DateDay(),
      ),
      day_ms: vector(
        [
          new Date('2001-03-01T00:00:00Z'),
          null,
          new Date('1960-01-01T00:00:00Z'),
          new Date('2000-01-02T00:00:00Z'),
          new Date('1999-12-31T00:00:00Z'),
          new Date('2020-02-29T00:00:00Z'),
        ],
        new DateMillisecond(),
      ),
      emb: vector(
        [[0.5, -1.25, 3], [], null, [1e-300], [2, 4], [Number.NaN]],
        new List(new Field('item', new Float64(), true)),
      ),
      emb32: vector([[0.5, 1.5], null, [], [3], [-2], [0]], new List(new Field('item', new Float32(), true))),
    };
    const json = vector(
      [JSON.stringify({ tags: ['x', 'y'], nested: { n: 1 } }), '[1,2,3]', null, '"text"', '42', 'null'],
      new Utf8(),
    );
    const fields = [
      ...Object.entries(columns).map(([name, v]) => new Field(name, v.type, true)),
      new Field('meta', new Utf8(), true, new Map([['featurefn:type', 'json']])),
    ];
    const schemaOf = new Schema(fields);
    const children = [...Object.values(columns), json].map((v) => v.data[0]!);
    const batch = new RecordBatch(
      schemaOf,
      makeData({ type: new Struct(fields), length: n, children, nullCount: 0 }),
    );
    // Two batches: the whole table, then a slice (non-zero offsets into the same buffers).
    const whole = new Table([batch]);
    const slice = whole.slice(2, 5);
    const renamed = new Table(
      slice.batches.map(
        (b) =>
          new RecordBatch(
            schemaOf,
            makeData({
              type: new Struct(fields),
              length: b.numRows,
              children: fields.map((f) => {
                const data = b.getChild(f.name)!.data[0]!;
                return f.name === 'id' ? vector(['s2', 's3', 's4'], new Utf8()).data[0]! : data;
              }),
              nullCount: 0,
            }),
          ),
      ),
    );
    const table = new Table([...whole.batches, ...renamed.batches]);
    const typed = store.feature({ module: 'types', entity: 'id' }, async function everyType() {
      return table;
    });
    const record = await materializer.materialize(typed, {});
    expect(record.rows).toBe(9);
    expect(record.columns.map((c) => `${c.name}:${c.type}`)).toEqual([
      'id:string',
      'i8:int8',
      'u8:int16',
      'i16:int16',
      'u16:int32',
      'i32:int32',
      'u32:int64',
      'i64:int64',
      'f32:float32',
      'f64:float64',
      'ok:boolean',
      'label:string',
      'dict:string',
      'ts_s:timestamp',
      'ts_us:timestamp',
      'ts_ns:timestamp',
      'day:date',
      'day_ms:date',
      'emb:float64[]',
      'emb32:float64[]',
      'meta:json',
    ]);
    const { rows: sqlTypes } = await admin.query(
      `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`,
      [schema, await storedIn(admin, schema, record.id)],
    );
    // The shape table's leading column holds the materialization id.
    expect(sqlTypes[0]).toEqual({ column_name: '_m', data_type: 'bigint' });
    expect(sqlTypes.slice(1).map((r) => r.data_type)).toEqual([
      'text',
      'smallint',
      'smallint',
      'smallint',
      'integer',
      'integer',
      'bigint',
      'bigint',
      'real',
      'double precision',
      'boolean',
      'text',
      'text',
      'timestamp with time zone',
      'timestamp with time zone',
      'timestamp with time zone',
      'date',
      'date',
      'ARRAY',
      'ARRAY',
      'jsonb',
    ]);

    const expectedRow = (i: number, id: string): Row => {
      const at = <T>(name: keyof typeof columns) => columns[name].get(i) as T;
      const date = (name: keyof typeof columns) => {
        const v = at<number | null>(name);
        return v === null ? null : new Date(Number(v));
      };
      const list = (name: 'emb' | 'emb32') => {
        const v = at<{ toArray(): ArrayLike<number> } | null>(name);
        return v === null ? null : Array.from(v.toArray());
      };
      const i64 = at<bigint | null>('i64');
      return {
        id,
        i8: at('i8'),
        u8: at('u8'),
        i16: at('i16'),
        u16: at('u16'),
        i32: at('i32'),
        u32: at('u32'),
        i64: i64 === null ? null : Number.isSafeInteger(Number(i64)) ? Number(i64) : i64,
        f32: at('f32'),
        f64: at('f64'),
        ok: at('ok'),
        label: at('label'),
        dict: at('dict'),
        ts_s: date('ts_s'),
        ts_us: date('ts_us'),
        ts_ns: date('ts_ns'),
        day: date('day'),
        day_ms: date('day_ms'),
        emb: list('emb'),
        emb32: list('emb32'),
        meta: json.get(i) === null ? null : JSON.parse(json.get(i) as string),
      };
    };
    const expected = [
      ...Array.from({ length: n }, (_, i) => expectedRow(i, columns.id.get(i) as string)),
      ...[2, 3, 4].map((i) => expectedRow(i, `s${i}`)),
    ];
    const byId = (a: Row, b: Row) => String(a.id).localeCompare(String(b.id));
    const rows = await store.withParams({}).getFeatures(typed).toArray();
    expect(rows.sort(byId)).toEqual(expected.sort(byId));
    // Arrow reads keep the stored types.
    const arrow = await store.withParams({}).getFeatures(typed).filter({ id: 'a' }).toArrow();
    expect(arrow.schema.fields.map((f) => String(f.type))).toEqual(
      expect.arrayContaining(['Int8', 'Int64', 'Float32', 'Timestamp<MILLISECOND>', 'Date32<DAY>']),
    );
    expect(arrow.get(0)?.toJSON()).toMatchObject({ id: 'a', i8: 1, label: 'plain' });
    // Filters bind values of each type.
    expect(
      (
        await store
          .withParams({})
          .getFeatures(typed)
          .filter({ day: new Date('1950-07-04T00:00:00Z') })
          .toArray()
      ).map((r) => r.id),
    ).toEqual(['b']);
    expect(
      (
        await store
          .withParams({})
          .getFeatures(typed)
          .filter({ ts_s: new Date('2001-03-01T12:00:00Z'), ok: false })
          .toArray()
      ).map((r) => r.id),
    ).toEqual(['b']);
    expect(
      (
        await store
          .withParams({})
          .getFeatures(typed)
          .filter({ i64: 2n ** 62n })
          .toArray()
      ).map((r) => r.id),
    ).toEqual(['a']);
  });

  it('stores an empty result, when allowed, and reads it back empty', async () => {
    const none = store.feature({ module: 'types', entity: 'id' }, async function none() {
      return [] as { id: string }[];
    });
    await expect(materializer.materialize(none, {})).rejects.toMatchObject({ code: 'EMPTY_RESULT' });
    const record = await materializer.materialize(none, {}, { allowEmpty: true });
    expect(record).toMatchObject({ rows: 0, columns: [{ name: 'id', type: 'string' }] });
    expect(await none()).toEqual([]);
    expect(await store.withParams({}).getFeatures(none).filter({ id: 'x' }).toArray()).toEqual([]);
  });

  it('refuses text PostgreSQL cannot hold, naming the feature, and stores nothing', async () => {
    const bad = store.feature({ module: 'types', entity: 'id' }, async function nulChar() {
      return [
        { id: 'a', text: 'fine' },
        { id: 'b', text: 'nul \u0000 inside' },
      ];
    });
    const error = await materializer.materialize(bad, {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FeatureStoreError);
    expect(error).toMatchObject({ code: 'INVALID_VALUE', feature: 'types.nulChar' });
    expect((error as Error).message).toMatch(/Nothing was stored/);
    expect(await materializer.listMaterializations(bad)).toEqual([]);
    const { rows } = await admin.query(
      "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'm\\_%'",
      [schema],
    );
    expect(rows).toEqual([]);
  });
});
