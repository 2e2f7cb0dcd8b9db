import { FeatureStoreError } from '../../errors.js';
import { isSqlQuery, type SqlQuery } from '../../sql/sql-query.js';
import type { FrameAdapter } from '../frame-adapter.js';

/**
 * SQL queries made with a source's `sql` tag. A store whose database is the query's own runs it
 * there (`CREATE TABLE … AS`), so no row passes through Node; any other store streams its rows.
 * A materialized SQL feature reads back as a query over the stored table, on the store's database.
 */
export const sqlAdapter: FrameAdapter<SqlQuery> = {
  kind: 'sql',
  canAdapt: isSqlQuery,
  toArrow: (query) => query.toArrow(),
  toBatches: (query) => query.source.stream(query),
  async fromArrow() {
    throw new FeatureStoreError(
      'UNSUPPORTED_RESULT',
      'a stored SQL feature is read back as a query on the database of the store that holds it; this store has no SQL source.',
    );
  },
};
