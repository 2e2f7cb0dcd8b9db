import { FeatureStore } from 'featurefn';
import { PostgresMaterializer } from 'featurefn/postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';

const server = await requirePostgres();

describe.skipIf(!server.available)(`PostgreSQL prepared statements${server.reason}`, () => {
  const schema = uniqueSchema('stmts');
  let materializer: PostgresMaterializer | undefined;
  afterEach(async () => {
    await materializer?.close();
    await dropSchema(schema);
  });

  it('a connection keeps a bounded number of prepared statements across many publications and reads', async () => {
    // One connection, so every read and the count below run on it.
    materializer = new PostgresMaterializer({
      connection: postgresUrl(),
      schema,
      poolSize: 1,
      maxPreparedStatements: 5,
    });
    const store = new FeatureStore();
    store.addDecorator(materializer.decorator);
    let round = 0;
    const counts = store.feature({ entity: 'id' }, async function counts() {
      return [{ id: 'a', n: round }];
    });
    for (round = 0; round < 20; round++) {
      await materializer.materialize(counts, {});
      expect(await store.withParams({}).getFeatures(counts).toArray()).toEqual([{ id: 'a', n: round }]);
      expect(await store.withParams({}).getFeatures(counts).filter({ id: 'a' }).toArray()).toHaveLength(1);
    }
    // One more read, so the connection counted holds at least its statement.
    await store.withParams({}).getFeatures(counts).toArray();
    const db = materializer.source;
    const [{ prepared }] =
      (await db.sql`SELECT count(*)::int AS prepared FROM pg_prepared_statements`.toArray()) as [
        { prepared: number },
      ];
    expect(prepared).toBeGreaterThan(0);
    expect(prepared).toBeLessThanOrEqual(5);
  });
});
