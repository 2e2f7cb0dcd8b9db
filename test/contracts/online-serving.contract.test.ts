import { DuckDBMaterializer } from 'featurefn/duckdb';
import { PostgresMaterializer } from 'featurefn/postgres';
import { describe } from 'vitest';
import { redisOnline, sqliteOnline } from '../support/online.js';
import { dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';
import { describeMaterializer } from './materializer-contract.js';

// The whole read contract again, with key lookups served by an online store: answers must not change.
describeMaterializer('DuckDB with a SQLite online store', async () => {
  const online = await sqliteOnline();
  const materializer = new DuckDBMaterializer({ online: online.store });
  return {
    materializer,
    cleanup: async () => {
      await materializer.close();
      await online.cleanup();
    },
  };
});

const pg = await requirePostgres();

describe.skipIf(!pg.available)(`PostgreSQL store${pg.reason}`, () => {
  describeMaterializer('PostgreSQL with a Redis online store and a cache', async () => {
    const online = await redisOnline();
    const schema = uniqueSchema();
    const materializer = new PostgresMaterializer({
      connection: postgresUrl(),
      schema,
      poolSize: 4,
      online: { store: online.store, cache: { entries: 1_000 } },
    });
    return {
      materializer,
      cleanup: async () => {
        await materializer.close();
        await dropSchema(schema);
        await online.cleanup();
      },
    };
  });
});
