import { fileURLToPath } from 'node:url';
import {
  type DuckDBConnection,
  DuckDBInstance,
  type DuckDBResultReader,
  type DuckDBValue,
} from '@duckdb/node-api';
// The features return DuckDB query results: this lets any store (DuckDB or PostgreSQL) take them.
import 'featurefn/duckdb';

/**
 * The real US flight records shipped by the npm package `vega-datasets` (Bureau of Transportation
 * Statistics, 2001-01-01 to 2001-07-01, 3 million flights: date, delay, distance, origin,
 * destination), loaded once into an in-memory DuckDB table `flights` that features query.
 */
export const FLIGHTS_PARQUET = fileURLToPath(
  new URL('../data/flights-3m.parquet', import.meta.resolve('vega-datasets')),
);

let connection: Promise<DuckDBConnection> | undefined;

/** The compute engine the flight features use: an in-memory DuckDB with the `flights` table. */
export function flightsDatabase(): Promise<DuckDBConnection> {
  connection ??= (async () => {
    const instance = await DuckDBInstance.create(':memory:');
    const c = await instance.connect();
    await c.run(
      `CREATE TABLE flights AS SELECT * FROM read_parquet('${FLIGHTS_PARQUET.replaceAll("'", "''")}')`,
    );
    return c;
  })();
  return connection;
}

/** Runs SQL with bound values against the flights database. */
export async function query(sql: string, values: DuckDBValue[] = []): Promise<DuckDBResultReader> {
  return (await flightsDatabase()).runAndReadAll(sql, values);
}
