import type { Writable } from 'node:stream';
import { type Data, makeVector, type RecordBatch, TimeUnit, Type, type Vector } from 'apache-arrow';
import { FeatureStoreError } from '../../errors.js';
import type { ColumnSpec, ColumnType } from '../../frame/columns.js';
import { int64At, int64High, PG_EPOCH_DAYS, PG_EPOCH_MICROS, TWO_32 } from './dialect.js';

const FLOAT8_OID = 701;
/** `PGCOPY\n\377\r\n\0`, then flags and header-extension length, both 0. */
const HEADER = Buffer.from([
  0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
]);
const TRAILER = Buffer.from([0xff, 0xff]);

/**
 * A growing run of output chunks. Writers reserve room, then write through `buffer`/`view` at
 * `position`. Full chunks are handed out by {@link take} and never written again.
 */
class Output {
  buffer: Buffer;
  view: DataView;
  position = 0;
  #full: Buffer[] = [];
  #fullBytes = 0;

  constructor(readonly chunkSize: number) {
    this.buffer = Buffer.allocUnsafe(chunkSize);
    this.view = new DataView(this.buffer.buffer, this.buffer.byteOffset, this.buffer.length);
  }

  /** Makes room for `n` more bytes in the current chunk. */
  reserve(n: number): void {
    if (this.position + n > this.buffer.length) this.#rotate(n);
  }

  /** Bytes in chunks that are full and waiting to be sent. */
  get pending(): number {
    return this.#fullBytes;
  }

  /** The full chunks, plus the current one when `all`; the caller owns them from then on. */
  take(all: boolean): Buffer[] {
    if (all && this.position > 0) this.#rotate(0);
    const out = this.#full;
    this.#full = [];
    this.#fullBytes = 0;
    return out;
  }

  #rotate(n: number): void {
    if (this.position > 0) {
      this.#full.push(this.buffer.subarray(0, this.position));
      this.#fullBytes += this.position;
    }
    this.buffer = Buffer.allocUnsafe(Math.max(this.chunkSize, n));
    this.view = new DataView(this.buffer.buffer, this.buffer.byteOffset, this.buffer.length);
    this.position = 0;
  }
}

/** Writes one field (length word and bytes) of row `row` of a column. */
type FieldWriter = (out: Output, row: number) => void;

function writeNull(out: Output): void {
  out.reserve(4);
  out.view.setInt32(out.position, -1);
  out.position += 4;
}

/** Null test of an Arrow column, or `undefined` when it has no nulls. */
function nullTest(data: Data): ((row: number) => boolean) | undefined {
  const bitmap = data.nullBitmap;
  if (data.nullCount === 0 || bitmap === undefined || bitmap.length === 0) return undefined;
  const offset = data.offset;
  return (row) => {
    const bit = offset + row;
    return (bitmap[bit >> 3]! & (1 << (bit & 7))) === 0;
  };
}

/** Adds the null check to a writer of non-null values. */
function nullable(data: Data, write: FieldWriter): FieldWriter {
  const isNull = nullTest(data);
  if (isNull === undefined) return write;
  return (out, row) => (isNull(row) ? writeNull(out) : write(out, row));
}

function writeInt64Number(out: Output, position: number, value: number): void {
  const high = int64High(value);
  out.view.setInt32(position, high);
  out.view.setUint32(position + 4, value - high * TWO_32);
}

function int32Words(values: BigInt64Array): Int32Array {
  return new Int32Array(values.buffer, values.byteOffset, values.length * 2);
}

function microsFactor(unit: TimeUnit): number {
  return unit === TimeUnit.SECOND ? 1e6 : unit === TimeUnit.MILLISECOND ? 1e3 : 1;
}

/** A `float8[]` field in binary array form: one dimension (none when empty), then each item. */
function writeFloat8Array(
  out: Output,
  n: number,
  isNull: ((k: number) => boolean) | undefined,
  item: (k: number) => number,
): void {
  let nulls = 0;
  if (isNull !== undefined) for (let k = 0; k < n; k++) if (isNull(k)) nulls++;
  const size = n === 0 ? 12 : 20 + (n - nulls) * 12 + nulls * 4;
  out.reserve(4 + size);
  const view = out.view;
  let p = out.position;
  view.setInt32(p, size);
  view.setInt32(p + 4, n === 0 ? 0 : 1); // dimensions
  view.setInt32(p + 8, nulls > 0 ? 1 : 0);
  view.setInt32(p + 12, FLOAT8_OID);
  p += 16;
  if (n > 0) {
    view.setInt32(p, n);
    view.setInt32(p + 4, 1); // lower bound
    p += 8;
    for (let k = 0; k < n; k++) {
      if (nulls > 0 && isNull!(k)) {
        view.setInt32(p, -1);
        p += 4;
      } else {
        view.setInt32(p, 8);
        view.setFloat64(p + 4, item(k));
        p += 12;
      }
    }
  }
  out.position = p;
}

/** The fast writer for a column's Arrow layout, or `undefined` to use the generic one. */
function fastWriter(type: ColumnType, data: Data): FieldWriter | undefined {
  const arrow = data.type;
  switch (type) {
    case 'boolean': {
      if (arrow.typeId !== Type.Bool) return undefined;
      const bits = data.values as Uint8Array;
      const offset = data.offset;
      return nullable(data, (out, row) => {
        out.reserve(5);
        const bit = offset + row;
        out.view.setInt32(out.position, 1);
        out.buffer[out.position + 4] = (bits[bit >> 3]! >> (bit & 7)) & 1;
        out.position += 5;
      });
    }
    case 'int8':
    case 'int16':
    case 'int32': {
      if (arrow.typeId !== Type.Int) return undefined;
      const values = data.values as Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array;
      if (type === 'int32') {
        return nullable(data, (out, row) => {
          out.reserve(8);
          out.view.setInt32(out.position, 4);
          out.view.setInt32(out.position + 4, values[row]!);
          out.position += 8;
        });
      }
      return nullable(data, (out, row) => {
        out.reserve(6);
        out.view.setInt32(out.position, 2);
        out.view.setInt16(out.position + 4, values[row]!);
        out.position += 6;
      });
    }
    case 'int64': {
      if (arrow.typeId !== Type.Int) return undefined;
      if (data.values instanceof Uint32Array) {
        const values = data.values;
        return nullable(data, (out, row) => {
          out.reserve(12);
          out.view.setInt32(out.position, 8);
          out.view.setInt32(out.position + 4, 0);
          out.view.setUint32(out.position + 8, values[row]!);
          out.position += 12;
        });
      }
      if (!(data.values instanceof BigInt64Array)) return undefined;
      // Byte-swap the little-endian words: no BigInt per value.
      const words = int32Words(data.values);
      return nullable(data, (out, row) => {
        out.reserve(12);
        out.view.setInt32(out.position, 8);
        out.view.setInt32(out.position + 4, words[2 * row + 1]!);
        out.view.setInt32(out.position + 8, words[2 * row]!);
        out.position += 12;
      });
    }
    case 'float32': {
      if (!(data.values instanceof Float32Array)) return undefined;
      const values = data.values;
      return nullable(data, (out, row) => {
        out.reserve(8);
        out.view.setInt32(out.position, 4);
        out.view.setFloat32(out.position + 4, values[row]!);
        out.position += 8;
      });
    }
    case 'float64': {
      if (!(data.values instanceof Float64Array)) return undefined;
      const values = data.values;
      return nullable(data, (out, row) => {
        out.reserve(12);
        out.view.setInt32(out.position, 8);
        out.view.setFloat64(out.position + 4, values[row]!);
        out.position += 12;
      });
    }
    case 'string':
    case 'json': {
      if (type === 'string' && arrow.typeId === Type.Dictionary) return dictionaryWriter(data);
      if (arrow.typeId !== Type.Utf8) return undefined;
      const offsets = data.valueOffsets as Int32Array;
      const bytes = data.values as Uint8Array;
      // jsonb's binary form is a version byte, then the JSON text.
      const prefix = type === 'json' ? 1 : 0;
      return nullable(data, (out, row) => {
        const start = offsets[row]!;
        const end = offsets[row + 1]!;
        const n = end - start;
        out.reserve(4 + prefix + n);
        const buffer = out.buffer;
        let p = out.position;
        out.view.setInt32(p, n + prefix);
        p += 4;
        if (prefix === 1) buffer[p++] = 1;
        if (n < 32) for (let k = 0; k < n; k++) buffer[p + k] = bytes[start + k]!;
        else buffer.set(bytes.subarray(start, end), p);
        out.position = p + n;
      });
    }
    case 'timestamp': {
      if (arrow.typeId !== Type.Timestamp || !(data.values instanceof BigInt64Array)) return undefined;
      const unit = (arrow as unknown as { unit: TimeUnit }).unit;
      if (unit === TimeUnit.NANOSECOND) {
        // Nanoseconds overflow a double's exact range: divided as bigints, rounded down (toward
        // the past, as DuckDB does), so an instant is never stored after itself.
        const nanos = data.values;
        const epoch = BigInt(PG_EPOCH_MICROS);
        return nullable(data, (out, row) => {
          const ns = nanos[row]!;
          const micros = ns / 1000n - (ns % 1000n < 0n ? 1n : 0n);
          out.reserve(12);
          out.view.setInt32(out.position, 8);
          out.view.setBigInt64(out.position + 4, micros - epoch);
          out.position += 12;
        });
      }
      const factor = microsFactor(unit);
      const words = int32Words(data.values);
      return nullable(data, (out, row) => {
        out.reserve(12);
        out.view.setInt32(out.position, 8);
        writeInt64Number(out, out.position + 4, int64At(words, row) * factor - PG_EPOCH_MICROS);
        out.position += 12;
      });
    }
    case 'date': {
      if (arrow.typeId !== Type.Date) return undefined;
      if (data.values instanceof Int32Array) {
        const days = data.values;
        return nullable(data, (out, row) => {
          out.reserve(8);
          out.view.setInt32(out.position, 4);
          out.view.setInt32(out.position + 4, days[row]! - PG_EPOCH_DAYS);
          out.position += 8;
        });
      }
      if (!(data.values instanceof BigInt64Array)) return undefined;
      const words = int32Words(data.values);
      return nullable(data, (out, row) => {
        out.reserve(8);
        out.view.setInt32(out.position, 4);
        out.view.setInt32(out.position + 4, Math.floor(int64At(words, row) / 86_400_000) - PG_EPOCH_DAYS);
        out.position += 8;
      });
    }
    case 'float64[]': {
      const child = data.children[0];
      if (arrow.typeId !== Type.List || child === undefined) return undefined;
      if (!(child.values instanceof Float64Array || child.values instanceof Float32Array)) return undefined;
      const offsets = data.valueOffsets as Int32Array;
      const items = child.values;
      const itemIsNull = nullTest(child);
      return nullable(data, (out, row) => {
        const start = offsets[row]!;
        writeFloat8Array(
          out,
          offsets[row + 1]! - start,
          itemIsNull === undefined ? undefined : (k) => itemIsNull(start + k),
          (k) => items[start + k]!,
        );
      });
    }
  }
}

/** UTF-8 bytes of each entry of a dictionary, shared by the batches that use the same dictionary. */
const dictionaryBytes = new WeakMap<object, (Uint8Array | null)[]>();

/** Dictionary-encoded strings (what `tableFromArrays` makes of string arrays): each entry encoded once. */
function dictionaryWriter(data: Data): FieldWriter | undefined {
  const dictionary = data.dictionary;
  const indices = data.values as Int8Array | Int16Array | Int32Array | Uint8Array | Uint16Array | Uint32Array;
  if (dictionary === undefined || !ArrayBuffer.isView(indices) || indices instanceof BigInt64Array)
    return undefined;
  let entries = dictionaryBytes.get(dictionary);
  if (entries === undefined) {
    entries = Array.from({ length: dictionary.length }, (_, i) => {
      const value = dictionary.get(i) as string | null;
      return value === null ? null : Buffer.from(value, 'utf8');
    });
    dictionaryBytes.set(dictionary, entries);
  }
  const bytes = entries;
  return nullable(data, (out, row) => {
    const entry = bytes[indices[row]!];
    if (entry === null || entry === undefined) return writeNull(out);
    out.reserve(4 + entry.length);
    out.view.setInt32(out.position, entry.length);
    out.buffer.set(entry, out.position + 4);
    out.position += 4 + entry.length;
  });
}

/** Writes a value as Arrow's `get` returns it: the path for layouts without a fast writer. */
function genericWriter(type: ColumnType, data: Data): FieldWriter {
  const vector: Vector = makeVector(data);
  const write = valueWriter(type);
  return (out, row) => {
    const value = vector.get(row) as unknown;
    if (value === null || value === undefined) writeNull(out);
    else write(out, value);
  };
}

function valueWriter(type: ColumnType): (out: Output, value: unknown) => void {
  const fixed =
    (size: number, set: (view: DataView, position: number, value: unknown) => void) =>
    (out: Output, value: unknown) => {
      out.reserve(4 + size);
      out.view.setInt32(out.position, size);
      set(out.view, out.position + 4, value);
      out.position += 4 + size;
    };
  const text = (prefix: number) => (out: Output, value: unknown) => {
    const s = String(value);
    const n = Buffer.byteLength(s);
    out.reserve(4 + prefix + n);
    out.view.setInt32(out.position, n + prefix);
    if (prefix === 1) out.buffer[out.position + 4] = 1;
    out.buffer.write(s, out.position + 4 + prefix, 'utf8');
    out.position += 4 + prefix + n;
  };
  const millis = (value: unknown) => (value instanceof Date ? value.getTime() : Number(value));
  switch (type) {
    case 'boolean':
      return fixed(1, (v, p, x) => v.setUint8(p, x ? 1 : 0));
    case 'int8':
    case 'int16':
      return fixed(2, (v, p, x) => v.setInt16(p, Number(x)));
    case 'int32':
      return fixed(4, (v, p, x) => v.setInt32(p, Number(x)));
    case 'int64':
      return fixed(8, (v, p, x) => v.setBigInt64(p, BigInt(x as bigint | number)));
    case 'float32':
      return fixed(4, (v, p, x) => v.setFloat32(p, Number(x)));
    case 'float64':
      return fixed(8, (v, p, x) => v.setFloat64(p, Number(x)));
    case 'string':
      return text(0);
    case 'json':
      return text(1);
    case 'timestamp':
      return fixed(8, (v, p, x) =>
        v.setBigInt64(p, BigInt(Math.floor(millis(x) * 1000)) - BigInt(PG_EPOCH_MICROS)),
      );
    case 'date':
      return fixed(4, (v, p, x) => v.setInt32(p, Math.floor(millis(x) / 86_400_000) - PG_EPOCH_DAYS));
    case 'float64[]':
      return (out, value) => {
        const items = Array.from(value as Iterable<number | null | undefined>);
        writeFloat8Array(
          out,
          items.length,
          (k) => items[k] === null || items[k] === undefined,
          (k) => Number(items[k]),
        );
      };
  }
}

/** Writers for each column of `batch`, in `columns` order. */
function writersOf(columns: readonly ColumnSpec[], batch: RecordBatch): FieldWriter[] {
  return columns.map((column) => {
    const child = batch.getChild(column.name);
    if (child === null) {
      throw new FeatureStoreError(
        'UNSUPPORTED_RESULT',
        `a batch of the result has no column "${column.name}", though the first batch had it; every batch must have the same columns.`,
        { details: { column: column.name } },
      );
    }
    const data = child.data[0]!;
    if (data.type.typeId === Type.Null) return writeNull;
    return fastWriter(column.type, data) ?? genericWriter(column.type, data);
  });
}

/** Options of {@link copyBatches}. */
export interface CopyOptions {
  /** Bytes per chunk handed to the stream. Default is 256 KiB. */
  chunkSize?: number;
  /** Rows encoded between two checks for chunks to send. Default is 4,096. */
  rowsPerSlice?: number;
  /**
   * A materialization id written as a leading `bigint` field of every row, before `columns`
   * (rows going to a shape table). Default is none.
   */
  id?: bigint;
}

/**
 * Streams Arrow record batches into a `COPY … FROM STDIN (FORMAT binary)` stream (from
 * `pg-copy-streams`), encoding them in PostgreSQL's binary COPY format as they come: at most a
 * few chunks are held at a time, and the stream's backpressure is respected. Ends the stream and
 * waits until the server has taken every row. Returns the number of rows sent. If the batches
 * fail, the stream is destroyed (the server rolls the COPY back) and the error is rethrown; if the
 * stream fails (the server refused the rows, or the session ended), its error is rethrown at once.
 * @internal
 */
export async function copyBatches(
  stream: Writable,
  columns: readonly ColumnSpec[],
  batches: AsyncIterable<RecordBatch>,
  options: CopyOptions = {},
): Promise<number> {
  const chunkSize = options.chunkSize ?? 256 * 1024;
  const rowsPerSlice = options.rowsPerSlice ?? 4096;
  const out = new Output(chunkSize);
  const id = options.id;
  const fieldCount = columns.length + (id === undefined ? 0 : 1);
  let failure: unknown;
  let finished = false;
  /** pg handed the stream its error: pg is done with the COPY (the server ended it, or the session is gone). */
  let ended = false;
  const onError = (error: unknown) => {
    ended = true;
    failure ??= error;
  };
  stream.on('error', onError);
  const send = async (buffers: Buffer[]) => {
    for (const buffer of buffers) {
      if (failure !== undefined) throw failure;
      if (!stream.write(buffer)) await drained(stream);
    }
    if (failure !== undefined) throw failure;
  };

  let rows = 0;
  try {
    out.reserve(HEADER.length);
    out.buffer.set(HEADER, out.position);
    out.position += HEADER.length;
    for await (const batch of batches) {
      if (batch.numRows === 0) continue; // may lack columns: an empty result has none of its own
      const writers = writersOf(columns, batch);
      for (let start = 0; start < batch.numRows; start += rowsPerSlice) {
        const end = Math.min(batch.numRows, start + rowsPerSlice);
        for (let row = start; row < end; row++) {
          out.reserve(14);
          out.view.setInt16(out.position, fieldCount);
          out.position += 2;
          if (id !== undefined) {
            out.view.setInt32(out.position, 8);
            out.view.setBigInt64(out.position + 4, id);
            out.position += 12;
          }
          for (let c = 0; c < columns.length; c++) writers[c]!(out, row);
        }
        rows += end - start;
        if (out.pending > 0) await send(out.take(false));
      }
    }
    out.reserve(TRAILER.length);
    out.buffer.set(TRAILER, out.position);
    out.position += TRAILER.length;
    await send(out.take(true));
    await new Promise<void>((resolve, reject) => {
      // pg may have failed the COPY since the last write: ending it then would write to no connection.
      if (failure !== undefined) return reject(failure);
      stream.once('finish', resolve);
      stream.once('error', reject);
      stream.end();
    });
    finished = true;
    return rows;
  } catch (error) {
    // Destroying a COPY pg is done with would wait forever for the server's answer to a CopyFail
    // that is never sent (the stream sends it only once the server has accepted the COPY).
    if (!finished && !ended) await destroyed(stream, error);
    throw error;
  } finally {
    stream.off('error', onError);
  }
}

/** Waits for `drain`, or fails with the stream's error. */
function drained(stream: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (error?: unknown) => {
      stream.off('drain', done);
      stream.off('error', done);
      stream.off('close', closed);
      if (error === undefined) resolve();
      else reject(error);
    };
    const closed = () => done(new Error('the COPY stream closed before all rows were sent'));
    stream.once('drain', done);
    stream.once('error', done);
    stream.once('close', closed);
  });
}

/** Destroys the stream with `error` (the server is told to abandon the COPY) and waits until it closed. */
function destroyed(stream: Writable, error: unknown): Promise<void> {
  if (stream.closed) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once('close', () => resolve());
    stream.on('error', () => undefined); // the server's answer to the aborted COPY; the caller has the cause
    stream.destroy(error instanceof Error ? error : new Error(String(error)));
  });
}
