import { type DuckDBConnection, DuckDBInstance, type DuckDBValue } from '@duckdb/node-api';
import type { RecordBatch } from 'apache-arrow';
import { FeatureStoreError } from '../../errors.js';
import { type SqlQuery, type SqlSource, type SqlValue, sqlTag, trimStatement } from '../../sql/sql-query.js';
import { DUCKDB_DIALECT, timestampOf } from './duckdb-dialect.js';
import { duckdbBatches } from './duckdb-stream.js';

/**
 * A DuckDB database as a source of SQL features. Given an instance, each query runs on a
 * connection of its own; given a connection, queries run on it.
 *
 * ### Example
 * ```ts
 * // db.ts (owned by whoever runs the jobs)
 * export const flights = duckdbSource(await DuckDBInstance.create('analytics.duckdb'));
 *
 * // features.ts
 * export const departures = feature({ entity: 'origin' }, async function departures({ when }: { when: Date }) {
 *   return flights.sql`SELECT origin, count(*) AS departures FROM flights WHERE date <= ${when} GROUP BY origin`;
 * });
 * ```
 * A `DuckDBMaterializer` built on the same instance (`new DuckDBMaterializer({ instance })`)
 * materializes such features inside DuckDB, without moving rows through Node.
 */
export function duckdbSource(database: DuckDBInstance | DuckDBConnection): SqlSource {
  return createDuckDBSource(database, async () =>
    database instanceof DuckDBInstance
      ? { connection: await database.connect(), own: true }
      : { connection: database, own: false },
  );
}

/**
 * A DuckDB source whose identity is `database` and whose queries run on `connect()`'s connection
 * (closed after the query when `own`). @internal
 */
export function createDuckDBSource(
  database: unknown,
  connect: () => Promise<{ connection: DuckDBConnection; own: boolean }>,
): SqlSource {
  const source: SqlSource = {
    dialect: 'duckdb',
    database,
    sql: sqlTag(() => source),
    stream: (query) => streamQuery(connect, query),
  };
  return Object.freeze(source);
}

async function* streamQuery(
  connect: () => Promise<{ connection: DuckDBConnection; own: boolean }>,
  query: SqlQuery,
): AsyncIterable<RecordBatch> {
  const { connection, own } = await connect();
  try {
    const { text, values } = renderDuckDB(query);
    let result: Awaited<ReturnType<DuckDBConnection['stream']>>;
    try {
      result = await connection.stream(text, values);
    } catch (cause) {
      throw new FeatureStoreError(
        'FEATURE_FAILED',
        `DuckDB could not run the SQL feature's query: ${String(cause)}. Fix the query; nothing was stored.`,
        {
          sql: text,
          cause,
        },
      );
    }
    yield* duckdbBatches(result);
  } finally {
    if (own) connection.closeSync();
  }
}

/** The query's text with `$n` placeholders and its values as DuckDB values. @internal */
export function renderDuckDB(query: SqlQuery, first = 1): { text: string; values: DuckDBValue[] } {
  const { text, values } = query.render(DUCKDB_DIALECT.placeholder, first);
  // Wrapped in `CREATE TABLE … AS` or a subquery: no trailing `;` or comment may end the wrapper.
  return { text: trimStatement(text), values: values.map(toDuckDB) };
}

function toDuckDB(value: SqlValue): DuckDBValue {
  if (value instanceof Date) return timestampOf(value.getTime());
  return value;
}
