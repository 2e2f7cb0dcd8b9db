/**
 * A catalog written by the previous release (format 1) is upgraded in place when the current code
 * opens it, and still read; one newer than the code knows is refused, never misread. The format-1
 * DDL below is copied from that release: it is the fixture, not the code's.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { FeatureStore, FeatureStoreError, Last, type Materializer } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { PostgresMaterializer } from 'featurefn/postgres';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { canonicalParams } from '../../src/feature/params.js';
import { shapeLayoutOf } from '../../src/materializer/shape-table.js';
import { dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';

const when = new Date(Date.UTC(2001, 2, 1));
const paramsKey = canonicalParams({ when });
const columns = JSON.stringify([
  { name: 'origin', type: 'string' },
  { name: 'n', type: 'int32' },
]);

/** Reads the old record, materializes with the new code, and lists the feature's metadata. */
async function readsAndWrites(open: () => Materializer): Promise<void> {
  const materializer = open();
  try {
    const [old] = await materializer.listMaterializations('flights.departures');
    expect(old).toMatchObject({ id: '1', rows: 2, version: '', lineage: {}, stale: undefined });
    const store = new FeatureStore();
    store.addDecorator(materializer.decorator);
    const departures = store.feature(
      { module: 'flights', entity: 'origin' },
      async function departures(_: { when: Date }) {
        return [{ origin: 'SFO', n: 3 }];
      },
    );
    // A record from before versions: freshness unknown, served as it is.
    store.config.onStale = 'error';
    const rows = await store.withParams({ when: Last() }).getFeatures(departures).toArray();
    expect(rows.sort((a, b) => String(a.origin).localeCompare(String(b.origin)))).toEqual([
      { origin: 'LAX', n: 1 },
      { origin: 'SFO', n: 2 },
    ]);
    const record = await materializer.materialize(departures, { when });
    expect(record.version).toBe(store.versionOf(departures));
    expect((await materializer.listFeatures()).map((f) => f.name)).toEqual(['flights.departures']);
  } finally {
    await materializer.close();
  }
  // Opening an upgraded catalog again changes nothing.
  const again = open();
  try {
    expect(await again.listMaterializations('flights.departures')).toHaveLength(1);
  } finally {
    await again.close();
  }
}

async function refusedAsNewer(open: () => Materializer): Promise<void> {
  const materializer = open();
  try {
    const error = await materializer.listMaterializations('flights.departures').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FeatureStoreError);
    expect((error as FeatureStoreError).message).toMatch(/format 99, newer than this release reads/);
  } finally {
    await materializer.close();
  }
}

describe('a DuckDB catalog of format 1', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  async function oldStore(format = '1'): Promise<string> {
    dir = mkdtempSync(join(tmpdir(), 'featurefn-upgrade-'));
    const path = join(dir, 'store.duckdb');
    const instance = await DuckDBInstance.create(path);
    const c = await instance.connect();
    for (const sql of [
      'CREATE SCHEMA featurefn',
      'CREATE TABLE featurefn.meta (name VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)',
      `CREATE TABLE featurefn.catalog (
         id BIGINT PRIMARY KEY, feature_name VARCHAR NOT NULL, params_key VARCHAR NOT NULL,
         kind VARCHAR NOT NULL, "key" VARCHAR NOT NULL, "columns" VARCHAR NOT NULL, "rows" BIGINT NOT NULL,
         source_hash VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, status VARCHAR NOT NULL)`,
      'CREATE TABLE featurefn.m_1 (origin VARCHAR, n INTEGER)',
      "INSERT INTO featurefn.m_1 VALUES ('SFO', 2), ('LAX', 1)",
    ])
      await c.run(sql);
    await c.run("INSERT INTO featurefn.meta VALUES ('format_version', $1)", [format]);
    await c.run(
      `INSERT INTO featurefn.catalog VALUES (1, 'flights.departures', $1, 'rows', '["origin"]', $2, 2, 'abc', TIMESTAMP '2001-03-02 00:00:00', 'complete')`,
      [paramsKey, columns],
    );
    c.closeSync();
    instance.closeSync();
    return path;
  }

  it('is upgraded in place and read', async () => {
    const path = await oldStore();
    await readsAndWrites(() => new DuckDBMaterializer({ path }));
  });

  it('of a newer format is refused', async () => {
    const path = await oldStore('99');
    await refusedAsNewer(() => new DuckDBMaterializer({ path }));
  });
});

describe('a DuckDB catalog of format 2', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  /** A store as format 2 wrote it: a live record in `m_1`, a retired one in `m_2` (DDL of that release). */
  async function formatTwo(): Promise<string> {
    dir = mkdtempSync(join(tmpdir(), 'featurefn-upgrade-'));
    const path = join(dir, 'store.duckdb');
    const instance = await DuckDBInstance.create(path);
    const c = await instance.connect();
    for (const sql of [
      'CREATE SCHEMA featurefn',
      'CREATE TABLE featurefn.meta (name VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)',
      `CREATE TABLE featurefn.catalog (
         id BIGINT PRIMARY KEY, feature_name VARCHAR NOT NULL, params_key VARCHAR NOT NULL,
         kind VARCHAR NOT NULL, "key" VARCHAR NOT NULL, "columns" VARCHAR NOT NULL, "rows" BIGINT NOT NULL,
         source_hash VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, status VARCHAR NOT NULL,
         version VARCHAR DEFAULT '', lineage VARCHAR DEFAULT '{}')`,
      'CREATE TABLE featurefn.retired (id BIGINT PRIMARY KEY, retired_at TIMESTAMP NOT NULL)',
      `CREATE TABLE featurefn.features (feature_name VARCHAR NOT NULL, version VARCHAR NOT NULL,
         metadata VARCHAR NOT NULL, recorded_at TIMESTAMP NOT NULL, PRIMARY KEY (feature_name, version))`,
      "INSERT INTO featurefn.meta VALUES ('format_version', '2'), ('last_id', '2')",
      'CREATE TABLE featurefn.m_1 (origin VARCHAR, n INTEGER)',
      "INSERT INTO featurefn.m_1 VALUES ('SFO', 2), ('LAX', 1)",
      'CREATE TABLE featurefn.m_2 (origin VARCHAR, n INTEGER)',
      "INSERT INTO featurefn.m_2 VALUES ('SFO', 7)",
      // Retired just now: kept through the default grace period (10 minutes).
      `INSERT INTO featurefn.retired VALUES (2, epoch_ms(${Date.now()}))`,
    ])
      await c.run(sql);
    await c.run(
      `INSERT INTO featurefn.catalog VALUES (1, 'flights.departures', $1, 'rows', '["origin"]', $2, 2, 'abc', TIMESTAMP '2001-03-02 00:00:00', 'complete', '', '{}')`,
      [paramsKey, columns],
    );
    c.closeSync();
    instance.closeSync();
    return path;
  }

  /** `stored_in` of every record and retired id, and the data tables, read around featurefn. */
  async function layout(path: string): Promise<{ catalog: string[]; retired: string[]; tables: string[] }> {
    const instance = await DuckDBInstance.create(path);
    const c = await instance.connect();
    const rows = async (sql: string) =>
      (await c.runAndReadAll(sql)).getRows().map((r) => r.map(String).join(' '));
    try {
      return {
        catalog: await rows('SELECT id, stored_in FROM featurefn.catalog ORDER BY id'),
        retired: await rows('SELECT id, stored_in FROM featurefn.retired ORDER BY id'),
        tables: await rows(
          "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'featurefn' AND regexp_full_match(table_name, '(m|f|s)_[0-9a-f]+') ORDER BY 1",
        ),
      };
    } finally {
      c.closeSync();
      instance.closeSync();
    }
  }

  it('is upgraded in place: its tables stay where they are, are read, and new publications share a shape table', async () => {
    const path = await formatTwo();
    const kept = new DuckDBMaterializer({ path });
    await kept.listMaterializations('flights.departures');
    await kept.close();
    // Upgraded without moving data: every record and retired id names its own table.
    expect(await layout(path)).toEqual({
      catalog: ['1 m_1'],
      retired: ['2 m_2'],
      tables: ['m_1', 'm_2'],
    });
    await readsAndWrites(() => new DuckDBMaterializer({ path }));
    // The new publication (id 3, above `last_id`) replaced record 1: its 1 row is in the shape table.
    const shape = shapeLayoutOf(['origin'], JSON.parse(columns)).table;
    const after = await layout(path);
    expect(after.catalog).toEqual([`3 ${shape}`]);
    expect(after.retired).toEqual(['1 m_1', '2 m_2']);
    const vacuumed = new DuckDBMaterializer({ path, retainReplaced: 0 });
    await vacuumed.vacuum(); // opening with no grace period already removes them
    await vacuumed.close();
    expect(await layout(path)).toEqual({ catalog: [`3 ${shape}`], retired: [], tables: [shape] });
  });
});

describe('a DuckDB catalog of format 3', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('keeps reading a feature’s own shape table (`f_…`, its own column names) and publishes into a shared one', async () => {
    dir = mkdtempSync(join(tmpdir(), 'featurefn-upgrade-'));
    const path = join(dir, 'store.duckdb');
    const instance = await DuckDBInstance.create(path);
    const c = await instance.connect();
    // As format 3 wrote it (DDL of that release): record 1's rows in its feature's shape table.
    for (const sql of [
      'CREATE SCHEMA featurefn',
      'CREATE TABLE featurefn.meta (name VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)',
      `CREATE TABLE featurefn.catalog (
         id BIGINT PRIMARY KEY, feature_name VARCHAR NOT NULL, params_key VARCHAR NOT NULL,
         kind VARCHAR NOT NULL, "key" VARCHAR NOT NULL, "columns" VARCHAR NOT NULL, "rows" BIGINT NOT NULL,
         source_hash VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, status VARCHAR NOT NULL,
         version VARCHAR DEFAULT '', lineage VARCHAR DEFAULT '{}', stored_in VARCHAR)`,
      'CREATE TABLE featurefn.retired (id BIGINT PRIMARY KEY, retired_at TIMESTAMP NOT NULL, stored_in VARCHAR)',
      `CREATE TABLE featurefn.features (feature_name VARCHAR NOT NULL, version VARCHAR NOT NULL,
         metadata VARCHAR NOT NULL, recorded_at TIMESTAMP NOT NULL, PRIMARY KEY (feature_name, version))`,
      "INSERT INTO featurefn.meta VALUES ('format_version', '3'), ('last_id', '1')",
      'CREATE TABLE featurefn.f_0123456789abcdef (_m BIGINT NOT NULL, origin VARCHAR, n INTEGER)',
      "INSERT INTO featurefn.f_0123456789abcdef VALUES (1, 'SFO', 2), (1, 'LAX', 1)",
    ])
      await c.run(sql);
    await c.run(
      `INSERT INTO featurefn.catalog VALUES (1, 'flights.departures', $1, 'rows', '["origin"]', $2, 2, 'abc', TIMESTAMP '2001-03-02 00:00:00', 'complete', '', '{}', 'f_0123456789abcdef')`,
      [paramsKey, columns],
    );
    c.closeSync();
    instance.closeSync();

    await readsAndWrites(() => new DuckDBMaterializer({ path }));
    const vacuumed = new DuckDBMaterializer({ path, retainReplaced: 0 });
    await vacuumed.vacuum();
    await vacuumed.close();
    // Record 1's rows went with it, and so did the emptied table of format 3.
    const after = await DuckDBInstance.create(path);
    const check = await after.connect();
    try {
      const rows = async (sql: string) =>
        (await check.runAndReadAll(sql)).getRows().map((r) => r.map(String));
      const shape = shapeLayoutOf(['origin'], JSON.parse(columns)).table;
      expect(await rows('SELECT id, stored_in FROM featurefn.catalog')).toEqual([['2', shape]]);
      expect(await rows("SELECT value FROM featurefn.meta WHERE name = 'format_version'")).toEqual([['4']]);
      expect(
        await rows(
          "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'featurefn' AND regexp_full_match(table_name, '(m|f|s)_[0-9a-f]+')",
        ),
      ).toEqual([[shape]]);
      expect(await rows(`SELECT _m, origin, v1 FROM featurefn.${shape}`)).toEqual([['2', 'SFO', '3']]);
    } finally {
      check.closeSync();
      after.closeSync();
    }
  });
});

const server = await requirePostgres();

describe.skipIf(!server.available)(`a PostgreSQL catalog of format 1${server.reason}`, () => {
  let schema: string | undefined;
  afterEach(async () => {
    if (schema !== undefined) await dropSchema(schema);
  });

  async function oldSchema(format = '1'): Promise<string> {
    schema = uniqueSchema('up');
    const client = new pg.Client({ connectionString: postgresUrl() });
    await client.connect();
    try {
      const s = `"${schema}"`;
      await client.query(`CREATE SCHEMA ${s}`);
      await client.query(`CREATE SEQUENCE ${s}.materialization_id`);
      await client.query(`SELECT setval('${schema}.materialization_id', 1)`);
      await client.query(`CREATE TABLE ${s}.meta (name text PRIMARY KEY, value text NOT NULL)`);
      await client.query(
        `CREATE TABLE ${s}.catalog (
           id bigint PRIMARY KEY, feature_name text NOT NULL, params_key text NOT NULL, params jsonb NOT NULL,
           source_hash text NOT NULL, row_count bigint NOT NULL, created_at timestamptz NOT NULL,
           status text NOT NULL, kind text NOT NULL, key_columns jsonb NOT NULL, "columns" jsonb NOT NULL,
           UNIQUE (feature_name, params_key))`,
      );
      await client.query(`CREATE TABLE ${s}.m_1 (origin text, n integer)`);
      await client.query(`INSERT INTO ${s}.m_1 VALUES ('SFO', 2), ('LAX', 1)`);
      await client.query(`INSERT INTO ${s}.meta VALUES ('format_version', $1)`, [format]);
      await client.query(
        `INSERT INTO ${s}.catalog VALUES (1, 'flights.departures', $1, '{}', 'abc', 2, '2001-03-02T00:00:00Z', 'complete', 'rows', '["origin"]', $2)`,
        [paramsKey, columns],
      );
    } finally {
      await client.end();
    }
    return schema;
  }

  it('is upgraded in place and read', async () => {
    const name = await oldSchema();
    await readsAndWrites(() => new PostgresMaterializer({ connection: postgresUrl(), schema: name }));
  });

  it('of a newer format is refused', async () => {
    const name = await oldSchema('99');
    await refusedAsNewer(() => new PostgresMaterializer({ connection: postgresUrl(), schema: name }));
  });
  it('of format 2 records where every materialization lives, reads old tables in place, and retires them', async () => {
    const name = await oldSchema('2');
    const admin = new pg.Client({ connectionString: postgresUrl() });
    await admin.connect();
    const s = `"${name}"`;
    try {
      // Format 2's additions, as that release made them, and a table retired before the upgrade.
      await admin.query(`ALTER TABLE ${s}.catalog ADD COLUMN version text NOT NULL DEFAULT ''`);
      await admin.query(`ALTER TABLE ${s}.catalog ADD COLUMN lineage jsonb NOT NULL DEFAULT '{}'`);
      await admin.query(
        `CREATE TABLE ${s}.features (feature_name text NOT NULL, version text NOT NULL, metadata jsonb NOT NULL,
           recorded_at timestamptz NOT NULL, PRIMARY KEY (feature_name, version))`,
      );
      await admin.query(`CREATE TABLE ${s}.retired (id bigint PRIMARY KEY, retired_at timestamptz NOT NULL)`);
      await admin.query(`CREATE TABLE ${s}.m_7 (origin text, n integer)`);
      await admin.query(`INSERT INTO ${s}.retired VALUES (7, now())`);
      await readsAndWrites(
        () => new PostgresMaterializer({ connection: postgresUrl(), schema: name, retainReplaced: '1 hour' }),
      );
      const { rows: meta } = await admin.query(`SELECT value FROM ${s}.meta WHERE name = 'format_version'`);
      expect(meta).toEqual([{ value: '4' }]);
      // The new publication went to its shape's table; the old one is retired with its own table.
      const { rows: catalog } = await admin.query(`SELECT id::text AS id, stored_in FROM ${s}.catalog`);
      expect(catalog).toEqual([
        { id: expect.not.stringMatching(/^1$/), stored_in: expect.stringMatching(/^s_/) },
      ]);
      const { rows: retired } = await admin.query(
        `SELECT id::text AS id, stored_in FROM ${s}.retired ORDER BY id`,
      );
      expect(retired).toEqual([
        { id: '1', stored_in: 'm_1' },
        { id: '7', stored_in: 'm_7' },
      ]);
      const materializer = new PostgresMaterializer({
        connection: postgresUrl(),
        schema: name,
        retainReplaced: 0,
      });
      try {
        const { dropped } = await materializer.vacuum();
        expect(dropped.sort()).toEqual(['1', '7']);
      } finally {
        await materializer.close();
      }
      const { rows: left } = await admin.query(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'm\\_%'",
        [name],
      );
      expect(left).toEqual([]);
    } finally {
      await admin.end();
    }
  });

  it('of format 3 keeps reading a feature’s own shape table (`f_…`, its own column names) and publishes into a shared one', async () => {
    const name = await oldSchema('3');
    const admin = new pg.Client({ connectionString: postgresUrl() });
    await admin.connect();
    const s = `"${name}"`;
    try {
      // Format 2's and 3's additions, as those releases made them; record 1's rows in a shape table.
      await admin.query(`ALTER TABLE ${s}.catalog ADD COLUMN version text NOT NULL DEFAULT ''`);
      await admin.query(`ALTER TABLE ${s}.catalog ADD COLUMN lineage jsonb NOT NULL DEFAULT '{}'`);
      await admin.query(
        `CREATE TABLE ${s}.features (feature_name text NOT NULL, version text NOT NULL, metadata jsonb NOT NULL,
           recorded_at timestamptz NOT NULL, PRIMARY KEY (feature_name, version))`,
      );
      await admin.query(
        `CREATE TABLE ${s}.retired (id bigint PRIMARY KEY, retired_at timestamptz NOT NULL, stored_in text NOT NULL)`,
      );
      await admin.query(
        `ALTER TABLE ${s}.catalog ADD COLUMN stored_in text NOT NULL DEFAULT 'f_0123456789abcdef'`,
      );
      await admin.query(
        `CREATE TABLE ${s}.f_0123456789abcdef (_m bigint NOT NULL, origin text COLLATE "C", n integer, PRIMARY KEY (_m, origin))`,
      );
      await admin.query(`INSERT INTO ${s}.f_0123456789abcdef SELECT 1, origin, n FROM ${s}.m_1`);
      await admin.query(`DROP TABLE ${s}.m_1`);
      await readsAndWrites(() => new PostgresMaterializer({ connection: postgresUrl(), schema: name }));
      const materializer = new PostgresMaterializer({
        connection: postgresUrl(),
        schema: name,
        retainReplaced: 0,
      });
      try {
        await materializer.vacuum();
      } finally {
        await materializer.close();
      }
      const shape = shapeLayoutOf(['origin'], JSON.parse(columns)).table;
      const { rows: meta } = await admin.query(`SELECT value FROM ${s}.meta WHERE name = 'format_version'`);
      expect(meta).toEqual([{ value: '4' }]);
      const { rows: catalog } = await admin.query(`SELECT id::text AS id, stored_in FROM ${s}.catalog`);
      expect(catalog).toEqual([{ id: expect.not.stringMatching(/^1$/), stored_in: shape }]);
      const { rows: old } = await admin.query(`SELECT count(*)::int AS n FROM ${s}.f_0123456789abcdef`);
      expect(old).toEqual([{ n: 0 }]);
      const { rows: stored } = await admin.query(`SELECT origin, v1 FROM ${s}."${shape}"`);
      expect(stored).toEqual([{ origin: 'SFO', v1: 3 }]);
    } finally {
      await admin.end();
    }
  });
});
