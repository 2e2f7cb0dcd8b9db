import type { Row } from '../../frame/columns.js';
import { type DuckDBResultLike, readDuckDBColumns, T } from './duckdb-columns.js';
import { readChunks } from './duckdb-stream.js';
import { leadingBomRows } from './duckdb-vectors.js';

/**
 * `readDuckDBColumns`, with strings exact: the driver's decoder drops a leading U+FEFF from every
 * string (`'\ufeffx'` reads as `'x'`); this gives it back to the rows whose stored bytes start
 * with one. Costs one pass over each text column's 16-byte string records, no decoding. @internal
 */
export async function readDuckDBColumnsExact(
  result: DuckDBResultLike,
  feature?: string,
): Promise<ReturnType<typeof readDuckDBColumns> extends Promise<infer R> ? R : never> {
  const read = await readDuckDBColumns(result, feature);
  const chunks = readChunks(result);
  if (chunks === undefined) return read;
  const types = result.columnTypes();
  read.columns.forEach((column, c) => {
    if (column.type !== 'string' || types[c]?.typeId !== T.VARCHAR) return;
    const values = read.values[c]!;
    let base = 0;
    for (const chunk of chunks) {
      for (const r of leadingBomRows(chunk, c) ?? []) {
        const value = values[base + r];
        if (typeof value === 'string') values[base + r] = `\ufeff${value}`;
      }
      base += chunk.rowCount;
    }
  });
  return read;
}

/** The first row of a DuckDB result as a row object, strings exact (see `readDuckDBColumnsExact`). @internal */
export async function firstRowExact(result: DuckDBResultLike): Promise<Row | undefined> {
  const { columns, values } = await readDuckDBColumnsExact(result);
  if ((values[0]?.length ?? 0) === 0) return undefined;
  return Object.fromEntries(columns.map((column, c) => [column.name, values[c]![0]]));
}
