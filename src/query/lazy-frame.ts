import type { Table } from 'apache-arrow';
import { FeatureStoreError } from '../errors.js';
import { keyOf } from '../feature/entity-key.js';
import type { FeatureInfo } from '../feature/feature.js';
import { checkParams, type Params } from '../feature/params.js';
import { formatParams, formatParamValue } from '../format.js';
import { adapterFor } from '../frame/adapters.js';
import { columnsOf, type Row, tableFromColumns, tableToRows } from '../frame/columns.js';
import { arrowToPolars, loadPolars } from '../frame/polars/polars-adapter.js';
import type { Materializer, ReadPlan } from '../materializer/materializer.js';
import { formatSpec, isResolver, type ParamSpec, resolveParams } from '../resolver/resolvers.js';
import type { SqlQuery } from '../sql/sql-query.js';
import { evaluateRead, type RowSource } from './evaluate.js';
import { EMPTY_QUERY, type FilterConditions, predicatesOf, type QueryNode } from './nodes.js';

/**
 * What {@link LazyFrame.toPolars} returns: a nodejs-polars `DataFrame`. `featurefn/polars` merges
 * nodejs-polars's `DataFrame` type into this interface, so that the root entry's declarations
 * never import the optional nodejs-polars.
 */
// biome-ignore lint/suspicious/noEmptyInterface: filled by declaration merging in `featurefn/polars`.
export interface PolarsFrame {}

/** What a lazy frame needs from its feature store. @internal */
export interface FrameHost {
  servingMaterializer(info: FeatureInfo): Materializer | undefined;
  call(info: FeatureInfo, params: unknown): Promise<unknown>;
}

type Plan =
  | {
      readonly kind: 'store';
      readonly materializer: Materializer;
      readonly plan: ReadPlan;
      readonly params: Params;
    }
  | { readonly kind: 'live'; readonly params: Params; readonly reason: string };

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
  readonly #query: QueryNode;

  /** @internal Use {@link LazyFrame.of}; frames derived from a checked one skip the checks. */
  constructor(host: FrameHost, features: readonly FeatureInfo[], spec: ParamSpec, query: QueryNode) {
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
    return new LazyFrame(host, features, { ...spec }, EMPTY_QUERY);
  }

  /**
   * Keeps rows matching every condition: a value means equality, an array means IN, and
   * `gt`/`gte`/`lt`/`lte`/`ne` compare. Conditions of successive calls add up.
   *
   * ### Example
   * ```ts
   * frame.filter({ origin: 'SFO' }).filter({ departures: gt(1000) })
   * ```
   */
  filter(conditions: FilterConditions): LazyFrame {
    const added = predicatesOf(conditions);
    const filters = this.#query.filters.length === 0 ? added : [...this.#query.filters, ...added];
    return this.#with({ ...this.#query, filters });
  }

  /** Keeps only these columns, in this order. */
  select(...columns: string[]): LazyFrame {
    if (columns.length === 0 || columns.some((c) => typeof c !== 'string')) {
      throw new FeatureStoreError('INVALID_QUERY', 'select takes one or more column names.');
    }
    return this.#with({ ...this.#query, select: [...columns] });
  }

  /** Keeps at most `n` rows. */
  limit(n: number): LazyFrame {
    if (!Number.isInteger(n) || n < 0) {
      throw new FeatureStoreError(
        'INVALID_QUERY',
        `limit takes a whole number of rows ≥ 0, but got ${String(n)}.`,
      );
    }
    return this.#with({ ...this.#query, limit: n });
  }

  /** Runs the frame and returns row objects (timestamps as `Date`, JSON values parsed). */
  async toArray(): Promise<Row[]> {
    const plan = await this.#plan();
    if (plan.kind === 'store') return await plan.materializer.read(plan.plan, 'rows');
    return (await this.#live(plan.params)).rows;
  }

  /** Runs the frame and returns an Apache Arrow table. */
  async toArrow(): Promise<Table> {
    const plan = await this.#plan();
    if (plan.kind === 'store') return plan.materializer.read(plan.plan, 'arrow');
    const { columns, rows } = await this.#live(plan.params);
    return tableFromColumns(
      columns,
      columns.map((c) => rows.map((r) => r[c.name])),
    );
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
    const plan = await this.#plan();
    const header = `-- features: ${this.#features.map((f) => f.name).join(', ')}\n-- parameters: ${formatParams(plan.params)}`;
    if (plan.kind === 'store') return `${header}\n${plan.materializer.explain(plan.plan)}`;
    const steps = [
      header,
      `-- computes live: ${plan.reason}`,
      `-- calls ${this.#features.map((f) => `${f.name}(${formatParams(plan.params)})`).join(', ')}, then joins in process`,
    ];
    if (this.#query.filters.length > 0)
      steps.push(`-- filters: ${this.#query.filters.map(describePredicate).join(' AND ')}`);
    if (this.#query.select !== undefined) steps.push(`-- columns: ${this.#query.select.join(', ')}`);
    if (this.#query.limit !== undefined) steps.push(`-- limit: ${this.#query.limit}`);
    return steps.join('\n');
  }

  #with(query: QueryNode): LazyFrame {
    return new LazyFrame(this.#host, this.#features, this.#spec, query);
  }

  async #plan(): Promise<Plan> {
    const features = this.#features;
    const names: string[] = new Array(features.length);
    const materializers: (Materializer | undefined)[] = new Array(features.length);
    let oneStore = true;
    for (let i = 0; i < features.length; i++) {
      names[i] = features[i]!.name;
      materializers[i] = this.#host.servingMaterializer(features[i]!);
      oneStore &&= materializers[i] === materializers[0];
    }
    const first = materializers[0];

    if (first !== undefined && oneStore) {
      const resolved = await first.resolveSources(names, this.#spec);
      if (resolved !== undefined) {
        const sources: ReadPlan['sources'][number][] = new Array(features.length);
        for (let i = 0; i < features.length; i++) {
          sources[i] = { feature: features[i]!, materialization: resolved.materializations[i]! };
        }
        return {
          kind: 'store',
          materializer: first,
          params: resolved.params,
          plan: { sources, query: this.#query },
        };
      }
      const missing: string[] = [];
      const exact = this.#spec as Params;
      for (const name of names)
        if ((await first.findMaterialization(name, exact)) === undefined) missing.push(name);
      return {
        kind: 'live',
        params: exact,
        reason: `not materialized in ${first.name} for these parameters: ${missing.join(', ')}`,
      };
    }

    const hasResolver = Object.values(this.#spec).some(isResolver);
    if (!hasResolver) {
      const reason = materializers.every((m) => m === undefined)
        ? 'no materializer is attached to these features'
        : 'the features are served by different stores (or some by none)';
      return { kind: 'live', params: this.#spec as Params, reason };
    }
    const unserved = features.filter((_, i) => materializers[i] === undefined).map((f) => f.name);
    if (unserved.length > 0) {
      throw new FeatureStoreError(
        'NO_CONSISTENT_MATERIALIZATION',
        `${formatSpec(this.#spec)} is decided from materializations, but ${unserved.join(', ')} ha${unserved.length === 1 ? 's' : 've'} no materializer attached. ` +
          'Attach one with store.addDecorator(materializer.decorator), or pass exact parameter values to compute live.',
        { details: { features: unserved } },
      );
    }
    const available = await Promise.all(
      features.map(async (f, i) => ({
        feature: f.name,
        paramsKeys: (await materializers[i]!.listMaterializations(f.name)).map((m) => m.paramsKey),
      })),
    );
    const params = resolveParams(this.#spec, available)!;
    return {
      kind: 'live',
      params,
      reason:
        'the features are served by different stores; each is read from its store and joined in process',
    };
  }

  async #live(params: Params): Promise<{ columns: ReturnType<typeof evaluateRead>['columns']; rows: Row[] }> {
    const sources: RowSource[] = await Promise.all(
      this.#features.map(async (feature) => {
        // A copy each: the function may change its parameters object, and the frame must not.
        const result = await this.#host.call(feature, { ...params });
        const table = await adapterFor(result, feature.name, params).toArrow(result);
        const columns = columnsOf(table, feature.name);
        return {
          feature: feature.name,
          key: keyOf(feature, columns, params),
          columns,
          rows: tableToRows(table),
        };
      }),
    );
    return evaluateRead(sources, this.#query);
  }
}

function describePredicate(p: QueryNode['filters'][number]): string {
  if (p.kind === 'isNull') return `${p.column} IS NULL`;
  if (p.kind === 'in') return `${p.column} IN (${p.values.map(formatParamValue).join(', ')})`;
  return `${p.column} ${p.op} ${formatParamValue(p.value)}`;
}
