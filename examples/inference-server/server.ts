// examples/inference-server/server.ts
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { defaultStore, FeatureStoreError, Last, type OnlineOptions, type OnlineStore } from 'featurefn';
import { PostgresMaterializer } from 'featurefn/postgres';
import { RedisOnlineStore } from 'featurefn/redis';
import { departures, meanDelay7d } from '../flights/features.js';

/** A running inference server: its port, and `close()` to stop it and its store. */
export interface InferenceServer {
  readonly server: Server;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Starts the inference server: `GET /?origin=SFO` answers the airport's latest materialized
 * `departures` and `mean_delay_7d` as JSON. Answers 400 for a missing or malformed airport code,
 * 404 for an airport the store does not hold, 503 while the features are not materialized yet,
 * and 500 (logged) for anything else. `port` 0 picks a free port. With `online` (e.g. a
 * `RedisOnlineStore`), each request's key lookup is served from that online store, and from
 * PostgreSQL until the online copy holds the latest materializations (see docs/serving.md).
 *
 * ### Example
 * ```ts
 * const app = await startInferenceServer({ connection: 'postgres://localhost/db', port: 8080 });
 * // curl 'http://localhost:8080/?origin=SFO'
 * await app.close();
 * ```
 */
export async function startInferenceServer(options: {
  connection: string;
  schema?: string;
  port?: number;
  host?: string;
  online?: OnlineStore | OnlineOptions;
}): Promise<InferenceServer> {
  const materializer = new PostgresMaterializer({
    connection: options.connection,
    schema: options.schema ?? 'feature_store',
    online: options.online, // key lookups from Redis (or SQLite), the rest from PostgreSQL
  });
  const detach = defaultStore.addDecorator(materializer.decorator); // features served from PostgreSQL

  const server = createServer((req, res) => {
    answer(req.url ?? '/', res).catch((error: unknown) => {
      console.error('inference server: could not answer', req.url, error);
      if (!res.headersSent) send(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, options.host ?? '127.0.0.1', resolve);
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      detach();
      await materializer.close();
    },
  };
}

/** Answers one request; every expected failure becomes a status code, the rest rejects. */
async function answer(url: string, res: ServerResponse): Promise<void> {
  const origin = new URL(url, 'http://localhost').searchParams.get('origin');
  if (origin === null || !/^[A-Z0-9]{3}$/.test(origin)) {
    send(res, 400, { error: 'give one airport code, e.g. ?origin=SFO' });
    return;
  }
  try {
    const [row] = await defaultStore
      .withParams({ when: Last() }) // the latest point at which both are materialized
      .getFeatures(departures, meanDelay7d) // joined on their entity key
      .filter({ origin }) // a key lookup: one index probe per feature, or one online read
      .toArray();
    if (row === undefined) send(res, 404, { error: `no features for airport ${origin}` });
    else send(res, 200, row);
  } catch (error) {
    if (error instanceof FeatureStoreError && error.code === 'NO_CONSISTENT_MATERIALIZATION') {
      send(res, 503, { error: 'features not materialized yet', code: error.code });
      return;
    }
    throw error;
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

// Run directly: DATABASE_URL=postgres://… [REDIS_URL=redis://…] npx tsx examples/inference-server/server.ts
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const redisUrl = process.env.REDIS_URL;
  const app = await startInferenceServer({
    connection: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    port: Number(process.env.PORT ?? 8080),
    ...(redisUrl === undefined
      ? {}
      : { online: { store: new RedisOnlineStore({ url: redisUrl }), cache: { entries: 10_000 } } }),
  });
  console.log(`inference server on http://127.0.0.1:${app.port}/?origin=SFO`);
  process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
}
