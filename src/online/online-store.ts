import type { RecordBatch } from 'apache-arrow';
import type { Params } from '../feature/params.js';
import type { ColumnSpec, Row } from '../frame/columns.js';
import { type ParamSpec, resolveParams } from '../resolver/resolvers.js';

/**
 * One value of an entity key column: strings, integers (`number` or `bigint`: `5` and `5n` are the
 * same key), other numbers, booleans and Dates (by instant).
 */
export type OnlineKeyValue = string | number | bigint | boolean | Date;

/** One entity key: its values in the order of the feature's key columns, e.g. `['SFO', 'LAX']`. */
export type OnlineKey = readonly OnlineKeyValue[];

/** One materialization of a feature to publish online. */
export interface OnlinePublication {
  /** Qualified feature name, e.g. `'flights.departures'`. */
  readonly feature: string;
  /** The offline store's id of the materialization; unique per feature. */
  readonly id: string;
  /** Canonical text of the parameters (`canonicalParams`), as the offline catalog records it. */
  readonly paramsKey: string;
  /** Key column(s), in order. Keys are never null and unique within a materialization. */
  readonly key: readonly string[];
  /** Value columns and their types (everything but the key). */
  readonly columns: readonly ColumnSpec[];
  /** The rows, key and value columns by name. Read once. */
  readonly batches: Iterable<RecordBatch> | AsyncIterable<RecordBatch>;
}

/** A materialization that is complete online, as {@link OnlineStore.list} returns it. */
export interface OnlineMaterialization {
  readonly feature: string;
  readonly id: string;
  readonly paramsKey: string;
  /** Number of rows stored. */
  readonly rows: number;
  /** When the online store published it. */
  readonly publishedAt: Date;
}

/** A materialization to read from: a feature and the id of one of its published materializations. */
export interface OnlineSource {
  readonly feature: string;
  readonly id: string;
}

/**
 * What an online store must do: keep the last few materializations of each feature, each
 * immutable once published, and read many features of one or a few entity keys in one round trip.
 * `SqliteOnlineStore` (`featurefn/sqlite`) and `RedisOnlineStore` (`featurefn/redis`) implement it
 * and pass the shared suite `test/contracts/online-store-contract.ts`; so must a new one
 * (see `docs/online-stores.md`).
 *
 * Values come back exactly as published: strings, booleans, float64 (NaN, ±Infinity and -0
 * included), int8/16/32 as numbers, int64 as `bigint`, timestamps and dates as `Date` (millisecond
 * precision; finer units are floored to the millisecond), JSON parsed, `float64[]` as
 * `(number | null)[]`, and `null` for nulls.
 *
 * Every failure rejects with a `FeatureStoreError` naming the feature and parameters concerned:
 * `ONLINE_UNAVAILABLE` when the store cannot be reached (quickly, never hanging), `STORE_ERROR`
 * otherwise, `CLOSED` after {@link OnlineStore.close}.
 */
export interface OnlineStore {
  /** Short store name for messages, e.g. `'sqlite'`. */
  readonly name: string;
  /**
   * How many materializations per feature are kept: publishing one more retires the oldest
   * published. Default is 3 in both stores.
   */
  readonly keep: number;
  /**
   * Stores `publication` and makes it visible atomically: a concurrent {@link read} or
   * {@link list} sees the feature's materializations as they were before or after, never a
   * partial one. In the same switch, a listed materialization of the feature with the same
   * `paramsKey` is retired (replaced), and then the oldest beyond {@link keep} (in publication
   * order). Resolves with the new record. Publishing an id that is already listed is refused.
   */
  publish(publication: OnlinePublication): Promise<OnlineMaterialization>;
  /**
   * Retires one materialization: it leaves {@link list} at once and its data is freed. Resolves
   * `true` if it was listed, `false` if not (unpublishing twice is harmless).
   */
  unpublish(feature: string, id: string): Promise<boolean>;
  /**
   * The materializations of each feature that are complete online, oldest publication first,
   * in one round trip. A feature never published gives no entry.
   */
  list(features: readonly string[]): Promise<OnlineMaterialization[]>;
  /**
   * The value columns of each source for each key, in one round trip: `result[k][s]` is the row
   * of `keys[k]` in `sources[s]` (value columns only, by name), or `null` when that key has no
   * row there. Rejects with `STORE_ERROR` when a source is not (or no longer) listed, so a
   * caller that resolved its sources before a concurrent retirement resolves again instead of
   * mixing: every row returned belongs to the materialization asked for.
   */
  read(sources: readonly OnlineSource[], keys: readonly OnlineKey[]): Promise<(Row | null)[][]>;
  /** Releases connections. Further calls reject with `CLOSED`; closing twice is harmless. */
  close(): Promise<void>;
}

/** The parameters a read resolved to online, and the source of each feature at them. */
export interface OnlineResolution {
  readonly params: Params;
  readonly sources: readonly OnlineSource[];
}

/**
 * Resolves `spec` (e.g. `{ when: Last() }`) over what `store` lists for `features`, with the same
 * rule as the offline stores: the chosen parameters are those the offline store would choose
 * whenever its answer is among the last {@link OnlineStore.keep} materializations of each feature.
 * Returns `undefined` when some feature lacks the exact parameters `spec` gives.
 *
 * ### Example
 * ```ts
 * const resolved = await resolveOnline(online, ['flights.departures', 'flights.meanDelay'], { when: Last() });
 * const [[departures, meanDelay]] = await online.read(resolved!.sources, [['SFO']]);
 * ```
 */
export async function resolveOnline(
  store: OnlineStore,
  features: readonly string[],
  spec: ParamSpec,
): Promise<OnlineResolution | undefined> {
  const listed = await store.list(features);
  const byFeature = features.map((feature) => listed.filter((m) => m.feature === feature));
  const resolution = resolveParams(
    spec,
    byFeature.map((ms, i) => ({
      feature: features[i]!,
      materializations: ms.map((m) => ({ paramsKey: m.paramsKey, createdAt: m.publishedAt })),
    })),
  );
  if (resolution === undefined) return undefined;
  const sources = byFeature.map((ms, i) => {
    const m = ms.find((x) => x.paramsKey === resolution.keys[i])!;
    return { feature: m.feature, id: m.id };
  });
  return { params: resolution.params, sources };
}
