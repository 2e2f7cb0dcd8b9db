import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { RedisOnlineStore } from '../../src/engines/redis/redis-online-store.js';
import { SqliteOnlineStore } from '../../src/engines/sqlite/sqlite-online-store.js';
import { describeOnlineStore, publication, TYPED_ROWS } from './online-store-contract.js';

const REDIS_URL = process.env.FEATUREFN_REDIS_URL ?? 'redis://127.0.0.1:6379';

async function sqliteStore(options: { keep?: number } = {}) {
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

/** A store under a prefix of its own; cleanup deletes every key under it. */
async function redisStore(options: { keep?: number } = {}) {
  const prefix = `featurefn-test:${process.pid}:${randomBytes(4).toString('hex')}:`;
  const store = new RedisOnlineStore({ url: REDIS_URL, prefix, ...options });
  return {
    store,
    cleanup: async () => {
      await store.close();
      const redis = new Redis(REDIS_URL);
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        if (keys.length > 0) await redis.unlink(...keys);
        cursor = next;
      } while (cursor !== '0');
      await redis.quit();
    },
  };
}

describeOnlineStore('sqlite', sqliteStore);
describeOnlineStore('redis', redisStore);

describe('online stores agree', () => {
  it('SQLite and Redis give identical answers for the same publications', async () => {
    const stores = [await sqliteStore(), await redisStore()];
    try {
      const answers = [];
      for (const { store } of stores) {
        const columns = Object.keys(TYPED_ROWS[0]!).map((name) => ({
          name,
          type: (
            {
              id: 'int64',
              s: 'string',
              f: 'float64',
              i32: 'int32',
              i64: 'int64',
              b: 'boolean',
              t: 'timestamp',
              j: 'json',
              e: 'float64[]',
            } as const
          )[name as 'id'],
        }));
        await store.publish(
          publication(
            'agree.x',
            'm',
            1,
            ['id'],
            columns,
            columns.map((c) => TYPED_ROWS.map((r) => r[c.name])),
          ),
        );
        answers.push(await store.read([{ feature: 'agree.x', id: 'm' }], [[1n], [2], [3], [4], [5], [6]]));
      }
      expect(answers[1]).toStrictEqual(answers[0]);
    } finally {
      for (const { cleanup } of stores) await cleanup();
    }
  });
});

describe('SQLite online store', () => {
  const columns = [
    { name: 'user_id', type: 'string' },
    { name: 'value', type: 'float64' },
  ] as const;

  it('reads through another connection’s retirements and republications, never a retired table', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'featurefn-online-'));
    const reader = new SqliteOnlineStore({ path: join(dir, 'online.sqlite') });
    const writer = new SqliteOnlineStore({ path: join(dir, 'online.sqlite') });
    try {
      const sources = [
        { feature: 'two.a', id: 'm1' },
        { feature: 'two.b', id: 'm1' },
      ];
      for (const { feature } of sources) {
        await writer.publish(publication(feature, 'm1', 1, ['user_id'], columns, [['u0'], [1]]));
      }
      expect(await reader.read(sources, [['u0']])).toEqual([[{ value: 1 }, { value: 1 }]]);
      await writer.unpublish('two.b', 'm1');
      await expect(reader.read(sources, [['u0']])).rejects.toMatchObject({
        code: 'STORE_ERROR',
        message: expect.stringContaining('two.b (materialization m1)'),
      });
      await writer.publish(publication('two.b', 'm1', 1, ['user_id'], columns, [['u0'], [2]]));
      expect(await reader.read(sources, [['u0']])).toEqual([[{ value: 1 }, { value: 2 }]]);
      expect(await reader.read([...sources], [['u0'], ['u1']])).toEqual([
        [{ value: 1 }, { value: 2 }],
        [null, null],
      ]);
    } finally {
      await reader.close();
      await writer.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a file written with the earlier layout, saying how to refill it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'featurefn-online-'));
    try {
      const path = join(dir, 'online.sqlite');
      const db = new Database(path);
      db.exec('CREATE TABLE featurefn_online_rows (m INTEGER, k TEXT, v TEXT)');
      db.close();
      expect(() => new SqliteOnlineStore({ path })).toThrow(
        expect.objectContaining({ code: 'STORE_ERROR', message: expect.stringContaining('syncOnline()') }),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('Redis online store when the server is down', () => {
  it('rejects reads and publications with ONLINE_UNAVAILABLE naming the feature, well under a second', async () => {
    // A port that was just free: nothing listens there.
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise((resolve) => server.close(resolve));
    const store = new RedisOnlineStore({ url: `redis://127.0.0.1:${port}`, prefix: 'down:' });
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const started = performance.now();
        await expect(store.read([{ feature: 'down.x', id: 'a' }], [['u0']])).rejects.toMatchObject({
          name: 'FeatureStoreError',
          code: 'ONLINE_UNAVAILABLE',
          feature: 'down.x',
        });
        expect(performance.now() - started).toBeLessThan(1_000);
      }
      const columns = [
        { name: 'user_id', type: 'string' },
        { name: 'value', type: 'float64' },
      ] as const;
      const started = performance.now();
      await expect(
        store.publish(publication('down.x', 'a', 1, ['user_id'], columns, [['u0'], [1]])),
      ).rejects.toMatchObject({
        code: 'ONLINE_UNAVAILABLE',
        feature: 'down.x',
        params: { when: new Date(Date.UTC(2024, 0, 1)) },
      });
      expect(performance.now() - started).toBeLessThan(1_000);
      await expect(store.list(['down.x'])).rejects.toMatchObject({ code: 'ONLINE_UNAVAILABLE' });
    } finally {
      await store.close();
    }
  });
});
