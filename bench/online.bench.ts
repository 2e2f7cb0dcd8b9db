/**
 * Online stores against hand-written code, in one run: reads of 50 numeric features × 1 key at
 * the latest of three points in time over 2,000 entities (Feast's serving shape), publication of
 * a seeded 1M × 3 materialization, and the in-process cache's hit cost.
 *
 * SQLite's hand-written read is one prepared `SELECT` on a wide table keyed by the entity; its
 * bulk load one transaction of prepared inserts. Redis's hand-written read is the same pipeline
 * of `HMGET`s on the store's own layout, decoding the rows; its bulk load pipelined `HSET`s.
 *
 * Then the same reads end to end, `store.withParams({ when: Last() }).getFeatures(50 features)
 * .filter({ entity })`, from materializers given `online:` (DuckDB + SQLite, PostgreSQL + Redis,
 * and DuckDB + SQLite with the in-process cache, every read a hit), against the online store's
 * own `read` of the same materializations.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Field, Float64, makeData, RecordBatch, Schema, Struct, Utf8, vectorFromArray } from 'apache-arrow';
import Database from 'better-sqlite3';
import { type Feature, FeatureStore, Last, type Materializer } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { PostgresMaterializer } from 'featurefn/postgres';
import { RedisOnlineStore } from 'featurefn/redis';
import { SqliteOnlineStore } from 'featurefn/sqlite';
import { Redis } from 'ioredis';
import { canonicalParams } from '../src/feature/params.js';
import { OnlineCache } from '../src/online/online-cache.js';
import { type OnlinePublication, type OnlineStore, resolveOnline } from '../src/online/online-store.js';
import { seeded } from '../test/support/seeded.js';
import {
  type BenchResult,
  BenchUnavailable,
  formatMs,
  formatP50P99,
  median,
  ratioOf,
  sampleInterleaved,
  summarize,
} from './bench-kit.js';

const ENTITIES = 2_000;
const FEATURES = 50;
const WHENS = [1, 2, 3];
const ITERATIONS = 3_000;
const BULK_ROWS = 1_000_000;
const REDIS_URL = process.env.FEATUREFN_REDIS_URL ?? 'redis://127.0.0.1:6379';

const when = (d: number) => ({ when: new Date(Date.UTC(2024, 0, d)) });
const entity = (i: number) => `user_${i}`;
const featureName = (f: number) => `serving.f${f}`;

export async function run(): Promise<BenchResult[]> {
  const dir = await mkdtemp(join(tmpdir(), 'featurefn-online-bench-'));
  const prefix = `featurefn-bench:${randomBytes(4).toString('hex')}:`;
  try {
    const results: BenchResult[] = [];
    const sqlite = new SqliteOnlineStore({ path: join(dir, 'online.sqlite') });
    await fill(sqlite);
    results.push(await sqliteRead(sqlite, join(dir, 'wide.sqlite')));
    await sqlite.close();
    results.push(await sqliteBulk(dir));

    const probe = new Redis(REDIS_URL, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    try {
      await probe.connect();
    } catch (error) {
      probe.disconnect();
      throw new BenchUnavailable(`Redis at ${REDIS_URL}: ${(error as Error).message}`);
    }
    try {
      const redis = new RedisOnlineStore({ url: REDIS_URL, prefix });
      await fill(redis);
      results.push(await redisRead(redis, probe, prefix));
      await redis.close();
      results.push(await redisBulk(probe, prefix));
    } finally {
      await dropPrefix(probe, prefix);
      await probe.quit();
    }
    results.push(cacheHit());
    results.push(...(await servedReads(dir, prefix)));
    return results;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One numeric feature for every entity at one point in time. */
function featureBatch(f: number, d: number): RecordBatch {
  const values = Float64Array.from({ length: ENTITIES }, (_, i) => d * 1e6 + f * 1e3 + i + 0.25);
  return batchOf({ entity: Array.from({ length: ENTITIES }, (_, i) => entity(i)) }, { value: values });
}

function batchOf(strings: Record<string, string[]>, floats: Record<string, Float64Array>): RecordBatch {
  const fields = [
    ...Object.keys(strings).map((name) => new Field(name, new Utf8(), false)),
    ...Object.keys(floats).map((name) => new Field(name, new Float64(), false)),
  ];
  const children = [
    ...Object.values(strings).map((v) => vectorFromArray(v, new Utf8()).data[0]!),
    ...Object.values(floats).map((v) => makeData({ type: new Float64(), length: v.length, data: v })),
  ];
  const length = children[0]!.length;
  return new RecordBatch(new Schema(fields), makeData({ type: new Struct(fields), length, children }));
}

async function fill(store: OnlineStore): Promise<void> {
  for (const d of WHENS) {
    for (let f = 0; f < FEATURES; f++) {
      await store.publish({
        feature: featureName(f),
        id: `m${d}`,
        paramsKey: canonicalParams(when(d)),
        key: ['entity'],
        columns: [{ name: 'value', type: 'float64' }],
        batches: [featureBatch(f, d)],
      });
    }
  }
}

async function latestSources(store: OnlineStore) {
  const features = Array.from({ length: FEATURES }, (_, f) => featureName(f));
  const resolved = await resolveOnline(store, features, { when: Last() });
  if (resolved?.sources.every((s) => s.id === `m${WHENS.at(-1)}`) !== true)
    throw new Error('Last() did not resolve');
  return resolved.sources;
}

async function sqliteRead(store: SqliteOnlineStore, widePath: string): Promise<BenchResult> {
  const sources = await latestSources(store);
  const db = new Database(widePath);
  db.pragma('journal_mode = WAL');
  const columns = Array.from({ length: FEATURES }, (_, f) => `f${f}`);
  db.exec(`CREATE TABLE wide (entity TEXT PRIMARY KEY, ${columns.map((c) => `${c} REAL`).join(', ')})`);
  const insert = db.prepare(`INSERT INTO wide VALUES (?, ${columns.map(() => '?').join(', ')})`);
  const last = WHENS.at(-1)!;
  db.transaction(() => {
    for (let i = 0; i < ENTITIES; i++) {
      insert.run(entity(i), ...columns.map((_, f) => last * 1e6 + f * 1e3 + i + 0.25));
    }
  })();
  const select = db.prepare('SELECT * FROM wide WHERE entity = ?');
  const { a, b } = await sampleInterleaved(
    async (i) => {
      const [row] = await store.read(sources, [[entity((i * 7919) % ENTITIES)]]);
      if (row![49] === null) throw new Error('missing row');
    },
    async (i) => {
      if (select.get(entity((i * 7919) % ENTITIES)) === undefined) throw new Error('missing row');
    },
    { iterations: ITERATIONS, warmup: 300 },
  );
  db.close();
  return readResult('sqlite', a, b, 'p99 < 100 µs');
}

async function redisRead(store: RedisOnlineStore, redis: Redis, prefix: string): Promise<BenchResult> {
  const sources = await latestSources(store);
  // The store's own layout: one hash per materialization, field = encoded key, value = JSON row.
  const hashes = sources.map((s) => `${prefix}rows:${s.feature.length}:${s.feature}:${s.id}`);
  const { a, b } = await sampleInterleaved(
    async (i) => {
      const [row] = await store.read(sources, [[entity((i * 7919) % ENTITIES)]]);
      if (row![49] === null) throw new Error('missing row');
    },
    async (i) => {
      const key = entity((i * 7919) % ENTITIES);
      const field = `s${key.length}:${key}`;
      const pipeline = redis.pipeline();
      for (const hash of hashes) pipeline.hmget(hash, field);
      const replies = (await pipeline.exec())!;
      const values = replies.map(([, reply]) => JSON.parse((reply as string[])[0]!)[0]);
      if (values[49] === undefined) throw new Error('missing row');
    },
    { iterations: ITERATIONS, warmup: 300 },
  );
  return readResult('redis', a, b, '< 1.3', 'p99 < 1 ms aimed');
}

function readResult(store: string, a: number[], b: number[], target: string, extra?: string): BenchResult {
  const ours = summarize(a);
  const theirs = summarize(b);
  return {
    name: `online ${store}: ${FEATURES} features × 1 key at Last() (p50 / p99)`,
    featurefn: formatP50P99(ours),
    handWritten: formatP50P99(theirs),
    ratio: ratioOf(ours.p99, theirs.p99),
    target,
    notes: `ratio of p99s; ${ENTITIES} entities × ${WHENS.length} points in time${extra ? `; ${extra}` : ''}; loaded machine`,
  };
}

/** A seeded 1M × 3 materialization (entity key + two floats), in batches of 64k rows. */
function bulkBatches(): RecordBatch[] {
  const random = seeded(42);
  const batches: RecordBatch[] = [];
  for (let start = 0; start < BULK_ROWS; start += 65_536) {
    const n = Math.min(65_536, BULK_ROWS - start);
    batches.push(
      batchOf(
        { entity: Array.from({ length: n }, (_, i) => entity(start + i)) },
        {
          a: Float64Array.from({ length: n }, () => random.float(-1e3, 1e3)),
          b: Float64Array.from({ length: n }, () => random.next()),
        },
      ),
    );
  }
  return batches;
}

function bulkPublication(batches: RecordBatch[], id: string): OnlinePublication {
  return {
    feature: 'bulk.x',
    id,
    paramsKey: canonicalParams(when(1)),
    key: ['entity'],
    columns: [
      { name: 'a', type: 'float64' },
      { name: 'b', type: 'float64' },
    ],
    batches,
  };
}

async function sqliteBulk(dir: string): Promise<BenchResult> {
  const batches = bulkBatches();
  const ours: number[] = [];
  const theirs: number[] = [];
  for (let round = 0; round < 2; round++) {
    const store = new SqliteOnlineStore({ path: join(dir, `bulk-${round}.sqlite`) });
    let start = performance.now();
    await store.publish(bulkPublication(batches, 'b'));
    ours.push(performance.now() - start);
    await store.close();

    const db = new Database(join(dir, `bulk-hand-${round}.sqlite`));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec('CREATE TABLE t (entity TEXT PRIMARY KEY, a REAL, b REAL)');
    start = performance.now();
    const insert = db.prepare('INSERT INTO t VALUES (?, ?, ?)');
    db.transaction(() => {
      for (const batch of batches) {
        const keys = batch.getChild('entity')!.toArray() as string[];
        const a = batch.getChild('a')!.toArray() as Float64Array;
        const b = batch.getChild('b')!.toArray() as Float64Array;
        for (let r = 0; r < batch.numRows; r++) insert.run(keys[r], a[r], b[r]);
      }
    })();
    theirs.push(performance.now() - start);
    db.close();
  }
  return bulkResult('sqlite', ours, theirs, 'one transaction of prepared inserts');
}

async function redisBulk(redis: Redis, prefix: string): Promise<BenchResult> {
  const batches = bulkBatches();
  const ours: number[] = [];
  const theirs: number[] = [];
  for (let round = 0; round < 2; round++) {
    // A 50,000-row pipeline can take seconds on a busy machine: a longer timeout than serving needs.
    const store = new RedisOnlineStore({ url: REDIS_URL, prefix, keep: 1, timeout: 5_000 });
    let start = performance.now();
    await store.publish(bulkPublication(batches, `b${round}`));
    ours.push(performance.now() - start);
    await store.close();

    const hash = `${prefix}hand:${round}`;
    start = performance.now();
    let pipeline = redis.pipeline();
    let pending = 0;
    for (const batch of batches) {
      const keys = batch.getChild('entity')!.toArray() as string[];
      const a = batch.getChild('a')!.toArray() as Float64Array;
      const b = batch.getChild('b')!.toArray() as Float64Array;
      for (let start = 0; start < batch.numRows; start += 1_000) {
        const args: string[] = [];
        for (let r = start; r < Math.min(start + 1_000, batch.numRows); r++) {
          const key = keys[r]!;
          args.push(`s${key.length}:${key}`, `[${a[r]},${b[r]}]`);
        }
        pipeline.hset(hash, ...args);
        pending += args.length / 2;
        if (pending >= 50_000) {
          await pipeline.exec();
          pipeline = redis.pipeline();
          pending = 0;
        }
      }
    }
    await pipeline.exec();
    theirs.push(performance.now() - start);
    await redis.unlink(hash);
  }
  return bulkResult('redis', ours, theirs, 'pipelined HSETs of 1,000 fields');
}

function bulkResult(store: string, ours: number[], theirs: number[], how: string): BenchResult {
  const a = median(ours);
  const b = median(theirs);
  return {
    name: `online ${store}: publish 1M rows × 3 columns`,
    featurefn: formatMs(a),
    handWritten: formatMs(b),
    ratio: ratioOf(a, b),
    target: '< 1.5',
    notes: `seeded rows; hand-written: ${how}; median of 2; loaded machine`,
  };
}

function cacheHit(): BenchResult {
  const cache = new OnlineCache({ maxEntries: 20_000 });
  const plain = new Map<string, unknown>();
  for (let i = 0; i < 10_000; i++) {
    cache.set('serving.f0', 'm3', [entity(i)], { value: i });
    plain.set(entity(i), { value: i });
  }
  const n = 1_000_000;
  let start = performance.now();
  for (let i = 0; i < n; i++) cache.get('serving.f0', 'm3', [entity(i % 10_000)]);
  const ours = ((performance.now() - start) / n) * 1e3;
  start = performance.now();
  for (let i = 0; i < n; i++) plain.get(entity(i % 10_000));
  const theirs = ((performance.now() - start) / n) * 1e3;
  if (cache.stats().hits !== n) throw new Error('cache missed');
  return {
    name: 'online cache: one hit',
    featurefn: `${(ours * 1000).toFixed(0)} ns`,
    handWritten: `${(theirs * 1000).toFixed(0)} ns`,
    ratio: ratioOf(ours, theirs),
    target: 'hit < 10 µs',
    notes: 'hand-written: a plain Map.get; tight loop of 1M hits; loaded machine',
  };
}

async function dropPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (keys.length > 0) await redis.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
}

/** Key lookups through `getFeatures` from materializers with an online store, against `store.read`. */
async function servedReads(dir: string, prefix: string): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  const sqlite = new SqliteOnlineStore({ path: join(dir, 'served.sqlite') });
  const cached = new SqliteOnlineStore({ path: join(dir, 'cached.sqlite') });
  const duckdb = new DuckDBMaterializer({ threads: 1, online: sqlite });
  const duckdbCached = new DuckDBMaterializer({
    threads: 1,
    online: { store: cached, cache: { entries: 10_000 } },
  });
  try {
    results.push(...(await servedRead('DuckDB + SQLite', duckdb, sqlite, 'p99 < 100 µs aimed')));
    const hits = await servedRead('DuckDB + SQLite, cache hits', duckdbCached, cached, 'hit < 10 µs', [
      1,
      FEATURES,
    ]);
    const stats = duckdbCached.cacheStats();
    for (const hit of hits) hit.notes += `; hit rate over both ${(stats.hitRate * 100).toFixed(1)}%`;
    results.push(...hits);
  } finally {
    await duckdb.close();
    await duckdbCached.close();
    await sqlite.close();
    await cached.close();
  }
  const url = process.env.FEATUREFN_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `bench_online_${randomBytes(4).toString('hex')}`;
  const redis = new RedisOnlineStore({ url: REDIS_URL, prefix: `${prefix}served:` });
  const postgres = new PostgresMaterializer({ connection: url, schema, online: redis });
  try {
    await postgres.listFeatures();
  } catch (error) {
    await postgres.close();
    await redis.close();
    console.error(`[online] PostgreSQL + Redis skipped: ${(error as Error).message}`);
    return results;
  }
  try {
    results.push(...(await servedRead('PostgreSQL + Redis', postgres, redis, 'p99 < 1 ms aimed')));
  } finally {
    await postgres.close();
    await redis.close();
    const { Client } = (await import('pg')).default;
    const client = new Client({ connectionString: url });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await client.end();
  }
  return results;
}

async function servedRead(
  label: string,
  materializer: Materializer,
  online: OnlineStore,
  target: string,
  widths: readonly number[] = [FEATURES],
): Promise<BenchResult[]> {
  const store = new FeatureStore();
  store.addDecorator(materializer.decorator);
  const features: Feature[] = Array.from({ length: FEATURES }, (_, f) =>
    store.feature(
      { module: 'serving', name: `f${f}`, entity: 'entity' },
      async ({ when: at }: { when: Date }) => {
        const d = at.getUTCDate();
        return Array.from({ length: ENTITIES }, (_, i) => ({
          entity: entity(i),
          [`f${f}`]: d * 1e6 + f * 1e3 + i + 0.25,
        }));
      },
    ),
  );
  for (const d of WHENS) for (const feature of features) await materializer.materialize(feature, when(d));
  const results: BenchResult[] = [];
  for (const width of widths) {
    const read = features.slice(0, width);
    const resolved = await resolveOnline(
      online,
      read.map((f) => f.info.name),
      { when: Last() },
    );
    const sources = resolved!.sources;
    // As a server does: the frame built once, one filter per request (resolved at each read).
    const frame = store.withParams({ when: Last() }).getFeatures(...read);
    const explained = await frame.filter({ entity: entity(0) }).explain();
    if (!explained.includes('served online')) throw new Error(`not served online:\n${explained}`);
    const last = `f${width - 1}`;
    const { a, b } = await sampleInterleaved(
      async (i) => {
        const [row] = await frame.filter({ entity: entity((i * 7919) % ENTITIES) }).toArray();
        if (row?.[last] === undefined) throw new Error('missing row');
      },
      async (i) => {
        const [row] = await online.read(sources, [[entity((i * 7919) % ENTITIES)]]);
        if (row![width - 1] === null) throw new Error('missing row');
      },
      { iterations: ITERATIONS, warmup: ENTITIES },
    );
    const ours = summarize(a);
    const theirs = summarize(b);
    results.push({
      name: `served online, ${label}: ${width} feature${width === 1 ? '' : 's'} × 1 key at Last() through getFeatures (p50 / p99)`,
      featurefn: formatP50P99(ours),
      handWritten: formatP50P99(theirs),
      ratio: ratioOf(ours.p99, theirs.p99),
      target,
      notes: `hand-written: the online store's own read of the same materializations; ${ENTITIES} entities × ${WHENS.length} points in time; loaded machine`,
    });
  }
  return results;
}
