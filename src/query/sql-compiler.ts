import { FeatureStoreError } from '../errors.js';
import { describeValue } from '../format.js';
import type { ColumnSpec, ColumnType } from '../frame/columns.js';
import {
  checkColumn,
  type FilterNode,
  type FilterValue,
  type Layout,
  type LimitNode,
  layoutOf,
  type Predicate,
  type ProjectNode,
  type QueryTree,
  type StoredSource,
  unwind,
} from './nodes.js';

/** What differs between SQL engines when compiling a read. */
export interface SqlDialect {
  /** Quotes an identifier. */
  quote(identifier: string): string;
  /** Placeholder for the `index`-th bound value (1-based), e.g. `$1`; a value bound in several places has the same one in each. */
  placeholder(index: number): string;
  /** The SQL type a column of `type` is read as (for a typed NULL). */
  sqlType(type: ColumnType): string;
  /**
   * How a key lookup reads the materializations it probes in one shared table in a single pass
   * over it, one index scan for all of them (see {@link compileRead}), where the dialect can:
   * `pick` gives an aggregate of the value of `column` in the row whose `idColumn` equals the
   * bound id, as the text before and after the id's placeholder (PostgreSQL:
   * `max(c) FILTER (WHERE _m = ` and `)`), or undefined for a type it has none for; `apart` reads
   * each table's rows with a statement of its own, the store completing the rows in process
   * (DuckDB, where each expression of a statement costs more than the pass itself).
   */
  readonly groupedLookup?:
    | {
        readonly kind: 'pick';
        pick(column: string, idColumn: string, type: ColumnType): readonly [string, string] | undefined;
      }
    | { readonly kind: 'apart' };
}

/** A bound value with the type of the column it is compared with. */
export interface BoundValue {
  readonly value: Exclude<FilterValue, null>;
  readonly type: ColumnType;
}

/**
 * A compiled read: the text around each place a value is bound (`strings`; values are never
 * spliced into it), the values, the text rendered with the dialect's placeholders, and the
 * output columns. A value bound in several places (a key lookup repeats the key in each probe) is
 * one parameter, whose placeholder appears in each of them.
 */
export interface CompiledQuery {
  /** The text around each place a value is bound: one more than `places`. */
  readonly strings: readonly string[];
  /** The bound values, each once, in the order of their first place. */
  readonly params: readonly BoundValue[];
  /** For each place between `strings`, the index in `params` of the value bound there. */
  readonly places: readonly number[];
  /** `strings` joined by the dialect's placeholders: `placeholder(i + 1)` wherever `params[i]` is bound. */
  readonly sql: string;
  readonly columns: readonly ColumnSpec[];
  /** Where each of `params` comes from in the tree, for {@link rebindRead}. @internal */
  readonly slots?: readonly BindSlot[];
  /**
   * Columns read apart (`apart` dialects): `sql` gives `columns` (what is not read apart, at
   * least one), and each lookup the rows of one shared table that complete them. @internal
   */
  readonly apart?: {
    /** `sql` binds the first `params` of `params`; the others are the lookups' only. */
    readonly params: number;
    readonly columns: readonly ColumnSpec[];
    readonly lookups: readonly ApartLookup[];
  };
}

/**
 * One shared table's rows for a key lookup: `sql` binds `params` (indexes into the read's own
 * `params`, in the order of its placeholders) and gives the id column, then `columns`; output
 * column `name` takes column `column` of the row whose id is the read's parameter `id`, or null
 * when there is none. @internal
 */
export interface ApartLookup {
  readonly sql: string;
  readonly params: readonly number[];
  readonly columns: readonly ColumnSpec[];
  readonly picks: readonly { readonly name: string; readonly column: number; readonly id: number }[];
}

/**
 * Where a bound value comes from: value `item` (or the only value) of predicate `predicate` of
 * the `op`-th operation above the sources; the smallest of some limits; or a value fixed by the
 * sources (a partition). @internal
 */
export type BindSlot =
  | {
      readonly op: number;
      readonly predicate: number;
      readonly item: number | undefined;
      readonly column: ColumnSpec;
    }
  | { readonly limits: readonly number[] }
  | { readonly fixed: BoundValue };

/** One SELECT of a compiled read: filters, columns and limits that need no subquery between them. */
interface Level {
  readonly where: { readonly op: number; readonly index: number; readonly predicate: Predicate }[];
  readonly limits: number[];
  select: readonly string[];
}

/**
 * Compiles a read tree whose sources are bound to their stored rows into one SQL statement.
 *
 * ```sql
 * SELECT t0."origin" AS "origin", t0."departures" AS "departures", t1."mean_delay" AS "mean_delay"
 * FROM "featurefn"."m_12" AS t0
 * LEFT JOIN "featurefn"."m_15" AS t1 ON t1."origin" = t0."origin" AND t1."origin" = $1
 * WHERE t0."origin" = $2
 * ```
 * Operations are applied in the order of the tree: consecutive filters merge and filters go below
 * a selection, but a filter after a limit filters the limited rows, in an outer SELECT. Equality
 * and IN filters on a key column below any limit are repeated on every source that has the key,
 * so each source is probed through its own index. A key lookup joins nothing: a source whose whole
 * key is pinned by equalities gives each of its columns from a scalar subquery probing its table,
 * `(SELECT t1."mean_delay" FROM "featurefn"."m_15" AS t1 WHERE t1."origin" = $1)`. Several such
 * sources in one shared table (see `shapeLayoutOf`) are read in one pass over it,
 * `WHERE u."origin" = $1 AND u."_m" IN ($2, $3, …)`: in the statement, each value picked by its
 * materialization id (`pick` dialects), or by a statement of its own whose rows the store puts in
 * place (`apart` dialects, unless `single`: a read to embed in other SQL is one statement).
 * @internal
 */
export function compileRead(
  tree: QueryTree,
  dialect: SqlDialect,
  options: { single?: boolean } = {},
): CompiledQuery {
  const { sources, operations } = unwind(tree);
  const stored = sources.map((source) => {
    if (source.stored === undefined) throw new Error(`source "${source.feature}" is not bound to a table`);
    return { feature: source.feature, ...source.stored };
  });
  const layout = layoutOf(stored);
  const typeOf = new Map(layout.columns.map((c) => [c.name, c]));

  const levels: Level[] = [{ where: [], limits: [], select: layout.columns.map((c) => c.name) }];
  operations.forEach((op, i) => {
    let level = levels[levels.length - 1]!;
    if (op.kind === 'filter') {
      for (const p of op.predicates) checkColumn(level.select, p.column);
      if (level.limits.length > 0) {
        level = { where: [], limits: [], select: level.select };
        levels.push(level);
      }
      op.predicates.forEach((predicate, index) => {
        level.where.push({ op: i, index, predicate });
      });
    } else if (op.kind === 'project') {
      for (const column of op.columns) checkColumn(level.select, column);
      level.select = op.columns;
    } else {
      level.limits.push(i);
    }
  });

  const strings: string[] = [''];
  const params: BoundValue[] = [];
  const places: number[] = [];
  const slots: BindSlot[] = [];
  /** The parameter of each filter value bound so far, by operation, predicate and item. */
  const bound = new Map<string, number>();
  const text = (t: string) => {
    strings[strings.length - 1] += t;
  };
  /** The index in `params` of a value: bound once for a filter's item or a `once` key. */
  const param = (value: BoundValue, slot: BindSlot, once?: string) => {
    const key = 'op' in slot ? `${slot.op}:${slot.predicate}:${slot.item ?? ''}` : once;
    let index = key === undefined ? undefined : bound.get(key);
    if (index === undefined) {
      index = params.push(value) - 1;
      slots.push(slot);
      if (key !== undefined) bound.set(key, index);
    }
    return index;
  };
  const bind = (value: BoundValue, slot: BindSlot, once?: string) => {
    places.push(param(value, slot, once));
    strings.push('');
  };
  const q = (name: string) => dialect.quote(name);
  const condition = (entry: Level['where'][number], target: string) => {
    const { predicate, op, index } = entry;
    const column = typeOf.get(predicate.column)!;
    const spec = { name: column.name, type: column.type };
    switch (predicate.kind) {
      case 'isNull':
        text(`${target} IS NULL`);
        return;
      case 'compare':
        text(`${target} ${predicate.op === '!=' ? '<>' : predicate.op} `);
        bind(
          { value: checkValue(column, predicate.value), type: column.type },
          { op, predicate: index, item: undefined, column: spec },
        );
        return;
      case 'in': {
        const items = predicate.values.flatMap((v, item) => (v === null ? [] : [item]));
        const withNull = items.length < predicate.values.length;
        if (items.length === 0) {
          text(withNull ? `${target} IS NULL` : 'FALSE');
          return;
        }
        text(`${withNull ? '(' : ''}${target} IN (`);
        items.forEach((item, n) => {
          if (n > 0) text(', ');
          bind(
            { value: checkValue(column, predicate.values[item]!), type: column.type },
            { op, predicate: index, item, column: spec },
          );
        });
        text(withNull ? `) OR ${target} IS NULL)` : ')');
      }
    }
  };
  /** The column `name` of source `source` in table alias `alias`, under the table's name for it. */
  const col = (alias: string, source: number, name: string) =>
    `${alias}.${q(stored[source]!.names?.get(name) ?? name)}`;
  /** Binds the id of source `source`'s rows in its shared table: one parameter however often used. */
  const partitionParam = (source: number) => {
    const p = stored[source]!.partition!;
    const fixed: BoundValue = { value: p.value, type: typeof p.value === 'string' ? 'string' : 'int64' };
    return param(fixed, { fixed }, `partition:${source}`);
  };
  const partitionId = (source: number) => {
    places.push(partitionParam(source));
    strings.push('');
  };
  const partition = (source: number, alias = `t${source}`) => {
    const p = stored[source]!.partition;
    if (p === undefined) return false;
    text(`${alias}.${q(p.column)} = `);
    partitionId(source);
    return true;
  };

  const probes = lookups(stored, layout, levels[0]!.where);
  const lookup = dialect.groupedLookup;
  // Read apart only where the read is one SELECT whose rows can be completed in process.
  const apart = lookup?.kind === 'apart' && options.single !== true && levels.length === 1;
  const groups =
    lookup?.kind === 'pick' || apart ? groupLookups(stored, probes, dialect) : new Map<number, LookupGroup>();
  /** Output columns read apart, by name. */
  const readApart = new Map<string, { source: number; group: LookupGroup }>();
  const emit = (k: number) => {
    const level = levels[k]!;
    const ref = (name: string) => {
      if (k > 0) return `q${k}.${q(name)}`;
      const { source, type } = typeOf.get(name)!;
      // A column this materialization lacks (the feature had it in others) reads as nulls.
      if (stored[source]!.absent?.has(name)) return `CAST(NULL AS ${dialect.sqlType(type)})`;
      return col(`t${source}`, source, name);
    };
    text('SELECT ');
    let items = 0;
    const separator = () => (items++ > 0 ? ', ' : '');
    level.select.forEach((name) => {
      const { source, type } = typeOf.get(name)!;
      const probe = k === 0 ? probes.get(source) : undefined;
      const group = k === 0 ? groups.get(source) : undefined;
      if (probe === undefined || stored[source]!.absent?.has(name)) {
        text(`${separator()}${ref(name)} AS ${q(name)}`);
        return;
      }
      if (group !== undefined && apart) {
        // From the group's own statement: no column here.
        group.members.add(source);
        readApart.set(name, { source, group });
        return;
      }
      if (group !== undefined) {
        // From the group's single pass over its table, joined below.
        group.members.add(source);
        group.picked.push({ source, name, type });
        text(`${separator()}g${group.index}.${q(name)} AS ${q(name)}`);
        return;
      }
      // One index probe with the filter's own values: no join to plan or execute.
      const t = `t${source}`;
      text(`${separator()}(SELECT ${col(t, source, name)} FROM ${stored[source]!.table} AS ${t} WHERE `);
      probe.forEach((entry, j) => {
        if (j > 0) text(' AND ');
        condition(entry, col(t, source, entry.predicate.column));
      });
      if (stored[source]!.partition !== undefined) {
        text(' AND ');
        partition(source);
      }
      text(`) AS ${q(name)}`);
    });
    // Every column read apart: the row itself, for the lookups to complete.
    if (items === 0) text(`TRUE AS ${q(ROW_MARK)}`);
    text(' FROM ');
    let conditions = 0;
    const and = () => text(conditions++ === 0 ? ' WHERE ' : ' AND ');
    if (k === 0) {
      text(`${stored[0]!.table} AS t0`);
      stored.slice(1).forEach((source, i) => {
        const index = i + 1;
        if (probes.has(index)) return;
        const on = layout.joins[i]!.map((key) => {
          const first = layout.keySources.get(key)![0]!;
          return `${col(`t${index}`, index, key)} = ${col(`t${first}`, first, key)}`;
        });
        text(` LEFT JOIN ${source.table} AS t${index} ON ${on.join(' AND ')}`);
        if (stored[index]!.partition !== undefined) {
          text(' AND ');
          partition(index);
        }
        for (const entry of level.where) {
          const p = entry.predicate;
          const pushable = p.kind === 'in' || (p.kind === 'compare' && p.op === '=');
          if (pushable && layout.keySources.get(p.column)?.slice(1).includes(index)) {
            text(' AND ');
            condition(entry, col(`t${index}`, index, p.column));
          }
        }
      });
      for (const group of new Set(groups.values())) {
        if (group.members.size === 0 || apart) continue;
        // One pass over the shared table for every materialization of the group: `u.key = $1
        // AND u._m IN (…)`, one row per materialization, folded into one row by the aggregates.
        const first = group.members.values().next().value as number;
        const u = `u${group.index}`;
        const idColumn = `${u}.${q(stored[first]!.partition!.column)}`;
        text(' CROSS JOIN (SELECT ');
        const { pick } = dialect.groupedLookup as Extract<SqlDialect['groupedLookup'], { kind: 'pick' }>;
        group.picked.forEach(({ source, name, type }, n) => {
          const [before, after] = pick(col(u, source, name), idColumn, type)!;
          text(`${n > 0 ? ', ' : ''}${before}`);
          partitionId(source);
          text(`${after} AS ${q(name)}`);
        });
        text(` FROM ${stored[first]!.table} AS ${u} WHERE `);
        probes.get(first)!.forEach((entry, j) => {
          if (j > 0) text(' AND ');
          condition(entry, col(u, first, entry.predicate.column));
        });
        text(` AND ${idColumn} IN (`);
        [...group.members].forEach((source, n) => {
          if (n > 0) text(', ');
          partitionId(source);
        });
        text(`)) AS g${group.index}`);
      }
      if (stored[0]!.partition !== undefined) {
        and();
        partition(0);
      }
    } else {
      text('(');
      emit(k - 1);
      text(`) AS q${k}`);
    }
    for (const entry of level.where) {
      and();
      condition(entry, ref(entry.predicate.column));
    }
    if (level.limits.length > 0) {
      text(' LIMIT ');
      bind({ value: smallest(operations, level.limits), type: 'int64' }, { limits: level.limits });
    }
  };
  emit(levels.length - 1);

  const output = levels[levels.length - 1]!.select.map((name) => {
    const { type } = typeOf.get(name)!;
    return { name, type };
  });
  const sql = render(strings, places, dialect);
  if (readApart.size === 0) return { strings, params, places, sql, columns: output, slots };
  const main = output.filter((c) => !readApart.has(c.name));
  const mainParams = params.length;
  return {
    strings,
    params,
    places,
    sql,
    columns: output,
    slots,
    apart: {
      params: mainParams,
      columns: main.length > 0 ? main : [{ name: ROW_MARK, type: 'boolean' }],
      lookups: [...new Set([...readApart.values()].map((r) => r.group))].map((group) => apartLookup(group)),
    },
  };

  /**
   * The statement reading one group's rows (`SELECT u._m, u.v1 FROM s AS u WHERE u.k = $1 AND
   * u._m IN ($2, $3)`), numbering its own placeholders; its values are the read's.
   */
  function apartLookup(group: LookupGroup): ApartLookup {
    const used: number[] = [];
    const placeholder = (index: number) => {
      let at = used.indexOf(index);
      if (at < 0) at = used.push(index) - 1;
      return dialect.placeholder(at + 1);
    };
    const first = group.members.values().next().value as number;
    const u = 'u';
    const idColumn = stored[first]!.partition!.column;
    const columns: ColumnSpec[] = [];
    const picks: { name: string; column: number; id: number }[] = [];
    for (const [name, { source, group: of }] of readApart) {
      if (of !== group) continue;
      const storedName = stored[source]!.names?.get(name) ?? name;
      let column = columns.findIndex((c) => c.name === storedName);
      if (column < 0) column = columns.push({ name: storedName, type: typeOf.get(name)!.type }) - 1;
      picks.push({ name, column, id: partitionParam(source) });
    }
    const conditions = probes.get(first)!.map((entry) => {
      const predicate = entry.predicate as Extract<Predicate, { kind: 'compare' }>;
      const column = typeOf.get(predicate.column)!;
      const value = { value: checkValue(column, predicate.value), type: column.type };
      const index = param(value, {
        op: entry.op,
        predicate: entry.index,
        item: undefined,
        column: { name: column.name, type: column.type },
      });
      return `${col(u, first, predicate.column)} = ${placeholder(index)}`;
    });
    const ids = [...group.members].map((source) => placeholder(partitionParam(source)));
    const select = [idColumn, ...columns.map((c) => c.name)].map((name) => `${u}.${q(name)}`);
    return {
      sql:
        `SELECT ${select.join(', ')} FROM ${stored[first]!.table} AS ${u} ` +
        `WHERE ${conditions.join(' AND ')} AND ${u}.${q(idColumn)} IN (${ids.join(', ')})`,
      params: used,
      columns,
      picks,
    };
  }
}

/** The one column of a statement all of whose columns are read apart. @internal */
export const ROW_MARK = '_row';

/**
 * The sources after the first that a key lookup reads with scalar subqueries instead of joins:
 * those whose whole key is what they join on, with each of those columns pinned by an equality
 * filter of the first level (so each yields at most one value, the one the LEFT JOIN would), and
 * none of whose columns the first level filters on. For each, the equality of each join column.
 */
function lookups(
  stored: readonly (StoredSource & { feature: string })[],
  layout: Layout,
  where: Level['where'],
): Map<number, Level['where']> {
  const equal = new Map<string, Level['where'][number]>();
  const filtered = new Set<string>();
  for (const entry of where) {
    const p = entry.predicate;
    filtered.add(p.column);
    if (p.kind === 'compare' && p.op === '=' && !equal.has(p.column)) equal.set(p.column, entry);
  }
  const probes = new Map<number, Level['where']>();
  if (equal.size === 0) return probes;
  for (let i = 1; i < stored.length; i++) {
    const joins = layout.joins[i - 1]!;
    if (!stored[i]!.key.every((key) => joins.includes(key))) continue;
    const probe = joins.map((key) => equal.get(key));
    if (probe.includes(undefined)) continue;
    if (layout.columns.some((c) => c.source === i && filtered.has(c.name))) continue;
    probes.set(i, probe as Level['where']);
  }
  return probes;
}

/** Sources a key lookup reads together, in one pass over their shared table. */
interface LookupGroup {
  readonly index: number;
  /** The sources with a column in the read, in the order of the SELECT. */
  readonly members: Set<number>;
  /** `pick` dialects: each column read, with its source. */
  readonly picked: { source: number; name: string; type: ColumnType }[];
}

/**
 * The probed sources (see {@link lookups}) that share a table with another one probed on the same
 * key columns, by source: those the dialect can read in one pass over it, each group's
 * materializations picked from their rows by id. A wide key lookup (fifty features of one entity)
 * is then one index scan per shared table, not one per feature.
 */
function groupLookups(
  stored: readonly StoredSource[],
  probes: ReadonlyMap<number, Level['where']>,
  dialect: SqlDialect,
): Map<number, LookupGroup> {
  const lookup = dialect.groupedLookup;
  const byTable = new Map<string, number[]>();
  for (const [source, probe] of probes) {
    const { table, partition, columns, names } = stored[source]!;
    if (partition === undefined) continue;
    if (
      lookup?.kind === 'pick' &&
      columns.some((c) => lookup.pick(names?.get(c.name) ?? c.name, partition.column, c.type) === undefined)
    )
      continue;
    const shape = `${table}\u0000${partition.column}\u0000${probe.map((e) => e.predicate.column).join('\u0000')}`;
    const sources = byTable.get(shape) ?? [];
    sources.push(source);
    byTable.set(shape, sources);
  }
  const groups = new Map<number, LookupGroup>();
  let index = 0;
  for (const sources of byTable.values()) {
    if (sources.length < 2) continue;
    const group: LookupGroup = { index: index++, members: new Set(), picked: [] };
    for (const source of sources) groups.set(source, group);
  }
  return groups;
}

function smallest(operations: ReturnType<typeof unwind>['operations'], limits: readonly number[]): number {
  let n = Number.POSITIVE_INFINITY;
  for (const i of limits) n = Math.min(n, (operations[i] as LimitNode).count);
  return n;
}

function render(strings: readonly string[], places: readonly number[], dialect: SqlDialect): string {
  let sql = strings[0]!;
  for (let i = 1; i < strings.length; i++) sql += dialect.placeholder(places[i - 1]! + 1) + strings[i]!;
  return sql;
}

/**
 * True when `a` and `b`, over the same stored sources, compile to the same SQL and bind their
 * values in the same places (see {@link rebindRead}): the same operations, columns, operators,
 * and IN lists of the same length with nulls at the same places. Allocates nothing. @internal
 */
export function sameShape(a: QueryTree, b: QueryTree): boolean {
  for (;;) {
    if (a === b) return true;
    if (a.kind !== b.kind) return false;
    switch (a.kind) {
      case 'source':
        return a.feature === (b as typeof a).feature;
      case 'join': {
        const other = (b as typeof a).sources;
        if (a.sources.length !== other.length) return false;
        for (let i = 0; i < other.length; i++) if (a.sources[i]!.feature !== other[i]!.feature) return false;
        return true;
      }
      case 'limit':
        break;
      case 'project': {
        const other = (b as typeof a).columns;
        if (a.columns.length !== other.length) return false;
        for (let i = 0; i < other.length; i++) if (a.columns[i] !== other[i]) return false;
        break;
      }
      case 'filter': {
        const other = (b as typeof a).predicates;
        if (a.predicates.length !== other.length) return false;
        for (let i = 0; i < other.length; i++)
          if (!samePredicateShape(a.predicates[i]!, other[i]!)) return false;
        break;
      }
    }
    a = (a as FilterNode | ProjectNode | LimitNode).input;
    b = (b as FilterNode | ProjectNode | LimitNode).input;
  }
}

function samePredicateShape(p: Predicate, q: Predicate): boolean {
  if (p.kind !== q.kind || p.column !== q.column) return false;
  if (p.kind === 'compare') return p.op === (q as typeof p).op;
  if (p.kind === 'in') {
    const values = (q as typeof p).values;
    if (p.values.length !== values.length) return false;
    for (let i = 0; i < values.length; i++) if ((p.values[i] === null) !== (values[i] === null)) return false;
  }
  return true;
}

/**
 * `compiled` (from a tree of the same shape, see {@link sameShape}) with the values of `tree` bound
 * instead, checked as {@link compileRead} checks them. @internal
 */
export function rebindRead(compiled: CompiledQuery, tree: QueryTree): CompiledQuery {
  const slots = compiled.slots ?? [];
  // The operations above the sources, the last applied first: slot `op` counts from the first.
  const operations: (FilterNode | ProjectNode | LimitNode)[] = [];
  for (let node = tree; node.kind !== 'source' && node.kind !== 'join'; node = node.input)
    operations.push(node);
  const last = operations.length - 1;
  const params: BoundValue[] = new Array(slots.length);
  for (let i = 0; i < slots.length; i++) {
    const slot = slots[i]!;
    if ('fixed' in slot) {
      params[i] = slot.fixed;
      continue;
    }
    if ('limits' in slot) {
      let count = Number.POSITIVE_INFINITY;
      for (const op of slot.limits) count = Math.min(count, (operations[last - op] as LimitNode).count);
      params[i] = { value: count, type: 'int64' };
      continue;
    }
    const predicate = (operations[last - slot.op] as FilterNode).predicates[slot.predicate]!;
    const value =
      predicate.kind === 'in'
        ? predicate.values[slot.item!]!
        : predicate.kind === 'compare'
          ? predicate.value
          : null;
    params[i] = { value: checkValue(slot.column, value), type: slot.column.type };
  }
  return { ...compiled, params };
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
