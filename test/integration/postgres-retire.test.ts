import { FeatureStore } from 'featurefn';
import { PostgresMaterializer } from 'featurefn/postgres';
import type pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { adminClient, dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';

const server = await requirePostgres();

describe.skipIf(!server.available)(`PostgreSQL store: replaced tables are retired${server.reason}`, () => {
  let schema: string;
  let admin: pg.Client;
  let reader: pg.Client;
  const open: PostgresMaterializer[] = [];

  beforeEach(async () => {
    schema = uniqueSchema('retire');
    admin = await adminClient();
    reader = await adminClient();
  });

  afterEach(async () => {
    await reader.end().catch(() => undefined);
    for (const m of open.splice(0)) await m.close().catch(() => undefined);
    await admin.end();
    await dropSchema(schema);
  });

  /** Rows of a result big enough for a table of its own (`m_<id>`); smaller ones share their shape's. */
  const OWN_TABLE_ROWS = 50_000;

  function setup(retainReplaced: number | string, rows = OWN_TABLE_ROWS) {
    const materializer = new PostgresMaterializer({
      connection: postgresUrl(),
      schema,
      poolSize: 3,
      retainReplaced,
    });
    open.push(materializer);
    const store = new FeatureStore();
    let version = 1;
    const f = store.feature({ module: 'r', entity: 'origin' }, async function versioned() {
      return Array.from({ length: rows }, (_, i) => ({ origin: i === 0 ? 'SFO' : `X${i}`, version }));
    });
    store.addDecorator(materializer.decorator);
    return { materializer, store, f, next: () => version++ };
  }

  const exists = async (id: string) =>
    (await admin.query('SELECT to_regclass($1) IS NOT NULL AS found', [`"${schema}".m_${id}`])).rows[0].found;
  const retired = async () =>
    (await admin.query(`SELECT id::text AS id FROM "${schema}".retired ORDER BY id`)).rows.map((r) => r.id);

  it('a reader holding the current table blocks neither the next publication nor later readers', async () => {
    const { materializer, store, f, next } = setup(0);
    const first = await materializer.materialize(f, {});
    await reader.query('BEGIN');
    await reader.query(`SELECT * FROM "${schema}".m_${first.id}`); // holds ACCESS SHARE until the end
    try {
      next();
      // The reader holds its lock until COMMIT below: a publication waiting for it would never end.
      const published = await Promise.race([
        materializer.materialize(f, {}),
        new Promise<'blocked'>((resolve) => setTimeout(() => resolve('blocked'), 10_000)),
      ]);
      expect(published).not.toBe('blocked');
      const readStarted = Date.now();
      expect(await store.withParams({}).getFeatures(f).filter({ origin: 'SFO' }).toArray()).toEqual([
        { origin: 'SFO', version: 2 },
      ]);
      expect(Date.now() - readStarted).toBeLessThan(1000);
      // The old table is still there for the reader, recorded as retired, and not in the catalog.
      expect(
        (await reader.query(`SELECT version FROM "${schema}".m_${first.id} WHERE origin = 'SFO'`)).rows,
      ).toEqual([{ version: 1 }]);
      expect(await retired()).toEqual([first.id]);
      expect((await materializer.listMaterializations(f)).map((m) => m.id)).not.toContain(first.id);
      expect((await materializer.vacuum()).busy).toEqual([first.id]);
    } finally {
      await reader.query('COMMIT');
    }
    expect(await materializer.vacuum()).toEqual({ dropped: [first.id], busy: [] });
    expect(await exists(first.id)).toBe(false);
    expect(await retired()).toEqual([]);
  });

  it('drops a retired table only after the grace period, at a later publication', async () => {
    const { materializer, f, next } = setup(400);
    const first = await materializer.materialize(f, {});
    next();
    const second = await materializer.materialize(f, {});
    expect(await exists(first.id)).toBe(true);
    expect((await materializer.vacuum()).dropped).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 450));
    next();
    const third = await materializer.materialize(f, {});
    expect(await exists(first.id)).toBe(false);
    expect(await exists(second.id)).toBe(true); // retired just now
    expect(await exists(third.id)).toBe(true);
    const { rows } = await admin.query(`SELECT id::text AS id FROM "${schema}".catalog`);
    expect(rows).toEqual([{ id: third.id }]);
    expect(await retired()).toEqual([second.id]);
  });

  it('leaves no orphan after a stop between publication and drop, nor from a table without a record', async () => {
    const before = setup('10 minutes');
    const first = await before.materializer.materialize(before.f, {});
    before.next();
    await before.materializer.materialize(before.f, {});
    await before.materializer.close(); // too early to drop: the retired record survives
    expect(await exists(first.id)).toBe(true);
    // A data table with no record at all, as an interrupted run could leave.
    await admin.query(`CREATE TABLE "${schema}".m_987654321 (origin text)`);
    const after = setup(0);
    const { dropped } = await after.materializer.vacuum();
    expect(dropped.sort()).toEqual([first.id, '987654321'].sort());
    expect(await exists(first.id)).toBe(false);
    expect(await exists('987654321')).toBe(false);
    expect(await retired()).toEqual([]);
  });

  it('upgrades a store made before replaced tables were retired', async () => {
    const old = setup(0);
    const first = await old.materializer.materialize(old.f, {});
    await old.materializer.close();
    await admin.query(`DROP TABLE "${schema}".retired`);
    const { materializer, store, f } = setup('10 minutes');
    const second = await materializer.materialize(f, {});
    expect(await retired()).toEqual([first.id]);
    expect(await store.withParams({}).getFeatures(f).filter({ origin: 'SFO' }).toArray()).toEqual([
      { origin: 'SFO', version: 1 },
    ]);
    expect(second.id).not.toBe(first.id);
  });

  it('deletes a retired small result’s rows from its shape table after the grace period, never blocking a reader', async () => {
    const { materializer, store, f, next } = setup(400, 3);
    const first = await materializer.materialize(f, {});
    const { rows: where } = await admin.query(`SELECT stored_in FROM "${schema}".catalog WHERE id = $1`, [
      first.id,
    ]);
    const shape = `"${schema}"."${where[0].stored_in}"`;
    const rowsOf = async (id: string) =>
      (await admin.query(`SELECT count(*)::int AS n FROM ${shape} WHERE _m = $1`, [id])).rows[0].n;
    next();
    const second = await materializer.materialize(f, {});
    expect(await rowsOf(first.id)).toBe(3); // retired just now: kept for readers already on it
    expect((await materializer.vacuum()).dropped).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 450));
    // A reader in the middle of a transaction on the shape table.
    await reader.query('BEGIN');
    await reader.query(`SELECT * FROM ${shape}`);
    try {
      next();
      const started = Date.now();
      const third = await materializer.materialize(f, {});
      expect(Date.now() - started).toBeLessThan(1000);
      expect(await rowsOf(first.id)).toBe(0);
      expect(await rowsOf(second.id)).toBe(3);
      expect(await rowsOf(third.id)).toBe(3);
      expect(await retired()).toEqual([second.id]);
    } finally {
      await reader.query('COMMIT');
    }
    expect(await store.withParams({}).getFeatures(f).filter({ origin: 'SFO' }).toArray()).toEqual([
      { origin: 'SFO', version: 3 },
    ]);
    // Rows whose id has neither a record nor a retired entry (a damaged store) go at the next vacuum.
    await admin.query(`INSERT INTO ${shape} (_m, origin, v1) VALUES (987654321, 'SFO', 0)`);
    await materializer.vacuum();
    expect(await rowsOf('987654321')).toBe(0);
    expect(await rowsOf(second.id)).toBe(3); // still retired, still within its grace period
  });

  it('refuses a retainReplaced that is not a duration, by name', () => {
    expect(
      () => new PostgresMaterializer({ connection: postgresUrl(), schema, retainReplaced: '1 month' }),
    ).toThrow(
      expect.objectContaining({
        code: 'INVALID_DURATION',
        message: expect.stringContaining('retainReplaced'),
      }),
    );
  });
});
