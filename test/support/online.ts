/**
 * Online stores for tests: a SQLite file in a temp dir, or Redis at `FEATUREFN_REDIS_URL`
 * (default `redis://127.0.0.1:6379`) under a prefix of its own. `cleanup` closes the store and
 * deletes what it wrote.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import {
  RedisOnlineStore,
  type RedisOnlineStoreOptions,
} from '../../src/engines/redis/redis-online-store.js';
import { SqliteOnlineStore } from '../../src/engines/sqlite/sqlite-online-store.js';

/** The Redis server the tests use. */
export const REDIS_URL = process.env.FEATUREFN_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A SQLite online store in a fresh temp dir. */
export async function sqliteOnline(options: { keep?: number } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'featurefn-online-'));
  const store = new SqliteOnlineStore({ path: join(dir, 'online.sqlite'), ...options });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A Redis online store under a prefix of its own; cleanup deletes every key under it. */
export async function redisOnline(options: Omit<RedisOnlineStoreOptions, 'url' | 'prefix'> = {}) {
  const prefix = `featurefn-test:${process.pid}:${randomBytes(4).toString('hex')}:`;
  const store = new RedisOnlineStore({ url: REDIS_URL, prefix, ...options });
  return {
    store,
    prefix,
    cleanup: async () => {
      await store.close();
      await dropPrefix(prefix);
    },
  };
}

/** Deletes every Redis key under `prefix`. */
export async function dropPrefix(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    await redis.quit();
  }
}
