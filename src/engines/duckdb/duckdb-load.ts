import {
  BIGINT,
  type DuckDBConnection,
  DuckDBDataChunk,
  type DuckDBValue,
  listValue,
} from '@duckdb/node-api';
import { type RecordBatch, Type, type Vector } from 'apache-arrow';
import { type ColumnSpec, type ColumnType, utf8Reader } from '../../frame/columns.js';
import { dateOf, duckdbDriverType, timestampOf } from './duckdb-dialect.js';

/**
 * Appends Arrow record batches to an existing DuckDB table through the appender, one data chunk
 * (up to 2,048 rows) at a time. Runs in the connection's open transaction, if any. With `lead`,
 * the table has one more column first, set to `lead` in every row (a shape table's materialization
 * id). Returns the number of rows appended. @internal
 */
export async function appendBatches(
  connection: DuckDBConnection,
  table: { catalog?: string; schema: string; name: string },
  columns: readonly ColumnSpec[],
  batches: AsyncIterable<RecordBatch> | Iterable<RecordBatch>,
  lead?: bigint,
): Promise<number> {
  const appender = await connection.createAppender(table.name, table.schema, table.catalog ?? null);
  const types = columns.map((c) => duckdbDriverType(c.type));
  const first = lead === undefined ? 0 : 1;
  if (lead !== undefined) types.unshift(BIGINT);
  const size = 2048;
  let rows = 0;
  try {
    for await (const batch of batches) {
      const vectors = columns.map((c) => batch.getChild(c.name)!);
      for (let offset = 0; offset < batch.numRows; offset += size) {
        const n = Math.min(size, batch.numRows - offset);
        const chunk = DuckDBDataChunk.create(types, n);
        if (lead !== undefined) chunk.setColumnValues(0, new Array<DuckDBValue>(n).fill(lead));
        columns.forEach((column, i) => {
          chunk.setColumnValues(first + i, columnValues(column.type, vectors[i]!, offset, n));
        });
        appender.appendDataChunk(chunk);
        rows += n;
      }
    }
    appender.flushSync();
  } finally {
    appender.closeSync();
  }
  return rows;
}

function columnValues(type: ColumnType, vector: Vector, offset: number, n: number): DuckDBValue[] {
  const out: DuckDBValue[] = new Array(n);
  // Arrow's `get` drops a leading U+FEFF from strings; this reader keeps it.
  const get = vector.type.typeId === Type.Utf8 ? utf8Reader(vector) : (r: number) => vector.get(r) as unknown;
  for (let i = 0; i < n; i++) {
    const v = get(offset + i);
    out[i] = v === null || v === undefined ? null : toDuckDB(type, v);
  }
  return out;
}

function toDuckDB(type: ColumnType, v: unknown): DuckDBValue {
  switch (type) {
    case 'timestamp':
      // Arrow gives fractional milliseconds for finer units: round down, as rows and casts do.
      return timestampOf(Number(v));
    case 'date':
      return dateOf(Number(v));
    case 'int64':
      return BigInt(v as bigint | number);
    case 'float64[]':
      return listValue(listItems(v as Vector));
    default:
      return v as DuckDBValue;
  }
}

/** A list's items, null items kept (`toArray()` would give the raw buffer, where they read as 0). */
function listItems(items: Vector): DuckDBValue[] {
  const out: DuckDBValue[] = new Array(items.length);
  for (let k = 0; k < items.length; k++) {
    const item = items.get(k) as number | null;
    out[k] = item === null ? null : Number(item);
  }
  return out;
}
