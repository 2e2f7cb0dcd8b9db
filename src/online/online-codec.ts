/**
 * How the online stores encode entity keys and rows as text: one encoding for every store, so a
 * row reads back the same from SQLite and Redis. @internal
 * @module
 */
import { type RecordBatch, Type, type Vector } from 'apache-arrow';
import { FeatureStoreError } from '../errors.js';
import { decodeParams, type Params } from '../feature/params.js';
import { type ColumnSpec, type ColumnType, columnTypeOf, type Row, utf8Reader } from '../frame/columns.js';
import type { OnlineKey, OnlineKeyValue, OnlinePublication, OnlineSource } from './online-store.js';

/**
 * A key as text, equal for equal keys: integers as `i5;` (whether `5` or `5n`), other numbers
 * `f1.5;`, strings length-prefixed `s3:SFO`, booleans `b1;`, instants `t<ms>;`. Never empty.
 * @internal
 */
export function encodeKey(key: OnlineKey): string {
  if (key.length === 1) {
    const only = key[0]!;
    if (typeof only === 'string') return `s${only.length}:${only}`;
  }
  let text = '';
  for (const value of key) text += encodeKeyValue(value);
  return text;
}

function encodeKeyValue(value: OnlineKeyValue | null | undefined): string {
  switch (typeof value) {
    case 'string':
      return `s${value.length}:${value}`;
    case 'bigint':
      return `i${value};`;
    case 'number':
      return Number.isInteger(value) ? `i${value};` : `f${value};`;
    case 'boolean':
      return value ? 'b1;' : 'b0;';
    default:
      if (value instanceof Date) return `t${value.getTime()};`;
      throw new TypeError(`unsupported key value ${String(value)}`);
  }
}

/** Encoded keys of a batch's rows, or a `NULL_KEY` error naming the first null key. @internal */
export function batchKeys(publication: OnlinePublication, batch: RecordBatch): string[] {
  const types = publication.key.map((name) =>
    columnTypeOf(batch.schema.fields.find((f) => f.name === name)!),
  );
  const vectors = publication.key.map((name) => {
    const vector = columnOf(publication, batch, name);
    // Arrow's own decoder drops a leading U+FEFF: "\ufeffx" and "x" would be one key.
    return vector.type.typeId === Type.Utf8 ? { get: utf8Reader(vector) } : vector;
  });
  const instants = types.map((type) => type === 'timestamp' || type === 'date');
  const keys: string[] = new Array(batch.numRows);
  const parts: OnlineKeyValue[] = new Array(vectors.length);
  for (let r = 0; r < batch.numRows; r++) {
    for (let c = 0; c < vectors.length; c++) {
      const v = vectors[c]!.get(r) as OnlineKeyValue | null;
      if (v === null || v === undefined) {
        throw new FeatureStoreError(
          'NULL_KEY',
          `key column "${publication.key[c]}" is null in row ${r}: online rows need a complete key.`,
          storeContext(publication),
        );
      }
      parts[c] = instants[c] ? new Date(Math.floor(Number(v))) : v;
    }
    keys[r] = encodeKey(parts);
  }
  return keys;
}

/** Encoded rows (value columns, JSON array text) of a batch. @internal */
export function batchRows(publication: OnlinePublication, batch: RecordBatch): string[] {
  const readers = publication.columns.map((column) => {
    const vector = typedColumnOf(publication, batch, column);
    return valueText(column.type, vector);
  });
  const rows: string[] = new Array(batch.numRows);
  for (let r = 0; r < batch.numRows; r++) {
    let text = '[';
    for (let c = 0; c < readers.length; c++) text += (c === 0 ? '' : ',') + readers[c]!(r);
    rows[r] = `${text}]`;
  }
  return rows;
}

function columnOf(publication: OnlinePublication, batch: RecordBatch, name: string): Vector {
  const index = batch.schema.fields.findIndex((f) => f.name === name);
  if (index < 0) {
    throw new FeatureStoreError(
      'MISSING_KEY_COLUMN',
      `the rows have no column "${name}" (they have ${batch.schema.fields.map((f) => `"${f.name}"`).join(', ')}).`,
      storeContext(publication),
    );
  }
  return batch.getChildAt(index)!;
}

/**
 * The vector of `column` in `batch`, refused with a clear error when the batch lacks it or holds it
 * in another type than the publication declares. @internal
 */
export function typedColumnOf(
  publication: OnlinePublication,
  batch: RecordBatch,
  column: ColumnSpec,
): Vector {
  const vector = columnOf(publication, batch, column.name);
  const field = batch.schema.fields.find((f) => f.name === column.name)!;
  const type = columnTypeOf(field);
  if (type !== column.type) {
    throw new FeatureStoreError(
      'UNSUPPORTED_COLUMN_TYPE',
      `column "${column.name}" is declared ${column.type} but its Arrow type ${String(field.type)} reads as ${type ?? 'unsupported'}.`,
      storeContext(publication),
    );
  }
  return vector;
}

// JSON has no NaN, Infinity or -0: those travel as strings, which a float column never holds.
function encodeFloat(v: number): string {
  if (Number.isFinite(v)) return Object.is(v, -0) ? '"-0"' : String(v);
  return `"${v}"`;
}

/** A column's values as JSON text, row by row (`'null'` for nulls). @internal */
export function valueText(type: ColumnType, vector: Vector): (row: number) => string {
  switch (type) {
    case 'float32':
    case 'float64':
      return (r) => {
        const v = vector.get(r) as number | null;
        return v === null ? 'null' : encodeFloat(v);
      };
    case 'int64':
      return (r) => {
        const v = vector.get(r) as bigint | null;
        return v === null ? 'null' : `"${v}"`;
      };
    case 'timestamp':
    case 'date':
      return (r) => {
        const v = vector.get(r) as number | bigint | null;
        return v === null ? 'null' : String(Math.floor(Number(v)));
      };
    case 'float64[]':
      return (r) => {
        const v = vector.get(r) as Vector | null;
        if (v === null) return 'null';
        let text = '[';
        for (let i = 0; i < v.length; i++) {
          const item = v.get(i) as number | null;
          text += (i === 0 ? '' : ',') + (item === null ? 'null' : encodeFloat(item));
        }
        return `${text}]`;
      };
    case 'json':
    case 'string': {
      // Keeps a leading U+FEFF, which vector.get() drops.
      const read =
        vector.type.typeId === Type.Utf8 ? utf8Reader(vector) : (r: number) => vector.get(r) as string | null;
      return (r) => {
        const v = read(r);
        return v === null ? 'null' : JSON.stringify(v);
      };
    }
    default:
      return (r) => {
        const v = vector.get(r) as number | boolean | null;
        return v === null ? 'null' : String(v);
      };
  }
}

/** Turns an encoded row back into its values. Built once per materialization. @internal */
export function rowDecoder(columns: readonly ColumnSpec[]): (text: string) => Row {
  const names = columns.map((c) => c.name);
  const decoders = columns.map((c) => decoder(c.type));
  return (text) => {
    const values = JSON.parse(text) as unknown[];
    const row: Row = {};
    for (let c = 0; c < names.length; c++) {
      const v = values[c] ?? null;
      const decode = decoders[c];
      row[names[c]!] = v === null || decode === undefined ? v : decode(v);
    }
    return row;
  };
}

/** A float as encoded: a number, or text for NaN, ±Infinity and -0. @internal */
export const decodeFloat = (v: unknown) => (typeof v === 'string' ? Number(v) : v);

function decoder(type: ColumnType): ((v: unknown) => unknown) | undefined {
  switch (type) {
    case 'float32':
    case 'float64':
      return decodeFloat;
    case 'int64':
      return (v) => BigInt(v as string);
    case 'timestamp':
    case 'date':
      return (v) => new Date(v as number);
    case 'json':
      return (v) => JSON.parse(v as string);
    case 'float64[]':
      return (v) => (v as unknown[]).map(decodeFloat);
    default:
      return undefined;
  }
}

/** Error context naming a publication's feature and parameters. @internal */
export function storeContext(
  publication: Pick<OnlinePublication, 'feature' | 'paramsKey'>,
  cause?: unknown,
): { feature: string; params: Params; cause?: unknown } {
  let params: Params;
  try {
    params = decodeParams(publication.paramsKey);
  } catch {
    params = { paramsKey: publication.paramsKey };
  }
  return cause === undefined
    ? { feature: publication.feature, params }
    : { feature: publication.feature, params, cause };
}

/** Collects a publication's batches. @internal */
export async function collectBatches(publication: OnlinePublication): Promise<RecordBatch[]> {
  const batches: RecordBatch[] = [];
  for await (const batch of publication.batches) batches.push(batch);
  return batches;
}

/** `STORE_ERROR` for sources that are not (or no longer) published. @internal */
export function notListed(missing: readonly OnlineSource[]): FeatureStoreError {
  const names = missing.map((s) => `${s.feature} (materialization ${s.id})`).join(', ');
  return new FeatureStoreError(
    'STORE_ERROR',
    `not published online (retired or never published): ${names}. List the materializations again and read those.`,
    { feature: missing[0]!.feature, details: { missing: missing.map((s) => ({ ...s })) } },
  );
}

/** @internal */
export function checkKeep(keep: number): number {
  if (!Number.isInteger(keep) || keep < 1) {
    throw new FeatureStoreError(
      'STORE_ERROR',
      `keep must be a whole number of materializations, at least 1 (got ${keep}).`,
    );
  }
  return keep;
}
