/** Both stores for the reliability tests: DuckDB on a temp file, PostgreSQL in a schema of its own. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FeatureStoreError, type Materializer } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { PostgresMaterializer } from 'featurefn/postgres';
import { dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';

export const pg = await requirePostgres();

export type Factory = (options?: { timeout?: string | number }) => {
  materializer: Materializer;
  cleanup: () => Promise<void>;
};

export const stores: [string, boolean, Factory][] = [
  [
    'DuckDB',
    true,
    (options = {}) => {
      const dir = mkdtempSync(join(tmpdir(), 'featurefn-hostile-'));
      const materializer = new DuckDBMaterializer({ path: join(dir, 'store.duckdb'), ...options });
      return {
        materializer,
        cleanup: async () => {
          await materializer.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  ],
  [
    `PostgreSQL${pg.reason}`,
    pg.available,
    (options = {}) => {
      const schema = uniqueSchema('hostile');
      const materializer = new PostgresMaterializer({ connection: postgresUrl(), schema, ...options });
      return {
        materializer,
        cleanup: async () => {
          await materializer.close();
          await dropSchema(schema);
        },
      };
    },
  ],
];

export async function refusal(promise: Promise<unknown>): Promise<FeatureStoreError> {
  try {
    await promise;
  } catch (error) {
    if (!(error instanceof FeatureStoreError)) throw error;
    return error;
  }
  throw new Error('accepted');
}

/** Counts of a fuzz run: inputs tried, stored and read back exactly, refused. */
export type Figures = { inputs: number; storedExactly: number; refused: number };

/**
 * Runs `run` for one input: counted stored exactly when it resolves, refused when it throws a
 * FeatureStoreError (whose message must not echo kilobytes); any other error fails the property.
 */
export async function exactOrRefused(figures: Figures, run: () => Promise<void>): Promise<void> {
  figures.inputs++;
  try {
    await run();
    figures.storedExactly++;
  } catch (error) {
    if (!(error instanceof FeatureStoreError)) throw error;
    if (error.message.length >= 1200) throw new Error(`a refusal echoes ${error.message.length} characters`);
    figures.refused++;
  }
}
