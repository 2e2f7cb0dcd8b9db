import { Redis } from 'ioredis';
import { FeatureStoreError, type FeatureStoreErrorContext } from '../../errors.js';
import type { ColumnSpec, Row } from '../../frame/columns.js';
import {
  batchKeys,
  batchRows,
  checkKeep,
  encodeKey,
  notListed,
  rowDecoder,
  storeContext,
} from '../../online/online-codec.js';
import type {
  OnlineKey,
  OnlineMaterialization,
  OnlinePublication,
  OnlineSource,
  OnlineStore,
} from '../../online/online-store.js';

/** Options of {@link RedisOnlineStore}. */
export interface RedisOnlineStoreOptions {
  /** The server. Default is `'redis://127.0.0.1:6379'`. */
  url?: string;
  /** Prefix of every key this store writes. Default is `'featurefn:'`. */
  prefix?: string;
  /** Materializations kept per feature. Default is `3`. */
  keep?: number;
  /**
   * Milliseconds to wait for the server (connecting, or one command) before rejecting with
   * `ONLINE_UNAVAILABLE`. Default is `500`.
   */
  timeout?: number;
}

interface StoredRecord {
  seq: number;
  paramsKey: string;
  rows: number;
  publishedAt: number;
}

// Fields per HSET command, and rows per awaited pipeline while publishing.
const FIELDS_PER_COMMAND = 1_000;
const ROWS_PER_FLUSH = 50_000;
// The field holding a materialization's columns. Encoded keys are never empty, so it is never a key.
const MARKER = '';

// The atomic switch: list the new materialization, retire the one with the same parameters and
// the oldest beyond `keep`, and free their rows. KEYS: catalog, sequence. ARGV: id, paramsKey,
// record (JSON without seq), keep, rows key prefix.
const SWITCH = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return -1 end
local seq = redis.call('INCR', KEYS[2])
local entries = redis.call('HGETALL', KEYS[1])
local retired, kept = {}, {}
for i = 1, #entries, 2 do
  local record = cjson.decode(entries[i + 1])
  if record.paramsKey == ARGV[2] then table.insert(retired, entries[i])
  else table.insert(kept, { entries[i], record.seq }) end
end
table.sort(kept, function(a, b) return a[2] < b[2] end)
for i = 1, #kept + 1 - tonumber(ARGV[4]) do table.insert(retired, kept[i][1]) end
redis.call('HSET', KEYS[1], ARGV[1], '{"seq":' .. seq .. ',' .. string.sub(ARGV[3], 2))
for _, id in ipairs(retired) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('UNLINK', ARGV[5] .. id)
end
return seq`;

const UNPUBLISH = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('UNLINK', KEYS[2])
return 1`;

/**
 * An online store on Redis (ioredis). Each materialization is one hash, field = encoded entity
 * key, value = encoded row; each feature has a catalog hash of its published materializations.
 * A read of many features is one pipeline of `HMGET`s (one round trip); a publication writes
 * its hash with pipelined `HSET`s, then a Lua script switches the catalog and frees the retired
 * hashes with `UNLINK`, atomically.
 *
 * Needs the optional peer dependency `ioredis`. When the server is down, calls reject with
 * `ONLINE_UNAVAILABLE` within `timeout` (default 500 ms) and the client keeps reconnecting.
 *
 * ### Example
 * ```ts
 * import { RedisOnlineStore } from 'featurefn/redis';
 * const online = new RedisOnlineStore({ url: process.env.REDIS_URL, prefix: 'myapp:' });
 * ```
 */
export class RedisOnlineStore implements OnlineStore {
  readonly name = 'redis';
  readonly keep: number;
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #timeout: number;
  readonly #decoders = new Map<string, (text: string) => Row>();
  #closed = false;

  constructor(options: RedisOnlineStoreOptions = {}) {
    this.keep = checkKeep(options.keep ?? 3);
    this.#prefix = options.prefix ?? 'featurefn:';
    this.#timeout = options.timeout ?? 500;
    this.#redis = new Redis(options.url ?? 'redis://127.0.0.1:6379', {
      lazyConnect: true,
      // Fail at once while disconnected instead of queueing: a serving read must not hang.
      enableOfflineQueue: false,
      connectTimeout: this.#timeout,
      commandTimeout: this.#timeout * 4,
      maxRetriesPerRequest: 0,
      retryStrategy: (times) => Math.min(times * 100, 2_000),
    });
    // Connection errors reach callers as rejected calls; the event itself needs a listener.
    this.#redis.on('error', () => {});
    this.#redis.defineCommand('featurefnSwitch', { numberOfKeys: 2, lua: SWITCH });
    this.#redis.defineCommand('featurefnUnpublish', { numberOfKeys: 2, lua: UNPUBLISH });
  }

  async publish(publication: OnlinePublication): Promise<OnlineMaterialization> {
    const context = storeContext(publication);
    await this.#ready(context);
    const { feature, id, paramsKey } = publication;
    const redis = this.#redis;
    const rowsKey = this.#rowsKey(feature, id);
    const catalogKey = this.#catalogKey(feature);
    let rows = 0;
    let added = 0;
    let staged = false;
    try {
      if ((await redis.hexists(catalogKey, id)) === 1) {
        throw new FeatureStoreError(
          'STORE_ERROR',
          `materialization ${id} is already published online; unpublish it first.`,
          context,
        );
      }
      // Rows left by an interrupted publication of the same id are not listed: start clean.
      staged = true;
      await redis.unlink(rowsKey);
      await redis.hset(rowsKey, MARKER, JSON.stringify(publication.columns));
      let pipeline = redis.pipeline();
      let pending = 0;
      const flush = async () => {
        for (const [error, reply] of (await pipeline.exec()) ?? []) {
          if (error) throw error;
          added += reply as number;
        }
        pipeline = redis.pipeline();
        pending = 0;
      };
      for await (const batch of publication.batches) {
        const keys = batchKeys(publication, batch);
        const values = batchRows(publication, batch);
        for (let start = 0; start < keys.length; start += FIELDS_PER_COMMAND) {
          const end = Math.min(start + FIELDS_PER_COMMAND, keys.length);
          const args: string[] = new Array((end - start) * 2);
          for (let r = start; r < end; r++) {
            args[(r - start) * 2] = keys[r]!;
            args[(r - start) * 2 + 1] = values[r]!;
          }
          pipeline.hset(rowsKey, ...args);
          pending += end - start;
          if (pending >= ROWS_PER_FLUSH) await flush();
        }
        rows += keys.length;
      }
      if (pending > 0) await flush();
      // HSET counts new fields: fewer than rows means two rows shared a key.
      if (added !== rows) {
        throw new FeatureStoreError(
          'DUPLICATE_KEY',
          `${rows - added} row(s) repeat an entity key; online rows need unique keys. Nothing was published.`,
          context,
        );
      }
      const publishedAt = new Date();
      const record = JSON.stringify({ paramsKey, rows, publishedAt: publishedAt.getTime() });
      const switched = (await (redis as unknown as Switching).featurefnSwitch(
        catalogKey,
        `${this.#prefix}seq`,
        id,
        paramsKey,
        record,
        this.keep,
        this.#rowsKey(feature, ''),
      )) as number;
      if (switched === -1) {
        staged = false;
        throw new FeatureStoreError(
          'STORE_ERROR',
          `materialization ${id} was published online meanwhile.`,
          context,
        );
      }
      return Object.freeze({ feature, id, paramsKey, rows, publishedAt });
    } catch (error) {
      // Only rows this call wrote: a refused id's rows may be the published ones.
      if (staged) await redis.unlink(rowsKey).catch(() => {});
      if (error instanceof FeatureStoreError) throw error;
      throw this.#failed('publication failed; nothing was published', context, error);
    }
  }

  async unpublish(feature: string, id: string): Promise<boolean> {
    const context = { feature };
    await this.#ready(context);
    try {
      const done = (await (this.#redis as unknown as Switching).featurefnUnpublish(
        this.#catalogKey(feature),
        this.#rowsKey(feature, id),
        id,
      )) as number;
      return done === 1;
    } catch (error) {
      throw this.#failed(`unpublishing materialization ${id} failed`, context, error);
    }
  }

  async list(features: readonly string[]): Promise<OnlineMaterialization[]> {
    if (features.length === 0) return [];
    const context = { feature: features.join(', ') };
    await this.#ready(context);
    let replies: [Error | null, unknown][];
    try {
      const pipeline = this.#redis.pipeline();
      for (const feature of features) pipeline.hgetall(this.#catalogKey(feature));
      replies = (await pipeline.exec()) ?? [];
    } catch (error) {
      throw this.#failed('listing materializations failed', context, error);
    }
    const found: (OnlineMaterialization & { seq: number })[] = [];
    replies.forEach(([error, reply], f) => {
      if (error) throw this.#failed('listing materializations failed', context, error);
      for (const [id, text] of Object.entries(reply as Record<string, string>)) {
        const record = JSON.parse(text) as StoredRecord;
        found.push({
          feature: features[f]!,
          id,
          paramsKey: record.paramsKey,
          rows: record.rows,
          publishedAt: new Date(record.publishedAt),
          seq: record.seq,
        });
      }
    });
    found.sort((a, b) => a.seq - b.seq);
    return found.map(({ seq: _, ...m }) => Object.freeze(m));
  }

  async read(sources: readonly OnlineSource[], keys: readonly OnlineKey[]): Promise<(Row | null)[][]> {
    this.#assertOpen();
    const result: (Row | null)[][] = keys.map(() => new Array<Row | null>(sources.length).fill(null));
    if (sources.length === 0 || keys.length === 0) return result;
    const context = { feature: sources[0]!.feature };
    if (this.#redis.status !== 'ready') await this.#ready(context);
    const fields = [MARKER, ...keys.map(encodeKey)];
    const pipeline = this.#redis.pipeline();
    for (const { feature, id } of sources) pipeline.hmget(this.#rowsKey(feature, id), ...fields);
    let replies: [Error | null, unknown][];
    try {
      replies = (await pipeline.exec()) ?? [];
    } catch (error) {
      throw this.#failed('reading features failed', context, error);
    }
    const missing: OnlineSource[] = [];
    for (let s = 0; s < sources.length; s++) {
      const [error, reply] = replies[s]!;
      if (error) throw this.#failed('reading features failed', { feature: sources[s]!.feature }, error);
      const values = reply as (string | null)[];
      const columns = values[0];
      if (columns === null || columns === undefined) {
        missing.push(sources[s]!);
        continue;
      }
      let decode = this.#decoders.get(columns);
      if (decode === undefined) {
        decode = rowDecoder(JSON.parse(columns) as ColumnSpec[]);
        if (this.#decoders.size >= 1024) this.#decoders.clear();
        this.#decoders.set(columns, decode);
      }
      for (let k = 0; k < keys.length; k++) {
        const text = values[k + 1];
        if (text !== null && text !== undefined) result[k]![s] = decode(text);
      }
    }
    if (missing.length > 0) throw notListed(missing);
    return result;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#redis.status === 'ready') await this.#redis.quit().catch(() => this.#redis.disconnect());
    else this.#redis.disconnect();
  }

  #rowsKey(feature: string, id: string): string {
    return `${this.#prefix}rows:${feature.length}:${feature}:${id}`;
  }

  #catalogKey(feature: string): string {
    return `${this.#prefix}catalog:${feature}`;
  }

  #assertOpen(): void {
    if (this.#closed) throw new FeatureStoreError('CLOSED', 'the Redis online store is closed.');
  }

  // Waits for a connection, at most `timeout`; a refused connection rejects at once.
  async #ready(context: FeatureStoreErrorContext): Promise<void> {
    this.#assertOpen();
    const redis = this.#redis;
    if (redis.status === 'ready') return;
    await new Promise<void>((resolve, reject) => {
      const done = (error?: unknown) => {
        clearTimeout(timer);
        redis.off('ready', done);
        redis.off('error', done);
        if (error === undefined) resolve();
        else reject(this.#unavailable(context, error));
      };
      const timer = setTimeout(
        () => done(new Error(`no connection within ${this.#timeout} ms`)),
        this.#timeout,
      );
      redis.once('ready', done);
      redis.once('error', done);
      if (redis.status === 'wait') redis.connect().catch(() => {});
    });
  }

  #failed(what: string, context: FeatureStoreErrorContext, error: unknown): FeatureStoreError {
    if (error instanceof FeatureStoreError) return error;
    if (this.#redis.status !== 'ready' || isConnectionError(error)) return this.#unavailable(context, error);
    return new FeatureStoreError('STORE_ERROR', `Redis online store: ${what}: ${messageOf(error)}`, {
      ...context,
      cause: error,
    });
  }

  #unavailable(context: FeatureStoreErrorContext, error: unknown): FeatureStoreError {
    return new FeatureStoreError(
      'ONLINE_UNAVAILABLE',
      `the Redis online store cannot be reached (${messageOf(error)}). Check that the server runs and its URL.`,
      { ...context, cause: error },
    );
  }
}

interface Switching {
  featurefnSwitch(...args: (string | number)[]): Promise<unknown>;
  featurefnUnpublish(...args: (string | number)[]): Promise<unknown>;
}

function isConnectionError(error: unknown): boolean {
  const message = messageOf(error);
  return /Connection is closed|Command timed out|Stream isn't writeable|ECONNREFUSED|ECONNRESET|ETIMEDOUT/.test(
    message,
  );
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
