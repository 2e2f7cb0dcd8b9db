import { createRequire } from 'node:module';
import {
  Bool,
  type Data,
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
  TimestampMillisecond,
  Utf8,
} from 'apache-arrow';
import { arrowFieldOf, type ColumnSpec, tableFromColumns } from '../../frame/columns.js';
import { duckdbMapping, T } from './duckdb-columns.js';

/**
 * Reads DuckDB data chunks straight from their vectors' memory into Arrow buffers: fixed-width
 * columns are copied as bytes, strings are copied from DuckDB's string records without becoming
 * JS strings, lists are read item by item from their child vector. No JS value is made per cell,
 * which is what makes `chunk.getColumns()` slow (about 0.35 M rows/s for the flights; this path
 * is many times faster). Types without a fast reader here go through the driver's values.
 *
 * It uses the C API functions of `@duckdb/node-bindings` (the package `@duckdb/node-api` is built
 * on, declared as an optional peer dependency), resolved through `@duckdb/node-api` so that the
 * very copy the driver runs on is used. `@duckdb/node-api` has no public API for these reads.
 */

/**
 * Chunks read by each path, so tests can prove the fast path is taken (a silent fall back to
 * the values path is about 20 times slower). @internal
 */
export const chunkReads = { vectors: 0, values: 0 };

/** The C API functions used here (`duckdb_vector_get_data`…), declared by shape. */
interface Bindings {
  data_chunk_get_vector(chunk: unknown, column: number): unknown;
  vector_get_data(vector: unknown, byteCount: number): Uint8Array;
  vector_get_validity(vector: unknown, byteCount: number): Uint8Array | null | undefined;
  get_data_from_pointer(buffer: ArrayBufferLike, pointerOffset: number, byteCount: number): Uint8Array;
  list_vector_get_child(vector: unknown): unknown;
  list_vector_get_size(vector: unknown): number;
}

let bindings: Bindings | null | undefined;

function loadBindings(): Bindings | null {
  if (bindings === undefined) {
    try {
      const api = createRequire(import.meta.url).resolve('@duckdb/node-api');
      const loaded = createRequire(api)('@duckdb/node-bindings') as Partial<Bindings>;
      const needed: (keyof Bindings)[] = [
        'data_chunk_get_vector',
        'vector_get_data',
        'vector_get_validity',
        'get_data_from_pointer',
        'list_vector_get_child',
        'list_vector_get_size',
      ];
      bindings = needed.every((name) => typeof loaded[name] === 'function') ? (loaded as Bindings) : null;
    } catch {
      bindings = null;
    }
  }
  return bindings;
}

/** A DuckDB column type as `result.columnTypes()` describes it. */
interface DuckDBTypeLike {
  readonly typeId: number;
  readonly alias?: string | undefined;
  readonly valueType?: unknown;
  readonly width?: number;
  readonly scale?: number;
}

/** A chunk as `@duckdb/node-api` hands it out: `DuckDBDataChunk`, with its C API handle. */
export interface RawChunk {
  readonly rowCount: number;
  readonly chunk: unknown;
  getColumnValues(column: number): unknown[];
}

/** True when `chunk` exposes the C API handle this reader needs. @internal */
export function isRawChunk(chunk: unknown): chunk is RawChunk {
  return (
    typeof chunk === 'object' &&
    chunk !== null &&
    'chunk' in chunk &&
    typeof (chunk as RawChunk).getColumnValues === 'function'
  );
}

/**
 * Rows of VARCHAR column `column` of `chunk` whose text starts with U+FEFF (bytes EF BB BF), read
 * from the 4-byte prefix every DuckDB string record carries (no string is decoded). The driver
 * decodes strings with a `TextDecoder` that drops a leading U+FEFF: these are the rows to give it
 * back to. `undefined` when the C API functions are not available. @internal
 */
export function leadingBomRows(chunk: RawChunk, column: number): number[] | undefined {
  const duck = loadBindings();
  if (duck === null) return undefined;
  const records = duck.vector_get_data(duck.data_chunk_get_vector(chunk.chunk, column), chunk.rowCount * 16);
  const rows: number[] = [];
  for (let r = 0, at = 0; r < chunk.rowCount; r++, at += 16) {
    if (records[at + 4] === 0xef && records[at + 5] === 0xbb && records[at + 6] === 0xbf) {
      const length =
        records[at]! | (records[at + 1]! << 8) | (records[at + 2]! << 16) | (records[at + 3]! << 24);
      if (length >= 3) rows.push(r);
    }
  }
  return rows;
}

const TWO_32 = 4_294_967_296;
/** Above this magnitude of the high word, a 64-bit value is no longer exact in a double. */
const EXACT_HIGH = 2 ** 20;

/** Grows `array` (a typed array) to hold at least `n` elements, keeping its contents. */
function grow<A extends Uint8Array | Int32Array | Float64Array>(array: A, n: number): A {
  if (n <= array.length) return array;
  const bigger = new (array.constructor as new (n: number) => A)(Math.max(n, array.length * 2));
  bigger.set(array);
  return bigger;
}

/** Validity bits of a column being built; no bitmap until the first null. */
class Validity {
  bits: Uint8Array | undefined;
  nulls = 0;

  /** Records rows `offset … offset + n` from DuckDB's mask (`undefined`: all valid). */
  append(mask: Uint8Array | null | undefined, offset: number, n: number): void {
    if (mask !== null && mask !== undefined) {
      let nulls = 0;
      for (let r = 0; r < n; r++) if (((mask[r >> 3]! >> (r & 7)) & 1) === 0) nulls++;
      if (nulls > 0) {
        this.#ensure(offset + n, offset);
        const bits = this.bits!;
        for (let r = 0; r < n; r++) {
          const row = offset + r;
          if ((mask[r >> 3]! >> (r & 7)) & 1) bits[row >> 3]! |= 1 << (row & 7);
          else bits[row >> 3]! &= ~(1 << (row & 7));
        }
        this.nulls += nulls;
        return;
      }
    }
    if (this.bits !== undefined) {
      this.#ensure(offset + n, offset);
      setRange(this.bits, offset, offset + n);
    }
  }

  /** Whether row `r` of DuckDB's mask is valid. */
  static valid(mask: Uint8Array | null | undefined, r: number): boolean {
    return mask === null || mask === undefined || ((mask[r >> 3]! >> (r & 7)) & 1) === 1;
  }

  /** Makes room for `rows` rows; a new bitmap starts with `valid` rows all valid. */
  #ensure(rows: number, valid: number): void {
    const bytes = (rows + 7) >> 3;
    if (this.bits === undefined) {
      this.bits = new Uint8Array(Math.max(bytes, 256));
      setRange(this.bits, 0, valid);
    } else this.bits = grow(this.bits, bytes);
  }

  fields(length: number): { nullCount: number; nullBitmap?: Uint8Array } {
    if (this.bits === undefined || this.nulls === 0) return { nullCount: 0 };
    return { nullCount: this.nulls, nullBitmap: this.bits.subarray(0, (length + 7) >> 3) };
  }
}

function setRange(bits: Uint8Array, from: number, to: number): void {
  let r = from;
  for (; r < to && (r & 7) !== 0; r++) bits[r >> 3]! |= 1 << (r & 7);
  for (; r + 8 <= to; r += 8) bits[r >> 3] = 0xff;
  for (; r < to; r++) bits[r >> 3]! |= 1 << (r & 7);
}

/** Builds one Arrow column from the vectors of successive chunks. */
interface ColumnBuilder {
  append(chunk: RawChunk, column: number, offset: number, n: number): void;
  finish(length: number): Data;
}

/** Fixed-width values whose bytes DuckDB and Arrow lay out alike: copied as they are. */
class CopyBuilder implements ColumnBuilder {
  #bytes = new Uint8Array(0);
  readonly #validity = new Validity();
  constructor(
    readonly duck: Bindings,
    readonly type: DataType,
    readonly width: number,
    readonly view: (buffer: ArrayBuffer, length: number) => ArrayBufferView,
  ) {}
  append(chunk: RawChunk, column: number, offset: number, n: number): void {
    const vector = this.duck.data_chunk_get_vector(chunk.chunk, column);
    const data = this.duck.vector_get_data(vector, n * this.width);
    this.#bytes = grow(this.#bytes, (offset + n) * this.width);
    this.#bytes.set(data.subarray(0, n * this.width), offset * this.width);
    this.#validity.append(this.duck.vector_get_validity(vector, ((n + 63) >> 6) * 8), offset, n);
  }
  finish(length: number): Data {
    const data = this.view(this.#bytes.buffer as ArrayBuffer, length);
    return makeData({ type: this.type, length, ...this.#validity.fields(length), data } as never);
  }
}

/** Values converted one by one from DuckDB's layout (`read(view, row)`) into Arrow's. */
class ConvertBuilder implements ColumnBuilder {
  #out: Float64Array | Int32Array | Uint8Array;
  readonly #validity = new Validity();
  constructor(
    readonly duck: Bindings,
    readonly type: DataType,
    readonly width: number,
    /** Writes row `r` of `data` into `out` at `at`. */
    readonly convert: (data: DataView, r: number, out: never, at: number) => void,
    make: (n: number) => Float64Array | Int32Array | Uint8Array,
    readonly finishData: (out: never, length: number) => ArrayBufferView,
  ) {
    this.#out = make(0);
  }
  append(chunk: RawChunk, column: number, offset: number, n: number): void {
    const vector = this.duck.data_chunk_get_vector(chunk.chunk, column);
    const bytes = this.duck.vector_get_data(vector, n * this.width);
    const data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const mask = this.duck.vector_get_validity(vector, ((n + 63) >> 6) * 8);
    this.#out = grow(this.#out, this.#slots(offset + n));
    const out = this.#out as never;
    for (let r = 0; r < n; r++) if (Validity.valid(mask, r)) this.convert(data, r, out, offset + r);
    this.#validity.append(mask, offset, n);
  }
  /** Output slots for `rows` rows: 64-bit outputs use two Int32 words, booleans one bit. */
  #slots(rows: number): number {
    if (this.#out instanceof Uint8Array) return (rows + 7) >> 3;
    if (this.#out instanceof Int32Array && this.type instanceof Int64) return rows * 2;
    if (this.#out instanceof Int32Array && this.type instanceof TimestampMillisecond) return rows * 2;
    return rows;
  }
  finish(length: number): Data {
    const data = this.finishData(this.#out as never, length);
    return makeData({ type: this.type, length, ...this.#validity.fields(length), data } as never);
  }
}

/** Strings (and JSON text): each record's bytes copied into Arrow's value buffer. */
class StringBuilder implements ColumnBuilder {
  #offsets = new Int32Array(1);
  #bytes = new Uint8Array(1024);
  #size = 0;
  readonly #validity = new Validity();
  constructor(readonly duck: Bindings) {}
  append(chunk: RawChunk, column: number, offset: number, n: number): void {
    const vector = this.duck.data_chunk_get_vector(chunk.chunk, column);
    const records = this.duck.vector_get_data(vector, n * 16);
    const view = new DataView(records.buffer, records.byteOffset, records.byteLength);
    const mask = this.duck.vector_get_validity(vector, ((n + 63) >> 6) * 8);
    this.#offsets = grow(this.#offsets, offset + n + 1);
    const offsets = this.#offsets;
    let p = this.#size;
    for (let r = 0; r < n; r++) {
      if (Validity.valid(mask, r)) {
        const at = r * 16;
        const length = view.getUint32(at, true);
        if (p + length > this.#bytes.length) this.#bytes = grow(this.#bytes, p + length);
        const bytes = this.#bytes;
        if (length <= 12) {
          // Short strings are inlined in the record.
          for (let k = 0; k < length; k++) bytes[p + k] = records[at + 4 + k]!;
        } else {
          bytes.set(this.duck.get_data_from_pointer(records.buffer, records.byteOffset + at + 8, length), p);
        }
        p += length;
      }
      offsets[offset + r + 1] = p;
    }
    this.#size = p;
    this.#validity.append(mask, offset, n);
  }
  finish(length: number): Data {
    return makeData({
      type: new Utf8(),
      length,
      ...this.#validity.fields(length),
      valueOffsets: this.#offsets.subarray(0, length + 1),
      data: this.#bytes.subarray(0, this.#size),
    });
  }
}

/** Lists of numbers as `float64[]`: entries (offset, length) over a child vector of items. */
class FloatListBuilder implements ColumnBuilder {
  #offsets = new Int32Array(1);
  #items = new Float64Array(256);
  #itemValidity = new Validity();
  #size = 0;
  readonly #validity = new Validity();
  constructor(
    readonly duck: Bindings,
    readonly itemWidth: number,
    readonly item: (data: DataView, k: number) => number,
  ) {}
  append(chunk: RawChunk, column: number, offset: number, n: number): void {
    const vector = this.duck.data_chunk_get_vector(chunk.chunk, column);
    const entries = this.duck.vector_get_data(vector, n * 16);
    const view = new DataView(entries.buffer, entries.byteOffset, entries.byteLength);
    const mask = this.duck.vector_get_validity(vector, ((n + 63) >> 6) * 8);
    const child = this.duck.list_vector_get_child(vector);
    const childSize = this.duck.list_vector_get_size(vector);
    const itemBytes = this.duck.vector_get_data(child, childSize * this.itemWidth);
    const items = new DataView(itemBytes.buffer, itemBytes.byteOffset, itemBytes.byteLength);
    const itemMask = this.duck.vector_get_validity(child, ((childSize + 63) >> 6) * 8);
    this.#offsets = grow(this.#offsets, offset + n + 1);
    const offsets = this.#offsets;
    let p = this.#size;
    for (let r = 0; r < n; r++) {
      if (Validity.valid(mask, r)) {
        const start = view.getUint32(r * 16, true) + view.getUint32(r * 16 + 4, true) * TWO_32;
        const length = view.getUint32(r * 16 + 8, true) + view.getUint32(r * 16 + 12, true) * TWO_32;
        this.#items = grow(this.#items, p + length);
        const out = this.#items;
        for (let k = 0; k < length; k++) {
          if (Validity.valid(itemMask, start + k)) out[p + k] = this.item(items, start + k);
        }
        // Item validity, row by row in the child's numbering: copy bit by bit.
        this.#appendItemValidity(itemMask, start, p, length);
        p += length;
      }
      offsets[offset + r + 1] = p;
    }
    this.#size = p;
    this.#validity.append(mask, offset, n);
  }
  #appendItemValidity(mask: Uint8Array | null | undefined, start: number, at: number, length: number): void {
    if (mask === null || mask === undefined) {
      this.#itemValidity.append(undefined, at, length);
      return;
    }
    const bits = new Uint8Array((length + 7) >> 3);
    for (let k = 0; k < length; k++) if (Validity.valid(mask, start + k)) bits[k >> 3]! |= 1 << (k & 7);
    this.#itemValidity.append(bits, at, length);
  }
  finish(length: number): Data {
    const child = makeData({
      type: new Float64(),
      length: this.#size,
      ...this.#itemValidity.fields(this.#size),
      data: this.#items.subarray(0, this.#size),
    });
    return makeData({
      type: new List(new Field('item', new Float64(), true)),
      length,
      ...this.#validity.fields(length),
      valueOffsets: this.#offsets.subarray(0, length + 1),
      child,
    });
  }
}

/** Any other type: the driver's values, converted as `readDuckDBColumns` does. */
class ValueBuilder implements ColumnBuilder {
  #values: unknown[] = [];
  constructor(
    readonly column: ColumnSpec,
    readonly convert: ((value: unknown) => unknown) | undefined,
  ) {}
  append(chunk: RawChunk, column: number, _offset: number, n: number): void {
    const values = chunk.getColumnValues(column);
    for (let r = 0; r < n; r++) {
      const v = values[r];
      this.#values.push(this.convert === undefined ? v : this.convert(v));
    }
  }
  finish(): Data {
    const values = this.#values;
    this.#values = [];
    return tableFromColumns([this.column], [values]).batches[0]!.data.children[0]!;
  }
}

/** Signed 64-bit little-endian integer at `at` as a double (correctly rounded beyond 2^53). */
function int64At(data: DataView, at: number): number {
  return data.getInt32(at + 4, true) * TWO_32 + data.getUint32(at, true);
}

/** Writes `value` (an integer) as two little-endian 32-bit words. */
function setWords(out: Int32Array, i: number, value: number): void {
  const high = Math.floor(value / TWO_32);
  out[2 * i] = value - high * TWO_32;
  out[2 * i + 1] = high;
}

/** A 64-bit count of `unit`s since 1970 as milliseconds, rounded down, into `out` at `i`. */
function timestampWriter(
  perMillisecond: bigint,
): (data: DataView, r: number, out: Int32Array, i: number) => void {
  const per = Number(perMillisecond);
  return (data, r, out, i) => {
    const high = data.getInt32(r * 8 + 4, true);
    if (high > -EXACT_HIGH && high < EXACT_HIGH) {
      setWords(out, i, Math.floor((high * TWO_32 + data.getUint32(r * 8, true)) / per));
    } else {
      // Rare: far from 1970 (or nanoseconds past 2^52), where doubles are not exact.
      const v = data.getBigInt64(r * 8, true);
      const ms = v / perMillisecond - (v % perMillisecond < 0n ? 1n : 0n);
      new BigInt64Array(out.buffer, out.byteOffset)[i] = ms;
    }
  };
}

const int32View = (buffer: ArrayBuffer, length: number) => new Int32Array(buffer, 0, length);

/** The builder for a column of DuckDB type `type` stored as `column`. */
function builderFor(duck: Bindings, type: DuckDBTypeLike, column: ColumnSpec): ColumnBuilder {
  const copy = (arrow: DataType, width: number, view: (b: ArrayBuffer, n: number) => ArrayBufferView) =>
    new CopyBuilder(duck, arrow, width, view);
  const bigints = (out: Int32Array, length: number) => new BigInt64Array(out.buffer, 0, length);
  switch (type.typeId) {
    case T.BOOLEAN:
      return new ConvertBuilder(
        duck,
        new Bool(),
        1,
        ((data: DataView, r: number, out: Uint8Array, i: number) => {
          if (data.getUint8(r) !== 0) out[i >> 3]! |= 1 << (i & 7);
        }) as never,
        (n) => new Uint8Array(n),
        ((out: Uint8Array, length: number) => out.subarray(0, (length + 7) >> 3)) as never,
      );
    case T.TINYINT:
      return copy(new Int8(), 1, (b, n) => new Int8Array(b, 0, n));
    case T.SMALLINT:
      return copy(new Int16(), 2, (b, n) => new Int16Array(b, 0, n));
    case T.INTEGER:
      return copy(new Int32(), 4, int32View);
    case T.BIGINT:
      return copy(new Int64(), 8, (b, n) => new BigInt64Array(b, 0, n));
    case T.FLOAT:
      return copy(new Float32(), 4, (b, n) => new Float32Array(b, 0, n));
    case T.DOUBLE:
      return copy(new Float64(), 8, (b, n) => new Float64Array(b, 0, n));
    case T.DATE:
      return copy(new DateDay(), 4, int32View);
    case T.TIMESTAMP_MS:
      return copy(new TimestampMillisecond(), 8, (b, n) => new BigInt64Array(b, 0, n));
    case T.UTINYINT:
    case T.USMALLINT:
    case T.UINTEGER: {
      const width = type.typeId === T.UTINYINT ? 1 : type.typeId === T.USMALLINT ? 2 : 4;
      const read =
        width === 1
          ? (d: DataView, r: number) => d.getUint8(r)
          : width === 2
            ? (d: DataView, r: number) => d.getUint16(r * 2, true)
            : (d: DataView, r: number) => d.getUint32(r * 4, true);
      if (column.type === 'int64') {
        return new ConvertBuilder(
          duck,
          new Int64(),
          width,
          ((d: DataView, r: number, out: Int32Array, i: number) => {
            out[2 * i] = read(d, r);
          }) as never,
          (n) => new Int32Array(n),
          bigints as never,
        );
      }
      const arrow = column.type === 'int16' ? new Int16() : new Int32();
      return new ConvertBuilder(
        duck,
        arrow,
        width,
        ((d: DataView, r: number, out: Int32Array, i: number) => {
          out[i] = read(d, r);
        }) as never,
        (n) => new Int32Array(n),
        ((out: Int32Array, length: number) =>
          column.type === 'int16'
            ? Int16Array.from(out.subarray(0, length))
            : out.subarray(0, length)) as never,
      );
    }
    case T.TIMESTAMP:
    case T.TIMESTAMP_TZ:
    case T.TIMESTAMP_S:
    case T.TIMESTAMP_NS: {
      const write =
        type.typeId === T.TIMESTAMP_S
          ? (d: DataView, r: number, out: Int32Array, i: number) => setWords(out, i, int64At(d, r * 8) * 1000)
          : timestampWriter(type.typeId === T.TIMESTAMP_NS ? 1_000_000n : 1000n);
      return new ConvertBuilder(
        duck,
        new TimestampMillisecond(),
        8,
        write as never,
        (n) => new Int32Array(n),
        bigints as never,
      );
    }
    case T.DECIMAL: {
      const width = type.width ?? 38;
      const scale = 10 ** (type.scale ?? 0);
      if (width > 18) break;
      const bytes = width <= 4 ? 2 : width <= 9 ? 4 : 8;
      const read =
        bytes === 2
          ? (d: DataView, r: number) => d.getInt16(r * 2, true)
          : bytes === 4
            ? (d: DataView, r: number) => d.getInt32(r * 4, true)
            : (d: DataView, r: number) => int64At(d, r * 8);
      return new ConvertBuilder(
        duck,
        new Float64(),
        bytes,
        ((d: DataView, r: number, out: Float64Array, i: number) => {
          out[i] = read(d, r) / scale;
        }) as never,
        (n) => new Float64Array(n),
        ((out: Float64Array, length: number) => out.subarray(0, length)) as never,
      );
    }
    case T.VARCHAR:
      return new StringBuilder(duck);
    case T.LIST: {
      const item = (type.valueType as DuckDBTypeLike | undefined)?.typeId;
      if (item === T.DOUBLE) return new FloatListBuilder(duck, 8, (d, k) => d.getFloat64(k * 8, true));
      if (item === T.FLOAT) return new FloatListBuilder(duck, 4, (d, k) => d.getFloat32(k * 4, true));
      if (item === T.INTEGER) return new FloatListBuilder(duck, 4, (d, k) => d.getInt32(k * 4, true));
      if (item === T.BIGINT) return new FloatListBuilder(duck, 8, (d, k) => int64At(d, k * 8));
      break;
    }
  }
  return new ValueBuilder(column, duckdbMapping(type)?.convert);
}

/**
 * Accumulates chunks into Arrow record batches. `undefined` when the C API is not reachable
 * (the caller then reads values through the driver). @internal
 */
export class ChunkBatchBuilder {
  readonly #duck: Bindings;
  readonly #columns: readonly ColumnSpec[];
  readonly #types: readonly DuckDBTypeLike[];
  readonly #schema: Schema;
  #builders: ColumnBuilder[];
  rows = 0;

  private constructor(duck: Bindings, columns: readonly ColumnSpec[], types: readonly DuckDBTypeLike[]) {
    this.#duck = duck;
    this.#columns = columns;
    this.#types = types;
    this.#schema = new Schema(columns.map(arrowFieldOf));
    this.#builders = this.#newBuilders();
  }

  static create(
    columns: readonly ColumnSpec[],
    types: readonly DuckDBTypeLike[],
  ): ChunkBatchBuilder | undefined {
    const duck = loadBindings();
    return duck === null ? undefined : new ChunkBatchBuilder(duck, columns, types);
  }

  append(chunk: RawChunk): void {
    const n = chunk.rowCount;
    chunkReads.vectors++;
    for (let c = 0; c < this.#builders.length; c++) this.#builders[c]!.append(chunk, c, this.rows, n);
    this.rows += n;
  }

  /** The rows appended since the last flush, as one record batch. */
  flush(): RecordBatch {
    const length = this.rows;
    const children = this.#builders.map((b) => b.finish(length));
    this.#builders = this.#newBuilders();
    this.rows = 0;
    const data = makeData({ type: new Struct(this.#schema.fields), length, children, nullCount: 0 });
    return new RecordBatch(this.#schema, data);
  }

  #newBuilders(): ColumnBuilder[] {
    return this.#columns.map((column, c) => builderFor(this.#duck, this.#types[c]!, column));
  }
}
