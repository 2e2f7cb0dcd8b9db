import type { ColumnSpec, Row } from '../frame/columns.js';
import {
  checkColumns,
  type FilterValue,
  layoutOf,
  type Predicate,
  type QueryNode,
  type SourceShape,
} from './nodes.js';
import { checkValue } from './sql-compiler.js';

/** A computed feature result as rows, with its shape. @internal */
export interface RowSource extends SourceShape {
  readonly rows: readonly Row[];
}

/**
 * Runs a read in process, over computed feature results: the same join, filters, selection and
 * limit that {@link compileRead} turns into SQL, with the same semantics.
 * @internal
 */
export function evaluateRead(
  sources: readonly RowSource[],
  node: QueryNode,
): { columns: ColumnSpec[]; rows: Row[] } {
  const layout = layoutOf(sources);
  checkColumns(layout, node);
  const byName = new Map(layout.columns.map((c) => [c.name, c]));
  const tests = node.filters.map((p) => compile(p, byName.get(p.column)!));
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
  const selected = node.select ?? layout.columns.map((c) => c.name);
  const out: Row[] = [];
  const limit = node.limit ?? Number.POSITIVE_INFINITY;
  const emit = (combined: Row) => {
    if (out.length >= limit) return;
    if (!tests.every((test) => test(combined))) return;
    const row: Row = {};
    for (const name of selected) row[name] = combined[name] ?? null;
    out.push(row);
  };
  const expand = (combined: Row, level: number): void => {
    if (level === indexes.length) {
      emit(combined);
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
  for (const row of sources[0]!.rows) {
    if (out.length >= limit) break;
    expand({ ...row }, 0);
  }
  return { columns: selected.map((name) => ({ name, type: byName.get(name)!.type })), rows: out };
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
