import type { Table } from 'apache-arrow';
import { type Row, rowsToTable, tableToRows } from '../columns.js';
import type { FrameAdapter } from '../frame-adapter.js';

/**
 * Arrays of plain row objects, e.g. `[{ origin: 'SFO', departures: 120 }]`: what a feature written
 * with `map`/`filter`/`reduce` returns. Column types are inferred from the values.
 */
export const rowsAdapter: FrameAdapter<Row[]> = {
  kind: 'rows',
  canAdapt(value): value is Row[] {
    return (
      Array.isArray(value) &&
      value.every(
        (row) => typeof row === 'object' && row !== null && !Array.isArray(row) && !(row instanceof Date),
      )
    );
  },
  async toArrow(rows) {
    return rowsToTable(rows);
  },
  async fromArrow(table: Table) {
    return tableToRows(table);
  },
};
