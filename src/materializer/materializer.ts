import type { Table } from 'apache-arrow';
import type { Duration } from '../duration.js';
import type { FeatureStoreError } from '../errors.js';
import type { Feature, FeatureCall, FeatureFunction, FeatureInfo } from '../feature/feature.js';
import type { Params, ParamValue } from '../feature/params.js';
import type { ColumnSpec, Row } from '../frame/columns.js';
import type { OnlineStore } from '../online/online-store.js';
import type { QueryTree } from '../query/nodes.js';
import type { ParamSpec } from '../resolver/resolvers.js';
import type { SqlQuery, SqlSource } from '../sql/sql-query.js';

/** One stored result of a feature for one parameter set, as the catalog records it. */
export interface Materialization {
  /** Store-assigned id; names the data table. */
  readonly id: string;
  /** Qualified feature name, e.g. `'flights.departures'`. */
  readonly featureName: string;
  /** The parameters it was computed for (Dates come back as Dates). */
  readonly params: Readonly<Record<string, ParamValue>>;
  /** Canonical text of `params`: equal parameters give equal keys whatever their order. */
  readonly paramsKey: string;
  /** Number of rows stored. */
  readonly rows: number;
  /** When it was published. */
  readonly createdAt: Date;
  /** SHA-256 of the feature's source when it was computed. */
  readonly sourceHash: string;
  /**
   * The feature's version when it was computed (`store.versionOf`): its code and that of every
   * feature it called. `''` for a record written before versions were recorded.
   */
  readonly version: string;
  /** Every feature its run called, directly or through others, with that feature's code version then. */
  readonly lineage: Readonly<Record<string, string>>;
  /** Adapter kind the function returned (`'rows'`, `'arrow'`, `'duckdb'`…): reads give back that kind. */
  readonly kind: string;
  /** Key column(s). */
  readonly key: readonly string[];
  /** All columns, key first as the function returned them. */
  readonly columns: readonly ColumnSpec[];
}

/** A catalog record as `listMaterializations` gives it: with its freshness. */
export interface MaterializationStatus extends Materialization {
  /**
   * `true` when it was computed with another version than the code this process runs now (see
   * `store.versionOf`); `undefined` when this process does not register the feature (e.g. a tool
   * listing a store by name) or the record predates versions.
   */
  readonly stale: boolean | undefined;
  /** Milliseconds from `createdAt` to now, computed each time it is read (a getter, not enumerable). */
  readonly age: number;
}

/** A parameter of a stored feature: its name and what its `@param` tag says. */
export interface StoredParam {
  readonly name: string;
  readonly description: string | undefined;
}

/**
 * What a store's catalog keeps of one version of a feature, written when it is materialized: the
 * doc comment merged with the options (see `store.describeFeature`) and the result's shape. Read
 * back with `materializer.listFeatures()` / `describeFeature(name)`, without the feature's code.
 */
export interface StoredFeature {
  readonly name: string;
  readonly version: string;
  readonly summary: string | undefined;
  readonly description: string | undefined;
  readonly maintainer: string | undefined;
  readonly status: string | undefined;
  readonly tags: readonly string[];
  /** Key column(s) of its results. */
  readonly entity: readonly string[];
  readonly params: readonly StoredParam[];
  /** Value columns (all but the key) with their types. */
  readonly columns: readonly ColumnSpec[];
  /** Features it called, with their code versions. */
  readonly calls: Readonly<Record<string, string>>;
  /** `file:line` where it was defined. */
  readonly definedAt: string;
  /** When this version was last materialized. */
  readonly recordedAt: Date;
}

/** The parameters `materialize` takes for a feature: its function's, optional when it takes none. */
export type MaterializeParams<F extends FeatureFunction> =
  Parameters<F> extends []
    ? [params?: Params, options?: MaterializeOptions]
    : [params: Parameters<F>[0], options?: MaterializeOptions];

/** Options of one `materialize` call. */
export interface MaterializeOptions {
  /**
   * Longest the call may take, computing and loading (see {@link Duration}), e.g. `'10 minutes'`.
   * Past it nothing is stored and the call fails with `TIMEOUT`. Default is the materializer's
   * `timeout`, itself none by default.
   */
  timeout?: Duration | undefined;
  /**
   * Store a result with no rows. By default it is refused (`EMPTY_RESULT`): a point in time after
   * the data ends, or a source that returned nothing, would otherwise replace real values with none.
   */
  allowEmpty?: boolean | undefined;
  /**
   * Store a result whose value columns (names or types) differ from the feature's earlier
   * materializations. By default it is refused (`COLUMNS_CHANGED`, naming the columns). When
   * allowed, reads still give every column the feature's materializations have, as nulls where
   * one lacks it.
   */
  allowColumnChange?: boolean | undefined;
}

/** Options of `materializer.prune`. */
export interface PruneOptions {
  /**
   * How many materializations to keep per feature and per value of its other parameters: those
   * with the latest parameters (the ones `Last()` picks first). Default is `1`.
   */
  keep?: number | undefined;
  /** Keep too every materialization published less than this long ago (see {@link Duration}). */
  olderThan?: Duration | undefined;
}

/**
 * The `online` option of a materializer: the online store to publish to and serve key lookups
 * from, an opt-in in-process cache, and where failures of the online copy are reported.
 */
export interface OnlineOptions {
  /** A `SqliteOnlineStore`, a `RedisOnlineStore` or your own `OnlineStore`. Closing it is yours. */
  store: OnlineStore;
  /**
   * Keeps the answers of this many key lookups in process (opt-in; least recently used dropped).
   * Materializations never change once published, so a cached answer is never stale: a new
   * publication is resolved to, and read, under its own id. See `materializer.cacheStats()`.
   */
  cache?: { entries: number };
  /**
   * Called when publishing to the online store fails (code `ONLINE_PUBLISH_FAILED`, naming the
   * feature and parameters), or when a read finds it unreachable (`ONLINE_UNAVAILABLE`, at most
   * once every 10 seconds). The offline publication stands, and reads are served offline until
   * a later `materialize` or `materializer.syncOnline()` repairs the online copy. If it throws,
   * `materialize` rejects with what it threw. Default is a `console.warn`.
   */
  onError?: (error: FeatureStoreError) => void;
}

/** Options every store's constructor takes. */
export interface MaterializerOptions {
  /** Default `timeout` of each `materialize` call (see {@link MaterializeOptions}). Default is none. */
  timeout?: Duration | undefined;
  /**
   * An online store (e.g. `new SqliteOnlineStore()` from `featurefn/sqlite`, or a
   * `RedisOnlineStore` from `featurefn/redis`), or `{ store, cache, onError }` (see
   * {@link OnlineOptions}). Each `materialize` then also publishes there, after the offline
   * publication, keeping each feature's latest materializations; and a read that is a key lookup
   * (equality filters on the whole entity key) is served from it at the very materializations
   * the offline store resolves to. Any other read, or one whose materializations are not (yet)
   * online, is served offline. See `docs/serving.md`.
   *
   * ### Example
   * ```ts
   * const materializer = new DuckDBMaterializer({
   *   path: 'features.duckdb',
   *   online: { store: new SqliteOnlineStore({ path: 'online.sqlite' }), cache: { entries: 10_000 } },
   * });
   * ```
   */
  online?: OnlineStore | OnlineOptions | undefined;
}

/** A decorator as `store.addDecorator` takes it: wraps one feature's call. */
export type FeatureDecorator = ((next: FeatureCall, feature: FeatureInfo) => FeatureCall) & {
  /** Set on a materializer's decorator: the store that serves `getFeatures` reads for the feature. */
  readonly materializer?: Materializer;
};

/** A feature and the materialization a read uses for it. */
export interface ReadSource {
  readonly feature: FeatureInfo;
  readonly materialization: Materialization;
}

/**
 * A planned read served by one store: the materialization of each source node of `query`, in the
 * order of the tree's sources.
 */
export interface ReadPlan {
  readonly sources: readonly ReadSource[];
  readonly query: QueryTree;
  /**
   * The materializations of `sources` as the store's resolution gave them: the same array for
   * every read of one resolution, so a store can keep what it derives from them. @internal
   */
  readonly resolved?: readonly Materialization[];
}

/**
 * What a store must do. `DuckDBMaterializer` and `PostgresMaterializer` implement it, and both
 * pass the same contract test suite (`test/contracts/materializer-contract.ts`).
 */
export interface Materializer {
  /** Short store name for messages, e.g. `'duckdb'`. */
  readonly name: string;
  /** Attach with `store.addDecorator(materializer.decorator)`: materialized calls are served from here. */
  readonly decorator: FeatureDecorator;
  /**
   * Computes `feature` for `params` and publishes the result atomically, replacing any earlier
   * materialization for the same parameters. Returns the new catalog record.
   */
  materialize<F extends FeatureFunction>(
    feature: Feature<F>,
    ...params: MaterializeParams<F>
  ): Promise<Materialization>;
  /** The feature's materializations, oldest parameters first, each with `stale` and `age`. */
  listMaterializations(feature: Feature | FeatureInfo | string): Promise<MaterializationStatus[]>;
  /** Every feature this store's catalog describes, at its latest materialized version, by name. */
  listFeatures(): Promise<StoredFeature[]>;
  /** What this store's catalog says of a feature (its latest materialized version), or `undefined`. */
  describeFeature(name: string): Promise<StoredFeature | undefined>;
  /**
   * The store's own database as a source of SQL features (`materializer.source.sql\`…\``), if it
   * has one. SQL features on it are materialized inside the database.
   */
  readonly source: SqlSource | undefined;
  /**
   * Retires the publication with this id, atomically: `Last()` moves back to the previous one.
   * Readers already on it finish; its table is dropped after `retainReplaced`. Resolves to the
   * retired record, or `undefined` when no current publication has this id.
   */
  unpublish(id: string): Promise<Materialization | undefined>;
  /**
   * Retires old materializations, keeping per feature and per value of its non-Date parameters
   * the newest `keep` and any published within `olderThan`. Resolves to the retired records.
   */
  prune(options: PruneOptions): Promise<Materialization[]>;
  /** Releases connections. Further calls fail with `CLOSED`. */
  close(): Promise<void>;
  /**
   * Publishes to the `online` store what it lacks of the latest materializations of `features`
   * (default: every feature of the catalog), and retires older ones there. Resolves to the ids
   * published; rejects with `ONLINE_PUBLISH_FAILED` (or `STORE_ERROR` without an online store).
   */
  syncOnline(features?: readonly (Feature | FeatureInfo | string)[]): Promise<string[]>;
  /** Hits, misses, hit rate and entries of the online cache (zeros without one). */
  cacheStats(): OnlineCacheStats;

  /** The materialization for exactly these parameters, if any. @internal */
  findMaterialization(feature: string, params: Params): Promise<Materialization | undefined>;
  /**
   * Resolves `spec` over the features' materializations (see `Last()`): the parameters and each
   * feature's materialization at them, or `undefined` when some feature lacks the exact values
   * `spec` gives. @internal
   */
  resolveSources(features: readonly string[], spec: ParamSpec): Promise<ResolvedSources | undefined>;
  /**
   * True while `resolved` (given by `resolveSources`) is what `resolveSources` would give again:
   * the store has seen no publication or retirement since, and no `maxAge` bound has passed. A
   * read planned on it can then be run again as planned. @internal
   */
  isCurrent(resolved: ResolvedSources): boolean;
  /** Runs a planned read. @internal */
  read(plan: ReadPlan, format: 'rows'): Promise<Row[]>;
  /** @internal */
  read(plan: ReadPlan, format: 'arrow'): Promise<Table>;
  /** A planned read as a query on the store's own database. @internal */
  readQuery(plan: ReadPlan): SqlQuery;
  /**
   * What a planned read runs: the online store it is served from, or the SQL with its bound
   * values listed apart. @internal
   */
  explain(plan: ReadPlan): Promise<string>;
}

/** What `materializer.cacheStats()` reports. */
export interface OnlineCacheStats {
  /** Key lookups answered from the cache. */
  readonly hits: number;
  /** Key lookups the cache could not answer (read from the online store, then cached). */
  readonly misses: number;
  /** `hits / (hits + misses)`, or `0` before any lookup. */
  readonly hitRate: number;
  /** Answers held now (at most `cache.entries`). */
  readonly entries: number;
}

/** Where a read's features are stored: the resolved parameters and one materialization per feature. @internal */
export interface ResolvedSources {
  readonly params: Params;
  readonly materializations: readonly Materialization[];
  /** When a `maxAge` bound stops admitting this resolution (ms since the epoch), if one applies. */
  readonly expiresAt?: number;
}
