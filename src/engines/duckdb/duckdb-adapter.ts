import { type RecordBatch, Table } from 'apache-arrow';
import type { FrameAdapter } from '../../frame/frame-adapter.js';
import { type DuckDBResultLike, isDuckDBResult } from './duckdb-columns.js';
import { duckdbBatches } from './duckdb-stream.js';

/**
 * Query results of `@duckdb/node-api` (`DuckDBResultReader` from `runAndReadAll`,
 * `DuckDBMaterializedResult` from `run`). Reading back gives a `DuckDBResultReader`.
 * The driver is loaded only when a result has to be made, so the core does not need it.
 */
export const duckdbAdapter: FrameAdapter<DuckDBResultLike> = {
  kind: 'duckdb',
  canAdapt: isDuckDBResult,
  async toArrow(result) {
    // Through the same reader as `toBatches`, which leaves an in-memory result readable again.
    const batches: RecordBatch[] = [];
    for await (const batch of duckdbBatches(result)) batches.push(batch);
    return new Table(batches);
  },
  toBatches: (result) => duckdbBatches(result),
  async fromArrow(table: Table) {
    const [{ DuckDBInstance }, { appendBatches }, { columnDefinitions, quoteIdentifier }, { columnsOf }] =
      await Promise.all([
        import('@duckdb/node-api'),
        import('./duckdb-load.js'),
        import('./duckdb-dialect.js'),
        import('../../frame/columns.js'),
      ]);
    // One in-memory database per process holds the short-lived tables results are read from.
    scratch ??= sharedOnSuccess(() => DuckDBInstance.create(':memory:'));
    const connection = await (await scratch()).connect();
    try {
      const columns = columnsOf(table);
      const name = `featurefn_result_${process.pid}_${++resultCounter}`;
      await connection.run(`CREATE TABLE ${quoteIdentifier(name)} (${columnDefinitions(columns)})`);
      await appendBatches(connection, { schema: 'main', name }, columns, table.batches);
      const reader = await connection.runAndReadAll(`SELECT * FROM ${quoteIdentifier(name)}`);
      await connection.run(`DROP TABLE ${quoteIdentifier(name)}`);
      return reader;
    } finally {
      connection.closeSync();
    }
  },
};

let resultCounter = 0;
let scratch: (() => Promise<import('@duckdb/node-api').DuckDBInstance>) | undefined;

/**
 * `create()`'s result, made once and shared by every caller; a failure is not kept, so the next
 * call tries again (a failed scratch database would otherwise break DuckDB results until restart).
 * @internal
 */
export function sharedOnSuccess<T>(create: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    if (pending === undefined) {
      const attempt = create();
      pending = attempt;
      attempt.catch(() => {
        if (pending === attempt) pending = undefined;
      });
    }
    return pending;
  };
}
