import type { ColumnType } from '../../frame/columns.js';

/** PostgreSQL keeps 63 bytes of an identifier and silently cuts longer ones. @internal */
export const MAX_IDENTIFIER_BYTES = 63;

/** Double-quotes an identifier for PostgreSQL, doubling embedded quotes. @internal */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** The `$n` placeholder of the `n`th bound value. @internal */
export function placeholder(n: number): string {
  return `$${n}`;
}

/** Column types in PostgreSQL, by featurefn column type. @internal */
export const POSTGRES_SQL_TYPES: Readonly<Record<ColumnType, string>> = {
  boolean: 'boolean',
  // PostgreSQL has no one-byte integer; reads give the column back as int8 from its spec.
  int8: 'smallint',
  int16: 'smallint',
  int32: 'integer',
  int64: 'bigint',
  float32: 'real',
  float64: 'double precision',
  // Byte-wise comparison, as DuckDB does; also the fastest for building and probing key indexes.
  string: 'text COLLATE "C"',
  timestamp: 'timestamptz',
  date: 'date',
  json: 'jsonb',
  'float64[]': 'float8[]',
};

/** Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's). @internal */
export const PG_EPOCH_DAYS = 10_957;
/** Microseconds from 1970-01-01 to 2000-01-01. @internal */
export const PG_EPOCH_MICROS = 946_684_800_000_000;

/** 2^32: 64-bit integers that a double holds exactly are handled as two 32-bit halves. @internal */
export const TWO_32 = 4_294_967_296;

/** Signed 64-bit integer from two little-endian 32-bit words, exact while it fits in a double (±2^53). @internal */
export function int64At(words: Int32Array, i: number): number {
  return words[2 * i + 1]! * TWO_32 + (words[2 * i]! >>> 0);
}

/** The high 32-bit half of an integer a double holds exactly; the low half is `value - high * TWO_32`. @internal */
export function int64High(value: number): number {
  return Math.floor(value / TWO_32);
}
