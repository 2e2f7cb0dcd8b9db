import { FeatureStoreError } from '../errors.js';
import { describeValue } from '../format.js';
import type { ColumnSpec, ColumnType } from '../frame/columns.js';
import {
  checkColumns,
  type FilterValue,
  type Layout,
  layoutOf,
  type Predicate,
  type QueryNode,
  type SourceShape,
} from './nodes.js';

/** What differs between SQL engines when compiling a read. */
export interface SqlDialect {
  /** Quotes an identifier. */
  quote(identifier: string): string;
  /** Placeholder for the `index`-th bound value (1-based), e.g. `$1`. */
  placeholder(index: number): string;
}

/** A feature source of a read: its shape plus the quoted table its rows are in. @internal */
export interface SqlSource extends SourceShape {
  readonly table: string;
}

/** A bound value with the type of the column it is compared with. */
export interface BoundValue {
  readonly value: Exclude<FilterValue, null>;
  readonly type: ColumnType;
}

/** A compiled read: SQL text, its bound values (never spliced into the text) and output columns. */
export interface CompiledQuery {
  readonly sql: string;
  readonly params: readonly BoundValue[];
  readonly columns: readonly ColumnSpec[];
  /** Where each bound value comes from in the query node, for {@link rebindRead}. @internal */
  readonly slots?: readonly BindSlot[];
}

/**
 * Where a bound value comes from: value `item` (or the only value) of filter `filter`, compared
 * with `column`; or the limit. @internal
 */
export type BindSlot =
  | { readonly filter: number; readonly item: number | undefined; readonly column: ColumnSpec }
  | { readonly limit: true };

/**
 * Compiles a read of joined feature sources into one SQL statement.
 *
 * ```sql
 * SELECT t0."origin", t0."departures", t1."mean_delay"
 * FROM "featurefn"."m_12" AS t0
 * LEFT JOIN "featurefn"."m_15" AS t1 ON t1."origin" = t0."origin" AND t1."origin" = $2
 * WHERE t0."origin" = $1
 * ```
 * Equality and IN filters on a key column are repeated on every source that has the key, so each
 * source is probed through its own index.
 * @internal
 */
export function compileRead(
  sources: readonly SqlSource[],
  node: QueryNode,
  dialect: SqlDialect,
): CompiledQuery {
  const layout = layoutOf(sources);
  checkColumns(layout, node);
  const params: BoundValue[] = [];
  const slots: BindSlot[] = [];
  const bind = (value: Exclude<FilterValue, null>, type: ColumnType, slot: BindSlot) => {
    params.push({ value, type });
    slots.push(slot);
    return dialect.placeholder(params.length);
  };
  const typeOf = new Map(layout.columns.map((c) => [c.name, c]));
  const ref = (source: number, column: string) => `t${source}.${dialect.quote(column)}`;
  const condition = (predicate: Predicate, source: number, filter: number) => {
    const column = typeOf.get(predicate.column)!;
    const spec = { name: column.name, type: column.type };
    const target = ref(source, predicate.column);
    switch (predicate.kind) {
      case 'isNull':
        return `${target} IS NULL`;
      case 'compare':
        return `${target} ${predicate.op === '!=' ? '<>' : predicate.op} ${bind(checkValue(column, predicate.value), column.type, { filter, item: undefined, column: spec })}`;
      case 'in': {
        const items = predicate.values.flatMap((v, item) => (v === null ? [] : [item]));
        const parts: string[] = [];
        if (items.length > 0)
          parts.push(
            `${target} IN (${items.map((item) => bind(checkValue(column, predicate.values[item]!), column.type, { filter, item, column: spec })).join(', ')})`,
          );
        if (items.length < predicate.values.length) parts.push(`${target} IS NULL`);
        return parts.length === 0 ? 'FALSE' : parts.length === 1 ? parts[0]! : `(${parts.join(' OR ')})`;
      }
    }
  };

  const where = node.filters.map((p, filter) => condition(p, typeOf.get(p.column)!.source, filter));
  const joinFilters: string[][] = sources.map(() => []);
  node.filters.forEach((predicate, filter) => {
    const pushable = predicate.kind === 'in' || (predicate.kind === 'compare' && predicate.op === '=');
    if (!pushable) return;
    for (const source of layout.keySources.get(predicate.column)?.slice(1) ?? []) {
      joinFilters[source]!.push(condition(predicate, source, filter));
    }
  });

  const selected = node.select ?? layout.columns.map((c) => c.name);
  const output = selected.map((name) => typeOf.get(name)!);
  let sql = `SELECT ${output.map((c) => `${ref(c.source, c.name)} AS ${dialect.quote(c.name)}`).join(', ')}`;
  sql += ` FROM ${sources[0]!.table} AS t0`;
  sources.slice(1).forEach((source, i) => {
    const index = i + 1;
    const on = layout.joins[i]!.map((k) => `${ref(index, k)} = ${ref(keyOwner(layout, k), k)}`);
    sql += ` LEFT JOIN ${source.table} AS t${index} ON ${[...on, ...joinFilters[index]!].join(' AND ')}`;
  });
  if (where.length > 0) sql += ` WHERE ${where.join(' AND ')}`;
  if (node.limit !== undefined) sql += ` LIMIT ${bind(node.limit, 'int64', { limit: true })}`;
  return { sql, params, columns: output.map(({ name, type }) => ({ name, type })), slots };
}

/**
 * Text equal for two query nodes exactly when, over the same sources, they compile to the same
 * SQL and bind their values in the same places: a cache key for compiled reads. @internal
 */
export function queryShape(node: QueryNode): string {
  // Names are length-prefixed, so no column name can make two shapes look alike.
  let shape = '';
  for (const p of node.filters) {
    shape += `${p.kind}${p.column.length}:${p.column}`;
    if (p.kind === 'compare') shape += p.op;
    else if (p.kind === 'in') {
      let nulls = 0;
      for (const v of p.values) if (v === null) nulls++;
      shape += `${p.values.length - nulls}/${nulls}`;
    }
    shape += ';';
  }
  if (node.select !== undefined) for (const name of node.select) shape += `s${name.length}:${name}`;
  if (node.limit !== undefined) shape += 'L';
  return shape;
}

/**
 * `compiled` (from a node of the same {@link queryShape}) with the values of `node` bound
 * instead, checked as {@link compileRead} checks them. @internal
 */
export function rebindRead(compiled: CompiledQuery, node: QueryNode): CompiledQuery {
  const slots = compiled.slots ?? [];
  const params: BoundValue[] = new Array(slots.length);
  for (let i = 0; i < slots.length; i++) {
    const slot = slots[i]!;
    if ('limit' in slot) {
      params[i] = { value: node.limit!, type: 'int64' };
      continue;
    }
    const predicate = node.filters[slot.filter]!;
    const value =
      predicate.kind === 'in'
        ? predicate.values[slot.item!]!
        : predicate.kind === 'compare'
          ? predicate.value
          : null;
    params[i] = { value: checkValue(slot.column, value), type: slot.column.type };
  }
  return { sql: compiled.sql, params, columns: compiled.columns, slots };
}

function keyOwner(layout: Layout, key: string): number {
  return layout.keySources.get(key)![0]!;
}

/** Refuses a filter value of the wrong kind for its column, in words. @internal */
export function checkValue(column: ColumnSpec, value: FilterValue): Exclude<FilterValue, null> {
  const ok = (() => {
    switch (column.type) {
      case 'string':
        return typeof value === 'string';
      case 'boolean':
        return typeof value === 'boolean';
      case 'timestamp':
      case 'date':
        return value instanceof Date;
      case 'json':
      case 'float64[]':
        return false;
      default:
        return typeof value === 'number' || typeof value === 'bigint';
    }
  })();
  if (!ok) {
    throw new FeatureStoreError(
      'INVALID_QUERY',
      column.type === 'json' || column.type === 'float64[]'
        ? `column "${column.name}" holds ${column.type} values, which filters cannot compare; filter on a key or a scalar column.`
        : `filter on "${column.name}" (a ${column.type} column) got ${describeValue(value)}; pass a ${expected(column.type)}.`,
      { details: { column: column.name, type: column.type } },
    );
  }
  return value as Exclude<FilterValue, null>;
}

function expected(type: ColumnType): string {
  if (type === 'string') return 'string';
  if (type === 'boolean') return 'boolean';
  if (type === 'timestamp' || type === 'date') return 'Date';
  return 'number';
}
