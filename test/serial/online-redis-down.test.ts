/**
 * Stops the shared Redis server in the middle of an online publication and starts it again, the
 * way CI starts it (`.ci/run`). Runs in the `serial` vitest project: alone, after every other test.
 */
import { execFileSync } from 'node:child_process';
import { FeatureStore, FeatureStoreError, Last, type OnlinePublication, type OnlineStore } from 'featurefn';
import { PostgresMaterializer } from 'featurefn/postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { redisOnline } from '../support/online.js';
import { dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';

const pg = await requirePostgres();
const day = (d: number) => new Date(Date.UTC(2024, 0, d));

function redisAnswers(): boolean {
  try {
    return execFileSync('redis-cli', ['-h', '127.0.0.1', 'ping'], { encoding: 'utf8' }).trim() === 'PONG';
  } catch {
    return false;
  }
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting until ${what}`);
}

function stopRedis(): void {
  execFileSync('redis-cli', ['-h', '127.0.0.1', 'shutdown', 'nosave'], { stdio: 'ignore' });
}

async function startRedis(): Promise<void> {
  if (redisAnswers()) return;
  execFileSync('redis-server', [
    '--daemonize',
    'yes',
    '--bind',
    '127.0.0.1',
    '-::1',
    '--port',
    '6379',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    '/var/lib/redis',
    '--logfile',
    '/var/log/redis/ci.log',
  ]);
  await until(redisAnswers, 'Redis answers again');
}

/** A real Redis store whose next publication stops the server after its first batch. */
function stoppingMidPublication(store: OnlineStore): OnlineStore & { armed: boolean; reads: number } {
  const wrapper = {
    armed: false,
    reads: 0,
    name: store.name,
    keep: store.keep,
    publish(publication: OnlinePublication) {
      if (!wrapper.armed) return store.publish(publication);
      wrapper.armed = false;
      return store.publish({
        ...publication,
        batches: (async function* () {
          let first = true;
          for await (const batch of publication.batches) {
            yield batch;
            if (first) stopRedis();
            first = false;
          }
        })(),
      });
    },
    unpublish: (feature: string, id: string) => store.unpublish(feature, id),
    list: (features: readonly string[]) => store.list(features),
    read: (sources: Parameters<OnlineStore['read']>[0], keys: Parameters<OnlineStore['read']>[1]) => {
      wrapper.reads++;
      return store.read(sources, keys);
    },
    close: () => store.close(),
  };
  return wrapper;
}

describe.skipIf(!pg.available)(`online publication while Redis goes down${pg.reason}`, () => {
  afterAll(startRedis);

  it('keeps the offline publication, reports ONLINE_PUBLISH_FAILED, reads offline, and is repaired later', {
    timeout: 60_000,
  }, async () => {
    await startRedis();
    const online = await redisOnline();
    const store = stoppingMidPublication(online.store);
    const errors: FeatureStoreError[] = [];
    const schema = uniqueSchema('redisdown');
    const materializer = new PostgresMaterializer({
      connection: postgresUrl(),
      schema,
      poolSize: 2,
      online: { store, onError: (error) => errors.push(error) },
    });
    try {
      const features = new FeatureStore();
      features.addDecorator(materializer.decorator);
      const level = features.feature(
        { module: 'serving', entity: 'user_id' },
        async function level({ when }: { when: Date }) {
          return [
            { user_id: 'u0', level: when.getUTCDate() },
            { user_id: 'u1', level: -when.getUTCDate() },
          ];
        },
      );
      const badge = features.feature(
        { module: 'serving', entity: 'user_id' },
        async function badge({ when }: { when: Date }) {
          return [{ user_id: 'u0', badge: `b${when.getUTCDate()}` }];
        },
      );
      const frame = () =>
        features.withParams({ when: Last() }).getFeatures(level, badge).filter({ user_id: 'u0' });

      for (const f of [level, badge]) await materializer.materialize(f, { when: day(1) });
      expect(await frame().explain()).toContain('-- served online from redis');
      expect(await frame().toArray()).toEqual([{ user_id: 'u0', level: 1, badge: 'b1' }]);

      // Redis stops in the middle of publishing level at day 2: the offline publication stands.
      store.armed = true;
      const record = await materializer.materialize(level, { when: day(2) });
      expect(redisAnswers()).toBe(false);
      expect(record.params).toEqual({ when: day(2) });
      expect(errors).toHaveLength(1);
      expect(errors[0]).toBeInstanceOf(FeatureStoreError);
      expect(errors[0]).toMatchObject({
        code: 'ONLINE_PUBLISH_FAILED',
        feature: 'serving.level',
        params: { when: day(2) },
      });
      expect(errors[0]!.message).toMatch(/The offline publication stands/);
      await materializer.materialize(badge, { when: day(2) });
      expect(errors.map((e) => e.code)).toEqual(['ONLINE_PUBLISH_FAILED', 'ONLINE_PUBLISH_FAILED']);
      expect(errors[1]).toMatchObject({ feature: 'serving.badge', params: { when: day(2) } });

      // Reads fall back to the offline store at its Last(), never to the older point online.
      expect(await frame().explain()).toMatch(/not served online \(redis\): it is unreachable/);
      expect(await frame().toArray()).toEqual([{ user_id: 'u0', level: 2, badge: 'b2' }]);
      expect(errors.at(-1)).toMatchObject({ code: 'ONLINE_UNAVAILABLE' });

      // Back up, empty (it saved nothing): still served offline, at day 2, until repaired.
      await startRedis();
      expect(await frame().toArray()).toEqual([{ user_id: 'u0', level: 2, badge: 'b2' }]);
      expect(await frame().explain()).toMatch(/not served online \(redis\): not published there/);

      // A later materialize repairs its feature; syncOnline() repairs the rest.
      await materializer.materialize(level, { when: day(3) });
      expect((await store.list(['serving.level'])).map((m) => m.paramsKey)).toHaveLength(3);
      expect(await frame().explain()).toMatch(/not published there: serving\.badge/);
      expect(await materializer.syncOnline()).toHaveLength(2);
      expect(await frame().explain()).toContain('-- served online from redis');
      const reads = store.reads;
      expect(await frame().toArray()).toEqual([{ user_id: 'u0', level: 2, badge: 'b2' }]);
      expect(store.reads).toBe(reads + 1);
    } finally {
      await startRedis();
      await materializer.close();
      await dropSchema(schema);
      await online.cleanup();
    }
  });
});
