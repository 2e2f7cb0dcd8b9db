import {
  Bool,
  type DataType,
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
  Table,
  TimestampMillisecond,
  Type,
  Utf8,
  type Vector,
  vectorFromArray,
} from 'apache-arrow';
import { FeatureStoreError } from '../errors.js';
import { invalidText } from '../feature/params.js';
import { clip, describeValue } from '../format.js';

/**
 * The column types featurefn stores: every store maps these to its own SQL types and back.
 * `json` holds any JSON value (objects, arrays); `float64[]` holds numeric arrays (embeddings).
 */
export type ColumnType =
  | 'boolean'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'float32'
  | 'float64'
  | 'string'
  | 'timestamp'
  | 'date'
  | 'json'
  | 'float64[]';

/** A column of a feature result: name and type. */
export interface ColumnSpec {
  readonly name: string;
  readonly type: ColumnType;
}

/** A row object as `toArray()` returns it. */
export type Row = Record<string, unknown>;

/** Field metadata marking a Utf8 column that holds JSON text. @internal */
export const JSON_METADATA = 'featurefn:type';

/** The featurefn column type of an Arrow field, or `undefined` if it has none. @internal */
export function columnTypeOf(field: Field): ColumnType | undefined {
  const type = field.type as DataType;
  switch (type.typeId) {
    case Type.Bool:
      return 'boolean';
    case Type.Int: {
      const { bitWidth, isSigned } = type as unknown as { bitWidth: number; isSigned: boolean };
      // Unsigned integers widen to the next signed type; uint64 has none.
      const width = isSigned ? bitWidth : bitWidth * 2;
      return width <= 8
        ? 'int8'
        : width <= 16
          ? 'int16'
          : width <= 32
            ? 'int32'
            : width <= 64
              ? 'int64'
              : undefined;
    }
    case Type.Float: {
      const { precision } = type as unknown as { precision: number };
      return precision === 1 ? 'float32' : precision === 2 ? 'float64' : 'float32';
    }
    case Type.Utf8:
    case Type.LargeUtf8:
    case Type.Utf8View:
      return field.metadata.get(JSON_METADATA) === 'json' ? 'json' : 'string';
    case Type.Dictionary: {
      const dictionary = (type as unknown as { dictionary: DataType }).dictionary.typeId;
      return dictionary === Type.Utf8 || dictionary === Type.LargeUtf8 || dictionary === Type.Utf8View
        ? 'string'
        : undefined;
    }
    case Type.Timestamp:
      return 'timestamp';
    case Type.Date:
      return 'date';
    case Type.Null:
      return 'string';
    case Type.List:
    case Type.LargeList:
    case Type.FixedSizeList: {
      const child = (type as unknown as { children: Field[] }).children[0];
      return child !== undefined && child.type.typeId === Type.Float ? 'float64[]' : undefined;
    }
    default:
      return undefined;
  }
}

/** The Arrow type featurefn uses for a column type. @internal */
export function arrowTypeOf(type: ColumnType): DataType {
  switch (type) {
    case 'boolean':
      return new Bool();
    case 'int8':
      return new Int8();
    case 'int16':
      return new Int16();
    case 'int32':
      return new Int32();
    case 'int64':
      return new Int64();
    case 'float32':
      return new Float32();
    case 'float64':
      return new Float64();
    case 'string':
    case 'json':
      return new Utf8();
    case 'timestamp':
      return new TimestampMillisecond();
    case 'date':
      return new DateDay();
    case 'float64[]':
      return new List(new Field('item', new Float64(), true));
  }
}

/** An Arrow field for a column spec (JSON columns carry a metadata mark). @internal */
export function arrowFieldOf(column: ColumnSpec): Field {
  const metadata = column.type === 'json' ? new Map([[JSON_METADATA, 'json']]) : null;
  return new Field(column.name, arrowTypeOf(column.type), true, metadata);
}

/**
 * Column specs of an Arrow table; refuses column types no store can hold, naming the column.
 * @internal
 */
export function columnsOf(table: Table, feature?: string): ColumnSpec[] {
  return table.schema.fields.map((field) => {
    checkColumnName(field.name, feature);
    const type = columnTypeOf(field);
    if (type === undefined) {
      throw new FeatureStoreError(
        'UNSUPPORTED_COLUMN_TYPE',
        `column "${field.name}" has Arrow type ${String(field.type)}, which featurefn cannot store. ` +
          'Supported: booleans, integers, floats, strings, timestamps, dates, JSON values and float arrays.',
        { feature, details: { column: field.name, type: String(field.type) } },
      );
    }
    return { name: field.name, type };
  });
}

/** Longest column name in UTF-8 bytes: PostgreSQL cuts identifiers beyond 63 bytes without a word. */
const MAX_COLUMN_NAME_BYTES = 63;

/** Refuses a column name some store would change or reject (NUL, lone surrogate, too long). */
function checkColumnName(name: string, feature: string | undefined): void {
  let problem = invalidText(name);
  const bytes = Buffer.byteLength(name);
  if (problem === undefined && bytes > MAX_COLUMN_NAME_BYTES)
    problem = `takes ${bytes} bytes in UTF-8; at most ${MAX_COLUMN_NAME_BYTES} are kept by every store`;
  if (problem === undefined && name === '') problem = 'is empty';
  if (problem !== undefined) {
    throw new FeatureStoreError(
      'UNSUPPORTED_RESULT',
      `the column name ${JSON.stringify(clip(name))} ${problem}. Rename the column.`,
      { feature, details: { column: name } },
    );
  }
}

/**
 * Builds an Arrow table from JS column arrays whose values are already in row-object form
 * (numbers, strings, Dates, parsed JSON…). @internal
 */
export function tableFromColumns(
  columns: readonly ColumnSpec[],
  values: readonly (readonly unknown[])[],
): Table {
  const fields = columns.map(arrowFieldOf);
  const schema = new Schema(fields);
  const length = values[0]?.length ?? 0;
  const children = columns.map((column, i) => vectorOf(column, values[i] ?? []).data[0]!);
  const data = makeData({ type: new Struct(fields), length, children, nullCount: 0 });
  return new Table(schema, [new RecordBatch(schema, data)]);
}

function vectorOf({ name, type }: ColumnSpec, values: readonly unknown[]): Vector {
  const arrowType = arrowTypeOf(type);
  switch (type) {
    case 'json':
      return vectorFromArray(
        values.map((v) => (v === null || v === undefined ? null : JSON.stringify(v))),
        arrowType,
      );
    case 'int64':
      return vectorFromArray(
        values.map((v) => (v === null || v === undefined ? null : toInt64(name, v))),
        arrowType,
      );
    case 'timestamp':
    case 'date':
      return vectorFromArray(
        // Millisecond precision, rounding down (also before 1970), as DuckDB's casts do.
        values.map((v) => {
          if (v === null || v === undefined) return null;
          const date = v instanceof Date ? v : new Date(Math.floor(Number(v)));
          if (Number.isNaN(date.getTime())) {
            throw new FeatureStoreError(
              'INVALID_VALUE',
              `column "${clip(name)}" holds ${v instanceof Date ? 'an invalid Date' : describeValue(v)}, which is not a point in time. ` +
                'Use null for a missing time.',
              { details: { column: name, value: String(v) } },
            );
          }
          return date;
        }),
        arrowType,
      );
    default:
      return vectorFromArray(
        values.map((v) => (v === undefined ? null : v)),
        arrowType,
      );
  }
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** A value of an `int64` column as a bigint; refuses what a 64-bit signed integer cannot hold. */
function toInt64(column: string, value: unknown): bigint {
  const int =
    typeof value === 'bigint'
      ? value
      : typeof value === 'number' && Number.isInteger(value)
        ? BigInt(value)
        : undefined;
  if (int === undefined || int < INT64_MIN || int > INT64_MAX) {
    throw new FeatureStoreError(
      'UNSUPPORTED_RESULT',
      `column "${column}" holds ${describeValue(value)}, which is not a 64-bit signed integer. ` +
        'Cast the column to a floating-point or text type before returning it.',
      { details: { column, value: String(value) } },
    );
  }
  return int;
}

/**
 * Row objects from an Arrow table: timestamps and dates become `Date`, 64-bit integers become
 * numbers when they fit, JSON columns are parsed, float arrays become `number[]`. @internal
 */
export function tableToRows(table: Table): Row[] {
  const names = table.schema.fields.map((f) => f.name);
  const readers = table.schema.fields.map((field, i) =>
    cellReader(columnTypeOf(field), table.getChildAt(i)!),
  );
  const rows: Row[] = new Array(table.numRows);
  // Assigning `row['__proto__']` sets the prototype and drops the column; defining keeps it.
  const define = names.includes('__proto__');
  for (let r = 0; r < table.numRows; r++) {
    const row: Row = {};
    for (let c = 0; c < names.length; c++) {
      if (define) {
        Object.defineProperty(row, names[c]!, {
          value: readers[c]!(r),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      } else {
        row[names[c]!] = readers[c]!(r);
      }
    }
    rows[r] = row;
  }
  return rows;
}

function cellReader(type: ColumnType | undefined, vector: Vector): (row: number) => unknown {
  switch (type) {
    case 'timestamp':
    case 'date':
      return (r) => {
        // Arrow gives fractional milliseconds for finer units; floor keeps pre-1970 instants right.
        const v = vector.get(r) as number | bigint | null;
        return v === null ? null : new Date(Math.floor(Number(v)));
      };
    case 'int64':
      return (r) => {
        const v = vector.get(r) as bigint | null;
        return v === null
          ? null
          : v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER)
            ? Number(v)
            : v;
      };
    case 'json':
      return (r) => {
        const v = vector.get(r) as string | null;
        return v === null ? null : JSON.parse(v);
      };
    case 'float64[]':
      return (r) => {
        const v = vector.get(r) as Vector | null;
        if (v === null) return null;
        // toArray() gives the raw buffer, where a null item reads as 0.
        return v.nullCount > 0
          ? Array.from(v as Iterable<number | null>)
          : Array.from(v.toArray() as ArrayLike<number>);
      };
    default:
      return vector.type.typeId === Type.Utf8 ? utf8Reader(vector) : (r) => vector.get(r) ?? null;
  }
}

// Arrow's own decoder drops a leading U+FEFF from every value; this one keeps it.
const UTF8 = new TextDecoder('utf-8', { ignoreBOM: true });

/**
 * Reads a Utf8 vector's strings exactly (a leading U+FEFF kept, which `vector.get()` drops),
 * chunk by chunk; fastest for rows read in order. @internal
 */
export function utf8Reader(vector: Vector): (row: number) => string | null {
  const chunks = vector.data;
  let chunk = 0;
  let start = 0;
  return (r) => {
    if (r < start) {
      chunk = 0;
      start = 0;
    }
    while (r >= start + chunks[chunk]!.length) start += chunks[chunk++]!.length;
    const data = chunks[chunk]!;
    const i = r - start;
    if (!data.getValid(i)) return null;
    const offsets = data.valueOffsets as Int32Array;
    return UTF8.decode(data.values.subarray(offsets[i]!, offsets[i + 1]!));
  };
}

/**
 * Infers column types from row objects and builds an Arrow table. Numbers that are all integers
 * in 32-bit range become `int32`, other numbers `float64`; bigints, alone or with integer
 * numbers, `int64`; Dates `timestamp`;
 * numeric arrays `float64[]`; other objects and arrays `json`. A column mixing kinds is refused.
 * @internal
 */
export function rowsToTable(rows: readonly Row[], feature?: string): Table {
  const names: string[] = [];
  const seen = new Set<string>();
  for (const row of rows) {
    for (const name of Object.keys(row)) {
      if (!seen.has(name)) {
        seen.add(name);
        names.push(name);
      }
    }
  }
  const values = names.map((name) => rows.map((row) => row[name] ?? null));
  const columns = names.map((name, i) => ({ name, type: inferType(name, values[i]!, feature) }));
  return tableFromColumns(columns, values);
}

/** An integer an int32 column holds exactly: -2^31 … 2^31 - 1, and not -0 (an int32 has no sign of zero). */
function isInt32(n: number): boolean {
  return Number.isInteger(n) && n >= -(2 ** 31) && n <= 2 ** 31 - 1 && !Object.is(n, -0);
}

function inferType(name: string, values: readonly unknown[], feature: string | undefined): ColumnType {
  const kinds = new Set<string>();
  let allInt32 = true;
  let allIntegers = true;
  let allNumericArrays = true;
  for (const value of values) {
    if (value === null) continue;
    const kind = kindOf(value);
    kinds.add(kind);
    if (kind === 'string') checkText(name, value as string, feature);
    if (kind === 'number' && !isInt32(value as number)) allInt32 = false;
    if (kind === 'number' && !Number.isInteger(value)) allIntegers = false;
    if (kind === 'json' && !(Array.isArray(value) && value.every((x) => typeof x === 'number')))
      allNumericArrays = false;
  }
  // 64-bit integers read as numbers when they fit and bigints when not, so a column mixes both.
  if (kinds.size === 2 && kinds.has('number') && kinds.has('bigint') && allIntegers) return 'int64';
  if (kinds.size > 1) {
    throw new FeatureStoreError(
      'UNSUPPORTED_RESULT',
      `column "${name}" mixes ${[...kinds].join(' and ')} values; each column must hold one kind of value (nulls are fine).`,
      { feature, details: { column: name, kinds: [...kinds] } },
    );
  }
  const [kind] = kinds;
  switch (kind) {
    case undefined:
    case 'string':
      return 'string';
    case 'number':
      return allInt32 ? 'int32' : 'float64';
    case 'bigint':
      return 'int64';
    case 'boolean':
      return 'boolean';
    case 'Date':
      return 'timestamp';
    default:
      return allNumericArrays ? 'float64[]' : 'json';
  }
}

/** Refuses a string value some store would change or reject, naming its column. */
function checkText(column: string, value: string, feature: string | undefined): void {
  const problem = invalidText(value);
  if (problem !== undefined) {
    throw new FeatureStoreError(
      'INVALID_VALUE',
      `column ${JSON.stringify(clip(column))}: ${describeValue(value)} ${problem}. Clean the text before returning it. Nothing was stored.`,
      { feature, details: { column, value } },
    );
  }
}

function kindOf(value: unknown): string {
  if (value instanceof Date) return 'Date';
  if (typeof value === 'object') return 'json';
  if (typeof value === 'function' || typeof value === 'symbol' || typeof value === 'undefined') {
    throw new FeatureStoreError(
      'UNSUPPORTED_RESULT',
      `a row holds ${describeValue(value)}, which is not data.`,
    );
  }
  return typeof value;
}
