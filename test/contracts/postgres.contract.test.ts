import { PostgresMaterializer } from 'featurefn/postgres';
import { describe } from 'vitest';
import { dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';
import { describeMaterializer } from './materializer-contract.js';

const pg = await requirePostgres();

// Locally without a server the whole suite is skipped, and its name says why; in CI requirePostgres throws.
describe.skipIf(!pg.available)(`PostgreSQL store${pg.reason}`, () => {
  describeMaterializer('PostgreSQL', async () => {
    const schema = uniqueSchema();
    const materializer = new PostgresMaterializer({ connection: postgresUrl(), schema, poolSize: 4 });
    return {
      materializer,
      elsewhere: {
        imports: `import { PostgresMaterializer } from ${JSON.stringify(new URL('../../src/postgres.ts', import.meta.url).href)};`,
        create: `new PostgresMaterializer({ connection: ${JSON.stringify(postgresUrl())}, schema: ${JSON.stringify(schema)} })`,
      },
      cleanup: async () => {
        await materializer.close();
        await dropSchema(schema);
      },
    };
  });
});
