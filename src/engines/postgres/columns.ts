import {
  Bool,
  type Data,
  DateDay,
  Field,
  Float32,
  Float64,
  Int8,
  Int16,
  Int32,
  Int64,
  List,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  TimestampMillisecond,
  Utf8,
} from 'apache-arrow';
import { FeatureStoreError } from '../../errors.js';
import type { Params } from '../../feature/params.js';
import { arrowFieldOf, type ColumnSpec, type ColumnType } from '../../frame/columns.js';
import { int64High, TWO_32 } from './dialect.js';

/** PostgreSQL type OIDs featurefn reads (`pg_type.oid`; stable across versions). */
const OID = {
  bool: 16,
  char: 18,
  name: 19,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  json: 114,
  float4: 700,
  float8: 701,
  unknown: 705,
  int2Array: 1005,
  int4Array: 1007,
  int8Array: 1016,
  float4Array: 1021,
  float8Array: 1022,
  bpchar: 1042,
  varchar: 1043,
  date: 1082,
  timestamp: 1114,
  timestamptz: 1184,
  numericArray: 1231,
  numeric: 1700,
  jsonb: 3802,
} as const;

/** How a PostgreSQL result column is read. @internal */
export interface PostgresColumnMapping {
  /** The featurefn column type. */
  readonly type: ColumnType;
  /**
   * SQL that turns the column `expression` into the type featurefn stores it as in PostgreSQL
   * (`POSTGRES_SQL_TYPES`), for `CREATE TABLE … AS`.
   */
  readonly stored: (expression: string) => string;
}

const same = (e: string) => e;
const text = (e: string) => `${e}::text COLLATE "C"`;
const mapping = (type: ColumnType, stored: (e: string) => string = same): PostgresColumnMapping => ({
  type,
  stored,
});

const MAPPINGS = new Map<number, PostgresColumnMapping>([
  [OID.bool, mapping('boolean')],
  [OID.int2, mapping('int16')],
  [OID.int4, mapping('int32')],
  [OID.int8, mapping('int64')],
  [OID.float4, mapping('float32')],
  [OID.float8, mapping('float64')],
  [OID.numeric, mapping('float64', (e) => `${e}::float8`)],
  [OID.text, mapping('string', (e) => `${e} COLLATE "C"`)],
  [OID.varchar, mapping('string', text)],
  [OID.bpchar, mapping('string', text)],
  [OID.name, mapping('string', text)],
  [OID.char, mapping('string', text)],
  [OID.unknown, mapping('string', text)],
  [OID.timestamptz, mapping('timestamp')],
  // A timestamp without time zone is read as UTC, as DuckDB's TIMESTAMP is.
  [OID.timestamp, mapping('timestamp', (e) => `(${e} AT TIME ZONE 'UTC')`)],
  [OID.date, mapping('date')],
  [OID.json, mapping('json', (e) => `${e}::jsonb`)],
  [OID.jsonb, mapping('json')],
  [OID.float8Array, mapping('float64[]')],
  [OID.float4Array, mapping('float64[]', (e) => `${e}::float8[]`)],
  [OID.int2Array, mapping('float64[]', (e) => `${e}::float8[]`)],
  [OID.int4Array, mapping('float64[]', (e) => `${e}::float8[]`)],
  [OID.int8Array, mapping('float64[]', (e) => `${e}::float8[]`)],
  [OID.numericArray, mapping('float64[]', (e) => `${e}::float8[]`)],
]);

/** How featurefn reads a column of PostgreSQL type `oid`, or `undefined` when it cannot. @internal */
export function postgresColumnMapping(oid: number): PostgresColumnMapping | undefined {
  return MAPPINGS.get(oid);
}

/** A result column as PostgreSQL describes it. @internal */
export interface PostgresField {
  readonly name: string;
  /** Type OID (`dataTypeID` of a `pg` field, `atttypid` in the catalog). */
  readonly oid: number;
  /** The type's name, for messages (`format_type`); the OID when unknown. */
  readonly typeName?: string | undefined;
}

/** featurefn column specs of a PostgreSQL result; refuses types it cannot store, naming the column. @internal */
export function postgresColumnSpecs(
  fields: readonly PostgresField[],
  context: { feature?: string; params?: Params } = {},
): ColumnSpec[] {
  return fields.map((field) => {
    const found = MAPPINGS.get(field.oid);
    if (found === undefined) {
      const type = field.typeName ?? `with type OID ${field.oid}`;
      throw new FeatureStoreError(
        'UNSUPPORTED_COLUMN_TYPE',
        `column "${field.name}" has PostgreSQL type ${type}, which featurefn cannot store. ` +
          'Cast it in the query (for example to text, float8, timestamptz, jsonb or float8[]). Nothing was stored.',
        { ...context, details: { column: field.name, oid: field.oid, type: field.typeName } },
      );
    }
    return { name: field.name, type: found.type };
  });
}

/**
 * An Arrow record batch from rows of PostgreSQL text-format values (`pg` with `rowMode: 'array'`
 * and parsers that keep the text), built straight into Arrow buffers: no JS value per cell
 * besides the text `pg` already made. @internal
 */
export function postgresTextBatch(
  columns: readonly ColumnSpec[],
  rows: readonly (readonly (string | null)[])[],
): RecordBatch {
  const fields = columns.map(arrowFieldOf);
  const schema = new Schema(fields);
  const length = rows.length;
  const children = columns.map((column, c) => columnData(column, rows, c));
  const data = makeData({ type: new Struct(fields), length, children, nullCount: 0 });
  return new RecordBatch(schema, data);
}

/** Validity bitmap of column `c`, or `undefined` when nothing is null. */
function validityOf(
  rows: readonly (readonly (string | null)[])[],
  c: number,
): { bitmap: Uint8Array | undefined; nulls: number } {
  let nulls = 0;
  for (let r = 0; r < rows.length; r++) if (rows[r]![c] === null) nulls++;
  if (nulls === 0) return { bitmap: undefined, nulls };
  const bitmap = new Uint8Array((rows.length + 7) >> 3);
  for (let r = 0; r < rows.length; r++) if (rows[r]![c] !== null) bitmap[r >> 3]! |= 1 << (r & 7);
  return { bitmap, nulls };
}

/** Writes an integer that a double holds exactly into two little-endian 32-bit words. */
function setInt64(words: Int32Array, i: number, value: number): void {
  const high = int64High(value);
  words[2 * i] = value - high * TWO_32;
  words[2 * i + 1] = high;
}

function columnData(column: ColumnSpec, rows: readonly (readonly (string | null)[])[], c: number): Data {
  const n = rows.length;
  const { bitmap, nulls } = validityOf(rows, c);
  const base = { length: n, nullCount: nulls, ...(bitmap === undefined ? {} : { nullBitmap: bitmap }) };
  switch (column.type) {
    case 'boolean': {
      const bits = new Uint8Array((n + 7) >> 3);
      for (let r = 0; r < n; r++) if (rows[r]![c] === 't') bits[r >> 3]! |= 1 << (r & 7);
      return makeData({ type: new Bool(), ...base, data: bits });
    }
    case 'int8': {
      const values = new Int8Array(n);
      for (let r = 0; r < n; r++) {
        const v = rows[r]![c] as string | null;
        if (v !== null) values[r] = +v;
      }
      return makeData({ type: new Int8(), ...base, data: values });
    }
    case 'int16': {
      const values = new Int16Array(n);
      for (let r = 0; r < n; r++) {
        const v = rows[r]![c] as string | null;
        if (v !== null) values[r] = +v;
      }
      return makeData({ type: new Int16(), ...base, data: values });
    }
    case 'int32': {
      const values = new Int32Array(n);
      for (let r = 0; r < n; r++) {
        const v = rows[r]![c] as string | null;
        if (v !== null) values[r] = +v;
      }
      return makeData({ type: new Int32(), ...base, data: values });
    }
    case 'int64': {
      const values = new BigInt64Array(n);
      const words = new Int32Array(values.buffer);
      for (let r = 0; r < n; r++) {
        const v = rows[r]![c] as string | null;
        if (v === null) continue;
        // Up to 15 digits a double is exact: no BigInt per value.
        if (v.length <= 15) setInt64(words, r, +v);
        else values[r] = BigInt(v);
      }
      return makeData({ type: new Int64(), ...base, data: values });
    }
    case 'float32': {
      const values = new Float32Array(n);
      for (let r = 0; r < n; r++) {
        const v = rows[r]![c] as string | null;
        if (v !== null) values[r] = +v;
      }
      return makeData({ type: new Float32(), ...base, data: values });
    }
    case 'float64': {
      const values = new Float64Array(n);
      for (let r = 0; r < n; r++) {
        const v = rows[r]![c] as string | null;
        if (v !== null) values[r] = +v;
      }
      return makeData({ type: new Float64(), ...base, data: values });
    }
    case 'string':
    case 'json':
      return utf8Data(rows, c, base);
    case 'timestamp': {
      const values = new BigInt64Array(n);
      const words = new Int32Array(values.buffer);
      for (let r = 0; r < n; r++) {
        const v = rows[r]![c] as string | null;
        if (v !== null) setInt64(words, r, parseTimestamp(v, column.name));
      }
      return makeData({ type: new TimestampMillisecond(), ...base, data: values });
    }
    case 'date': {
      const values = new Int32Array(n);
      for (let r = 0; r < n; r++) {
        const v = rows[r]![c] as string | null;
        if (v !== null) values[r] = parseDate(v, column.name);
      }
      return makeData({ type: new DateDay(), ...base, data: values });
    }
    case 'float64[]':
      return floatListData(rows, c, base, column.name);
  }
}

function utf8Data(
  rows: readonly (readonly (string | null)[])[],
  c: number,
  base: { length: number; nullCount: number; nullBitmap?: Uint8Array },
): Data {
  const n = rows.length;
  const offsets = new Int32Array(n + 1);
  let size = 0;
  for (let r = 0; r < n; r++) size += rows[r]![c]?.length ?? 0;
  // One byte per UTF-16 unit is exact for ASCII; the buffer grows for the rest.
  let bytes = Buffer.allocUnsafe(Math.max(64, size + (size >> 3)));
  let p = 0;
  for (let r = 0; r < n; r++) {
    const v = rows[r]![c] as string | null;
    if (v !== null && v.length > 0) {
      if (p + v.length * 3 > bytes.length) {
        const grown = Buffer.allocUnsafe(Math.max(bytes.length * 2, p + v.length * 3));
        bytes.copy(grown, 0, 0, p);
        bytes = grown;
      }
      p += bytes.write(v, p, 'utf8');
    }
    offsets[r + 1] = p;
  }
  const data = new Uint8Array(bytes.buffer, bytes.byteOffset, p);
  return makeData({ type: new Utf8(), ...base, valueOffsets: offsets, data });
}

/** `{1.5,NULL,3}` (and `[0:1]={…}`, with explicit bounds) into a list of float64. */
function floatListData(
  rows: readonly (readonly (string | null)[])[],
  c: number,
  base: { length: number; nullCount: number; nullBitmap?: Uint8Array },
  name: string,
): Data {
  const n = rows.length;
  const offsets = new Int32Array(n + 1);
  let items: number[] = [];
  let itemNulls: number[] | undefined;
  for (let r = 0; r < n; r++) {
    const v = rows[r]![c] as string | null;
    if (v !== null) {
      const open = v.indexOf('{');
      if (v.charCodeAt(open + 1) === 123 /* { */) {
        throw new FeatureStoreError(
          'UNSUPPORTED_RESULT',
          `column "${name}" holds a multi-dimensional array (${v.slice(0, 40)}); featurefn stores one-dimensional numeric arrays. ` +
            'Flatten it in the query.',
          { details: { column: name } },
        );
      }
      const body = v.slice(open + 1, v.length - 1);
      if (body.length > 0) {
        for (const item of body.split(',')) {
          if (item === 'NULL') {
            itemNulls ??= [];
            itemNulls.push(items.length);
            items.push(0);
          } else items.push(+item);
        }
      }
    }
    offsets[r + 1] = items.length;
  }
  const values = Float64Array.from(items);
  items = [];
  let childBitmap: Uint8Array | undefined;
  if (itemNulls !== undefined) {
    childBitmap = new Uint8Array((values.length + 7) >> 3).fill(255);
    for (const i of itemNulls) childBitmap[i >> 3]! &= ~(1 << (i & 7));
  }
  const child = makeData({
    type: new Float64(),
    length: values.length,
    nullCount: itemNulls?.length ?? 0,
    ...(childBitmap === undefined ? {} : { nullBitmap: childBitmap }),
    data: values,
  });
  return makeData({
    type: new List(new Field('item', new Float64(), true)),
    ...base,
    valueOffsets: offsets,
    child,
  });
}

/** Days since 1970-01-01 of a proleptic Gregorian date (any year, 0 = 1 BC). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/** Reads digits of `s` from `i` up to `end` as a number. */
function digits(s: string, i: number, end: number): number {
  let v = 0;
  for (let k = i; k < end; k++) v = v * 10 + (s.charCodeAt(k) - 48);
  return v;
}

function unrepresentable(value: string, column: string): FeatureStoreError {
  return new FeatureStoreError(
    'UNSUPPORTED_RESULT',
    `column "${column}" holds ${JSON.stringify(value)}, which no featurefn timestamp or date can hold. ` +
      'Filter it out or replace it (for example with NULL) in the query.',
    { details: { column, value } },
  );
}

/** `YYYY-MM-DD[ BC]` (DateStyle ISO) as days since 1970-01-01. */
function parseDate(s: string, column: string): number {
  const dash = s.indexOf('-', 1);
  if (dash < 0) throw unrepresentable(s, column);
  let year = digits(s, 0, dash);
  if (s.endsWith(' BC')) year = 1 - year;
  return daysFromCivil(year, digits(s, dash + 1, dash + 3), digits(s, dash + 4, dash + 6));
}

/**
 * `YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM[:SS]]][ BC]` (DateStyle ISO) as milliseconds since
 * 1970, rounding sub-milliseconds down. Without an offset (timestamp without time zone) it is UTC.
 */
function parseTimestamp(s: string, column: string): number {
  const dash = s.indexOf('-', 1);
  if (dash < 0 || s.length < dash + 15) throw unrepresentable(s, column);
  let year = digits(s, 0, dash);
  const end = s.endsWith(' BC') ? s.length - 3 : s.length;
  if (end !== s.length) year = 1 - year;
  const t = dash + 7; // HH
  let ms =
    daysFromCivil(year, digits(s, dash + 1, dash + 3), digits(s, dash + 4, dash + 6)) * 86_400_000 +
    digits(s, t, t + 2) * 3_600_000 +
    digits(s, t + 3, t + 5) * 60_000 +
    digits(s, t + 6, t + 8) * 1000;
  let i = t + 8;
  if (s.charCodeAt(i) === 46 /* . */) {
    const start = ++i;
    while (i < end && s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57) i++;
    // Up to microseconds: milliseconds are the first three digits, the rest is rounded down.
    const count = Math.min(3, i - start);
    ms += digits(s, start, start + count) * 10 ** (3 - count);
  }
  if (i < end) {
    const sign = s.charCodeAt(i) === 45 /* - */ ? -1 : 1;
    const hours = digits(s, i + 1, i + 3);
    const minutes = end >= i + 6 ? digits(s, i + 4, i + 6) : 0;
    const seconds = end >= i + 9 ? digits(s, i + 7, i + 9) : 0;
    ms -= sign * (hours * 3_600_000 + minutes * 60_000 + seconds * 1000);
  }
  return ms;
}

/** @internal exported for tests */
export const parsers = { parseDate, parseTimestamp };
