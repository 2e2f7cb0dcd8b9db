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
 * Where the rows of small materializations live: a table shared by every feature whose results
 * have the same key and the same column types. Key columns keep their names; the other columns
 * are named `v1`, `v2`, … in order (skipping any name a key column has), so that features of the
 * same types share a table whatever their columns are called; the first column is the
 * materialization id. A key lookup of many features then reads one table, not one per feature.
 * @internal
 */
export interface ShapeLayout {
  /** The table's name (unquoted): `s_` and 16 hex digits of SHA-256 over the stored columns and key. */
  readonly table: string;
  /** The id column, first in the table. */
  readonly idColumn: string;
  /** The result's columns as the table holds them: same order and types, value columns renamed. */
  readonly columns: readonly ColumnSpec[];
  /** The table's name of each result column whose name there differs. */
  readonly names: ReadonlyMap<string, string>;
}

/** The shared table of small results with this key and these columns. @internal */
export function shapeLayoutOf(key: readonly string[], columns: readonly ColumnSpec[]): ShapeLayout {
  const keys = new Set(key);
  const names = new Map<string, string>();
  let n = 0;
  const stored = columns.map((c) => {
    if (keys.has(c.name)) return { name: c.name, type: c.type };
    let name: string;
    do name = `v${++n}`;
    while (keys.has(name));
    if (name !== c.name) names.set(c.name, name);
    return { name, type: c.type };
  });
  const shape = JSON.stringify({ key, columns: stored.map((c) => [c.name, c.type]) });
  return {
    table: `s_${createHash('sha256').update(shape).digest('hex').slice(0, 16)}`,
    idColumn: partitionColumnOf(stored),
    columns: stored,
    names,
  };
}

/**
 * The layout of the shape table `table` for a materialization with this key and these columns:
 * a shared table (`s_…`, see {@link shapeLayoutOf}), or a table of format 3 (`f_…`), which held
 * one feature's small materializations under their own column names. @internal
 */
export function shapeLayoutAt(
  table: string,
  key: readonly string[],
  columns: readonly ColumnSpec[],
): ShapeLayout {
  if (table.startsWith('s_')) return shapeLayoutOf(key, columns);
  return { table, idColumn: partitionColumnOf(columns), columns, names: new Map() };
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

/** The pattern of shape table names: shared ones (`s_`) and those of format 3 (`f_`). @internal */
export const SHAPE_TABLE_PATTERN = '[fs]_[0-9a-f]{16}';

const SHAPE_TABLE = new RegExp(`^${SHAPE_TABLE_PATTERN}$`);

/** True for the name of a shape table. @internal */
export function isShapeTable(name: string): boolean {
  return SHAPE_TABLE.test(name);
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
