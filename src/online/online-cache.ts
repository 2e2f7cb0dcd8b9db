import type { Row } from '../frame/columns.js';
import { encodeKey } from './online-codec.js';
import type { OnlineKey } from './online-store.js';

/** Options of {@link OnlineCache}. */
export interface OnlineCacheOptions {
  /** Most entries kept (at least 2); the least recently used go first. Default is `100_000`. */
  maxEntries?: number;
}

/** Hits and misses of an {@link OnlineCache} since it was made. */
export interface OnlineCacheStats {
  readonly hits: number;
  readonly misses: number;
  readonly entries: number;
}

/**
 * An in-process cache of online rows (`V`: a row, or what the caller keeps for one), bounded by
 * entries, dropping the least recently used. A published materialization never changes, so an
 * entry keyed by (feature, materialization id, encoded entity key) is never stale: it only
 * stops being asked for once a newer materialization is read. Misses (`null`, the key has no
 * row) are cached too. Opt-in: the caller reads here first and fills it from the store.
 *
 * ### Example
 * ```ts
 * const cache = new OnlineCache({ maxEntries: 50_000 });
 * const key = [userId];
 * let row = cache.get(feature, id, key);
 * if (row === undefined) {
 *   row = (await online.read([{ feature, id }], [key]))[0]![0]!;
 *   cache.set(feature, id, key, row);
 * }
 * cache.stats(); // { hits, misses, entries }
 * ```
 */
export class OnlineCache<V = Row> {
  readonly maxEntries: number;
  // Two generations instead of a strict LRU list: a hit in the young one costs one Map lookup
  // (no reordering); a hit in the old one moves the entry up; when the young one is full it
  // becomes the old one and the least recently used half goes.
  #young = new Map<string, V | null>();
  #old = new Map<string, V | null>();
  readonly #generation: number;
  #hits = 0;
  #misses = 0;

  constructor(options: OnlineCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? 100_000;
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 2) {
      throw new RangeError(`maxEntries must be a whole number, at least 2 (got ${this.maxEntries})`);
    }
    this.#generation = Math.floor(this.maxEntries / 2);
  }

  /**
   * The cached row of `key` (an entity key, as `read` takes it) in materialization `id` of
   * `feature`: a row, `null` when the store had none, or `undefined` when not cached.
   */
  get(feature: string, id: string, key: OnlineKey): V | null | undefined {
    const entry = cacheKey(feature, id, encodeKey(key));
    let row = this.#young.get(entry);
    if (row === undefined) {
      row = this.#old.get(entry);
      if (row === undefined) {
        this.#misses++;
        return undefined;
      }
      this.#old.delete(entry);
      this.#put(entry, row);
    }
    this.#hits++;
    return row;
  }

  /** Caches `row` (or `null`: no row) for `key` in materialization `id` of `feature`. */
  set(feature: string, id: string, key: OnlineKey, row: V | null): void {
    const entry = cacheKey(feature, id, encodeKey(key));
    this.#old.delete(entry);
    this.#put(entry, row);
  }

  /** Drops every entry of one materialization (after `unpublish`; optional, since ids are never reused). */
  forget(feature: string, id: string): void {
    const prefix = cacheKey(feature, id, '');
    for (const generation of [this.#young, this.#old]) {
      for (const entry of generation.keys()) if (entry.startsWith(prefix)) generation.delete(entry);
    }
  }

  /** Hits, misses and entries so far. */
  stats(): OnlineCacheStats {
    return { hits: this.#hits, misses: this.#misses, entries: this.#young.size + this.#old.size };
  }

  #put(entry: string, row: V | null): void {
    if (!this.#young.has(entry) && this.#young.size >= this.#generation) {
      this.#old = this.#young;
      this.#young = new Map();
    }
    this.#young.set(entry, row);
  }
}

function cacheKey(feature: string, id: string, key: string): string {
  return `${feature.length}:${feature}${id.length}:${id}${key}`;
}
