import { type Feature, FeatureStore, FeatureStoreError, Last } from 'featurefn';
import { PostgresMaterializer } from 'featurefn/postgres';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  adminClient,
  dropSchema,
  postgresUrl,
  requirePostgres,
  storedRowsOf,
  uniqueSchema,
} from '../support/postgres.js';

const server = await requirePostgres();

type Departures = Feature<(p: { when: Date }) => Promise<{ origin: string; departures: number }[]>>;

/** Polls `probe` every 10 ms until it returns a value, or fails after `timeoutMs`. */
async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe.skipIf(!server.available)(
  `PostgreSQL store across processes and connection failures${server.reason}`,
  () => {
    let admin: pg.Client;
    let schema: string;
    let appName: string;
    let reader: PostgresMaterializer;
    let writer: PostgresMaterializer;
    let readerStore: FeatureStore;
    let writerStore: FeatureStore;

    /** The same feature, registered in the reader's and the writer's registries (two processes, in effect). */
    function departuresIn(store: FeatureStore, keys = 3000): Departures {
      return store.feature(
        { module: 'flights', entity: 'origin' },
        async function departures({ when }: { when: Date }) {
          return Array.from({ length: keys }, (_, i) => ({
            origin: `A${String(i).padStart(5, '0')}`,
            departures: when.getUTCDate() * 1000 + i,
          }));
        },
      );
    }

    beforeAll(async () => {
      admin = await adminClient();
    });
    afterAll(async () => {
      await admin?.end();
    });
    beforeEach(() => {
      schema = uniqueSchema();
      appName = `featurefn-reader-${schema}`;
      // Separate pools: the writer stands for another process.
      reader = new PostgresMaterializer({
        connection: { connectionString: postgresUrl(), application_name: appName },
        schema,
        poolSize: 4,
      });
      writer = new PostgresMaterializer({ connection: postgresUrl(), schema, poolSize: 2 });
      readerStore = new FeatureStore();
      readerStore.addDecorator(reader.decorator);
      writerStore = new FeatureStore();
      writerStore.addDecorator(writer.decorator);
    });
    afterEach(async () => {
      await reader.close();
      await writer.close();
      await dropSchema(schema);
    });

    const day = (d: number) => new Date(Date.UTC(2001, 2, d));
    const readSfo = (departures: Departures) =>
      readerStore.withParams({ when: Last() }).getFeatures(departures).filter({ origin: 'A00007' }).toArray();

    it('a reader that cached Last() sees another instance’s newer materialization on its next reads', async () => {
      const readerFeature = departuresIn(readerStore);
      const writerFeature = departuresIn(writerStore);
      await writer.materialize(writerFeature, { when: day(1) });
      expect(await readSfo(readerFeature)).toEqual([{ origin: 'A00007', departures: 1007 }]);
      expect(await readSfo(readerFeature)).toEqual([{ origin: 'A00007', departures: 1007 }]); // served from the cache

      await writer.materialize(writerFeature, { when: day(8) });
      const rows = await until(async () => {
        const r = await readSfo(readerFeature);
        return r[0]?.departures === 8007 ? r : undefined;
      }, 'the reader to see the new materialization');
      expect(rows).toEqual([{ origin: 'A00007', departures: 8007 }]);
      expect((await reader.listMaterializations(readerFeature)).map((m) => m.params.when)).toEqual([
        day(1),
        day(8),
      ]);

      // A republication of the same parameters replaces the table the reader's plan named.
      await writer.materialize(writerFeature, { when: day(8) });
      expect(await readSfo(readerFeature)).toEqual([{ origin: 'A00007', departures: 8007 }]);
      expect(await reader.listMaterializations(readerFeature)).toHaveLength(2);
    });

    it('readers see the old or the new materialization while another instance republishes, never a mix or an error', async () => {
      let version = 0;
      const versioned = (store: FeatureStore) =>
        store.feature({ module: 'flights', entity: 'origin' }, async function versioned() {
          return Array.from({ length: 3000 }, (_, i) => ({
            origin: `A${String(i).padStart(5, '0')}`,
            version,
          }));
        });
      const readerFeature = versioned(readerStore);
      const writerFeature = versioned(writerStore);
      await writer.materialize(writerFeature, {});
      // Per reader: reads of different readers overlap, so only each one's own order is defined.
      const seenBy: number[][] = [[], [], []];
      let stop = false;
      const workers = seenBy.map(async (seen) => {
        while (!stop) {
          const rows = await readerStore.withParams({}).getFeatures(readerFeature).toArray();
          expect(rows).toHaveLength(3000);
          const versions = new Set(rows.map((r) => r.version));
          expect(versions.size).toBe(1);
          seen.push(rows[0]!.version as number);
        }
      });
      try {
        for (version = 1; version <= 6; version++) await writer.materialize(writerFeature, {});
      } finally {
        stop = true;
        await Promise.all(workers);
      }
      for (const seen of seenBy) {
        expect(seen.length).toBeGreaterThan(0);
        expect(seen).toEqual([...seen].sort((a, b) => a - b)); // never back to an older one
      }
      await until(async () => {
        const rows = await readerStore
          .withParams({})
          .getFeatures(readerFeature)
          .filter({ origin: 'A00001' })
          .toArray();
        return rows[0]?.version === 6 ? true : undefined;
      }, 'the last version');
      expect(await reader.listMaterializations(readerFeature)).toHaveLength(1);
    });

    it('in-flight reads fail with STORE_ERROR when the server drops their connections, and later reads recover', async () => {
      const readerFeature = departuresIn(readerStore);
      const writerFeature = departuresIn(writerStore);
      const record = await writer.materialize(writerFeature, { when: day(1) });
      expect(await readSfo(readerFeature)).toEqual([{ origin: 'A00007', departures: 1007 }]);
      const readerBackends = async (where: string) =>
        (
          await admin.query<{ pid: number }>(
            `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND ${where}`,
            [appName],
          )
        ).rows;

      // Hold the data table so that reads are surely in flight, waiting on the server, when the cut comes.
      // (Another client than `admin`: pg_stat_activity is read once per transaction.)
      const locker = await adminClient();
      await locker.query('BEGIN');
      const { table } = await storedRowsOf(admin, schema, record.id);
      await locker.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      const inFlight = Array.from({ length: 4 }, () => readSfo(readerFeature));
      const settled = Promise.allSettled(inFlight);
      try {
        await until(
          async () => ((await readerBackends("wait_event_type = 'Lock'")).length === 4 ? true : undefined),
          'four reads waiting on the server',
        );
        await admin.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
          [appName],
        );
      } finally {
        await locker.query('ROLLBACK');
        await locker.end();
      }
      const outcomes = await settled;
      for (const outcome of outcomes) {
        expect(outcome.status).toBe('rejected');
        const error = (outcome as PromiseRejectedResult).reason as FeatureStoreError;
        expect(error).toBeInstanceOf(FeatureStoreError);
        expect(error.code).toBe('STORE_ERROR');
        expect(error.feature).toBe('flights.departures');
        expect(error.message).toMatch(/server ended the connection|connection to the server was lost/);
        expect(error.message).toContain('not retried');
      }

      // Later calls recover on fresh connections.
      expect(await readSfo(readerFeature)).toEqual([{ origin: 'A00007', departures: 1007 }]);
      const parallel = await Promise.all(Array.from({ length: 8 }, () => readSfo(readerFeature)));
      expect(parallel.every((r) => r[0]?.departures === 1007)).toBe(true);

      // Connections dropped while idle in the pool are replaced without failing anyone.
      await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle' AND query NOT ILIKE 'LISTEN%'",
        [appName],
      );
      await until(
        async () =>
          (await readerBackends("state = 'idle' AND query NOT ILIKE 'LISTEN%'")).length === 0
            ? true
            : undefined,
        'idle connections to be gone',
      );
      // The server's notice of each cut reaches Node a moment after the backend is gone; a read sent on
      // such a connection in that moment fails like any in-flight read. Once Node has seen the cuts,
      // the pool opens new connections and nobody fails.
      await until(
        async () =>
          (await readSfo(readerFeature).catch(() => []))[0]?.departures === 1007 ? true : undefined,
        'reads to work again',
      );
      const afterIdleCut = await Promise.all(Array.from({ length: 8 }, () => readSfo(readerFeature)));
      expect(afterIdleCut.every((r) => r[0]?.departures === 1007)).toBe(true);

      // The listening connection was cut too: it reconnects, and publications reach the reader again.
      await until(
        async () => ((await readerBackends("query ILIKE 'LISTEN%'")).length > 0 ? true : undefined),
        'the listener to reconnect',
      );
      await readSfo(readerFeature); // cache the current Last() again
      await writer.materialize(writerFeature, { when: day(9) });
      await until(async () => {
        const r = await readSfo(readerFeature);
        return r[0]?.departures === 9007 ? r : undefined;
      }, 'the reader to see a publication made after the reconnection');
    });

    it('reports an unreachable server as STORE_ERROR naming what happened, and works once it is reachable', async () => {
      const lost = new PostgresMaterializer({ connection: 'postgres://postgres@127.0.0.1:1/test', schema });
      const error = await lost.listMaterializations('flights.departures').catch((e: unknown) => e);
      await lost.close();
      expect(error).toBeInstanceOf(FeatureStoreError);
      expect(error).toMatchObject({ code: 'STORE_ERROR' });
      expect((error as Error).message).toMatch(
        /nothing accepts connections there .*ECONNREFUSED.*is the server running/,
      );

      // The same materializer retries the connection on its next call.
      const feature = departuresIn(writerStore, 10);
      expect(await writer.listMaterializations(feature)).toEqual([]);
      expect((await writer.materialize(feature, { when: day(2) })).rows).toBe(10);
    });
  },
);
