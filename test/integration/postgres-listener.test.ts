import { FeatureStore, FeatureStoreError } from 'featurefn';
import { PostgresMaterializer } from 'featurefn/postgres';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { adminClient, dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';

const server = await requirePostgres();

describe.skipIf(!server.available)(`PostgreSQL store's listening connection${server.reason}`, () => {
  const schema = uniqueSchema('listen');
  let materializer: PostgresMaterializer | undefined;
  let pool: pg.Pool | undefined;
  afterEach(async () => {
    await materializer?.close();
    await pool?.end();
    materializer = undefined;
    pool = undefined;
    await dropSchema(schema);
  });

  it('works on a pool of one connection: LISTEN has a connection of its own', {
    timeout: 20_000,
  }, async () => {
    pool = new pg.Pool({ connectionString: postgresUrl(), max: 1 });
    materializer = new PostgresMaterializer({ connection: pool, schema });
    const store = new FeatureStore();
    store.addDecorator(materializer.decorator);
    const one = store.feature({ entity: 'id' }, async function one() {
      return [{ id: 'a', n: 1 }];
    });
    await materializer.materialize(one, {});
    expect(await store.withParams({}).getFeatures(one).toArray()).toEqual([{ id: 'a', n: 1 }]);
    expect(pool.totalCount).toBe(1);
  });

  it('reports a lost listening connection to onError, and listens again', { timeout: 20_000 }, async () => {
    const errors: FeatureStoreError[] = [];
    materializer = new PostgresMaterializer({
      connection: postgresUrl(),
      schema,
      onError: (error) => errors.push(error),
    });
    await materializer.listMaterializations('nothing');
    const admin = await adminClient();
    try {
      const listening = `SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN "featurefn_${schema}"'`;
      const { rows } = await admin.query(listening);
      expect(rows).toHaveLength(1);
      await admin.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
      await expect.poll(() => errors.length, { timeout: 5000 }).toBeGreaterThan(0);
      expect(errors[0]).toBeInstanceOf(FeatureStoreError);
      expect(errors[0]!.message).toMatch(/listening for other processes' publications failed/);
      await expect.poll(async () => (await admin.query(listening)).rows.length, { timeout: 10_000 }).toBe(1);
    } finally {
      await admin.end();
    }
  });
});
