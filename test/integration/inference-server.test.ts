import { readFileSync } from 'node:fs';
import { timestampValue } from '@duckdb/node-api';
import { defaultStore, Last } from 'featurefn';
import { PostgresMaterializer } from 'featurefn/postgres';
import { RedisOnlineStore } from 'featurefn/redis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { departures, meanDelay7d } from '../../examples/flights/features.js';
import { query } from '../../examples/flights/flights-data.js';
import { type InferenceServer, startInferenceServer } from '../../examples/inference-server/server.js';
import { REDIS_URL, redisOnline } from '../support/online.js';
import { adminClient, dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';

const pg = await requirePostgres();

const SERVER_FILE = new URL('../../examples/inference-server/server.ts', import.meta.url);
const DOC = new URL('../../docs/postgres.md', import.meta.url);

describe('the inference server example', () => {
  it('docs/postgres.md shows exactly the code of examples/inference-server/server.ts', () => {
    const doc = readFileSync(DOC, 'utf8');
    const block = /````ts\n(\/\/ examples\/inference-server\/server\.ts\n[\s\S]*?)````/.exec(doc);
    expect(block, 'the docs carry the server code block').not.toBeNull();
    expect(block![1]).toBe(readFileSync(SERVER_FILE, 'utf8'));
  });
});

describe.skipIf(!pg.available)(`the inference server on PostgreSQL${pg.reason}`, () => {
  const schema = uniqueSchema('inference');
  let app: InferenceServer;
  const get = async (path: string) => {
    const response = await fetch(`http://127.0.0.1:${app.port}${path}`);
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    app = await startInferenceServer({ connection: postgresUrl(), schema, port: 0 });
  });

  afterAll(async () => {
    await app?.close();
    await dropSchema(schema);
  });

  it('answers 503 while nothing is materialized, 400 for a bad request, and keeps answering', async () => {
    const empty = await get('/?origin=SFO');
    expect(empty.status).toBe(503);
    expect(empty.body.code).toBe('NO_CONSISTENT_MATERIALIZATION');
    expect((await get('/?origin=SFO')).status).toBe(503); // still alive after the first failure
    expect((await get('/')).status).toBe(400);
    expect((await get('/?origin=sf%27o')).status).toBe(400);
    expect((await get('/?origin=')).status).toBe(400);
  });

  it('after the weekly job: 200 with the stored values, 404 for an unknown airport', async () => {
    const when = new Date('2001-03-15T00:00:00Z');
    // The weekly job, as another process would run it: its own materializer on the same schema.
    const job = new PostgresMaterializer({ connection: postgresUrl(), schema });
    try {
      for (const f of [departures, meanDelay7d]) await job.materialize(f, { when });
    } finally {
      await job.close();
    }
    const at = timestampValue(BigInt(when.getTime()) * 1000n);
    const [expected] = (
      await query(
        `SELECT (SELECT count(*) FROM flights WHERE date <= $1 AND origin = 'SFO') AS departures,
                (SELECT avg(delay) FROM flights WHERE date > $1::TIMESTAMP - INTERVAL 7 DAY AND date <= $1
                 AND origin = 'SFO') AS mean_delay_7d`,
        [at],
      )
    ).getRowObjectsJS();
    // The server learns of the publication by notification; wait for it (bounded).
    let answer = await get('/?origin=SFO');
    for (let i = 0; answer.status === 503 && i < 50; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      answer = await get('/?origin=SFO');
    }
    expect(answer.status).toBe(200);
    expect(answer.body.origin).toBe('SFO');
    expect(answer.body.departures).toBe(Number(expected!.departures));
    expect(answer.body.departures).toBeGreaterThan(1000);
    expect(answer.body.mean_delay_7d).toBeCloseTo(Number(expected!.mean_delay_7d), 9);

    const unknown = await get('/?origin=ZZZ');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatch(/ZZZ/);
    expect((await get('/?origin=nope')).status).toBe(400);
  });

  it('answers 500 and logs when the store fails, and keeps answering', async () => {
    // The stored tables vanish under the server (an operator dropped them): reads fail.
    const admin = await adminClient();
    try {
      const { rows } = await admin.query<{ name: string }>(
        `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = $1 AND table_name ~ '^(m_[0-9]+|[fs]_[0-9a-f]{16})$'`,
        [schema],
      );
      expect(rows.length).toBeGreaterThan(0);
      for (const { name } of rows) await admin.query(`DROP TABLE "${schema}"."${name}"`);
    } finally {
      await admin.end();
    }
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const failed = await get('/?origin=SFO');
      expect(failed.status).toBe(500);
      expect(failed.body).toEqual({ error: 'internal error' });
      expect(logged).toHaveBeenCalled();
    } finally {
      logged.mockRestore();
    }
    expect((await get('/')).status).toBe(400);
  });
});

describe.skipIf(!pg.available)(`the inference server with a Redis online store${pg.reason}`, () => {
  const schema = uniqueSchema('inference');
  let app: InferenceServer;
  let online: Awaited<ReturnType<typeof redisOnline>>;

  beforeAll(async () => {
    online = await redisOnline();
    app = await startInferenceServer({
      connection: postgresUrl(),
      schema,
      port: 0,
      online: { store: online.store, cache: { entries: 100 } },
    });
  });

  afterAll(async () => {
    await app?.close();
    await online?.cleanup();
    await dropSchema(schema);
  });

  it('answers what PostgreSQL holds, from the online copy the weekly job published', async () => {
    const when = new Date('2001-03-15T00:00:00Z');
    // The job publishes to the same Redis (through a client of its own) after PostgreSQL.
    const jobOnline = new RedisOnlineStore({ url: REDIS_URL, prefix: online.prefix });
    const job = new PostgresMaterializer({ connection: postgresUrl(), schema, online: jobOnline });
    try {
      for (const f of [departures, meanDelay7d]) await job.materialize(f, { when });
      expect((await jobOnline.list(['flights.departures', 'flights.meanDelay7d'])).length).toBe(2);
      // An IN filter is no key lookup: PostgreSQL answers it.
      const offline = await defaultStore
        .withParams({ when: Last() })
        .getFeatures(departures, meanDelay7d)
        .filter({ origin: ['SFO'] })
        .toArray();
      expect(offline).toHaveLength(1);
      let answer = await fetch(`http://127.0.0.1:${app.port}/?origin=SFO`);
      for (let i = 0; answer.status === 503 && i < 50; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        answer = await fetch(`http://127.0.0.1:${app.port}/?origin=SFO`);
      }
      expect(answer.status).toBe(200);
      expect(await answer.json()).toEqual(offline[0]);
      expect((await fetch(`http://127.0.0.1:${app.port}/?origin=ZZZ`)).status).toBe(404);
    } finally {
      await job.close();
      await jobOnline.close();
    }
  });
});
