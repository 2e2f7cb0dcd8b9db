import type { ColumnSpec, Row } from '../frame/columns.js';
import {
  checkColumn,
  type FilterValue,
  type Layout,
  layoutOf,
  type Predicate,
  type QueryTree,
  type SourceShape,
  unwind,
} from './nodes.js';
import { checkValue } from './sql-compiler.js';

/** A computed feature result as rows, with its shape. @internal */
export interface RowSource extends SourceShape {
  readonly rows: readonly Row[];
}

/**
 * Runs a read tree in process, over computed feature results (`sources`, in the order of the
 * tree's source nodes): the same join, then each filter, selection and limit in the tree's order,
 * with the semantics {@link compileRead} gives them in SQL.
 * @internal
 */
export function evaluateRead(
  tree: QueryTree,
  sources: readonly RowSource[],
): { columns: ColumnSpec[]; rows: Row[] } {
  const layout = layoutOf(sources);
  const byName = new Map(layout.columns.map((c) => [c.name, c]));
  let names = layout.columns.map((c) => c.name);
  let rows = joinRows(sources, layout);
  for (const op of unwind(tree).operations) {
    if (op.kind === 'filter') {
      for (const p of op.predicates) checkColumn(names, p.column);
      const tests = op.predicates.map((p) => compile(p, byName.get(p.column)!));
      rows = rows.filter((row) => tests.every((test) => test(row)));
    } else if (op.kind === 'project') {
      for (const column of op.columns) checkColumn(names, column);
      names = [...op.columns];
    } else {
      rows = rows.slice(0, op.count);
    }
  }
  return {
    columns: names.map((name) => ({ name, type: byName.get(name)!.type })),
    rows: rows.map((combined) => {
      const row: Row = {};
      for (const name of names) row[name] = combined[name] ?? null;
      return row;
    }),
  };
}

/** Rows of the first source, each other source left-joined on its shared key columns. */
function joinRows(sources: readonly RowSource[], layout: Layout): Row[] {
  const indexes = sources.slice(1).map((source, i) => {
    const keys = layout.joins[i]!;
    const index = new Map<string, Row[]>();
    for (const row of source.rows) {
      const k = keyText(keys.map((key) => row[key]));
      const bucket = index.get(k);
      if (bucket === undefined) index.set(k, [row]);
      else bucket.push(row);
    }
    return { keys, index };
  });
  const out: Row[] = [];
  const expand = (combined: Row, level: number): void => {
    if (level === indexes.length) {
      out.push(combined);
      return;
    }
    const { keys, index } = indexes[level]!;
    const source = sources[level + 1]!;
    const matches = keys.some((k) => combined[k] === null || combined[k] === undefined)
      ? undefined
      : index.get(keyText(keys.map((k) => combined[k])));
    if (matches === undefined) {
      const nulls: Row = { ...combined };
      for (const c of source.columns) if (!(c.name in nulls)) nulls[c.name] = null;
      expand(nulls, level + 1);
      return;
    }
    for (const match of matches) expand({ ...match, ...combined }, level + 1);
  };
  for (const row of sources[0]!.rows) expand({ ...row }, 0);
  return out;
}

function keyText(values: readonly unknown[]): string {
  return JSON.stringify(
    values.map((v) => (v instanceof Date ? `d:${v.toISOString()}` : typeof v === 'bigint' ? Number(v) : v)),
  );
}

function comparable(value: unknown): unknown {
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'bigint') return Number(value);
  return value;
}

function compile(predicate: Predicate, column: ColumnSpec): (row: Row) => boolean {
  const name = predicate.column;
  switch (predicate.kind) {
    case 'isNull':
      return (row) => row[name] === null || row[name] === undefined;
    case 'in': {
      const values = new Set(
        predicate.values.map((v: FilterValue) => (v === null ? null : comparable(checkValue(column, v)))),
      );
      return (row) => values.has(comparable(row[name] ?? null));
    }
    case 'compare': {
      const target = comparable(checkValue(column, predicate.value)) as number | string | boolean;
      return (row) => {
        const raw = row[name];
        if (raw === null || raw === undefined) return false;
        const v = comparable(raw) as number | string | boolean;
        switch (predicate.op) {
          case '=':
            return v === target;
          case '!=':
            return v !== target;
          case '<':
            return v < target;
          case '<=':
            return v <= target;
          case '>':
            return v > target;
          case '>=':
            return v >= target;
        }
      };
    }
  }
}
