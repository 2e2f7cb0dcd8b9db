import { type DuckDBConnection, DuckDBInstance, type DuckDBValue, timestampValue } from '@duckdb/node-api';
import type { RecordBatch } from 'apache-arrow';
import { FeatureStoreError } from '../../errors.js';
import { type SqlQuery, type SqlSource, type SqlValue, sqlTag } from '../../sql/sql-query.js';
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
  const source: SqlSource = {
    dialect: 'duckdb',
    database,
    sql: sqlTag(() => source),
    stream: (query) => streamQuery(database, query),
  };
  return Object.freeze(source);
}

async function* streamQuery(
  database: DuckDBInstance | DuckDBConnection,
  query: SqlQuery,
): AsyncIterable<RecordBatch> {
  const own = database instanceof DuckDBInstance ? await database.connect() : undefined;
  const connection = own ?? (database as DuckDBConnection);
  try {
    const { text, values } = renderDuckDB(query);
    let result: Awaited<ReturnType<DuckDBConnection['stream']>>;
    try {
      result = await connection.stream(text, values);
    } catch (cause) {
      throw new FeatureStoreError(
        'STORE_ERROR',
        `DuckDB could not run the SQL feature's query: ${String(cause)}`,
        {
          sql: text,
          cause,
        },
      );
    }
    yield* duckdbBatches(result);
  } finally {
    own?.closeSync();
  }
}

/** The query's text with `$n` placeholders and its values as DuckDB values. @internal */
export function renderDuckDB(query: SqlQuery, first = 1): { text: string; values: DuckDBValue[] } {
  const { text, values } = query.render((i) => `$${i}`, first);
  return { text, values: values.map(toDuckDB) };
}

function toDuckDB(value: SqlValue): DuckDBValue {
  if (value instanceof Date) return timestampValue(BigInt(value.getTime()) * 1000n);
  return value;
}
