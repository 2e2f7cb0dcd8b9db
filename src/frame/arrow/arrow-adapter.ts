import { RecordBatch, Table } from 'apache-arrow';
import type { FrameAdapter } from '../frame-adapter.js';

/** Apache Arrow tables (`apache-arrow`), passed through as they are. */
export const arrowAdapter: FrameAdapter<Table> = {
  kind: 'arrow',
  canAdapt(value): value is Table {
    // By shape, so that a table built by another copy of apache-arrow is recognised too.
    return (
      value instanceof Table ||
      (typeof value === 'object' &&
        value !== null &&
        'schema' in value &&
        'batches' in value &&
        'numRows' in value &&
        typeof (value as { getChildAt?: unknown }).getChildAt === 'function')
    );
  },
  async toArrow(table) {
    return table;
  },
  async fromArrow(table) {
    return table;
  },
  async *toBatches(table): AsyncIterable<RecordBatch> {
    // `new Table(schema, batches)` keeps each batch's own schema: give every batch the table's,
    // whose field metadata (the JSON mark) is what stores read the column types from.
    for (const batch of table.batches)
      yield batch.schema === table.schema ? batch : new RecordBatch(table.schema, batch.data);
  },
};
