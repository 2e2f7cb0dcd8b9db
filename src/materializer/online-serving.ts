/**
 * Serving key lookups from an online store: which reads qualify, reading them there with the
 * exact materializations the offline store resolved, the in-process cache, and keeping the online
 * copy of each feature's latest materializations in step with the offline catalog.
 * @module
 */
import type { Table } from 'apache-arrow';
import { FeatureStoreError } from '../errors.js';
import { formatParamValue } from '../format.js';
import { type ColumnSpec, type ColumnType, type Row, tableFromColumns } from '../frame/columns.js';
import { OnlineCache } from '../online/online-cache.js';
import { encodeKey } from '../online/online-codec.js';
import type { OnlineKeyValue, OnlineSource, OnlineStore } from '../online/online-store.js';
import { checkColumn, layoutOf, unwind } from '../query/nodes.js';
import { checkValue } from '../query/sql-compiler.js';
import type { Materialization, OnlineCacheStats, OnlineOptions, ReadPlan } from './materializer.js';

/** What a read that qualifies for the online store asks for. */
interface Lookup {
  readonly prepared: Prepared;
  /** The entity key, in the order of the first feature's key columns. */
  readonly key: OnlineKeyValue[];
  /** Output column names after the frame's selections. */
  readonly names: readonly string[];
  readonly limit: number | undefined;
}

/** What every read of the same materializations shares: sources, output layout, cache name. */
interface Prepared {
  readonly cacheName: string;
  readonly sources: readonly OnlineSource[];
  readonly key: readonly string[];
  readonly columns: readonly (ColumnSpec & { readonly source: number; readonly isKey: boolean })[];
  readonly byName: ReadonlyMap<string, ColumnSpec>;
  /** Every output column, in order. */
  readonly names: readonly string[];
  /** The position of each output column in a joined row's values. */
  readonly indexOf: ReadonlyMap<string, number>;
  /** Per column: whether its values are objects (Dates, JSON, arrays), copied out of the cache. */
  readonly objects: readonly boolean[];
  /** A row with every output column, null: copied and filled per read (quicker than adding 50 properties). */
  readonly template: Row;
  /** Until when (ms since the epoch) the online store is known not to hold these sources. */
  absentUntil: number;
}

/** Key column types served online: others (floats, instants…) compare differently in SQL. */
const ONLINE_KEY_TYPES: ReadonlySet<ColumnType> = new Set(['string', 'int8', 'int16', 'int32', 'int64']);
/** How long a read trusts that the online store lacks some materializations before asking again. */
const ABSENT_MS = 5_000;
const REPORT_EVERY_MS = 10_000;
const MAX_PREPARED = 1_000;
const OBJECT_TYPES: ReadonlySet<ColumnType> = new Set(['timestamp', 'date', 'json', 'float64[]']);

/** @internal */
export function onlineOptionsOf(option: OnlineStore | OnlineOptions | undefined): OnlineOptions | undefined {
  if (option === undefined) return undefined;
  return 'store' in option && typeof (option as Partial<OnlineStore>).read !== 'function'
    ? option
    : { store: option as OnlineStore };
}

/**
 * A materializer's online side: serves key lookups from `store` (and the cache), and publishes
 * the latest materializations of each feature there. @internal
 */
export class OnlineServing {
  readonly store: OnlineStore;
  /** Joined rows by prepared read and key, as values in the order of `Prepared.columns`. */
  readonly #cache: OnlineCache<readonly unknown[]> | undefined;
  readonly #onError: (error: FeatureStoreError) => void;
  #prepared = new Map<string, Prepared>();
  readonly #syncing = new Map<string, Promise<void>>();
  /** The same, by the resolution's array of materializations: no key to build per read. */
  #preparedByResolution = new WeakMap<readonly Materialization[], Prepared | string>();
  #preparedCount = 0;
  #reportedAt = Number.NEGATIVE_INFINITY;

  constructor(options: OnlineOptions, storeName: () => string) {
    if (typeof options.store?.read !== 'function' || typeof options.store.publish !== 'function') {
      throw new FeatureStoreError(
        'STORE_ERROR',
        'the online option takes an online store (e.g. new SqliteOnlineStore()) or { store, cache, onError }.',
      );
    }
    this.store = options.store;
    const entries = options.cache?.entries;
    if (entries !== undefined && (!Number.isInteger(entries) || entries < 2)) {
      throw new FeatureStoreError(
        'STORE_ERROR',
        `online.cache.entries must be a whole number, at least 2 (got ${String(entries)}).`,
      );
    }
    this.#cache = entries === undefined ? undefined : new OnlineCache({ maxEntries: entries });
    this.#onError =
      options.onError ??
      ((error) =>
        console.warn(`featurefn (${storeName()} store, online ${this.store.name}): ${error.message}`));
  }

  /**
   * Serves `plan` from the online store when it is a key lookup whose materializations are
   * published there; `undefined` when the offline store must serve it.
   */
  async read(plan: ReadPlan, format: 'rows' | 'arrow'): Promise<Row[] | Table | undefined> {
    const lookup = this.#lookupOf(plan);
    if (typeof lookup === 'string') return undefined;
    const { prepared } = lookup;
    const cache = this.#cache;
    let combined = cache?.get(prepared.cacheName, '', lookup.key);
    if (combined === undefined) {
      if (prepared.absentUntil > Date.now()) return undefined;
      let found: (Row | null)[];
      try {
        found = (await this.store.read(prepared.sources, [lookup.key]))[0]!;
      } catch (error) {
        this.#readFailed(prepared, error);
        return undefined;
      }
      combined = combine(prepared, lookup.key, found);
      cache?.set(prepared.cacheName, '', lookup.key, combined);
    }
    let rows: Row[] = [];
    if (combined !== null && lookup.limit !== 0)
      rows = [output(prepared, combined, lookup.names, cache !== undefined)];
    if (format === 'rows') return rows;
    const columns = lookup.names.map((name) => prepared.byName.get(name)!);
    return tableFromColumns(
      columns,
      columns.map((c) => rows.map((r) => r[c.name])),
    );
  }

  /** The line `explain()` gives for `plan`, and whether the online store serves it. */
  async explain(plan: ReadPlan): Promise<{ online: boolean; note: string }> {
    const lookup = this.#lookupOf(plan);
    const name = this.store.name;
    if (typeof lookup === 'string')
      return { online: false, note: `-- not served online (${name}): ${lookup}` };
    let listed: Set<string>;
    try {
      listed = new Set((await this.store.list(lookup.prepared.sources.map((s) => s.feature))).map(idOf));
    } catch (error) {
      return {
        online: false,
        note: `-- not served online (${name}): it is unreachable (${messageOf(error)})`,
      };
    }
    const absent = lookup.prepared.sources.filter((s) => !listed.has(idOf(s)));
    if (absent.length > 0) {
      return {
        online: false,
        note: `-- not served online (${name}): not published there: ${absent.map((s) => `${s.feature} (materialization ${s.id})`).join(', ')}; materializer.syncOnline() publishes the latest ones`,
      };
    }
    const key = lookup.prepared.key.map((k, i) => `${k} = ${formatParamValue(lookup.key[i])}`).join(', ');
    return {
      online: true,
      note: [
        `-- served online from ${name}: one read of ${lookup.prepared.sources.length} feature(s) at key (${key})${this.#cache === undefined ? '' : ', through the in-process cache'}`,
        ...lookup.prepared.sources.map((s) => `--   ${s.feature}: materialization ${s.id}`),
        ...(lookup.names.length < lookup.prepared.columns.length
          ? [`-- columns: ${lookup.names.join(', ')}`]
          : []),
        ...(lookup.limit === undefined ? [] : [`-- limit: ${lookup.limit}`]),
      ].join('\n'),
    };
  }

  /**
   * Makes the online copy of each of `features` hold its latest `store.keep` materializations
   * (in parameter order, as `Last()` sees them): retires the others there, then publishes the
   * missing ones, oldest first. Resolves to the ids published. `catalog` gives a feature's
   * offline materializations in parameter order; `table` reads one back whole.
   */
  async sync(
    features: readonly string[],
    catalog: (feature: string) => Promise<readonly Materialization[]>,
    table: (materialization: Materialization) => Promise<Table>,
  ): Promise<string[]> {
    const published: string[] = [];
    for (const feature of features) {
      // One sync of a feature at a time: two would publish the same materialization twice.
      const previous = this.#syncing.get(feature);
      const done = this.#syncFeature(feature, previous, catalog, table);
      const settled = done.then(
        () => undefined,
        () => undefined,
      );
      this.#syncing.set(feature, settled);
      void settled.then(() => {
        if (this.#syncing.get(feature) === settled) this.#syncing.delete(feature);
      });
      published.push(...(await done));
    }
    return published;
  }

  async #syncFeature(
    feature: string,
    previous: Promise<void> | undefined,
    catalog: (feature: string) => Promise<readonly Materialization[]>,
    table: (materialization: Materialization) => Promise<Table>,
  ): Promise<string[]> {
    await previous;
    const published: string[] = [];
    const target = (await catalog(feature)).slice(-this.store.keep);
    let current: Materialization | undefined;
    try {
      const listed = await this.store.list([feature]);
      for (const m of listed) {
        if (!target.some((t) => t.id === m.id)) await this.store.unpublish(feature, m.id);
      }
      for (const m of target) {
        if (listed.some((l) => l.id === m.id)) continue;
        current = m;
        const rows = await table(m);
        const keys = new Set(m.key);
        await this.store.publish({
          feature,
          id: m.id,
          paramsKey: m.paramsKey,
          key: m.key,
          columns: m.columns.filter((c) => !keys.has(c.name)),
          batches: rows.batches,
        });
        published.push(m.id);
      }
    } catch (error) {
      const at = current ?? target.at(-1);
      throw new FeatureStoreError(
        'ONLINE_PUBLISH_FAILED',
        `publishing to the online store (${this.store.name}) failed: ${bareMessage(error)} ` +
          'The offline publication stands and reads are served offline; a later materialize or materializer.syncOnline() repairs the online copy.',
        { feature, params: at?.params, cause: error, details: { store: this.store.name } },
      );
    } finally {
      // A publication here changes what reads find online: ask again.
      this.#prepared = new Map();
      this.#preparedByResolution = new WeakMap();
    }
    return published;
  }

  /** Reports `error` through `onError`; what `onError` throws propagates. */
  report(error: FeatureStoreError): void {
    this.#onError(error);
  }

  /** Hits and misses of the cache (zeros when there is none). */
  cacheStats(): OnlineCacheStats {
    const stats = this.#cache?.stats() ?? { hits: 0, misses: 0, entries: 0 };
    const asked = stats.hits + stats.misses;
    return { ...stats, hitRate: asked === 0 ? 0 : stats.hits / asked };
  }

  #readFailed(prepared: Prepared, error: unknown): void {
    const unreachable = error instanceof FeatureStoreError && error.code === 'ONLINE_UNAVAILABLE';
    if (!unreachable) {
      // Not (or no longer) published there: serve offline, and ask again in a while.
      prepared.absentUntil = Date.now() + ABSENT_MS;
      return;
    }
    const now = Date.now();
    if (now - this.#reportedAt < REPORT_EVERY_MS) return;
    this.#reportedAt = now;
    this.#onError(error);
  }

  /** The key lookup `plan` is, or why it is not one. */
  #lookupOf(plan: ReadPlan): Lookup | string {
    let prepared = plan.resolved === undefined ? undefined : this.#preparedByResolution.get(plan.resolved);
    if (prepared === undefined) {
      prepared = this.#prepare(plan.sources.map((s) => s.materialization));
      if (plan.resolved !== undefined) this.#preparedByResolution.set(plan.resolved, prepared);
    }
    if (typeof prepared === 'string') return prepared;
    const { operations } = unwind(plan.query);
    const key: (OnlineKeyValue | undefined)[] = new Array(prepared.key.length);
    let names: readonly string[] | undefined;
    let limit: number | undefined;
    for (const op of operations) {
      if (op.kind === 'filter') {
        if (names !== undefined || limit !== undefined) return 'a filter follows a selection or a limit';
        for (const p of op.predicates) {
          const i = prepared.key.indexOf(p.column);
          if (p.kind !== 'compare' || p.op !== '=' || i < 0) {
            return `the filter on "${p.column}" is not an equality on the entity key (${prepared.key.join(', ')})`;
          }
          const value = checkValue(prepared.byName.get(p.column)!, p.value) as OnlineKeyValue;
          const seen = key[i];
          if (seen !== undefined && encodeKey([seen]) !== encodeKey([value])) {
            return `"${p.column}" is filtered on two different values`;
          }
          key[i] = value;
        }
      } else if (op.kind === 'project') {
        const current = names ?? prepared.names;
        for (const column of op.columns) checkColumn(current, column);
        names = op.columns;
      } else {
        limit = limit === undefined ? op.count : Math.min(limit, op.count);
      }
    }
    const open = prepared.key.filter((_, i) => key[i] === undefined);
    if (open.length > 0) return `no equality filter on the key column(s) ${open.join(', ')}`;
    return {
      prepared,
      key: key as OnlineKeyValue[],
      names: names ?? prepared.names,
      limit,
    };
  }

  #prepare(materializations: readonly Materialization[]): Prepared | string {
    let memo = '';
    for (const m of materializations) memo += `${m.featureName}\u0000${m.id}\u0000`;
    const known = this.#prepared.get(memo);
    if (known !== undefined) return known;
    const first = materializations[0]!;
    for (const m of materializations) {
      if (m.key.length !== first.key.length || m.key.some((k) => !first.key.includes(k))) {
        return `the features have different entity keys (${first.featureName}: ${first.key.join(', ')}; ${m.featureName}: ${m.key.join(', ')})`;
      }
      for (const k of m.key) {
        const type = m.columns.find((c) => c.name === k)?.type;
        if (type === undefined || !ONLINE_KEY_TYPES.has(type)) {
          return `key column "${k}" of ${m.featureName} is ${type ?? 'missing'}; only string and integer keys are served online`;
        }
      }
    }
    const layout = layoutOf(
      materializations.map((m) => ({ feature: m.featureName, key: m.key, columns: m.columns })),
    );
    const columns = layout.columns.map((c) => ({ ...c, isKey: first.key.includes(c.name) }));
    const prepared: Prepared = {
      cacheName: `#${this.#preparedCount++}`,
      sources: materializations.map((m) => ({ feature: m.featureName, id: m.id })),
      key: first.key,
      columns,
      byName: new Map(columns.map((c) => [c.name, { name: c.name, type: c.type }])),
      names: columns.map((c) => c.name),
      indexOf: new Map(columns.map((c, i) => [c.name, i])),
      objects: columns.map((c) => OBJECT_TYPES.has(c.type)),
      template: templateOf(columns.map((c) => c.name)),
      absentUntil: 0,
    };
    if (this.#prepared.size >= MAX_PREPARED) this.#prepared = new Map();
    this.#prepared.set(memo, prepared);
    return prepared;
  }
}

/**
 * The joined row of one key, as the offline store gives it (before selections), as values in the
 * order of `prepared.columns`; `null` when the key has no row.
 */
function combine(
  prepared: Prepared,
  key: readonly OnlineKeyValue[],
  found: readonly (Row | null)[],
): unknown[] | null {
  if (found[0] === null) return null;
  const { columns } = prepared;
  const values: unknown[] = new Array(columns.length);
  for (let i = 0; i < columns.length; i++) {
    const column = columns[i]!;
    values[i] = asOffline(
      column.type,
      column.isKey ? key[prepared.key.indexOf(column.name)] : (found[column.source]?.[column.name] ?? null),
    );
  }
  return values;
}

/** A value as the offline stores give it: integers as numbers (int64 as bigint beyond 2^53). */
function asOffline(type: ColumnType, value: unknown): unknown {
  if (value === null) return null;
  switch (type) {
    case 'int8':
    case 'int16':
    case 'int32':
      return Number(value);
    case 'int64': {
      const n = Number(value);
      return Number.isSafeInteger(n) ? n : BigInt(value as bigint | number);
    }
    default:
      return value;
  }
}

/**
 * The row a read returns: the `names` columns of `combined`, copying its Dates and JSON values
 * when `combined` is cached, so that a caller changing them cannot change later answers.
 */
function output(
  prepared: Prepared,
  combined: readonly unknown[],
  names: readonly string[],
  cached: boolean,
): Row {
  if (names === prepared.names) {
    const row = { ...prepared.template };
    for (let i = 0; i < names.length; i++) {
      const value = combined[i];
      put(row, names[i]!, cached && prepared.objects[i] ? copyOf(value) : value);
    }
    return row;
  }
  const row: Row = {};
  for (const name of names) {
    const i = prepared.indexOf.get(name)!;
    put(row, name, cached && prepared.objects[i] ? copyOf(combined[i]) : combined[i]);
  }
  return row;
}

// fromEntries defines each property (one named __proto__ included) and gives an object whose
// copies V8 makes quickly; adding the properties one by one can leave it in the slow dictionary form.
function templateOf(names: readonly string[]): Row {
  return Object.fromEntries(names.map((name) => [name, null]));
}

/** Sets a column, defining one named `__proto__` as a value (an assignment would set the prototype). */
function put(row: Row, name: string, value: unknown): void {
  if (name === '__proto__') {
    Object.defineProperty(row, name, { value, enumerable: true, writable: true, configurable: true });
  } else row[name] = value;
}

function copyOf(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  return value instanceof Date ? new Date(value.getTime()) : structuredClone(value);
}

function idOf(source: OnlineSource): string {
  return `${source.feature}\u0000${source.id}`;
}

/** An error's message without the feature and parameters a `FeatureStoreError` starts it with. */
function bareMessage(error: unknown): string {
  if (!(error instanceof FeatureStoreError)) return messageOf(error);
  const prefix = new FeatureStoreError(error.code, '', { feature: error.feature, params: error.params })
    .message;
  return error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
