/**
 * The feature `departures` written five ways, and a variant of the fifth, by way. Each is also
 * registered on its own: `fiveWays.<way>.departures`.
 */
import { departures as arrow } from './arrow.js';
import { departures as duckdbSql } from './duckdb-sql.js';
import { departures as kysely } from './kysely.js';
import { departures as polars } from './polars.js';
import { departures as postgresSql } from './postgres-sql.js';
import { departures as rows } from './rows.js';

/** `departures` by way: rows, Arrow, polars, DuckDB SQL, Kysely on PostgreSQL, the `sql` tag on PostgreSQL. */
export const ways = { rows, arrow, polars, duckdbSql, kysely, postgresSql };

/** A way's name. */
export type Way = keyof typeof ways;
