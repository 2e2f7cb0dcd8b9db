import { type RecordBatch, Table } from 'apache-arrow';
import { type Duration, parseDuration } from '../duration.js';
import { FeatureStoreError } from '../errors.js';
import { attachmentsOf, covers, STORE_OF_FEATURE } from '../feature/attachments.js';
import { keyOf } from '../feature/entity-key.js';
import { type Feature, type FeatureFunction, type FeatureInfo, featureInfoOf } from '../feature/feature.js';
import type { FeatureStore } from '../feature/feature-store.js';
import { governStale, isStale, ownerOf } from '../feature/freshness.js';
import {
  canonicalParams,
  checkParams,
  compareParamValues,
  decodeParams,
  type Params,
} from '../feature/params.js';
import { clip, describeValue, formatParamValue } from '../format.js';
import { adapterByKind, adapterFor } from '../frame/adapters.js';
import { type ColumnSpec, columnsOf, type Row, tableToRows } from '../frame/columns.js';
import type { FrameAdapter } from '../frame/frame-adapter.js';
import { bindSources, type QueryTree, type SourcePartition, treeOf } from '../query/nodes.js';
import {
  type CompiledQuery,
  compileRead,
  rebindRead,
  type SqlDialect,
  sameShape,
} from '../query/sql-compiler.js';
import { fresh, resolvedSources } from '../resolver/resolved-sources.js';
import { type ParamSpec, resolveParams, specKey } from '../resolver/resolvers.js';
import { isSqlQuery, SqlQuery, type SqlSource } from '../sql/sql-query.js';
import type { FeatureRecordInput } from './feature-catalog.js';
import type {
  FeatureDecorator,
  Materialization,
  MaterializationStatus,
  MaterializeOptions,
  MaterializeParams,
  Materializer,
  MaterializerOptions,
  OnlineCacheStats,
  PruneOptions,
  ReadPlan,
  ReadSource,
  ResolvedSources,
  StoredFeature,
} from './materializer.js';
import { OnlineServing, onlineOptionsOf } from './online-serving.js';

/** How many times a read is planned again when the tables it was planned on were replaced. */
const REPLACED_READ_ATTEMPTS = 5;
/** Errors of a resolution that a publication since the catalog was loaded could answer. */
const NOTHING_YET: ReadonlySet<string> = new Set(['NO_CONSISTENT_MATERIALIZATION', 'TOO_OLD']);
/** Resolutions kept between catalog changes. */
const MAX_RESOLUTIONS = 1000;
/** Compiled query shapes kept per planned sources. */
const MAX_SHAPES = 8;

/** Everything a store needs to publish one materialization. */
export interface PublishInput {
  readonly feature: FeatureInfo;
  readonly params: Params;
  readonly paramsKey: string;
  /** Adapter kind of the function's result. */
  readonly kind: string;
  readonly key: readonly string[];
  readonly columns: readonly ColumnSpec[];
  /** The version, lineage and metadata to record in the catalog (see `featureRecordText`). */
  readonly record: FeatureRecordInput;
  /** The rows, batch by batch; consumed once. */
  readonly batches: AsyncIterable<RecordBatch>;
  /** The call's options; a store passes the row count to `checkRows` before it commits. */
  readonly options: MaterializeOptions;
}

/**
 * The shared part of every store: computing and checking results, the in-process catalog cache,
 * `Last()` resolution, decorated calls and read compilation. A store adds its connection,
 * `publish`, `loadCatalog` and `runRead`.
 */
export abstract class MaterializerBase implements Materializer {
  abstract readonly name: string;
  protected abstract readonly dialect: SqlDialect;

  #catalog: Promise<Map<string, Materialization[]>> | undefined;
  /** The catalog `#catalog` last resolved to, for compiling reads (see `#widened`). */
  #loaded: Map<string, Materialization[]> | undefined;
  /** Per feature: every value column its current materializations have. */
  #shapes = new Map<string, readonly ColumnSpec[]>();
  /** Bumped whenever the catalog held changes: compiled reads made before may lack a column. */
  protected catalogEpoch = 0;
  #resolutions = new Map<string, ResolvedSources | undefined>();
  /** The resolutions made since the catalog last changed: what `isCurrent` answers from. */
  #current = new WeakSet<ResolvedSources>();
  /**
   * Compiled reads per planned sources (the planner gives the same array to every read of one
   * resolution of one frame), each with the query it was compiled from: a repeated read only binds
   * its values. Valid for one catalog epoch.
   */
  #compiled = new WeakMap<
    readonly ReadSource[],
    { epoch: number; reads: { query: QueryTree; compiled: CompiledQuery }[] }
  >();
  /** The whole-materialization read of each record, for decorated calls. */
  #whole = new WeakMap<Materialization, ReadPlan>();
  /** Catalog loads started so far: tells a resolution whether it saw the store or memory. */
  #loads = 0;
  #closed = false;
  readonly #timeout: Duration | undefined;
  readonly #online: OnlineServing | undefined;

  constructor(options?: MaterializerOptions) {
    this.#timeout = options?.timeout;
    if (this.#timeout !== undefined) parseDuration(this.#timeout, 'timeout');
    const online = onlineOptionsOf(options?.online);
    this.#online = online === undefined ? undefined : new OnlineServing(online, () => this.name);
  }

  /**
   * Attach with `store.addDecorator(materializer.decorator)`. A decorated call whose parameters
   * have a materialization here returns the stored result, in the kind the function returns;
   * any other call runs the function.
   */
  readonly decorator: FeatureDecorator = Object.assign(
    (next: (params: unknown) => Promise<unknown>, feature: FeatureInfo) => async (params: unknown) => {
      let paramsKey: string;
      try {
        paramsKey = canonicalParams(params, feature.name);
      } catch {
        return next(params); // parameters no store can key: nothing can be stored for them
      }
      const materialization = (await this.#byFeature(feature.name)).find((m) => m.paramsKey === paramsKey);
      return materialization === undefined || governStale(feature, materialization) === 'compute'
        ? next(params)
        : this.readMaterialization(feature, materialization);
    },
    { materializer: this as Materializer },
  );

  /**
   * Computes `feature` for `params` and publishes the result atomically: readers see the old
   * materialization or the new one, never a mix, and a failure leaves the store as it was.
   * The result must have its key column(s), unique and non-null.
   *
   * Once this materializer's decorator is attached to some store, it refuses (`NOT_SERVED`) a
   * feature that decorator does not cover (another store, or a module outside its prefix): the
   * result would be stored and never read. Before any `addDecorator`, it materializes anything,
   * so a job may fill the store before the serving code attaches it.
   *
   * ### Example
   * ```ts
   * const record = await materializer.materialize(departures, { when: new Date('2001-03-01') });
   * record.rows; // 229
   * // Give up (code `TIMEOUT`, nothing stored) if computing and loading take over 10 minutes:
   * await materializer.materialize(departures, { when }, { timeout: '10 minutes' });
   * ```
   */
  async materialize<F extends FeatureFunction>(
    feature: Feature<F>,
    ...[params, options]: MaterializeParams<F>
  ): Promise<Materialization> {
    this.assertOpen();
    const info = featureInfoOf(feature);
    const checked = checkParams(params, info.name);
    const paramsKey = canonicalParams(checked, info.name);
    this.#assertServes(feature, info, checked);
    const timeout = options?.timeout ?? this.#timeout;
    const call = { ...options };
    if (timeout === undefined)
      return this.#materialize(feature, params, info, checked, paramsKey, call, undefined);
    const ms = parseDuration(timeout, 'timeout');
    const controller = new AbortController();
    const expired = new FeatureStoreError(
      'TIMEOUT',
      `it did not finish within ${typeof timeout === 'number' ? `${timeout} ms` : timeout} (the timeout). ` +
        'Nothing was stored. Raise the timeout or look at why the function or its result stalls.',
      { feature: info.name, params: checked, details: { timeout, milliseconds: ms } },
    );
    // Beyond 2^31-1 ms Node fires a timer at once; such a timeout is as good as none.
    const timer = ms <= 2 ** 31 - 1 ? setTimeout(() => controller.abort(expired), ms) : undefined;
    try {
      return await this.#materialize(feature, params, info, checked, paramsKey, call, controller.signal);
    } catch (error) {
      throw controller.signal.aborted ? expired : error;
    } finally {
      clearTimeout(timer);
    }
  }

  async #materialize<F extends FeatureFunction>(
    feature: Feature<F>,
    params: unknown,
    info: FeatureInfo,
    checked: Params,
    paramsKey: string,
    options: MaterializeOptions,
    signal: AbortSignal | undefined,
  ): Promise<Materialization> {
    // The shape the feature's results had so far, to refuse a silent change of columns.
    const previous = latest(await this.#byFeature(info.name));
    let result: unknown;
    try {
      result = await within(feature.compute(...([params] as Parameters<F>)), signal);
    } catch (cause) {
      if (signal?.aborted) throw cause;
      throw new FeatureStoreError(
        'FEATURE_FAILED',
        `the function threw ${cause instanceof Error ? `"${cause.message}"` : describeValue(cause)}. Nothing was stored.`,
        { feature: info.name, params: checked, cause },
      );
    }
    const written = recordOf(feature, checked);
    if (isSqlQuery(result) && info.schema === undefined && this.#runsHere(result)) {
      // Same database: the query runs inside the engine and no row passes through Node.
      const record = await this.publishQuery!(
        { feature: info, params: checked, paramsKey, kind: 'sql', record: written, options },
        result,
        (columns) => {
          const key = keyOf(info, columns, checked);
          checkColumns(info, checked, key, columns, previous, options);
          return key;
        },
      );
      this.#published(record);
      await this.#publishOnline(record);
      return record;
    }
    const adapter = adapterFor(result, info.name, checked);
    const streamed = await within(streamOf(adapter, result, info, checked), signal);
    const { close } = streamed;
    let { columns, batches } = streamed;
    if (streamed.inferred) {
      // No rows and no columns to read a shape from (e.g. `[]`): the feature's known shape, if any.
      if (
        previous !== undefined &&
        sameNames(
          previous.key,
          columns.map((c) => c.name),
        )
      )
        columns = previous.columns;
      batches = noBatches();
    }
    try {
      const key = keyOf(info, columns, checked);
      checkColumns(info, checked, key, columns, previous, options);
      const record = await this.publish({
        feature: info,
        params: checked,
        paramsKey,
        kind: adapter.kind,
        key,
        columns,
        record: written,
        options,
        batches: guarded(
          info.schema === undefined ? batches : validated(batches, info, checked, key),
          info,
          checked,
          signal,
        ),
      });
      this.#published(record);
      await this.#publishOnline(record);
      return record;
    } finally {
      // A store that stopped reading part-way (or never started) must still release the source,
      // e.g. a database cursor holding a pooled connection. A stalled source would hold `close`
      // behind its pending read, so after a timeout it is released without waiting.
      if (signal?.aborted) void close().catch(() => undefined);
      else await close();
    }
  }

  /**
   * The feature's materializations, ordered by parameters, each with `stale` (computed with
   * another version than the code this process runs; `undefined` when this process does not
   * register the feature) and `age` (milliseconds from `createdAt` to the moment `age` is read).
   *
   * ### Example
   * ```ts
   * const stale = (await materializer.listMaterializations(departures)).filter((m) => m.stale);
   * ```
   */
  async listMaterializations(feature: Feature | FeatureInfo | string): Promise<MaterializationStatus[]> {
    const info = typeof feature === 'string' ? undefined : featureInfoOf(feature);
    const name = info?.name ?? (feature as string);
    const host = info === undefined ? undefined : ownerOf(info);
    return (await this.#byFeature(name)).map((m) =>
      // `age` is a getter, not a field: always current, and two listings of the same records compare equal.
      Object.freeze(
        Object.defineProperty({ ...m, stale: isStale(host, m) }, 'age', {
          get: () => Date.now() - m.createdAt.getTime(),
          enumerable: false,
        }) as MaterializationStatus,
      ),
    );
  }

  /**
   * Every feature this store's catalog describes, at its latest materialized version, sorted by
   * name: read from the store alone, so a tool that never imports the feature code can list them.
   *
   * ### Example
   * ```ts
   * for (const f of await materializer.listFeatures()) console.log(f.name, f.maintainer, f.summary);
   * ```
   */
  async listFeatures(): Promise<StoredFeature[]> {
    this.assertOpen();
    const latest = new Map<string, StoredFeature>();
    for (const f of await this.loadFeatures()) {
      const seen = latest.get(f.name);
      if (seen === undefined || seen.recordedAt < f.recordedAt) latest.set(f.name, f);
    }
    return [...latest.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * What this store's catalog says of one feature (its latest materialized version): doc comment,
   * maintainer, status, tags, entity key, parameters, value columns, the features it calls and
   * where it is defined; `undefined` when the store never materialized it.
   *
   * ### Example
   * ```ts
   * const nFavorites = await materializer.describeFeature('events.nFavorites');
   * nFavorites?.maintainer; // 'John Smith <john@example.com>'
   * ```
   */
  async describeFeature(name: string): Promise<StoredFeature | undefined> {
    return (await this.listFeatures()).find((f) => f.name === name);
  }

  /** Every stored feature version of the catalog. */
  protected abstract loadFeatures(): Promise<StoredFeature[]>;

  /** @internal */
  async findMaterialization(feature: string, params: Params): Promise<Materialization | undefined> {
    const key = canonicalParams(params, feature);
    return (await this.#byFeature(feature)).find((m) => m.paramsKey === key);
  }

  /** @internal */
  async resolveSources(features: readonly string[], spec: ParamSpec): Promise<ResolvedSources | undefined> {
    // Another store on the same database published: what was resolved before may be behind.
    if (this.#catalog !== undefined && !this.catalogIsCurrent()) this.invalidate();
    const memoKey = `${features.join('\u0000')}\u0000${specKey(spec)}`;
    const current = this.#current;
    if (this.#resolutions.has(memoKey) && fresh(this.#resolutions.get(memoKey))) {
      return this.#resolutions.get(memoKey);
    }
    const loads = this.#loads;
    let resolved: ResolvedSources | undefined;
    try {
      resolved = await this.#resolve(features, spec);
    } catch (error) {
      if (!(error instanceof FeatureStoreError) || !NOTHING_YET.has(error.code) || this.#loads !== loads)
        throw error;
      // Found nothing in a catalog held in memory: ask the store itself before saying so. A reader
      // retrying in a loop that does no other I/O would otherwise never hear of a publication.
      this.invalidate();
      return this.#resolve(features, spec);
    }
    if (current === this.#current) {
      // Exact values in specs are unbounded; a busy reader keeps only the recent ones.
      if (this.#resolutions.size >= MAX_RESOLUTIONS) this.#resolutions.clear();
      this.#resolutions.set(memoKey, resolved);
      if (resolved !== undefined) current.add(resolved);
    }
    return resolved;
  }

  /** @internal */
  isCurrent(resolved: ResolvedSources): boolean {
    return this.#current.has(resolved) && fresh(resolved) && this.catalogIsCurrent();
  }

  async #resolve(features: readonly string[], spec: ParamSpec): Promise<ResolvedSources | undefined> {
    const catalogs = await Promise.all(features.map((feature) => this.#byFeature(feature)));
    return resolvedSources(
      resolveParams(
        spec,
        catalogs.map((materializations, i) => ({ feature: features[i]!, materializations })),
      ),
      catalogs,
    );
  }

  /** @internal */
  read(plan: ReadPlan, format: 'rows'): Promise<Row[]>;
  /** @internal */
  read(plan: ReadPlan, format: 'arrow'): Promise<Table>;
  read(plan: ReadPlan, format: 'rows' | 'arrow'): Promise<Row[] | Table> {
    try {
      this.assertOpen();
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#online === undefined ? this.#readOffline(plan, format) : this.#readServed(plan, format);
  }

  /** A read served online when it qualifies, else offline. */
  async #readServed(plan: ReadPlan, format: 'rows' | 'arrow'): Promise<Row[] | Table> {
    const served = await this.#online!.read(plan, format);
    return served ?? this.#readOffline(plan, format);
  }

  /**
   * A read from the store itself. Not an async function: a key lookup that takes tens of
   * microseconds notices every promise, so only a failure takes the slower path.
   */
  #readOffline(plan: ReadPlan, format: 'rows' | 'arrow'): Promise<Row[] | Table> {
    try {
      return this.runRead(this.compile(plan), format).catch((error: unknown) =>
        this.#readAgain(plan, format, error),
      );
    } catch (error) {
      return this.#readAgain(plan, format, error);
    }
  }

  /** After `plan` failed with `error`: the error in the store's words, or the read of the tables that replaced its own. */
  async #readAgain(plan: ReadPlan, format: 'rows' | 'arrow', error: unknown): Promise<Row[] | Table> {
    let current = plan;
    for (let attempt = 1; ; attempt++) {
      if (error instanceof FeatureStoreError) throw error;
      if (!this.isReplacedTable(error) || attempt === REPLACED_READ_ATTEMPTS)
        throw this.readFailed(current, error);
      // A writer replaced a materialization between planning and reading: read the same
      // parameters from their new tables, which is what a read an instant later would see. A
      // writer republishing in a tight loop can replace them again meanwhile, hence a few tries.
      this.invalidate();
      const sources = await Promise.all(
        current.sources.map(async ({ feature, materialization }) => ({
          feature,
          materialization: await this.findMaterialization(feature.name, materialization.params),
        })),
      );
      const gone = sources.find((s) => s.materialization === undefined);
      if (gone !== undefined) {
        // Unpublished or pruned meanwhile: its table is kept a while for readers already on it.
        try {
          return await this.runRead(this.compile(current), format);
        } catch {
          // dropped too: say so below
        }
        throw new FeatureStoreError(
          'STORE_ERROR',
          'its materialization was removed while it was being read. Read again to use the current ones.',
          { feature: gone.feature.name, params: current.sources[0]?.materialization.params },
        );
      }
      current = { sources: sources as ReadPlan['sources'], query: current.query };
      try {
        return await this.runRead(this.compile(current), format);
      } catch (next) {
        error = next;
      }
    }
  }

  /** True for the error a read gets when a table it was planned on was dropped by a replacement. */
  protected isReplacedTable(_error: unknown): boolean {
    return false;
  }

  /** @internal */
  async explain(plan: ReadPlan): Promise<string> {
    const online = await this.#online?.explain(plan);
    if (online?.online) return online.note;
    const { sql, params, apart } = this.compile(plan);
    const value = (i: number) => `${formatParamValue(params[i]!.value)} (${params[i]!.type})`;
    const values = (indexes: readonly number[]) =>
      indexes.map((i, n) => `  ${this.dialect.placeholder(n + 1)} = ${value(i)}`);
    const main = params.slice(0, apart?.params ?? params.length).map((_, i) => i);
    return [
      ...(online === undefined ? [] : [online.note]),
      `-- served by ${this.name}`,
      sql,
      ...(main.length > 0 ? ['-- bound values:', ...values(main)] : []),
      ...(apart?.lookups ?? []).flatMap((lookup) => [
        '-- then, for the columns of one shared table:',
        lookup.sql,
        '-- bound values:',
        ...values(lookup.params),
      ]),
    ].join('\n');
  }

  /**
   * A planned read as a SQL query on the store's own database, to run or to embed in SQL features.
   * @internal
   */
  readQuery(plan: ReadPlan): SqlQuery {
    const source = this.source;
    if (source === undefined) {
      throw new FeatureStoreError(
        'INVALID_QUERY',
        `the ${this.name} store has no SQL source to express reads in.`,
      );
    }
    // One statement, whatever the store would read apart.
    const { strings, params, places } = compileRead(this.#bound(plan), this.dialect, { single: true });
    return new SqlQuery(
      source,
      strings,
      places.map((i) => params[i]!.value),
    );
  }

  /**
   * Publishes to the `online` store (see {@link MaterializerOptions.online}) what it lacks of the
   * latest materializations of `features` (default: every feature in this store's catalog): each
   * feature's last `keep` materializations in parameter order, the ones `Last()` resolves to,
   * retiring the others there. `materialize` does this for its feature; call it to repair the
   * online copy after an `ONLINE_PUBLISH_FAILED`, or to fill a new online store. Resolves to the
   * ids of the materializations it published.
   *
   * ### Example
   * ```ts
   * const materializer = new PostgresMaterializer({ connection, online: new RedisOnlineStore() });
   * await materializer.syncOnline(); // e.g. at start-up, after Redis lost its data
   * ```
   */
  async syncOnline(features?: readonly (Feature | FeatureInfo | string)[]): Promise<string[]> {
    this.assertOpen();
    const online = this.#online;
    if (online === undefined) {
      throw new FeatureStoreError(
        'STORE_ERROR',
        `this ${this.name} materializer has no online store; pass one with the online option.`,
      );
    }
    const names =
      features === undefined
        ? [...(await this.#catalogByFeature()).keys()].sort()
        : features.map((f) => (typeof f === 'string' ? f : featureInfoOf(f).name));
    return online.sync(
      names,
      (name) => this.#byFeature(name),
      (m) =>
        // Only the feature's name is read from a source's info while reading.
        this.read(this.planOf({ name: m.featureName } as FeatureInfo, m), 'arrow'),
    );
  }

  /**
   * Hits, misses, hit rate and entries of the online cache (`online: { store, cache: { entries } }`);
   * all zeros without one.
   *
   * ### Example
   * ```ts
   * const { hitRate, entries } = materializer.cacheStats();
   * ```
   */
  cacheStats(): OnlineCacheStats {
    return this.#online?.cacheStats() ?? { hits: 0, misses: 0, hitRate: 0, entries: 0 };
  }

  /** After an offline publication: the online copy of the feature, or the failure reported. */
  async #publishOnline(record: Materialization): Promise<void> {
    const online = this.#online;
    if (online === undefined) return;
    try {
      await this.syncOnline([record.featureName]);
    } catch (error) {
      online.report(error as FeatureStoreError);
    }
  }

  /**
   * Detaches the decorator from every store it was attached to (calls of those features run their
   * functions again) and releases the store's connections; later `materialize` and reads fail
   * with `CLOSED`.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const attachment of attachmentsOf(this.decorator)) attachment.detach();
    await this.closeConnections();
  }

  /** Refuses to store what this materializer's decorator will never serve. */
  #assertServes(feature: unknown, info: FeatureInfo, params: Params): void {
    const attached = attachmentsOf(this.decorator);
    const store = (feature as { [STORE_OF_FEATURE]?: object })[STORE_OF_FEATURE];
    if (attached.length === 0 || store === undefined) return;
    const here = attached.filter((a) => a.store === store);
    if (here.some((a) => covers(a.modulePrefix, info.module))) return;
    throw new FeatureStoreError(
      'NOT_SERVED',
      here.length === 0
        ? `this ${this.name} materializer's decorator is attached to another FeatureStore than the one "${info.name}" is registered in, so what it stores would never be read. ` +
            'Attach it to the feature’s store with store.addDecorator(materializer.decorator). Nothing was stored.'
        : `this ${this.name} materializer's decorator covers only the module(s) ${here.map((a) => `"${a.modulePrefix}"`).join(', ')}, not "${info.module}", so what it stores would never be read. ` +
            `Attach it for this module too, e.g. store.addDecorator(materializer.decorator, '${info.module}'). Nothing was stored.`,
      { feature: info.name, params },
    );
  }

  /**
   * The store's own database as a source of SQL features, if it has one: a SQL feature whose
   * query comes from this source is materialized inside the database (see {@link publishQuery}).
   */
  get source(): SqlSource | undefined {
    return undefined;
  }

  /**
   * Publishes the result of a query that runs in the store's own database (`CREATE TABLE … AS`),
   * with the same checks and atomicity as {@link publish}. `keyOf` gives the key for the created
   * table's columns (or throws). Stores that can do this override it.
   */
  protected publishQuery?(
    input: Omit<PublishInput, 'key' | 'columns' | 'batches'>,
    query: SqlQuery,
    keyOf: (columns: readonly ColumnSpec[]) => readonly string[],
  ): Promise<Materialization>;

  #runsHere(query: SqlQuery): boolean {
    const own = this.source;
    return this.publishQuery !== undefined && own !== undefined && query.source.database === own.database;
  }

  /**
   * Where a materialization's rows are: the quoted, qualified table, and, when the table holds
   * rows of several materializations, the column and value that select this one's.
   */
  protected abstract sourceOf(materialization: Materialization): {
    table: string;
    partition?: SourcePartition;
  };
  /** Loads the whole catalog of completed materializations. */
  protected abstract loadCatalog(): Promise<Materialization[]>;
  /** Writes `input` to a new data table and swaps the catalog record, atomically. */
  protected abstract publish(input: PublishInput): Promise<Materialization>;
  /** Runs a compiled read. */
  protected abstract runRead(query: CompiledQuery, format: 'rows' | 'arrow'): Promise<Row[] | Table>;
  /** The error a read gets when the database fails it, in the store's words. */
  protected abstract readFailed(plan: ReadPlan, error: unknown): FeatureStoreError;
  protected abstract closeConnections(): Promise<void>;

  /** Keeps `catalog` as the one reads compile against, unless a newer one replaced `from` meanwhile. */
  #hold(
    catalog: Map<string, Materialization[]>,
    from: Promise<Map<string, Materialization[]>>,
  ): Map<string, Materialization[]> {
    if (this.#catalog !== from && this.#catalog !== undefined) return catalog;
    this.#loaded = catalog;
    this.#shapes.clear();
    this.catalogEpoch++;
    return catalog;
  }

  /**
   * A materialization's columns for a read: its own, then any other column the feature's current
   * materializations have (stored with `allowColumnChange`), which it gives as nulls.
   */
  #widened(m: Materialization): { columns: readonly ColumnSpec[]; absent?: ReadonlySet<string> } {
    let shape = this.#shapes.get(m.featureName);
    if (shape === undefined) {
      const columns: ColumnSpec[] = [];
      const names = new Set<string>();
      for (const other of this.#loaded?.get(m.featureName) ?? []) {
        for (const column of other.columns) {
          if (names.has(column.name) || other.key.includes(column.name)) continue;
          names.add(column.name);
          columns.push(column);
        }
      }
      shape = columns;
      this.#shapes.set(m.featureName, shape);
    }
    let absent: Set<string> | undefined;
    for (const column of shape) {
      if (m.columns.some((c) => c.name === column.name)) continue;
      absent ??= new Set();
      absent.add(column.name);
    }
    if (absent === undefined) return { columns: m.columns };
    return { columns: [...m.columns, ...shape.filter((c) => absent.has(c.name))], absent };
  }

  /**
   * Refuses (`EMPTY_RESULT`) a result of no rows unless the call allows it. A store calls it with
   * the loaded row count before it commits.
   */
  protected checkRows(input: Pick<PublishInput, 'feature' | 'params' | 'options'>, rows: number): void {
    if (rows > 0 || input.options.allowEmpty === true) return;
    throw new FeatureStoreError(
      'EMPTY_RESULT',
      'the result has no rows, so reads at these parameters would find nothing (a point in time after the ' +
        'data ends, or a source that returned nothing, gives this). Nothing was stored. ' +
        'Pass { allowEmpty: true } to store it anyway.',
      { feature: input.feature.name, params: input.params },
    );
  }

  /**
   * Retires the publication with this id, atomically: its catalog record goes and its table is
   * retired (dropped after `retainReplaced`, so a reader already on it finishes), so `Last()`
   * moves back to the previous parameters. Resolves to the retired record, or `undefined` when no
   * current publication has this id.
   *
   * ### Example
   * ```ts
   * const record = await materializer.materialize(departures, { when: new Date('2001-03-02') });
   * await materializer.unpublish(record.id); // a bad run: Last() reads 2001-03-01 again
   * ```
   */
  async unpublish(id: string): Promise<Materialization | undefined> {
    this.assertOpen();
    this.invalidate(); // the store's own catalog, not one held in memory
    const record = [...(await this.#allMaterializations())].find((m) => m.id === String(id));
    if (record === undefined) return undefined;
    const retired = await this.retire([record]);
    this.invalidate();
    return retired.includes(record.id) ? record : undefined;
  }

  /**
   * Retires old materializations: per feature and per value of its parameters other than Dates
   * (e.g. each `appName`), keeps the `keep` with the latest parameters (those `Last()` picks
   * first) and any published less than `olderThan` ago; retires the rest, as {@link unpublish}
   * does, so readers already on one finish. Resolves to the retired records.
   *
   * ### Example
   * ```ts
   * // A year of daily points in time, and anything from the last week:
   * const retired = await materializer.prune({ keep: 365, olderThan: '7 days' });
   * ```
   */
  async prune(options: PruneOptions): Promise<Materialization[]> {
    this.assertOpen();
    const keep = options?.keep ?? 1;
    if (!Number.isSafeInteger(keep) || keep < 0) {
      throw new FeatureStoreError(
        'INVALID_OPTION',
        `prune's keep is ${describeValue(keep)}, but it must be a whole number from 0 up: how many materializations to keep per feature and parameters.`,
        { details: { keep } },
      );
    }
    const youngest =
      options?.olderThan === undefined
        ? Number.POSITIVE_INFINITY
        : Date.now() - parseDuration(options.olderThan, 'olderThan');
    this.invalidate();
    const groups = new Map<string, Materialization[]>();
    for (const m of await this.#allMaterializations()) {
      const fixed: Record<string, unknown> = {};
      for (const [name, value] of Object.entries(m.params)) if (!(value instanceof Date)) fixed[name] = value;
      const group = `${m.featureName}\u0000${canonicalParams(fixed, m.featureName)}`;
      const list = groups.get(group);
      if (list === undefined) groups.set(group, [m]);
      else list.push(m);
    }
    const old: Materialization[] = [];
    for (const list of groups.values()) {
      // Sorted as the catalog is: by parameters, the latest last.
      const candidates = list.slice(0, Math.max(0, list.length - keep));
      for (const m of candidates) if (m.createdAt.getTime() < youngest) old.push(m);
    }
    if (old.length === 0) return [];
    const retired = new Set(await this.retire(old));
    this.invalidate();
    return old.filter((m) => retired.has(m.id));
  }

  /**
   * Removes the catalog records of `records` and retires their tables, in one transaction (see
   * `vacuum` for when they are dropped); a record another writer replaced meanwhile is left
   * alone. Resolves to the ids it removed.
   */
  protected abstract retire(records: readonly Materialization[]): Promise<string[]>;

  async #allMaterializations(): Promise<Materialization[]> {
    return [...(await this.#catalogByFeature()).values()].flat();
  }

  /** Forgets the cached catalog; the next call reloads it. Call when another writer published. */
  protected invalidate(): void {
    this.#catalog = undefined;
    this.#forgetResolutions();
  }

  /**
   * This store's own publication: the cached catalog, if loaded, takes the new record in place of
   * the one it replaces, so the next call needs no reload. Later reads resolve anew.
   */
  #published(record: Materialization): void {
    this.#forgetResolutions();
    const catalog = this.#catalog;
    if (catalog === undefined) return;
    const updated: Promise<Map<string, Materialization[]>> = catalog.then((byFeature) => {
      const list = (byFeature.get(record.featureName) ?? []).filter((m) => m.paramsKey !== record.paramsKey);
      list.push(record);
      list.sort(compareMaterializations);
      return this.#hold(new Map(byFeature).set(record.featureName, list), updated);
    });
    this.#catalog = updated;
    updated.catch(() => {
      if (this.#catalog === updated) this.#catalog = undefined;
    });
  }

  #forgetResolutions(): void {
    this.#resolutions.clear();
    this.#current = new WeakSet();
  }

  protected assertOpen(): void {
    if (this.#closed)
      throw new FeatureStoreError('CLOSED', `this ${this.name} materializer was closed; create a new one.`);
  }

  /**
   * SQL for checking the key of a freshly loaded table: `summary` counts rows, rows with a null
   * key and rows beyond the first of each key, in one scan; `duplicates` then names one
   * duplicated key, only when there is one.
   */
  protected keyChecks(table: string, key: readonly string[]): { summary: string; duplicates: string } {
    const cols = key.map((k) => this.dialect.quote(k));
    const tuple = cols.length === 1 ? cols[0]! : `(${cols.join(', ')})`;
    return {
      summary:
        `SELECT count(*) AS n, count(*) FILTER (WHERE ${cols.map((c) => `${c} IS NULL`).join(' OR ')}) AS nulls, ` +
        `count(*) - count(DISTINCT ${tuple}) AS extra FROM ${table}`,
      duplicates: `SELECT ${cols.join(', ')}, count(*) AS n FROM ${table} GROUP BY ${cols.join(', ')} HAVING count(*) > 1 LIMIT 1`,
    };
  }

  /** The error for a duplicated key found by {@link keyChecks}. */
  protected duplicateKeyError(
    input: Pick<PublishInput, 'feature' | 'params' | 'key'>,
    row: Row,
  ): FeatureStoreError {
    const shown = input.key.map((k) => `${k} = ${formatParamValue(row[k])}`).join(', ');
    return new FeatureStoreError(
      'DUPLICATE_KEY',
      `the key (${shown}) appears ${String(row.n)} times, but each key may appear once. ` +
        'Aggregate the rows per key, or set the entity option to the full key. Nothing was stored.',
      {
        feature: input.feature.name,
        params: input.params,
        details: { key: Object.fromEntries(input.key.map((k) => [k, row[k]])) },
      },
    );
  }

  /** The error for null keys found by {@link keyChecks}. */
  protected nullKeyError(
    input: Pick<PublishInput, 'feature' | 'params' | 'key'>,
    count: number,
  ): FeatureStoreError {
    return new FeatureStoreError(
      'NULL_KEY',
      `${count} row(s) have a null in the key column(s) ${input.key.join(', ')}; every row needs a key. Nothing was stored.`,
      { feature: input.feature.name, params: input.params, details: { count } },
    );
  }

  /** Builds a catalog record; stores call it from `loadCatalog` and `publish`. */
  protected record(fields: Omit<Materialization, 'params'>): Materialization {
    return Object.freeze({ ...fields, params: Object.freeze(decodeParams(fields.paramsKey)) });
  }

  /** Reads a materialization back as the kind the function returned. */
  protected async readMaterialization(
    feature: FeatureInfo,
    materialization: Materialization,
  ): Promise<unknown> {
    const plan = this.planOf(feature, materialization);
    if (materialization.kind === 'rows') return this.read(plan, 'rows');
    if (materialization.kind === 'sql' && this.source !== undefined) return this.readQuery(plan);
    return adapterByKind(materialization.kind).fromArrow(await this.read(plan, 'arrow'));
  }

  /** A read of one whole materialization, with no filter; the same plan for the same feature and record. */
  protected planOf(feature: FeatureInfo, materialization: Materialization): ReadPlan {
    const held = this.#whole.get(materialization);
    if (held !== undefined && held.sources[0]!.feature === feature) return held;
    const plan = { sources: [{ feature, materialization }], query: treeOf([feature.name]) };
    this.#whole.set(materialization, plan);
    return plan;
  }

  /**
   * The SQL of a planned read: compiled once per planned sources, catalog epoch and query shape;
   * a later read of the same shape only binds its own values into it.
   */
  protected compile(plan: ReadPlan): CompiledQuery {
    let held = this.#compiled.get(plan.sources);
    if (held === undefined || held.epoch !== this.catalogEpoch) {
      held = { epoch: this.catalogEpoch, reads: [] };
      this.#compiled.set(plan.sources, held);
    }
    for (const read of held.reads) {
      if (read.query === plan.query) return read.compiled;
      if (sameShape(read.query, plan.query)) return rebindRead(read.compiled, plan.query);
    }
    const compiled = compileRead(this.#bound(plan), this.dialect);
    // A frame filtered many ways keeps a few shapes; past that, the recent ones.
    if (held.reads.length >= MAX_SHAPES) held.reads.shift();
    held.reads.push({ query: plan.query, compiled });
    return compiled;
  }

  /** The plan's query with each source bound to where its rows are stored. */
  #bound(plan: ReadPlan): QueryTree {
    return bindSources(plan.query, (_, i) => {
      const m = plan.sources[i]!.materialization;
      return { key: m.key, ...this.#widened(m), ...this.sourceOf(m) };
    });
  }

  /**
   * False when the cached catalog may miss a publication another store made on the same database
   * in this process (which sends no notice): the next call then reloads it.
   */
  protected catalogIsCurrent(): boolean {
    return true;
  }

  async #byFeature(feature: string): Promise<readonly Materialization[]> {
    return (await this.#catalogByFeature()).get(feature) ?? [];
  }

  /** The catalog by feature: the one held, or loaded now when none is (or it may be behind). */
  #catalogByFeature(): Promise<Map<string, Materialization[]>> {
    this.assertOpen();
    if (this.#catalog !== undefined && !this.catalogIsCurrent()) this.invalidate();
    if (this.#catalog === undefined) {
      this.#loads++;
      const loading: Promise<Map<string, Materialization[]>> = this.loadCatalog().then((records) =>
        this.#hold(groupByFeature(records), loading),
      );
      this.#catalog = loading;
      loading.catch(() => {
        if (this.#catalog === loading) this.#catalog = undefined;
      });
    }
    return this.#catalog;
  }
}

/**
 * `schema` if a store can keep its tables there; else refuses it with `INVALID_SCHEMA` (an empty
 * name, or one with a NUL, which no database can name). @internal
 */
export function checkSchemaName(schema: unknown, store: string): string {
  if (typeof schema === 'string' && schema.length > 0 && !schema.includes('\u0000')) return schema;
  throw new FeatureStoreError(
    'INVALID_SCHEMA',
    `the ${store} store cannot use the schema name ${describeValue(schema)}: ` +
      (typeof schema !== 'string'
        ? 'it must be a string.'
        : schema.length === 0
          ? 'it is empty. Give a name such as "featurefn".'
          : 'it contains a NUL character, which no schema name can hold. Remove it.'),
    { details: { schema } },
  );
}

/** The version, lineage and metadata of the run that just computed `feature`. */
function recordOf(feature: Feature, params: Params): FeatureRecordInput {
  const store = (feature as { [STORE_OF_FEATURE]?: FeatureStore })[STORE_OF_FEATURE]!;
  const { name } = featureInfoOf(feature);
  return {
    version: store.versionOf(feature),
    lineage: store.lineageVersionsOf(name),
    metadata: store.describeFeature(feature),
    paramNames: Object.keys(params),
  };
}

function groupByFeature(records: Materialization[]): Map<string, Materialization[]> {
  const byFeature = new Map<string, Materialization[]>();
  for (const record of records) {
    const list = byFeature.get(record.featureName);
    if (list === undefined) byFeature.set(record.featureName, [record]);
    else list.push(record);
  }
  for (const list of byFeature.values()) list.sort(compareMaterializations);
  return byFeature;
}

function compareMaterializations(a: Materialization, b: Materialization): number {
  const names = [...new Set([...Object.keys(a.params), ...Object.keys(b.params)])].sort();
  for (const name of names) {
    const x = a.params[name];
    const y = b.params[name];
    if (x === undefined || y === undefined) return x === undefined ? -1 : 1;
    const order =
      typeof x === typeof y ? compareParamValues(x, y) : String(typeof x) < String(typeof y) ? -1 : 1;
    if (order !== 0) return order;
  }
  return a.createdAt.getTime() - b.createdAt.getTime();
}

async function streamOf(
  adapter: FrameAdapter,
  result: unknown,
  info: FeatureInfo,
  params: Params,
): Promise<{
  columns: readonly ColumnSpec[];
  batches: AsyncIterable<RecordBatch>;
  close: () => Promise<void>;
  /** True when the result had no rows and no columns: `columns` are only the entity's. */
  inferred?: boolean;
}> {
  const context = { feature: info.name, params };
  let close = async () => {};
  try {
    if (adapter.toBatches !== undefined) {
      const iterator = adapter.toBatches(result)[Symbol.asyncIterator]();
      close = async () => {
        await iterator.return?.()?.catch(() => undefined);
      };
      const first = await iterator.next();
      if (!first.done) {
        const columns = columnsOf(new Table(first.value.schema), info.name);
        return {
          columns,
          close,
          batches: (async function* () {
            yield first.value;
            for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
          })(),
        };
      }
    }
    const table = await adapter.toArrow(result);
    let columns = columnsOf(table, info.name);
    const inferred = columns.length === 0 && table.numRows === 0 && info.entity !== undefined;
    if (inferred) columns = info.entity!.map((name) => ({ name, type: 'string' as const }));
    return {
      columns,
      inferred,
      close,
      batches: (async function* () {
        yield* table.batches;
      })(),
    };
  } catch (error) {
    await close();
    if (error instanceof FeatureStoreError && error.feature !== undefined) throw error;
    if (error instanceof FeatureStoreError) {
      throw new FeatureStoreError(error.code, error.message, {
        ...context,
        cause: error.cause,
        details: error.details,
      });
    }
    throw new FeatureStoreError(
      'UNSUPPORTED_RESULT',
      `its ${adapter.kind} result could not be read: ${String(error)}`,
      {
        ...context,
        cause: error,
      },
    );
  }
}

/** `promise`, or the signal's reason once it aborts, whichever comes first. */
function within<T>(promise: Promise<T> | T, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return Promise.resolve(promise);
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    Promise.resolve(promise).then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** Reports a failure of the result's own stream as the feature's, whichever store is loading it. */
async function* guarded(
  batches: AsyncIterable<RecordBatch>,
  info: FeatureInfo,
  params: Params,
  signal: AbortSignal | undefined,
): AsyncIterable<RecordBatch> {
  let rows = 0;
  const iterator = batches[Symbol.asyncIterator]();
  while (true) {
    let next: IteratorResult<RecordBatch>;
    try {
      // On timeout the store's load sees this stream fail, and rolls back as for any failure.
      next = await within(iterator.next(), signal);
    } catch (cause) {
      if (cause instanceof FeatureStoreError && cause.feature !== undefined) throw cause;
      if (cause instanceof FeatureStoreError) {
        // A source's own error (e.g. the SQL feature's query failed): say which feature it was.
        throw new FeatureStoreError(cause.code, cause.message, {
          feature: info.name,
          params,
          sql: cause.sql,
          cause: cause.cause,
          details: cause.details,
        });
      }
      throw new FeatureStoreError(
        'FEATURE_FAILED',
        `reading its result failed after ${rows} row(s): ${cause instanceof Error ? cause.message : String(cause)}. Nothing was stored.`,
        { feature: info.name, params, cause },
      );
    }
    if (next.done) return;
    rows += next.value.numRows;
    yield next.value;
  }
}

async function* validated(
  batches: AsyncIterable<RecordBatch>,
  info: FeatureInfo,
  params: Params,
  key: readonly string[],
): AsyncIterable<RecordBatch> {
  const schema = info.schema!;
  for await (const batch of batches) {
    for (const row of tableToRows(new Table(batch))) {
      let outcome = schema['~standard'].validate(row);
      if (outcome instanceof Promise) outcome = await outcome;
      if (outcome.issues !== undefined) {
        const shownKey = key.map((k) => `${k} = ${formatParamValue(row[k])}`).join(', ');
        const issues = outcome.issues.map(
          (i) =>
            (i.path?.length
              ? `${i.path.map((p) => (typeof p === 'object' ? String(p.key) : String(p))).join('.')}: `
              : '') + i.message,
        );
        throw new FeatureStoreError(
          'INVALID_VALUE',
          `the row with key (${shownKey}) does not match the feature's schema: ${issues.join('; ')}. Nothing was stored.`,
          {
            feature: info.name,
            params,
            details: { key: Object.fromEntries(key.map((k) => [k, row[k]])), row, issues },
          },
        );
      }
    }
    yield batch;
  }
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function* noBatches(): AsyncIterable<RecordBatch> {}

/** The materialization published last, if any. */
function latest(list: readonly Materialization[]): Materialization | undefined {
  let found: Materialization | undefined;
  for (const m of list) if (found === undefined || m.createdAt > found.createdAt) found = m;
  return found;
}

/** `columns` less the key, as `name type` texts. */
function valueColumns(columns: readonly ColumnSpec[], key: readonly string[]): Map<string, string> {
  return new Map(columns.filter((c) => !key.includes(c.name)).map((c) => [c.name, c.type]));
}

/**
 * A column type's kind: numbers are one kind, as a rows result's are typed by the values it holds
 * (whole numbers as int32, others as float64) and reads give them back as numbers either way.
 */
function kindOf(type: string): string {
  return /^(int|float)\d+$/.test(type) ? 'number' : type;
}

/** Refuses (`COLUMNS_CHANGED`) value columns other than the `previous` materialization's, unless allowed. */
function checkColumns(
  info: FeatureInfo,
  params: Params,
  key: readonly string[],
  columns: readonly ColumnSpec[],
  previous: Materialization | undefined,
  options: MaterializeOptions,
): void {
  if (previous === undefined || options.allowColumnChange === true) return;
  const before = valueColumns(previous.columns, previous.key);
  // An empty result stored before any shape was known (`[]`, allowed) has nothing to lose.
  if (before.size === 0 && previous.rows === 0) return;
  const now = valueColumns(columns, key);
  const missing = [...before].filter(([name]) => !now.has(name)).map(([name, type]) => ({ name, type }));
  const added = [...now].filter(([name]) => !before.has(name)).map(([name, type]) => ({ name, type }));
  const changed = [...now]
    .filter(([name, type]) => before.has(name) && kindOf(before.get(name)!) !== kindOf(type))
    .map(([name, type]) => ({ name, was: before.get(name)!, now: type }));
  if (missing.length + added.length + changed.length === 0) return;
  const parts = [
    ...missing.map((c) => `column "${clip(c.name)}" (${c.type}) is missing`),
    ...added.map((c) => `column "${clip(c.name)}" (${c.type}) is new`),
    ...changed.map((c) => `column "${clip(c.name)}" was ${c.was} and is now ${c.now}`),
  ];
  throw new FeatureStoreError(
    'COLUMNS_CHANGED',
    `its value columns differ from its last materialization (id ${previous.id}): ${parts.join('; ')}. ` +
      'Nothing was stored. If the change is meant, pass { allowColumnChange: true }: reads then give every ' +
      'column the feature has had, as nulls where a materialization lacks it.',
    { feature: info.name, params, details: { missing, added, changed, previous: previous.id } },
  );
}
