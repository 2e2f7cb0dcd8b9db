import type { RecordBatch } from 'apache-arrow';
import { tableFromColumns } from '../../frame/columns.js';
import { type DuckDBResultLike, duckdbColumnSpecs, readDuckDBColumns } from './duckdb-columns.js';
import { ChunkBatchBuilder, chunkReads, isRawChunk, type RawChunk } from './duckdb-vectors.js';

/** A DuckDB result that hands out its rows chunk by chunk (`DuckDBResult`, from `stream` or `run`). */
interface ChunkedResult extends Pick<DuckDBResultLike, 'columnNames' | 'columnTypes'> {
  fetchChunk(): Promise<{ rowCount: number; getColumns(): unknown[][] } | null>;
}

/** True when the result can be read chunk by chunk. @internal */
export function isChunkedResult(value: unknown): value is ChunkedResult {
  return typeof (value as ChunkedResult).fetchChunk === 'function';
}

/**
 * Streams a DuckDB result as Arrow record batches of about `rowsPerBatch` rows, so that a large
 * result never sits in memory as JS values all at once. A fully read result (a
 * `DuckDBResultReader`) comes out as one batch, and an empty one as one empty batch. @internal
 */
export async function* duckdbBatches(
  result: DuckDBResultLike,
  rowsPerBatch = 65_536,
): AsyncIterable<RecordBatch> {
  const chunks = readChunks(result);
  if (chunks !== undefined || !isChunkedResult(result)) {
    const builder =
      chunks === undefined
        ? undefined
        : ChunkBatchBuilder.create(duckdbColumnSpecs(result), result.columnTypes());
    if (chunks === undefined || builder === undefined) {
      chunkReads.values++;
      const { columns, values } = await readDuckDBColumns(result);
      yield* tableFromColumns(columns, values).batches;
      return;
    }
    // A materialized reader (`runAndReadAll`): its chunks are copied like a stream's.
    // An empty result still gives one (empty) batch: it carries the column types.
    let batches = 0;
    for (const chunk of chunks) {
      if (chunk.rowCount === 0) continue;
      builder.append(chunk);
      if (builder.rows >= rowsPerBatch) {
        batches++;
        yield builder.flush();
      }
    }
    if (builder.rows > 0 || batches === 0) yield builder.flush();
    return;
  }
  const columns = duckdbColumnSpecs(result);
  const names = result.columnNames();
  const types = result.columnTypes();
  const first = await result.fetchChunk();
  if (first === null || first.rowCount === 0) {
    // An empty result still gives one (empty) batch: it carries the column types.
    yield* tableFromColumns(
      columns,
      columns.map(() => []),
    ).batches;
    return;
  }
  const builder = isRawChunk(first) ? ChunkBatchBuilder.create(columns, types) : undefined;
  if (builder !== undefined) {
    // Straight from the vectors' memory into Arrow buffers.
    for (
      let chunk: unknown = first;
      chunk !== null && (chunk as RawChunk).rowCount > 0;
      chunk = await result.fetchChunk()
    ) {
      builder.append(chunk as RawChunk);
      if (builder.rows >= rowsPerBatch) yield builder.flush();
    }
    if (builder.rows > 0) yield builder.flush();
    return;
  }
  let pending: unknown[][] = [];
  let pendingRows = 0;
  const flush = async () => {
    const merged = names.map((_, c) => pending.flatMap((chunk) => chunk[c] as unknown[]));
    pending = [];
    pendingRows = 0;
    const { values } = await readDuckDBColumns({
      columnNames: () => names,
      columnTypes: () => types,
      getColumns: () => merged,
    });
    return tableFromColumns(columns, values).batches;
  };
  for (
    let chunk: Awaited<ReturnType<ChunkedResult['fetchChunk']>> = first;
    chunk !== null && chunk.rowCount > 0;
    chunk = await result.fetchChunk()
  ) {
    // Kept column-major: pending[i][c] is chunk i's column c.
    chunkReads.values++;
    pending.push(chunk.getColumns());
    pendingRows += chunk.rowCount;
    if (pendingRows >= rowsPerBatch) yield* await flush();
  }
  if (pendingRows > 0) yield* await flush();
}

/**
 * The data chunks of a result held in memory, read without consuming it, so that it can be read
 * again (`toBatches`, then `toArrow`): a `DuckDBMaterializedResult` (from `run`) by index, through
 * its public `getChunk`; a `DuckDBResultReader` whose rows have all been read from the field it
 * keeps them in (it has no public accessor), its shape checked first. Otherwise `undefined`.
 * @internal
 */
export function readChunks(result: DuckDBResultLike): RawChunk[] | undefined {
  const materialized = result as { chunkCount?: unknown; getChunk?: unknown };
  if (typeof materialized.chunkCount === 'number' && typeof materialized.getChunk === 'function') {
    const getChunk = materialized.getChunk as (index: number) => unknown;
    const chunks = Array.from({ length: materialized.chunkCount }, (_, i) => getChunk.call(result, i));
    return chunks.every(isRawChunk) ? chunks : undefined;
  }
  const reader = result as { done?: unknown; chunks?: unknown };
  if (reader.done !== true || !Array.isArray(reader.chunks)) return undefined;
  return reader.chunks.every(isRawChunk) ? (reader.chunks as RawChunk[]) : undefined;
}
