import { type RecordBatch, Type } from 'apache-arrow';
import { type Row, utf8Reader } from '../frame/columns.js';

/** What a key check finds: the row count, rows with a null key, and one duplicated key if any. */
export interface KeySummary {
  readonly rows: number;
  readonly nulls: number;
  /** The key columns of one duplicated key, and `n`, how many rows have it. */
  readonly duplicate: Row | undefined;
}

/**
 * Checks a result's key as its batches stream into a store, while the result is small: then the
 * store needs no scan of the stored table afterwards, which costs more than the check itself for a
 * few hundred rows. Past `limit` rows it stops keeping keys and {@link summary} says `undefined`,
 * and the store checks in the database instead. Keys compare as SQL's `DISTINCT` does for the
 * values Arrow gives (strings, numbers, bigints, booleans; timestamps and dates by their instant).
 * @internal
 */
export class KeyTracker {
  readonly #key: readonly string[];
  readonly #limit: number;
  #rows = 0;
  #nulls = 0;
  #seen: Map<unknown, number> | undefined = new Map();
  #duplicate: { id: unknown; values: unknown[] } | undefined;

  constructor(key: readonly string[], limit: number) {
    this.#key = key;
    this.#limit = limit;
  }

  /** `batches`, unchanged, observed on the way. */
  async *track(batches: AsyncIterable<RecordBatch>): AsyncIterable<RecordBatch> {
    for await (const batch of batches) {
      this.#observe(batch);
      yield batch;
    }
  }

  /** The summary of every row seen, or `undefined` when there were too many to keep. */
  summary(): KeySummary | undefined {
    const seen = this.#seen;
    if (seen === undefined) return undefined;
    const duplicate = this.#duplicate;
    return {
      rows: this.#rows,
      nulls: this.#nulls,
      duplicate:
        duplicate === undefined
          ? undefined
          : {
              ...Object.fromEntries(this.#key.map((k, i) => [k, duplicate.values[i]])),
              n: seen.get(duplicate.id),
            },
    };
  }

  #observe(batch: RecordBatch): void {
    this.#rows += batch.numRows;
    const seen = this.#seen;
    if (seen === undefined) return;
    if (this.#rows > this.#limit) {
      this.#seen = undefined;
      return;
    }
    // Strings exactly: Arrow's `get` drops a leading U+FEFF, which would make '\ufeffx' equal 'x'.
    const readers = this.#key.map((k) => {
      const vector = batch.getChild(k)!;
      return vector.type.typeId === Type.Utf8 ? utf8Reader(vector) : (r: number) => vector.get(r) as unknown;
    });
    // Instants come from Arrow as numbers: a duplicated one is named as a Date, as the database would.
    const instants = this.#key.map((k) => {
      const typeId = batch.getChild(k)!.type.typeId;
      return typeId === Type.Timestamp || typeId === Type.Date;
    });
    const values: unknown[] = new Array(readers.length);
    for (let r = 0; r < batch.numRows; r++) {
      let hasNull = false;
      for (let c = 0; c < readers.length; c++) {
        const value = readers[c]!(r);
        if (value === null || value === undefined) hasNull = true;
        values[c] = value;
      }
      if (hasNull) {
        this.#nulls++;
        continue;
      }
      const id = values.length === 1 ? idOf(values[0]) : compositeId(values);
      const count = seen.get(id);
      seen.set(id, (count ?? 0) + 1);
      if (count !== undefined && this.#duplicate === undefined) {
        const shown = values.map((v, c) => (instants[c] && typeof v === 'number' ? new Date(v) : v));
        this.#duplicate = { id, values: shown };
      }
    }
  }
}

/** A key value as a `Map` key: equal values give equal ids (a `Date` by its instant). */
function idOf(value: unknown): unknown {
  return value instanceof Date ? value.getTime() : value;
}

/**
 * One string per composite key. Each part is length-prefixed, so no value can mimic another's, and
 * each column holds one type, so its values' texts are distinct when the values are.
 */
function compositeId(values: readonly unknown[]): string {
  let id = '';
  for (const value of values) {
    const text = String(idOf(value));
    id += `${text.length}:${text}`;
  }
  return id;
}
