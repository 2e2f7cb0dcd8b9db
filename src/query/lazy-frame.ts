import type { Table } from 'apache-arrow';
import { FeatureStoreError } from '../errors.js';
import type { FeatureInfo } from '../feature/feature.js';
import { checkParams, type Params, type ParamValue } from '../feature/params.js';
import { formatParams, formatParamValue } from '../format.js';
import { type Row, tableFromColumns } from '../frame/columns.js';
import { arrowToPolars, loadPolars } from '../frame/polars/polars-adapter.js';
import type { ReadPlan } from '../materializer/materializer.js';
import { isResolver, type ParamSpec } from '../resolver/resolvers.js';
import type { SqlQuery } from '../sql/sql-query.js';
import {
  type FilterConditions,
  type Predicate,
  predicatesOf,
  type QueryTree,
  treeOf,
  unwind,
} from './nodes.js';
import { notMaterialized } from './on-missing.js';
import { type ReadOptions, rowsWithParams, tableWithParams } from './param-columns.js';
import { type FrameHost, plannedRoute, planRead, type ReadRoute, readLive } from './planner.js';

export type { ReadOptions } from './param-columns.js';

/**
 * What {@link LazyFrame.toPolars} returns: a nodejs-polars `DataFrame`. `featurefn/polars` merges
 * nodejs-polars's `DataFrame` type into this interface, so that the root entry's declarations
 * never import the optional nodejs-polars.
 */
// biome-ignore lint/suspicious/noEmptyInterface: filled by declaration merging in `featurefn/polars`.
export interface PolarsFrame {}

/**
 * Features joined on their entity key at one parameter set, not yet read. Immutable: `filter`,
 * `select` and `limit` return new frames. When one store holds every feature at the resolved
 * parameters, the whole frame runs there as one SQL statement with bound values (filters on the
 * key become index lookups); otherwise the features are computed live and joined in process.
 *
 * Rows come from the first feature; each other feature is left-joined on the key columns it
 * shares with those before it. Row order is unspecified unless the store gives one.
 *
 * ### Example
 * ```ts
 * const frame = store
 *   .withParams({ when: Last() })
 *   .getFeatures(departures, meanDelay)
 *   .filter({ origin: 'SFO' });
 * console.log(await frame.explain());
 * const rows = await frame.toArray();
 * ```
 */
export class LazyFrame {
  readonly #host: FrameHost;
  readonly #features: readonly FeatureInfo[];
  readonly #spec: ParamSpec;
  readonly #query: QueryTree;

  /** @internal Use {@link LazyFrame.of}; frames derived from a checked one skip the checks. */
  constructor(host: FrameHost, features: readonly FeatureInfo[], spec: ParamSpec, query: QueryTree) {
    this.#host = host;
    this.#features = features;
    this.#spec = spec;
    this.#query = query;
  }

  /** A frame of `features` (an array the frame may keep) at `spec`, checked. @internal */
  static of(host: FrameHost, features: readonly FeatureInfo[], spec: ParamSpec): LazyFrame {
    if (features.length === 0) {
      throw new FeatureStoreError('INVALID_QUERY', 'getFeatures needs at least one feature.');
    }
    if (typeof spec !== 'object' || spec === null) {
      throw new FeatureStoreError(
        'UNSUPPORTED_PARAMETER',
        'withParams takes an object such as { when: Last() }.',
      );
    }
    const exact = Object.keys(spec).filter((name) => !isResolver(spec[name]));
    if (exact.length > 0) {
      checkParams(Object.fromEntries(exact.map((name) => [name, spec[name]])), features[0]!.name);
    }
    return new LazyFrame(host, features, { ...spec }, baseTree(features));
  }

  /**
   * Keeps rows matching every condition: a value means equality, an array means IN, and
   * `gt`/`gte`/`lt`/`lte`/`ne` compare. It applies to the rows as the calls before it left them:
   * after `limit(n)`, it filters those `n` rows.
   *
   * ### Example
   * ```ts
   * frame.filter({ origin: 'SFO' }).filter({ departures: gt(1000) })
   * ```
   */
  filter(conditions: FilterConditions): LazyFrame {
    const predicates = Object.freeze(predicatesOf(conditions));
    return this.#with(Object.freeze({ kind: 'filter', input: this.#query, predicates }));
  }

  /** Keeps only these columns, in this order. */
  select(...columns: string[]): LazyFrame {
    if (columns.length === 0 || columns.some((c) => typeof c !== 'string')) {
      throw new FeatureStoreError('INVALID_QUERY', 'select takes one or more column names.');
    }
    return this.#with(
      Object.freeze({ kind: 'project', input: this.#query, columns: Object.freeze(columns) }),
    );
  }

  /** Keeps at most `n` rows. */
  limit(n: number): LazyFrame {
    if (!Number.isInteger(n) || n < 0) {
      throw new FeatureStoreError(
        'INVALID_QUERY',
        `limit takes a whole number of rows ≥ 0, but got ${String(n)}.`,
      );
    }
    return this.#with(Object.freeze({ kind: 'limit', input: this.#query, count: n }));
  }

  /**
   * Runs the frame and returns row objects (timestamps as `Date`, JSON values parsed). With
   * `{ params: true }`, each row also has one column per parameter the frame was read at.
   *
   * ### Example
   * ```ts
   * await store.withParams({ when: Last() }).getFeatures(departures).toArray({ params: true });
   * // [{ origin: 'SFO', departures: 3, when: 2001-03-02T00:00:00.000Z }, …]
   * ```
   */
  toArray(options?: ReadOptions): Promise<Row[]> {
    let planning: ReadRoute | Promise<ReadRoute>;
    try {
      planning = this.#plan();
    } catch (error) {
      return Promise.reject(error);
    }
    // A read planned before goes straight to its store: one promise less on a key lookup.
    if (!(planning instanceof Promise) && planning.kind === 'store' && !options?.params)
      return planning.materializer.read(planning.plan, 'rows');
    return this.#toArray(planning, options);
  }

  async #toArray(planning: ReadRoute | Promise<ReadRoute>, options: ReadOptions | undefined): Promise<Row[]> {
    const plan = await planning;
    if (plan.kind === 'store') {
      const rows = await plan.materializer.read(plan.plan, 'rows');
      return options?.params
        ? rowsWithParams(rows, storedColumns(plan.plan), plan.params, this.#names())
        : rows;
    }
    const { columns, rows } = await readLive(this.#host, this.#features, plan.featureParams, this.#query);
    if (!options?.params) return rows;
    return rowsWithParams(
      rows,
      columns.map((c) => c.name),
      plan.params,
      this.#names(),
    );
  }

  /**
   * Runs the frame and returns an Apache Arrow table; with `{ params: true }`, with one more
   * column per parameter the frame was read at.
   */
  async toArrow(options?: ReadOptions): Promise<Table> {
    const planning = this.#plan();
    const plan = planning instanceof Promise ? await planning : planning;
    let table: Table;
    if (plan.kind === 'store') {
      table = await plan.materializer.read(plan.plan, 'arrow');
    } else {
      const { columns, rows } = await readLive(this.#host, this.#features, plan.featureParams, this.#query);
      table = tableFromColumns(
        columns,
        columns.map((c) => rows.map((r) => r[c.name])),
      );
    }
    return options?.params ? tableWithParams(table, plan.params, this.#names()) : table;
  }

  /**
   * The parameter values the frame reads at: exact values as given, and what `Last()`, `First()`
   * or `AsOf()` chose, e.g. `{ when: 2001-03-02T00:00:00.000Z }`. Resolved again on each call,
   * as a read is, so it is the point in time a read made now would use. Runs no feature code.
   *
   * ### Example
   * ```ts
   * const frame = store.withParams({ when: Last() }).getFeatures(departures, meanDelay);
   * const { when } = await frame.resolvedParams(); // the latest point both are materialized at
   * ```
   */
  async resolvedParams(): Promise<Params> {
    const { params } = await this.#route();
    const copy: Record<string, ParamValue> = {};
    for (const name of Object.keys(params)) {
      const value = params[name]!;
      copy[name] = value instanceof Date ? new Date(value.getTime()) : value;
    }
    return copy;
  }

  /**
   * Runs the frame and returns a nodejs-polars `DataFrame` (through {@link toArrow}). nodejs-polars
   * is an optional dependency, loaded here; without it this fails with a `FeatureStoreError` saying
   * how to install it. JSON columns hold JSON text (`pl.col(name).str.jsonDecode()` parses them).
   *
   * The result is typed as nodejs-polars's `DataFrame` once the program imports `featurefn/polars`
   * (even only `import type {} from 'featurefn/polars'`), and as the empty {@link PolarsFrame}
   * otherwise, so that the root entry's types never need nodejs-polars.
   *
   * ### Example
   * ```ts
   * import type {} from 'featurefn/polars';
   * const df = await store.withParams({ when: Last() }).getFeatures(departures).filter({ origin: 'SFO' }).toPolars();
   * ```
   */
  async toPolars(): Promise<PolarsFrame> {
    await loadPolars(); // fail before running the frame if nodejs-polars is missing
    return arrowToPolars(await this.toArrow());
  }

  /**
   * The frame as a SQL query on the database of the store that serves it: run it with
   * `toArray()`, or embed it in a SQL feature (``db.sql`SELECT … FROM ${await frame.toSQL()} f` ``).
   * Fails for a frame that computes live.
   */
  async toSQL(): Promise<SqlQuery> {
    const plan = await this.#plan();
    if (plan.kind === 'live') {
      throw new FeatureStoreError(
        'INVALID_QUERY',
        `this frame computes live (${plan.reason}), so it has no SQL; materialize the features first.`,
        { details: { features: this.#features.map((f) => f.name) } },
      );
    }
    return plan.materializer.readQuery(plan.plan);
  }

  /**
   * What running the frame will do: the SQL statement with its bound values listed apart, or a
   * note that the features will be computed live and why.
   */
  async explain(): Promise<string> {
    const plan = await this.#route(true);
    const header = `-- features: ${this.#features.map((f) => f.name).join(', ')}\n-- parameters: ${formatParams(plan.params)}`;
    if (plan.kind === 'store') {
      const stale = plan.stale === undefined ? '' : `\n-- stale materialization: ${plan.stale}`;
      return `${header}${stale}\n${await plan.materializer.explain(plan.plan)}`;
    }
    const refuses = this.#refuses(plan);
    const steps = [
      header,
      refuses
        ? `-- would refuse (onMissing: 'error'), no feature code runs: not materialized: ${plan.missing.join(', ')}`
        : `-- computes live: ${plan.reason}`,
      `-- ${refuses ? 'would call' : 'calls'} ${this.#features.map((f, i) => `${f.name}(${formatParams(plan.featureParams[i]!)})`).join(', ')}, then joins in process`,
    ];
    let filters: string[] = [];
    const flush = () => {
      if (filters.length > 0) steps.push(`-- filters: ${filters.join(' AND ')}`);
      filters = [];
    };
    for (const op of unwind(this.#query).operations) {
      if (op.kind === 'filter') {
        filters.push(...op.predicates.map(describePredicate));
        continue;
      }
      flush();
      steps.push(op.kind === 'project' ? `-- columns: ${op.columns.join(', ')}` : `-- limit: ${op.count}`);
    }
    flush();
    return steps.join('\n');
  }

  #with(query: QueryTree): LazyFrame {
    return new LazyFrame(this.#host, this.#features, this.#spec, query);
  }

  #route(explaining = false): Promise<ReadRoute> {
    return planRead(this.#host, this.#features, this.#spec, this.#query, explaining);
  }

  /**
   * The route a read takes, refused when it would run feature code the store forbids: at once
   * when the same read was planned before and nothing it depends on changed.
   */
  #plan(): ReadRoute | Promise<ReadRoute> {
    return plannedRoute(this.#host, this.#features, this.#spec, this.#query) ?? this.#planAnew();
  }

  async #planAnew(): Promise<ReadRoute> {
    const route = await this.#route();
    if (route.kind === 'live' && this.#refuses(route)) throw notMaterialized(route.missing, route.params);
    return route;
  }

  #refuses(route: ReadRoute): boolean {
    return route.kind === 'live' && route.missing.length > 0 && this.#host.config?.onMissing === 'error';
  }

  #names(): string[] {
    return this.#features.map((f) => f.name);
  }
}

/** The last tree built for a list of features, by its first feature: frames built per request share it. */
const trees = new WeakMap<
  FeatureInfo,
  { readonly features: readonly FeatureInfo[]; readonly tree: QueryTree }
>();

/** The tree of a read of `features` before any operation; the same object for the same features. */
function baseTree(features: readonly FeatureInfo[]): QueryTree {
  const held = trees.get(features[0]!);
  if (held !== undefined && held.features.length === features.length) {
    let same = true;
    for (let i = 0; same && i < features.length; i++) same = held.features[i] === features[i];
    if (same) return held.tree;
  }
  const tree = treeOf(features.map((f) => f.name));
  trees.set(features[0]!, { features: [...features], tree });
  return tree;
}

/** Column names a stored read returns: the last selection's, or every source column. */
function storedColumns(plan: ReadPlan): string[] {
  const project = unwind(plan.query).operations.findLast((op) => op.kind === 'project');
  if (project?.kind === 'project') return [...project.columns];
  return [...new Set(plan.sources.flatMap((s) => s.materialization.columns.map((c) => c.name)))];
}

function describePredicate(p: Predicate): string {
  if (p.kind === 'isNull') return `${p.column} IS NULL`;
  if (p.kind === 'in') return `${p.column} IN (${p.values.map(formatParamValue).join(', ')})`;
  return `${p.column} ${p.op} ${formatParamValue(p.value)}`;
}
