import { FeatureStoreError } from '../errors.js';
import { invalidText } from '../feature/params.js';
import { describeValue } from '../format.js';
import type { ColumnSpec } from '../frame/columns.js';

/** A value a filter compares with. */
export type FilterValue = string | number | bigint | boolean | Date | null;

/** Comparison operators of {@link gt}, {@link gte}, {@link lt}, {@link lte}, {@link ne}. */
export type ComparisonOperator = '=' | '!=' | '<' | '<=' | '>' | '>=';

const COMPARISON = Symbol.for('featurefn.comparison');

/** A comparison to use as a filter value: `filter({ departures: gt(100) })`. */
export interface Comparison {
  readonly [COMPARISON]: true;
  readonly op: ComparisonOperator;
  readonly value: FilterValue;
}

function comparison(op: ComparisonOperator, value: FilterValue): Comparison {
  return Object.freeze({ [COMPARISON]: true as const, op, value });
}

/** Greater than: `filter({ departures: gt(100) })`. */
export const gt = (value: FilterValue): Comparison => comparison('>', value);
/** Greater than or equal. */
export const gte = (value: FilterValue): Comparison => comparison('>=', value);
/** Less than. */
export const lt = (value: FilterValue): Comparison => comparison('<', value);
/** Less than or equal. */
export const lte = (value: FilterValue): Comparison => comparison('<=', value);
/** Not equal (rows where the column is null never match). */
export const ne = (value: FilterValue): Comparison => comparison('!=', value);

/**
 * What `filter` takes: per column, a value (equality), an array (IN) or a comparison.
 *
 * ### Example
 * ```ts
 * frame.filter({ origin: ['SFO', 'LAX'], departures: gte(1000) })
 * ```
 */
export type FilterConditions = Readonly<Record<string, FilterValue | readonly FilterValue[] | Comparison>>;

/** One predicate of the query tree. */
export type Predicate =
  | {
      readonly kind: 'compare';
      readonly column: string;
      readonly op: ComparisonOperator;
      readonly value: FilterValue;
    }
  | { readonly kind: 'in'; readonly column: string; readonly values: readonly FilterValue[] }
  | { readonly kind: 'isNull'; readonly column: string };

/**
 * Selects one materialization's rows in a table shared by many: a bound equality on `column`,
 * compiled into the WHERE clause for the first source and into the JOIN ON for the others.
 */
export interface SourcePartition {
  readonly column: string;
  readonly value: number | bigint | string;
}

/** Where a store keeps a source's rows: its shape, its quoted table, and which rows of it. */
export interface StoredSource {
  readonly key: readonly string[];
  readonly columns: readonly ColumnSpec[];
  /** Quoted, qualified table name. */
  readonly table: string;
  readonly partition?: SourcePartition;
  /**
   * Columns of `columns` the table lacks: the feature had them in other materializations, and a
   * read gives them as nulls rather than dropping them.
   */
  readonly absent?: ReadonlySet<string>;
  /** The table's name of each column of `columns` whose name there differs (a shared table's `v1`, …). */
  readonly names?: ReadonlyMap<string, string>;
}

/**
 * One feature's data. A frame builds it with the feature only; the store that serves the read
 * binds it to its stored rows (`stored`) before compiling.
 */
export interface SourceNode {
  readonly kind: 'source';
  readonly feature: string;
  readonly stored?: StoredSource;
}

/**
 * Features joined on their common entity key: rows come from the first source; each other one is
 * left-joined on the key columns it shares with those before it.
 */
export interface JoinNode {
  readonly kind: 'join';
  readonly sources: readonly SourceNode[];
}

/** Rows of `input` matching every predicate. */
export interface FilterNode {
  readonly kind: 'filter';
  readonly input: QueryTree;
  readonly predicates: readonly Predicate[];
}

/** Only these columns of `input`, in this order. */
export interface ProjectNode {
  readonly kind: 'project';
  readonly input: QueryTree;
  readonly columns: readonly string[];
}

/** At most `count` rows of `input`. */
export interface LimitNode {
  readonly kind: 'limit';
  readonly input: QueryTree;
  readonly count: number;
}

/**
 * A read as a tree of plain frozen nodes, in the order the frame's methods were called:
 * `frame.limit(1).filter(f)` is `filter(limit(join), f)` and filters the one row kept.
 * Frames share subtrees, never change them.
 *
 * The leaves are feature data (`source`, or a `join` of sources); every other node has one
 * `input`. Compilers and the evaluator switch on `kind` exhaustively, so a new kind is one more
 * member here and one more case in each. An as-of join (per row of a labels table, the feature's
 * row valid at that row's time) would be
 * `{ kind: 'asOf', input: QueryTree, source: SourceNode, on: string[], time: { input: string; source: string } }`:
 * `input` is the labels, and `source` is a feature's history (all its materializations, told apart by the
 * partition column), compiled as `ASOF LEFT JOIN` in DuckDB and as a `LEFT JOIN LATERAL (… ORDER
 * BY time DESC LIMIT 1)` in PostgreSQL (a dialect hook), and evaluated in process by a sorted
 * search per key.
 */
export type QueryTree = SourceNode | JoinNode | FilterNode | ProjectNode | LimitNode;

/** The tree of a read of `features`, before any filter. @internal */
export function treeOf(features: readonly string[]): QueryTree {
  const sources = features.map((feature) => Object.freeze({ kind: 'source' as const, feature }));
  return sources.length === 1
    ? sources[0]!
    : Object.freeze({ kind: 'join' as const, sources: Object.freeze(sources) });
}

/** The operations of a tree above its sources, first applied first, and its source nodes. @internal */
export function unwind(tree: QueryTree): {
  sources: readonly SourceNode[];
  operations: (FilterNode | ProjectNode | LimitNode)[];
} {
  const operations: (FilterNode | ProjectNode | LimitNode)[] = [];
  let node = tree;
  while (node.kind !== 'source' && node.kind !== 'join') {
    operations.push(node);
    node = node.input;
  }
  operations.reverse();
  return { sources: node.kind === 'source' ? [node] : node.sources, operations };
}

/** `tree` with each source node bound to its stored rows. @internal */
export function bindSources(
  tree: QueryTree,
  stored: (source: SourceNode, index: number) => StoredSource,
): QueryTree {
  const { sources, operations } = unwind(tree);
  const bound = sources.map((source, i) => ({
    kind: 'source' as const,
    feature: source.feature,
    stored: stored(source, i),
  }));
  let node: QueryTree = bound.length === 1 ? bound[0]! : { kind: 'join', sources: bound };
  for (const op of operations) node = { ...op, input: node };
  return node;
}

/** Turns `filter({...})` conditions into predicates, refusing values no store can compare. @internal */
export function predicatesOf(conditions: FilterConditions): Predicate[] {
  if (typeof conditions !== 'object' || conditions === null || Array.isArray(conditions)) {
    throw new FeatureStoreError(
      'INVALID_QUERY',
      `filter takes an object such as { origin: 'SFO' }, but got ${describeValue(conditions)}.`,
    );
  }
  const predicates: Predicate[] = [];
  for (const column of Object.keys(conditions)) {
    predicates.push(predicateOf(column, (conditions as Record<string, unknown>)[column]));
  }
  return predicates;
}

function predicateOf(column: string, condition: unknown): Predicate {
  if (Array.isArray(condition)) {
    for (const v of condition) checkFilterValue(column, v);
    return { kind: 'in', column, values: [...condition] };
  }
  if (typeof condition === 'object' && condition !== null && COMPARISON in condition) {
    const { op, value } = condition as Comparison;
    checkFilterValue(column, value);
    if (value === null)
      throw new FeatureStoreError(
        'INVALID_QUERY',
        `filter on "${column}": compare with null using { ${column}: null }.`,
      );
    return { kind: 'compare', column, op, value };
  }
  checkFilterValue(column, condition);
  return condition === null
    ? { kind: 'isNull', column }
    : { kind: 'compare', column, op: '=', value: condition as FilterValue };
}

/** True for a value any store can bind: string, finite number, bigint, boolean, valid Date or null. @internal */
export function isBindable(value: unknown): value is FilterValue {
  return (
    value === null ||
    typeof value === 'string' ||
    typeof value === 'boolean' ||
    typeof value === 'bigint' ||
    (typeof value === 'number' && Number.isFinite(value)) ||
    (value instanceof Date && !Number.isNaN(value.getTime()))
  );
}

function checkFilterValue(column: string, value: unknown): void {
  if (!isBindable(value)) {
    throw new FeatureStoreError(
      'INVALID_QUERY',
      `filter on "${column}" got ${describeValue(value)}; filter values must be strings, finite numbers, bigints, booleans, Dates or null.`,
      { details: { column } },
    );
  }
  const problem = typeof value === 'string' ? invalidText(value) : undefined;
  if (problem !== undefined) {
    // No stored string holds one, so such a filter can match nothing; refuse it before a driver does.
    throw new FeatureStoreError(
      'INVALID_QUERY',
      `filter on "${column}" got ${describeValue(value)}, a string that ${problem}; no stored value can match it.`,
      { details: { column } },
    );
  }
}

/** One feature's side of a read: its name, key and columns, and where its rows live. @internal */
export interface SourceShape {
  readonly feature: string;
  readonly key: readonly string[];
  readonly columns: readonly ColumnSpec[];
}

/** Where each output column comes from, and how sources join. @internal */
export interface Layout {
  /** Output columns in order, each with the index of the source that owns it. */
  readonly columns: readonly (ColumnSpec & { readonly source: number })[];
  /** Per source after the first: the key columns it joins on. */
  readonly joins: readonly (readonly string[])[];
  /** Per output key column: every source that has it (for pushing key filters into each). */
  readonly keySources: ReadonlyMap<string, readonly number[]>;
}

/**
 * Lays out a join of feature results: rows come from the first feature; each other feature is
 * left-joined on the key columns it shares with those before it. @internal
 */
export function layoutOf(sources: readonly SourceShape[]): Layout {
  const columns: (ColumnSpec & { source: number })[] = [];
  const owner = new Map<string, number>();
  const keySources = new Map<string, number[]>();
  const joins: string[][] = [];
  sources.forEach((source, index) => {
    const shared = index === 0 ? [] : source.key.filter((k) => keySources.has(k));
    if (index > 0) {
      if (shared.length === 0) {
        throw new FeatureStoreError(
          'NO_COMMON_KEY',
          `features ${sources
            .slice(0, index)
            .map((s) => `"${s.feature}" (key ${s.key.join(', ')})`)
            .join(
              ', ',
            )} and "${source.feature}" (key ${source.key.join(', ')}) share no key column, so they cannot be joined. ` +
            'Read them separately, or give them a common entity.',
          { feature: source.feature },
        );
      }
      joins.push(shared);
    }
    for (const column of source.columns) {
      const isKey = source.key.includes(column.name);
      if (isKey && keySources.has(column.name)) {
        keySources.get(column.name)!.push(index);
        continue;
      }
      const previous = owner.get(column.name);
      if (previous !== undefined) {
        throw new FeatureStoreError(
          'AMBIGUOUS_COLUMN',
          `column "${column.name}" comes from both "${sources[previous]!.feature}" and "${source.feature}". ` +
            'Rename the value column in one of the features so every column of the joined frame has one meaning.',
          { feature: source.feature, details: { column: column.name } },
        );
      }
      owner.set(column.name, index);
      if (isKey) keySources.set(column.name, [index]);
      columns.push({ ...column, source: index });
    }
  });
  return { columns, joins, keySources };
}

/** Refuses a column that is not among `names`, listing those there are. @internal */
export function checkColumn(names: readonly string[], column: string): void {
  if (!names.includes(column)) {
    throw new FeatureStoreError(
      'UNKNOWN_COLUMN',
      `no column "${column}" in the frame; its columns are ${names.map((n) => `"${n}"`).join(', ')}.`,
      { details: { column } },
    );
  }
}
