import {
  BIGINT,
  BOOLEAN,
  DATE,
  DOUBLE,
  DuckDBTimestampValue,
  type DuckDBType,
  type DuckDBValue,
  dateValue,
  FLOAT,
  INTEGER,
  LIST,
  SMALLINT,
  TIMESTAMP,
  TINYINT,
  VARCHAR,
} from '@duckdb/node-api';
import type { ColumnType } from '../../frame/columns.js';
import type { SqlDialect } from '../../query/sql-compiler.js';

/** Double-quotes an identifier for DuckDB (doubling embedded quotes). @internal */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** DuckDB's identifier quoting and `$n` placeholders. @internal */
export const DUCKDB_DIALECT: SqlDialect = {
  quote: quoteIdentifier,
  placeholder: (i) => `$${i}`,
  sqlType: (type) => duckdbSqlType(type),
  // The rows of a shared table by a statement of their own: each expression of a statement costs
  // DuckDB more to plan than one pass over the rows of fifty materializations.
  groupedLookup: { kind: 'apart' },
};

/** DuckDB SQL type and driver type of each featurefn column type. */
const TYPES: Record<ColumnType, { sql: string; driver: DuckDBType }> = {
  boolean: { sql: 'BOOLEAN', driver: BOOLEAN },
  int8: { sql: 'TINYINT', driver: TINYINT },
  int16: { sql: 'SMALLINT', driver: SMALLINT },
  int32: { sql: 'INTEGER', driver: INTEGER },
  int64: { sql: 'BIGINT', driver: BIGINT },
  float32: { sql: 'FLOAT', driver: FLOAT },
  float64: { sql: 'DOUBLE', driver: DOUBLE },
  string: { sql: 'VARCHAR', driver: VARCHAR },
  timestamp: { sql: 'TIMESTAMP', driver: TIMESTAMP },
  date: { sql: 'DATE', driver: DATE },
  // Stored as text with DuckDB's JSON alias; the appender writes it as VARCHAR.
  json: { sql: 'JSON', driver: VARCHAR },
  'float64[]': { sql: 'DOUBLE[]', driver: LIST(DOUBLE) },
};

/** DuckDB SQL type of each featurefn column type. @internal */
export function duckdbSqlType(type: ColumnType): string {
  return TYPES[type].sql;
}

/** The driver's type for a featurefn column type (for the appender's data chunks). @internal */
export function duckdbDriverType(type: ColumnType): DuckDBType {
  return TYPES[type].driver;
}

/** `CREATE TABLE` column definitions for `columns`. @internal */
export function columnDefinitions(columns: readonly { name: string; type: ColumnType }[]): string {
  return columns.map((c) => `${quoteIdentifier(c.name)} ${duckdbSqlType(c.type)}`).join(', ');
}

/** Milliseconds since 1970 (rounded down) as a DuckDB TIMESTAMP value. @internal */
export function timestampOf(ms: number): DuckDBValue {
  return new DuckDBTimestampValue(BigInt(Math.floor(ms)) * 1000n);
}

/** Milliseconds since 1970 as a DuckDB DATE value (the day, rounded down). @internal */
export function dateOf(ms: number): DuckDBValue {
  return dateValue(Math.floor(ms / 86_400_000));
}
