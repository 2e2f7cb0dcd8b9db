import type { Table } from 'apache-arrow';
import { type Row, rowsToTable, tableToRows } from '../columns.js';
import type { FrameAdapter } from '../frame-adapter.js';

/**
 * The part of a Kysely `SelectQueryBuilder` featurefn uses, declared by shape so that the core
 * never imports `kysely`.
 */
export interface KyselySelectLike {
  compile(): { readonly sql: string; readonly parameters: readonly unknown[] };
  execute(): Promise<Row[]>;
  toOperationNode(): { readonly kind: string };
}

/**
 * Kysely select queries (`db.selectFrom('flights').select(…)`, not yet executed). featurefn runs
 * them with `execute()` and stores the rows Kysely gives: column types are inferred from those
 * values as for row arrays, so what is stored is exactly what the query returns through your
 * dialect (with `pg`'s default parsers, `bigint` and `numeric` columns arrive as strings; set
 * type parsers on your pool to get numbers).
 *
 * Reading back: a Kysely feature materialized in a `PostgresMaterializer` comes back from a
 * decorated call as a real Kysely query over the stored table, on the store's pool
 * (`selectFrom('<schema>.m_<id>').selectAll()`); run it with `.execute()`, or refine it first.
 * A `DuckDBMaterializer` has no Kysely database to make that query on, so it refuses to
 * materialize a Kysely feature (`UNSUPPORTED_RESULT`, nothing stored): store it in PostgreSQL, or
 * return `await query.execute()` (row objects) to store it in DuckDB.
 *
 * ### Example
 * ```ts
 * export const departures = feature({ entity: 'origin' }, async function departures({ when }: { when: Date }) {
 *   return db
 *     .selectFrom('flights')
 *     .select(['origin', (eb) => eb.fn.countAll<number>().as('departures')])
 *     .where('date', '<=', when)
 *     .groupBy('origin');
 * });
 * ```
 */
export const kyselyAdapter: FrameAdapter<KyselySelectLike | Row[]> = {
  kind: 'kysely',
  canAdapt(value): value is KyselySelectLike {
    if (typeof value !== 'object' || value === null) return false;
    const query = value as Partial<Record<keyof KyselySelectLike, unknown>>;
    if (
      typeof query.compile !== 'function' ||
      typeof query.execute !== 'function' ||
      typeof query.toOperationNode !== 'function'
    ) {
      return false;
    }
    try {
      // Only selects: other builders (inserts, raw SQL) change data or need a database argument.
      return (value as KyselySelectLike).toOperationNode().kind === 'SelectQueryNode';
    } catch {
      return false;
    }
  },
  async toArrow(query) {
    return rowsToTable(Array.isArray(query) ? query : await query.execute());
  },
  async fromArrow(table: Table) {
    // Outside PostgreSQL there is no database to make a query on: the rows it would return.
    return tableToRows(table);
  },
};
