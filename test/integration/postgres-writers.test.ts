import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { join } from 'node:path';
import { FeatureStore } from 'featurefn';
import { PostgresMaterializer } from 'featurefn/postgres';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminClient, dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';

const fixture = join(import.meta.dirname, 'fixtures', 'postgres-writer.ts');
const server = await requirePostgres();

/** Starts the writer fixture under its own application_name, so its backends can be found. */
function writer(schema: string, mode: 'concurrent' | 'slow', tag: string): ChildProcessWithoutNullStreams {
  const url = new URL(postgresUrl());
  url.searchParams.set('application_name', `featurefn-${schema}-${tag}`);
  return spawn(process.execPath, ['--import', 'tsx', fixture, url.toString(), schema, mode, tag], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** Resolves with the first stdout line matching `test`; rejects if the child exits first. */
function line(child: ChildProcessWithoutNullStreams, test: (line: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const onOut = (data: Buffer) => {
      out += String(data);
      const found = out.split('\n').find(test);
      if (found !== undefined) {
        child.stdout.off('data', onOut);
        resolve(found);
      }
    };
    child.stdout.on('data', onOut);
    child.stderr.on('data', (data) => {
      err += String(data);
    });
    child.once('exit', (code) =>
      reject(new Error(`writer exited (${code}) before the expected output: ${err}`)),
    );
  });
}

const exited = (child: ChildProcessWithoutNullStreams) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });

async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe.skipIf(!server.available)(`PostgreSQL store with several writer processes${server.reason}`, () => {
  let admin: pg.Client;
  const schemas: string[] = [];

  beforeAll(async () => {
    admin = await adminClient();
  });

  afterAll(async () => {
    await admin?.end();
    for (const schema of schemas) await dropSchema(schema);
  });

  /** Own tables (`m_<id>`) and shape tables (`f_<hash>`) of the schema. */
  async function dataTables(schema: string): Promise<string[]> {
    const { rows } = await admin.query<{ tablename: string }>(
      "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename ~ '^(m_[0-9]+|[fs]_[0-9a-f]{16})$' ORDER BY 1",
      [schema],
    );
    return rows.map((r) => r.tablename);
  }

  it('two processes materializing the same feature and parameters at once leave exactly one complete materialization', async () => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const children = [writer(schema, 'concurrent', 'one'), writer(schema, 'concurrent', 'two')];
    await Promise.all(children.map((child) => line(child, (l) => l === 'ready')));
    const outputs = children.map((child) => line(child, (l) => l.startsWith('{')));
    for (const child of children) child.stdin.write('go\n');
    const records = (await Promise.all(outputs)).map(
      (l) => JSON.parse(l) as { id: string; rows: number; started: number; finished: number },
    );
    expect(await Promise.all(children.map(exited))).toEqual([0, 0]);
    // The two materializations really ran at the same time.
    const [a, b] = records as [(typeof records)[0], (typeof records)[0]];
    expect(a.started < b.finished && b.started < a.finished).toBe(true);

    // Both published (each replacing whatever was there); the one that committed last remains.
    expect(records.map((r) => r.rows)).toEqual([100_000, 100_000]);
    expect(new Set(records.map((r) => r.id)).size).toBe(2);
    const { rows: catalog } = await admin.query<{ id: string; row_count: string }>(
      `SELECT id::text AS id, row_count FROM "${schema}".catalog WHERE feature_name = 'writers.shared'`,
    );
    expect(catalog).toHaveLength(1);
    const survivor = catalog[0]!.id;
    expect(records.map((r) => r.id)).toContain(survivor);
    // The other is retired (dropped after the grace period), never left without a record.
    const { rows: retired } = await admin.query<{ id: string }>(
      `SELECT id::text AS id FROM "${schema}".retired`,
    );
    const others = records.map((r) => r.id).filter((id) => id !== survivor);
    expect(others.filter((id) => !retired.some((r) => r.id === id))).toEqual([]);
    expect(await dataTables(schema)).toEqual(
      [survivor, ...retired.map((r) => r.id)].map((id) => `m_${id}`).sort(),
    );
    const { rows: content } = await admin.query<{ writer: string; n: string; keys: string }>(
      `SELECT writer, count(*) AS n, count(DISTINCT key) AS keys FROM "${schema}"."m_${survivor}" GROUP BY writer`,
    );
    // Every row comes from one writer: no mix of the two loads.
    expect(content).toHaveLength(1);
    expect(content[0]).toMatchObject({ n: '100000', keys: '100000' });
    expect(catalog[0]!.row_count).toBe('100000');
  });

  it('a writer killed with SIGKILL mid-load leaves no partial data, no catalog row and no lock', async () => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const child = writer(schema, 'slow', 'crash');
    await line(child, (l) => l === 'loading');
    const appName = `featurefn-${schema}-crash`;
    // The COPY is in progress on the server when the writer dies.
    const { rows: before } = await admin.query<{ state: string; xact: boolean }>(
      'SELECT state, xact_start IS NOT NULL AS xact FROM pg_stat_activity WHERE application_name = $1',
      [appName],
    );
    expect(before.some((r) => r.xact)).toBe(true);
    child.kill('SIGKILL');
    await exited(child);

    // The server notices the dead client and rolls its transaction back.
    await until(async () => {
      const { rows } = await admin.query(
        'SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND xact_start IS NOT NULL',
        [appName],
      );
      return rows.length === 0 ? true : undefined;
    }, 'the killed writer’s transaction to end');
    const { rows: catalog } = await admin.query(`SELECT * FROM "${schema}".catalog`);
    expect(catalog).toEqual([]);
    expect(await dataTables(schema)).toEqual([]);
    const { rows: locks } = await admin.query(
      `SELECT l.locktype FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.application_name = $1`,
      [appName],
    );
    expect(locks).toEqual([]);

    // The next run of the same feature publishes normally.
    const materializer = new PostgresMaterializer({ connection: postgresUrl(), schema, poolSize: 2 });
    try {
      const store = new FeatureStore();
      const slow = store.feature({ module: 'crash', entity: 'key' }, async function slow() {
        return [
          { key: 'a', writer: 'rerun' },
          { key: 'b', writer: 'rerun' },
        ];
      });
      const record = await materializer.materialize(slow, {});
      expect(record.rows).toBe(2);
      expect((await materializer.listMaterializations(slow)).map((m) => m.id)).toEqual([record.id]);
      // A small result: in its shape's table, which the killed run's rollback never left behind.
      const { rows: stored } = await admin.query(`SELECT stored_in FROM "${schema}".catalog`);
      expect(stored).toEqual([{ stored_in: expect.stringMatching(/^s_[0-9a-f]{16}$/) }]);
      expect(await dataTables(schema)).toEqual([stored[0].stored_in]);
      expect(await store.withParams({}).getFeatures(slow).filter({ key: 'b' }).toArray()).toEqual([
        { key: 'b', writer: 'rerun' },
      ]);
    } finally {
      await materializer.close();
    }
  });
});
