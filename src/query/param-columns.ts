import type { Table } from 'apache-arrow';
import { FeatureStoreError } from '../errors.js';
import type { Params, ParamValue } from '../feature/params.js';
import {
  type ColumnSpec,
  type ColumnType,
  columnsOf,
  type Row,
  tableFromColumns,
  tableToRows,
} from '../frame/columns.js';

/** What `toArray()` and `toArrow()` take. */
export interface ReadOptions {
  /**
   * Add one column per parameter the frame was read at (`resolvedParams()`), after the feature
   * columns, e.g. a `when` column holding the point in time `Last()` chose. A parameter named
   * like a column of the result is refused (`AMBIGUOUS_COLUMN`). Default `false`.
   */
  readonly params?: boolean;
}

function typeOf(value: ParamValue): ColumnType {
  if (value instanceof Date) return 'timestamp';
  if (typeof value === 'string') return 'string';
  if (typeof value === 'boolean') return 'boolean';
  return 'float64';
}

function checkClash(params: Params, columns: readonly string[], features: readonly string[]): void {
  const clash = Object.keys(params).find((name) => columns.includes(name));
  if (clash === undefined) return;
  throw new FeatureStoreError(
    'AMBIGUOUS_COLUMN',
    `the parameter \`${clash}\` has the name of a column of ${features.join(', ')}, so toArray/toArrow({ params: true }) cannot add it as a column. ` +
      'Read the parameters with frame.resolvedParams() instead, or select() the other columns first.',
    { params, details: { column: clash, features } },
  );
}

/** `rows` with one column per parameter added (`columns`: the result's column names). @internal */
export function rowsWithParams(
  rows: Row[],
  columns: readonly string[],
  params: Params,
  features: readonly string[],
): Row[] {
  checkClash(params, columns, features);
  return rows.map((row) => {
    const out: Row = { ...row };
    for (const name of Object.keys(params)) {
      const value = params[name]!;
      out[name] = value instanceof Date ? new Date(value.getTime()) : value;
    }
    return out;
  });
}

/** `table` with one constant column per parameter added. @internal */
export function tableWithParams(table: Table, params: Params, features: readonly string[]): Table {
  const columns = columnsOf(table);
  checkClash(
    params,
    columns.map((c) => c.name),
    features,
  );
  const names = Object.keys(params);
  const all: ColumnSpec[] = [...columns, ...names.map((name) => ({ name, type: typeOf(params[name]!) }))];
  const rows = tableToRows(table);
  return tableFromColumns(all, [
    ...columns.map((c) => rows.map((r) => r[c.name])),
    ...names.map((name) => rows.map(() => params[name])),
  ]);
}
