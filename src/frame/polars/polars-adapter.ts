import {
  type Data,
  type DataType,
  Field,
  List,
  makeData,
  makeVector,
  RecordBatch,
  Schema,
  Struct,
  Table,
  Type,
  tableFromIPC,
  tableToIPC,
  Utf8,
  vectorFromArray,
} from 'apache-arrow';
import type { DataFrame, LazyDataFrame } from 'nodejs-polars';
import { FeatureStoreError } from '../../errors.js';
import { JSON_METADATA } from '../columns.js';
import type { FrameAdapter } from '../frame-adapter.js';

/** A nodejs-polars `DataFrame`. Type only: featurefn loads nodejs-polars when it first needs it. */
export type PolarsDataFrame = DataFrame;
/** A nodejs-polars `LazyDataFrame`. Type only: featurefn loads nodejs-polars when it first needs it. */
export type PolarsLazyFrame = LazyDataFrame;

type Polars = typeof import('nodejs-polars');

let loading: Promise<Polars> | undefined;

/**
 * nodejs-polars, loaded on first use so that the core works without it, or a clear error saying
 * how to install it. @internal
 */
export function loadPolars(): Promise<Polars> {
  loading ??= import('nodejs-polars').then(
    (module) => module.default ?? module,
    (cause: unknown) => {
      loading = undefined;
      throw new FeatureStoreError(
        'UNSUPPORTED_RESULT',
        `polars frames need the optional dependency nodejs-polars, which could not be loaded (${cause instanceof Error ? cause.message : String(cause)}). ` +
          'Install it with `npm install nodejs-polars`; on Node 20 also install its native package for your platform ' +
          '(for example nodejs-polars-linux-x64-gnu), which npm skips because it declares Node ≥ 22.',
        { cause, details: { package: 'nodejs-polars' } },
      );
    },
  );
  return loading;
}

/**
 * Columns holding JSON text in frames featurefn built from stored results. Polars has no JSON type
 * and drops Arrow field metadata, so the mark lives here, keyed by the frame object; a frame derived
 * from it (`withColumns`, `filter`…) is a new object whose text columns are plain strings again.
 */
const jsonColumns = new WeakMap<object, readonly string[]>();

function isTagged(value: unknown, tag: string, method: string): boolean {
  // By shape: nodejs-polars frames are proxies whose `Symbol.toStringTag` names their class.
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    (value as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag] === tag &&
    typeof (value as Record<string, unknown>)[method] === 'function'
  );
}

/** True when `value` looks like a nodejs-polars `DataFrame`. @internal */
export function isPolarsDataFrame(value: unknown): value is DataFrame {
  return isTagged(value, 'DataFrame', 'writeIPC') && typeof (value as { lazy?: unknown }).lazy === 'function';
}

/** True when `value` looks like a nodejs-polars `LazyDataFrame`. @internal */
export function isPolarsLazyFrame(value: unknown): value is LazyDataFrame {
  return (
    isTagged(value, 'LazyDataFrame', 'collect') &&
    typeof (value as { describePlan?: unknown }).describePlan === 'function'
  );
}

/**
 * An Arrow table as a polars `DataFrame`, through Arrow IPC. JSON columns become String columns of
 * JSON text, remembered as JSON so that storing the frame again keeps their type. @internal
 */
export async function arrowToPolars(table: Table): Promise<DataFrame> {
  const pl = await loadPolars();
  const ipc = tableToIPC(table, 'file');
  const df = pl.readIPC(Buffer.from(ipc.buffer, ipc.byteOffset, ipc.byteLength));
  const json = table.schema.fields.filter((f) => f.metadata.get(JSON_METADATA) === 'json').map((f) => f.name);
  if (json.length > 0) jsonColumns.set(df, json);
  return df;
}

/** Collects a polars `LazyDataFrame`, keeping featurefn's JSON marks. @internal */
export async function collectPolars(lazy: LazyDataFrame): Promise<DataFrame> {
  const df = await lazy.collect();
  const json = jsonColumns.get(lazy);
  if (json !== undefined) jsonColumns.set(df, json);
  return df;
}

/**
 * A polars `DataFrame` as an Arrow table in featurefn's column types: strings as Utf8, numeric
 * lists as `List<Float64>`, categoricals as strings, decimals as doubles, structs and other
 * nested lists as JSON text. @internal
 */
export async function polarsToArrow(
  df: DataFrame,
  json: readonly string[] = jsonColumns.get(df) ?? [],
): Promise<Table> {
  const prepared = await castForArrow(df);
  const table = tableFromIPC(prepared.writeIPC());
  return normalize(table, new Set(json));
}

/** Casts, in polars, the column types Arrow JS or featurefn cannot take as polars writes them. */
async function castForArrow(df: DataFrame): Promise<DataFrame> {
  const schema = df.schema as Record<string, { variant: string; inner?: unknown }>;
  const casts: [string, 'string' | 'float64' | 'float64[]'][] = [];
  for (const [name, dtype] of Object.entries(schema)) {
    if (dtype.variant === 'Categorical' || dtype.variant === 'Enum') casts.push([name, 'string']);
    else if (dtype.variant === 'Decimal') casts.push([name, 'float64']);
    else if (dtype.variant === 'List' || dtype.variant === 'FixedSizeList') {
      const inner = (dtype.inner as { variant?: string }[] | undefined)?.[0]?.variant;
      if (inner !== undefined && NUMERIC.has(inner) && !(dtype.variant === 'List' && inner === 'Float64'))
        casts.push([name, 'float64[]']);
    }
  }
  if (casts.length === 0) return df;
  const pl = await loadPolars();
  const target = { string: pl.String, float64: pl.Float64, 'float64[]': pl.List(pl.Float64) };
  return df.withColumns(...casts.map(([name, type]) => pl.col(name).cast(target[type])));
}

const NUMERIC = new Set([
  'Int8',
  'Int16',
  'Int32',
  'Int64',
  'UInt8',
  'UInt16',
  'UInt32',
  'UInt64',
  'Float32',
  'Float64',
  'Decimal',
]);

/** Rewrites the Arrow types polars writes (views, 64-bit offsets, nesting) into featurefn's. */
function normalize(table: Table, json: ReadonlySet<string>): Table {
  const fields = table.schema.fields.map((field) => {
    const type = targetType(field.type);
    const isJson = json.has(field.name) && type.typeId === Type.Utf8;
    const metadata = isJson || isNested(field.type) ? new Map([[JSON_METADATA, 'json']]) : field.metadata;
    return new Field(field.name, type, true, metadata);
  });
  const schema = new Schema(fields, table.schema.metadata);
  const batches = table.batches.map((batch) => {
    const children = table.schema.fields.map((field, i) =>
      convert(batch.getChildAt(i)!.data[0]!, fields[i]!.type, field.type),
    );
    return new RecordBatch(
      schema,
      makeData({ type: new Struct(fields), length: batch.numRows, nullCount: 0, children }),
    );
  });
  return new Table(schema, batches);
}

function isNested(type: DataType): boolean {
  return (
    type.typeId === Type.Struct ||
    type.typeId === Type.Map ||
    ((type.typeId === Type.List || type.typeId === Type.LargeList || type.typeId === Type.FixedSizeList) &&
      !isFloatList(type))
  );
}

function isFloatList(type: DataType): boolean {
  const child = (type as unknown as { children?: Field[] }).children?.[0];
  return child !== undefined && child.type.typeId === Type.Float;
}

function targetType(type: DataType): DataType {
  if (type.typeId === Type.Utf8View || type.typeId === Type.Null || isNested(type)) return new Utf8();
  if (type.typeId === Type.LargeList || type.typeId === Type.FixedSizeList) {
    return new List((type as unknown as { children: Field[] }).children[0]!);
  }
  return type;
}

function convert(data: Data, target: DataType, source: DataType): Data {
  if (target === source) return data;
  if (data.offset !== 0) return viaValues(data, target);
  if (source.typeId === Type.Utf8View) return utf8ViewToUtf8(data);
  if (source.typeId === Type.Null)
    return vectorFromArray(new Array<null>(data.length).fill(null), new Utf8()).data[0]!;
  if (isNested(source)) {
    const vector = makeVector(data);
    const text = Array.from({ length: data.length }, (_, i) => {
      const value = vector.get(i) as unknown;
      return value === null || value === undefined ? null : JSON.stringify(value, jsonReplacer);
    });
    return vectorFromArray(text, new Utf8()).data[0]!;
  }
  // LargeList or FixedSizeList of floats: the same child values with 32-bit offsets.
  const offsets = new Int32Array(data.length + 1);
  if (source.typeId === Type.LargeList) {
    const large = data.valueOffsets as unknown as BigInt64Array;
    for (let i = 0; i <= data.length; i++) offsets[i] = Number(large[i]!);
  } else {
    const size = (source as unknown as { listSize: number }).listSize;
    for (let i = 0; i <= data.length; i++) offsets[i] = i * size;
  }
  return makeData({
    type: target as List,
    length: data.length,
    nullCount: data.nullCount,
    nullBitmap: data.nullBitmap,
    valueOffsets: offsets,
    child: data.children[0]!,
  });
}

/** The slow path, for sliced data polars does not write: value by value. */
function viaValues(data: Data, target: DataType): Data {
  const vector = makeVector(data);
  const nested = isNested(data.type);
  const values = Array.from({ length: data.length }, (_, i) => {
    const value = vector.get(i) as unknown;
    if (value === null || value === undefined) return null;
    if (nested) return JSON.stringify(value, jsonReplacer);
    return target.typeId === Type.List ? Array.from(value as Iterable<number>, Number) : value;
  });
  return vectorFromArray(values, target).data[0]!;
}

/** Nested values to JSON: 64-bit integers as numbers when they fit, else as text. */
function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') {
    return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER)
      ? Number(value)
      : String(value);
  }
  return value;
}

/**
 * Copies a Utf8View column (16-byte views: length, then inline bytes or prefix, buffer, offset)
 * into a plain Utf8 column, byte for byte, without decoding the strings.
 */
function utf8ViewToUtf8(data: Data): Data {
  const views = data.values as Uint8Array;
  const buffers = (data as unknown as { variadicBuffers: readonly Uint8Array[] }).variadicBuffers;
  const view = new DataView(views.buffer, views.byteOffset, views.byteLength);
  const length = data.length;
  const nullable = data.nullCount > 0;
  const offsets = new Int32Array(length + 1);
  let total = 0;
  for (let i = 0; i < length; i++) {
    if (!nullable || data.getValid(i)) total += Math.max(0, view.getInt32(i * 16, true));
    if (total > 2 ** 31 - 1) {
      throw new FeatureStoreError(
        'UNSUPPORTED_RESULT',
        'a polars string column holds more than 2 GiB in one chunk, more than an Arrow Utf8 column can. ' +
          'Return the frame in smaller pieces, or rechunk it with smaller chunks.',
      );
    }
    offsets[i + 1] = total;
  }
  const bytes = new Uint8Array(total);
  for (let i = 0; i < length; i++) {
    const at = offsets[i]!;
    const size = offsets[i + 1]! - at;
    if (size === 0) continue;
    const v = i * 16;
    // Short strings sit inline in the view; longer ones in a data buffer at (index, offset).
    const source = size <= 12 ? views : buffers[view.getInt32(v + 8, true)]!;
    const start = size <= 12 ? v + 4 : view.getInt32(v + 12, true);
    if (size <= 32) for (let b = 0; b < size; b++) bytes[at + b] = source[start + b]!;
    else bytes.set(source.subarray(start, start + size), at);
  }
  return makeData({
    type: new Utf8(),
    length,
    nullCount: data.nullCount,
    nullBitmap: data.nullBitmap,
    valueOffsets: offsets,
    data: bytes,
  });
}

/**
 * nodejs-polars `DataFrame`s. Conversion goes through Arrow IPC in memory. Polars has no JSON type:
 * stored JSON columns come back as String columns of JSON text (decode them with
 * `pl.col(name).str.jsonDecode()`), and featurefn remembers they are JSON for as long as the frame
 * it returned is stored unchanged. Struct and non-numeric list columns a feature returns are stored
 * as JSON; numeric lists as `float64[]`; unsigned integers widen to the next signed type.
 */
export const polarsAdapter: FrameAdapter<DataFrame> = {
  kind: 'polars',
  canAdapt: isPolarsDataFrame,
  toArrow: (df) => polarsToArrow(df),
  fromArrow: arrowToPolars,
};

/**
 * nodejs-polars `LazyDataFrame`s: collected, then converted as {@link polarsAdapter} does. Reading
 * back gives the stored `DataFrame` as `df.lazy()`.
 */
export const polarsLazyAdapter: FrameAdapter<LazyDataFrame> = {
  kind: 'polars-lazy',
  canAdapt: isPolarsLazyFrame,
  async toArrow(lazy) {
    return polarsToArrow(await collectPolars(lazy));
  },
  async fromArrow(table) {
    const df = await arrowToPolars(table);
    const lazy = df.lazy();
    const json = jsonColumns.get(df);
    if (json !== undefined) jsonColumns.set(lazy, json);
    return lazy;
  },
};
