import { createHash } from 'node:crypto';
import type { RecordBatch } from 'apache-arrow';
import type { ColumnSpec } from '../frame/columns.js';

/**
 * Materializations with fewer rows than this share their feature's shape table instead of having
 * a table each: a table costs a DuckDB block (256 KiB) or ~40 kB of PostgreSQL catalog and files,
 * far more than a few thousand rows. Above it, a table of its own loads and reads as fast.
 * @internal
 */
export const SHARED_MAX_ROWS = 50_000;

/**
 * The name (unquoted) of the table holding the small materializations of `feature` with this key
 * and these columns: `f_` and 16 hex digits of SHA-256 over the three, so a changed shape gets a
 * table of its own. @internal
 */
export function shapeTableName(
  feature: string,
  key: readonly string[],
  columns: readonly ColumnSpec[],
): string {
  const shape = `${feature}\u0000${JSON.stringify(key)}\u0000${JSON.stringify(columns.map((c) => ({ name: c.name, type: c.type })))}`;
  return `f_${createHash('sha256').update(shape).digest('hex').slice(0, 16)}`;
}

/**
 * The column of a shape table holding each row's materialization id: the first of `_m`, `_m_1`,
 * `_m_2`, … not among the shape's columns, so no user column is refused or shadowed. @internal
 */
export function partitionColumnOf(columns: readonly ColumnSpec[]): string {
  const names = new Set(columns.map((c) => c.name));
  if (!names.has('_m')) return '_m';
  for (let n = 1; ; n++) if (!names.has(`_m_${n}`)) return `_m_${n}`;
}

/** True for the name of a shape table (as {@link shapeTableName} makes them). @internal */
export function isShapeTable(name: string): boolean {
  return /^f_[0-9a-f]{16}$/.test(name);
}

/**
 * Reads `input` until it ends or `limit` rows are in, to tell a small result from a big one before
 * choosing where to store it: `small` when it ended first, `head` the batches read, `batches`
 * every row (those read, then the rest). The caller must call `close` once done, however the load
 * ended: it releases `input` when it was left before its end (a stream of a database's cursor
 * would otherwise stay open, and hold its connection).
 * @internal
 */
export async function peekBatches(
  input: AsyncIterable<RecordBatch>,
  limit: number,
): Promise<{
  head: readonly RecordBatch[];
  batches: AsyncIterable<RecordBatch>;
  rows: number;
  small: boolean;
  close: () => Promise<void>;
}> {
  const iterator = input[Symbol.asyncIterator]();
  const head: RecordBatch[] = [];
  let rows = 0;
  let ended = false;
  while (rows < limit) {
    const next = await iterator.next();
    if (next.done === true) {
      ended = true;
      break;
    }
    head.push(next.value);
    rows += next.value.numRows;
  }
  async function* all(): AsyncIterable<RecordBatch> {
    yield* head;
    while (!ended) {
      const next = await iterator.next();
      if (next.done === true) ended = true;
      else yield next.value;
    }
  }
  const close = async () => {
    if (ended) return;
    ended = true;
    await iterator.return?.();
  };
  return { head, batches: all(), rows, small: ended && rows < limit, close };
}
