/**
 * A PostgreSQL publication whose session the server ends at each of its steps, at a chosen moment,
 * deterministically: the store runs on a pool of the test's, whose connections stop at the
 * statement of the chosen step, and an admin connection ends their session
 * (`pg_terminate_backend`, as a restart does) at one of these moments:
 * - `before`: the session ended, and the client knew it, before the statement was sent;
 * - `sent`: the session ended before the server read the statement, and the client learned it
 *   only from the server's answer to it (what a restart does to a statement in flight);
 * - `answered` (COMMIT only): the server committed, and the answer was lost with the socket;
 * - `mid-data`, `at-end` (COPY only): the session ended while rows were streaming, or as the end
 *   of the data was sent.
 * Every call must settle within seconds: reject with a STORE_ERROR saying nothing was stored and
 * leave the store exactly as it was, or, once COMMIT was sent, say that the outcome is unknown
 * and how to check it. Then the next publication succeeds.
 */
import { type AddressInfo, createServer } from 'node:net';
import type { Writable } from 'node:stream';
import { FeatureStore, FeatureStoreError, Last } from 'featurefn';
import { PostgresMaterializer } from 'featurefn/postgres';
import pg from 'pg';
import { parse as parseConnectionString } from 'pg-connection-string';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminClient, dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';

const server = await requirePostgres();

/** A local port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const NOTHING_STORED = /Nothing was stored\.$/;

type Moment = 'before' | 'sent' | 'answered' | 'mid-data' | 'at-end';

/** A pool connection as far as the faults need it: pg's socket and the server's process id. */
interface Wired {
  processID: number;
  connection: { stream: { pause(): void; resume(): void; destroy(): void } };
}

describe.skipIf(!server.available)(
  `PostgreSQL publication: the session ended at each step${server.reason}`,
  () => {
    const schema = uniqueSchema('pubfault');
    const app = `featurefn-${schema}`;
    const when = new Date(Date.UTC(2001, 2, 1));
    let admin: pg.Client;
    let pool: pg.Pool;
    let materializer: PostgresMaterializer;
    let store: FeatureStore;
    /**
     * What the feature returns: value `version * 1e6 + i` for key `K<i>`; `rows` rows, several COPY
     * chunks: 30,000 go to the feature's shape table, 60,000 to a table of their own.
     */
    let version = 1;
    let rows = 30_000;
    let duplicateKeys = false;
    /** Run by the feature's function before it computes (then after the publication read the catalog). */
    let beforeCompute: (() => Promise<void>) | undefined;
    let feature: ReturnType<typeof register>;
    /** The fault to inject at the next statement matching `step`. */
    let armed: { step: RegExp; moment: Moment; fired: boolean } | undefined;

    function register(target: FeatureStore) {
      return target.feature({ module: 'faults', entity: 'k' }, async function value() {
        await beforeCompute?.();
        const v = version;
        return Array.from({ length: rows }, (_, i) => ({
          k: `K${String(duplicateKeys ? i % 10 : i).padStart(5, '0')}`,
          value: v * 1e6 + i,
        }));
      });
    }

    /** Ends the session of `client` from the admin connection and waits until its backend is gone. */
    async function endSession(client: Wired): Promise<void> {
      await admin.query('SELECT pg_terminate_backend($1)', [client.processID]);
      await until(client.processID, 'state IS NULL');
    }

    /** Waits until the backend `pid` is gone (`state IS NULL`) or in `state`. */
    async function until(pid: number, condition: string): Promise<void> {
      for (let i = 0; i < 500; i++) {
        const { rows } = await admin.query<{ state: string | null }>(
          'SELECT (SELECT state FROM pg_stat_activity WHERE pid = $1) AS state',
          [pid],
        );
        if (condition === 'state IS NULL' ? rows[0]!.state === null : rows[0]!.state === condition) return;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      throw new Error(`backend ${pid} never reached ${condition}`);
    }

    /** Sends `send()` (which issues the statement) with the session ended at `moment`. */
    async function inject(client: pg.PoolClient, moment: Moment, send: () => unknown): Promise<void> {
      const wired = client as unknown as Wired;
      const socket = wired.connection.stream;
      if (moment === 'before') {
        const ended = new Promise((resolve) => client.once('end', resolve));
        await endSession(wired);
        await ended;
        send();
      } else if (moment === 'sent') {
        socket.pause();
        await endSession(wired);
        send();
        socket.resume();
      } else {
        socket.pause();
        send();
        await until(wired.processID, 'idle');
        socket.destroy();
      }
    }

    /** Wraps each new pool connection's `query` so that the armed fault stops the matching statement. */
    function wire(client: pg.PoolClient): void {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
        const config = args[0] as string | { text: string; submit?: unknown };
        const text = typeof config === 'string' ? config : config.text;
        const fault = armed;
        if (fault === undefined || fault.fired || !fault.step.test(text)) return query(...args);
        fault.fired = true;
        if (fault.moment === 'mid-data' || fault.moment === 'at-end') {
          const stream = config as unknown as Writable;
          const wired = client as unknown as Wired;
          if (fault.moment === 'mid-data') {
            const write = stream.write.bind(stream) as (...a: unknown[]) => boolean;
            let chunks = 0;
            stream.write = ((...a: unknown[]) => {
              if (chunks++ === 1) void endSession(wired);
              return write(...a);
            }) as Writable['write'];
          } else {
            const end = stream.end.bind(stream) as (...a: unknown[]) => unknown;
            stream.end = ((...a: unknown[]) => {
              // pg may already have failed the COPY and let go of the connection, and the stream
              // then throws from end(): the store has had pg's error, which is what is tested.
              inject(client, 'sent', () => end(...a)).catch(() => undefined);
              return stream;
            }) as Writable['end'];
          }
          return query(...args);
        }
        if (typeof config === 'object' && typeof config.submit === 'function') {
          // A COPY stream: pg returns it at once and it holds what is written until the server answers.
          void inject(client, fault.moment, () => query(...args));
          return config;
        }
        const callback = args[args.length - 1];
        if (typeof callback === 'function') {
          // The callback form (the store's reads): pg answers through the callback.
          inject(client, fault.moment, () => query(...args)).catch((error: unknown) => callback(error));
          return undefined;
        }
        return new Promise((resolve, reject) => {
          inject(client, fault.moment, () =>
            (query(...args) as Promise<unknown>).then(resolve, reject),
          ).catch(reject);
        });
      };
    }

    const catalog = async () =>
      (
        await admin.query<{ id: string }>(`SELECT id::text AS id FROM "${schema}".catalog ORDER BY id`)
      ).rows.map((r) => r.id);
    const tables = async () =>
      (
        await admin.query<{ name: string }>({
          text: `SELECT tablename AS name FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'm\\_%' ORDER BY 1`,
          values: [schema],
        })
      ).rows.map((r) => r.name);
    const readValue = async () => {
      const rows = await store
        .withParams({ when: Last() })
        .getFeatures(feature)
        .filter({ k: 'K00007' })
        .toArray();
      return rows[0]?.value;
    };

    beforeAll(async () => {
      admin = await adminClient();
      const { host, port, user, database } = parseConnectionString(postgresUrl());
      pool = new pg.Pool({
        host: host ?? undefined,
        port: Number(port ?? 5432),
        user: user ?? undefined,
        database: database ?? undefined,
        application_name: app,
        max: 4,
      });
      pool.on('connect', wire);
      materializer = new PostgresMaterializer({ connection: pool, schema, onError: () => undefined });
      store = new FeatureStore();
      feature = register(store);
      store.addDecorator(materializer.decorator);
      await materializer.materialize(feature, { when });
    });
    afterAll(async () => {
      await materializer?.close();
      await pool?.end();
      await admin?.end();
      await dropSchema(schema);
    });

    /** Publishes a new version with the fault armed; returns the error it settled with, in 15 s at most. */
    async function faulted(step: RegExp, moment: Moment): Promise<FeatureStoreError> {
      version++;
      armed = { step, moment, fired: false };
      const outcome = await Promise.race([
        materializer.materialize(feature, { when }).then(
          () => 'resolved',
          (error: unknown) => error,
        ),
        new Promise((resolve) => setTimeout(() => resolve('HUNG: not settled within 15 s'), 15_000)),
      ]);
      expect(armed.fired, 'the fault was injected').toBe(true);
      armed = undefined;
      expect(outcome).toBeInstanceOf(FeatureStoreError);
      const error = outcome as FeatureStoreError;
      expect(error.feature).toBe(feature.info.name);
      return error;
    }

    /** {@link faulted}, where the fault is the error: a STORE_ERROR naming the lost connection. */
    async function lost(step: RegExp, moment: Moment): Promise<FeatureStoreError> {
      const error = await faulted(step, moment);
      expect(error.code).toBe('STORE_ERROR');
      expect(error.message).toMatch(/connection|server/);
      return error;
    }

    /** After a failure that stored nothing: the store as it was, and a publication then succeeds. */
    async function expectUnchangedThenRecovers(before: { ids: string[]; tables: string[]; value: unknown }) {
      expect(await catalog()).toEqual(before.ids);
      expect(await tables()).toEqual(before.tables);
      expect(await readValue()).toBe(before.value);
      await materializer.materialize(feature, { when });
      expect(await readValue()).toBe(version * 1e6 + 7);
    }

    const snapshot = async () => ({ ids: await catalog(), tables: await tables(), value: await readValue() });

    it('the pool cannot connect (nothing listens): nothing stored, said so', async () => {
      const before = await snapshot();
      const options = (pool as unknown as { options: { port: number } }).options;
      const port = options.port;
      // Once the catalog was read, while the function runs: no idle connection is left to hand
      // out, and new ones go to a port nothing listens on.
      beforeCompute = async () => {
        await admin.query(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle'",
          [app],
        );
        for (let i = 0; pool.idleCount > 0 && i < 500; i++) await new Promise((r) => setTimeout(r, 10));
        options.port = await closedPort();
      };
      try {
        version++;
        const error = await materializer.materialize(feature, { when }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(FeatureStoreError);
        expect((error as FeatureStoreError).message).toMatch(
          /^Feature "faults\.value" .*: connecting to store the result failed in PostgreSQL: nothing accepts connections there .*Nothing was stored\.$/,
        );
      } finally {
        beforeCompute = undefined;
        options.port = port;
      }
      await expectUnchangedThenRecovers(before);
    });

    // A big result's own table is created, keyed and analyzed in the publication; a small one's
    // rows go to its shape table, which exists from the first publication on.
    const steps: [string, RegExp, number?][] = [
      ['BEGIN', /^BEGIN/],
      ['the id draw', /nextval/],
      ['CREATE TABLE of a big result', /^CREATE TABLE/, 60_000],
      ['COPY', /^COPY/],
      ['COPY of a big result', /^COPY/, 60_000],
      ['the key build of a big result', /ADD PRIMARY KEY/, 60_000],
      ['ANALYZE of a big result', /^ANALYZE/, 60_000],
      ['the advisory lock', /pg_advisory_xact_lock/],
      ['the catalog insert', /^INSERT INTO \S+\.catalog/],
      ['the notification', /pg_notify/],
    ];
    for (const [name, step, size = 30_000] of steps) {
      for (const moment of ['before', 'sent'] as const) {
        it(`${name}, session ended ${moment === 'before' ? 'before it was sent' : 'as it was sent'}: nothing stored, said so`, async () => {
          const before = await snapshot();
          rows = size;
          try {
            expect((await lost(step, moment)).message).toMatch(NOTHING_STORED);
          } finally {
            rows = 30_000;
          }
          await expectUnchangedThenRecovers(before);
        });
      }
    }

    it('ROLLBACK after a refused result, session ended as it was sent: the refusal, nothing stored', async () => {
      const before = await snapshot();
      duplicateKeys = true;
      try {
        expect((await faulted(/^ROLLBACK$/, 'sent')).code).toBe('DUPLICATE_KEY');
      } finally {
        duplicateKeys = false;
      }
      await expectUnchangedThenRecovers(before);
    });

    it('COMMIT, session ended before it was sent (pg knew, and did not send it): nothing stored, said so', async () => {
      const before = await snapshot();
      expect((await lost(/^COMMIT$/, 'before')).message).toMatch(NOTHING_STORED);
      await expectUnchangedThenRecovers(before);
    });
    it('COMMIT, session ended as it was sent: outcome unknown, said how to check; nothing was stored', async () => {
      const before = await snapshot();
      const error = await lost(/^COMMIT$/, 'sent');
      expect(error.message).toMatch(/may or may not have been stored/);
      expect(error.message).toMatch(/listMaterializations/);
      // What the error says to check agrees with the store.
      const id = (error.details as { id: string }).id;
      expect((await materializer.listMaterializations(feature)).map((m) => m.id)).not.toContain(id);
      await expectUnchangedThenRecovers(before);
    });

    it('COMMIT answered but the answer lost: outcome unknown; the check finds it, and reads move to it', async () => {
      const error = await lost(/^COMMIT$/, 'answered');
      expect(error.message).toMatch(/may or may not have been stored/);
      const id = (error.details as { id: string }).id;
      expect(await catalog()).toContain(id);
      expect((await materializer.listMaterializations(feature)).map((m) => m.id)).toContain(id);
      expect(await readValue()).toBe(version * 1e6 + 7);
    });

    it('a read, session ended as it was sent: fails clearly, and the next read has a live connection', async () => {
      const before = await readValue();
      armed = { step: /"s_[0-9a-f]{16}"/, moment: 'sent', fired: false };
      const error = await readValue().catch((e: unknown) => e);
      expect(armed.fired).toBe(true);
      armed = undefined;
      expect(error).toBeInstanceOf(FeatureStoreError);
      expect((error as FeatureStoreError).message).toMatch(/the server ended the connection/);
      expect(await readValue()).toBe(before);
    });

    for (const moment of ['mid-data', 'at-end'] as const) {
      it(`the COPY data, session ended ${moment === 'mid-data' ? 'mid-stream' : 'as its end was sent'}: nothing stored, said so`, async () => {
        const before = await snapshot();
        expect((await lost(/^COPY/, moment)).message).toMatch(NOTHING_STORED);
        await expectUnchangedThenRecovers(before);
      });
    }
  },
);
