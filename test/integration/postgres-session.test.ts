import { FeatureStore } from 'featurefn';
import { PostgresMaterializer, postgresSource } from 'featurefn/postgres';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tableToRows } from '../../src/frame/columns.js';
import { adminClient, dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';

const server = await requirePostgres();

/**
 * A role whose sessions default to `DateStyle = 'SQL, DMY'` and `extra_float_digits = 0`, as a
 * server or role may be configured: featurefn's values must not change with them.
 */
describe.skipIf(!server.available)(`PostgreSQL session settings${server.reason}`, () => {
  const role = uniqueSchema('role');
  const schema = uniqueSchema('session');
  let admin: pg.Client;
  let url: string;
  const when = new Date('2001-02-03T04:05:06.789Z');
  const day = new Date('2001-02-13T00:00:00Z');
  const third = 0.1 + 0.2; // 0.30000000000000004: rounds to 0.3 with extra_float_digits = 0

  beforeAll(async () => {
    admin = await adminClient();
    await admin.query(`CREATE ROLE "${role}" LOGIN`);
    await admin.query(`ALTER ROLE "${role}" SET DateStyle = 'SQL, DMY'`);
    await admin.query(`ALTER ROLE "${role}" SET extra_float_digits = 0`);
    await admin.query(`GRANT CREATE ON DATABASE "${admin.database}" TO "${role}"`);
    const parsed = new URL(postgresUrl());
    parsed.username = role;
    parsed.password = '';
    url = parsed.toString();
  });
  afterAll(async () => {
    await dropSchema(schema);
    await admin.query(`REVOKE CREATE ON DATABASE "${admin.database}" FROM "${role}"`);
    await admin.query(`DROP ROLE IF EXISTS "${role}"`);
    await admin.end();
  });

  it('the role really reads differently without featurefn', async () => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const { rows } = await client.query(
      `SELECT current_setting('DateStyle') AS style, 0.30000000000000004::float8::text AS f`,
    );
    await client.end();
    expect(rows[0]).toEqual({ style: 'SQL, DMY', f: '0.3' });
  });

  it('postgresSource reads the same values whatever the session DateStyle and extra_float_digits', async () => {
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    const db = postgresSource(pool);
    try {
      const table =
        await db.sql`SELECT ${third}::float8 AS f, ${when}::timestamptz AS t, ${day}::date AS d`.toArrow();
      expect(tableToRows(table)).toEqual([{ f: third, t: when, d: day }]);
    } finally {
      await pool.end();
    }
  });

  it('the PostgreSQL store reads back the same values whatever the session settings', async () => {
    const materializer = new PostgresMaterializer({ connection: url, schema, poolSize: 2 });
    const store = new FeatureStore();
    store.addDecorator(materializer.decorator);
    const values = store.feature({ entity: 'id' }, async function values() {
      return [{ id: 'a', f: third, t: when, d: day }];
    });
    // Settings queued on a new connection before pg's own query make pg warn (deprecated in pg 8).
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      await materializer.materialize(values, {});
      const rows = await store.withParams({}).getFeatures(values).toArray();
      expect(rows).toEqual([{ id: 'a', f: third, t: when, d: day }]);
      const arrow = await store.withParams({}).getFeatures(values).filter({ id: 'a' }).toArrow();
      expect(tableToRows(arrow)).toEqual([{ id: 'a', f: third, t: when, d: day }]);
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.map((w) => w.message)).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      await materializer.close();
    }
  });
});
