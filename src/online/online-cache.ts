import type { Row } from '../frame/columns.js';
import { encodeKey } from './online-codec.js';
import type { OnlineKey } from './online-store.js';

/** Options of {@link OnlineCache}. */
export interface OnlineCacheOptions {
  /** Most entries kept; the least recently used goes first. Default is `100_000`. */
  maxEntries?: number;
}

/** Hits and misses of an {@link OnlineCache} since it was made. */
export interface OnlineCacheStats {
  readonly hits: number;
  readonly misses: number;
  readonly entries: number;
}

/**
 * An in-process LRU cache of online rows. A published materialization never changes, so an
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
export class OnlineCache {
  readonly maxEntries: number;
  // A Map iterates in insertion order: re-inserting on a hit makes its first key the LRU one.
  readonly #entries = new Map<string, Row | null>();
  #hits = 0;
  #misses = 0;

  constructor(options: OnlineCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? 100_000;
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 1) {
      throw new RangeError(`maxEntries must be a whole number, at least 1 (got ${this.maxEntries})`);
    }
  }

  /**
   * The cached row of `key` (an entity key, as `read` takes it) in materialization `id` of `feature`: a row,
   * `null` when the store had none, or `undefined` when not cached.
   */
  get(feature: string, id: string, key: OnlineKey): Row | null | undefined {
    const entry = cacheKey(feature, id, encodeKey(key));
    const row = this.#entries.get(entry);
    if (row === undefined) {
      this.#misses++;
      return undefined;
    }
    this.#hits++;
    this.#entries.delete(entry);
    this.#entries.set(entry, row);
    return row;
  }

  /** Caches `row` (or `null`: no row) for `key` in materialization `id` of `feature`. */
  set(feature: string, id: string, key: OnlineKey, row: Row | null): void {
    const entry = cacheKey(feature, id, encodeKey(key));
    this.#entries.delete(entry);
    this.#entries.set(entry, row);
    if (this.#entries.size > this.maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
  }

  /** Drops every entry of one materialization (after `unpublish`; optional, since ids are never reused). */
  forget(feature: string, id: string): void {
    const prefix = cacheKey(feature, id, '');
    for (const entry of this.#entries.keys()) if (entry.startsWith(prefix)) this.#entries.delete(entry);
  }

  /** Hits, misses and entries so far. */
  stats(): OnlineCacheStats {
    return { hits: this.#hits, misses: this.#misses, entries: this.#entries.size };
  }
}

function cacheKey(feature: string, id: string, key: string): string {
  return `${feature.length}:${feature}${id.length}:${id}${key}`;
}
