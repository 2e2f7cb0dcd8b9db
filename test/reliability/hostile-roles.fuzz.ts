/**
 * Seeded fuzz of the roles `hostile-strings.fuzz.ts` does not cover: feature names and modules,
 * parameter names, filter values, PostgreSQL schema names and DuckDB file paths. Each is stored
 * and read back exactly, or refused with a FeatureStoreError (never a raw driver error), and a
 * canary table (PostgreSQL) and a canary file (DuckDB) are untouched at the end. Seed 20260102.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { FeatureStore, type Materializer } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { PostgresMaterializer } from 'featurefn/postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminClient, dropSchema, postgresUrl, uniqueSchema } from '../support/postgres.js';
import { report } from './children.js';
import { exactOrRefused, type Figures, pg, stores } from './stores.js';

const SEED = 20260102;
const RUNS = 30;
const hostile = fc.oneof(
  fc.constantFrom(
    "'",
    '"',
    '""',
    "'; DROP TABLE canary; --",
    '"; DROP TABLE canary; --',
    '/* x */',
    '--',
    '.',
    '..',
    '../canary',
    '/',
    '\\',
    '\0',
    'a\0b',
    '\ud800',
    '\udc00x',
    '\ufeff',
    '\ufeffname',
    '__proto__',
    'constructor',
    ' ',
    '😀',
    'é'.repeat(40),
    'x'.repeat(300),
  ),
  fc.string({ unit: 'binary', maxLength: 16 }),
  fc.string({ unit: 'grapheme', maxLength: 16 }),
);

for (const [name, available, factory] of stores) {
  describe.skipIf(!available)(`hostile roles: ${name}`, () => {
    let materializer: Materializer;
    let cleanup: () => Promise<void>;
    const figures: Figures = { inputs: 0, storedExactly: 0, refused: 0 };
    beforeAll(() => {
      ({ materializer, cleanup } = factory());
    });
    afterAll(async () => {
      report(`hostile roles, ${name}`, figures);
      await cleanup();
    });

    it('feature names and modules: stored and read back under that name, or refused', async () => {
      await fc.assert(
        fc.asyncProperty(hostile, hostile, async (module, featureName) => {
          const store = new FeatureStore();
          store.addDecorator(materializer.decorator);
          const fn = async () => [{ id: 'k', v: 1 }];
          Object.defineProperty(fn, 'name', { value: featureName });
          await exactOrRefused(figures, async () => {
            const f = store.feature({ module, entity: 'id' }, fn);
            await materializer.materialize(f);
            expect((await materializer.listMaterializations(f)).map((m) => m.featureName)).toEqual([
              f.info.name,
            ]);
            expect(await store.withParams({}).getFeatures(f).toArray()).toEqual([{ id: 'k', v: 1 }]);
          });
        }),
        { seed: SEED, numRuns: RUNS },
      );
    });

    it('parameter names: stored and resolved by that name, or refused', async () => {
      await fc.assert(
        fc.asyncProperty(hostile, async (param) => {
          const store = new FeatureStore();
          store.addDecorator(materializer.decorator);
          const f = store.feature(
            { module: 'fuzz', entity: 'id' },
            async function byParam(p: Record<string, unknown>) {
              return [{ id: 'k', v: String(p[param]) }];
            },
          );
          await exactOrRefused(figures, async () => {
            const params = Object.defineProperty({}, param, { value: 'x', enumerable: true });
            const record = await materializer.materialize(f, params);
            expect(Object.keys(record.params)).toEqual([param]);
            expect(await store.withParams(params).getFeatures(f).toArray()).toEqual([{ id: 'k', v: 'x' }]);
          });
        }),
        { seed: SEED, numRuns: RUNS },
      );
    });

    it('filter values: the equal key or nothing, or refused', async () => {
      const store = new FeatureStore();
      store.addDecorator(materializer.decorator);
      const keys = ["'", '"', 'a b', '😀', '\ufeffk', '__proto__'];
      const f = store.feature({ module: 'fuzz', entity: 'id' }, async function keyed() {
        return keys.map((id, i) => ({ id, v: i }));
      });
      await materializer.materialize(f);
      await fc.assert(
        fc.asyncProperty(fc.oneof(hostile, fc.constantFrom(...keys)), async (value) => {
          await exactOrRefused(figures, async () => {
            const rows = await store.withParams({}).getFeatures(f).filter({ id: value }).toArray();
            expect(rows).toEqual(keys.includes(value) ? [{ id: value, v: keys.indexOf(value) }] : []);
          });
        }),
        { seed: SEED, numRuns: RUNS },
      );
    });
  });
}

/** Materializes one feature with `materializer` and reads it back: the store works under that name. */
async function roundTrip(materializer: Materializer): Promise<void> {
  const store = new FeatureStore();
  store.addDecorator(materializer.decorator);
  const f = store.feature({ module: 'fuzz', entity: 'id' }, async function here() {
    return [{ id: 'k', v: 1 }];
  });
  await materializer.materialize(f);
  expect(await store.withParams({}).getFeatures(f).toArray()).toEqual([{ id: 'k', v: 1 }]);
}

describe.skipIf(!pg.available)(`hostile schema names: PostgreSQL${pg.reason}`, () => {
  const canary = uniqueSchema('canary');
  const figures: Figures = { inputs: 0, storedExactly: 0, refused: 0 };
  beforeAll(async () => {
    const admin = await adminClient();
    await admin.query(`CREATE SCHEMA "${canary}"; CREATE TABLE "${canary}".canary (v text)`);
    await admin.query(`INSERT INTO "${canary}".canary VALUES ('alive')`);
    await admin.end();
  });
  afterAll(async () => {
    report('hostile schema names, PostgreSQL', figures);
    await dropSchema(canary);
  });

  it('a schema name is used exactly or refused, and the canary table is untouched', async () => {
    const made: string[] = [];
    try {
      await fc.assert(
        fc.asyncProperty(hostile, async (suffix) => {
          // A prefix of its own, so that no run can collide with another test's schema.
          const schema = `${uniqueSchema('fz')}${suffix}`;
          await exactOrRefused(figures, async () => {
            const materializer = new PostgresMaterializer({ connection: postgresUrl(), schema });
            made.push(schema);
            try {
              await roundTrip(materializer);
            } finally {
              await materializer.close();
            }
          });
        }),
        { seed: SEED, numRuns: RUNS },
      );
      const admin = await adminClient();
      const { rows } = await admin.query(`SELECT v FROM "${canary}".canary`);
      await admin.end();
      expect(rows).toEqual([{ v: 'alive' }]);
    } finally {
      const admin = await adminClient();
      for (const schema of made)
        await admin
          .query(`DROP SCHEMA IF EXISTS "${schema.replaceAll('"', '""')}" CASCADE`)
          .catch(() => undefined);
      await admin.end();
    }
  });
});

describe('hostile file paths: DuckDB', () => {
  const dir = mkdtempSync(join(tmpdir(), 'featurefn-paths-'));
  const canary = join(dir, 'canary');
  const figures: Figures = { inputs: 0, storedExactly: 0, refused: 0 };
  const digest = () => createHash('sha256').update(readFileSync(canary)).digest('hex');
  let before = '';
  beforeAll(() => {
    writeFileSync(canary, 'alive\n');
    before = digest();
  });
  afterAll(() => {
    report('hostile file paths, DuckDB', figures);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a path is opened exactly or refused, and the canary file is untouched', async () => {
    await fc.assert(
      fc.asyncProperty(hostile, async (name) => {
        // Under a folder of its own: `..` and `/` in the name stay inside the temp folder.
        const folder = mkdtempSync(join(dir, 'run-'));
        await exactOrRefused(figures, async () => {
          const materializer = new DuckDBMaterializer({ path: join(folder, `x${name}`) });
          try {
            await roundTrip(materializer);
          } finally {
            await materializer.close();
          }
        });
      }),
      { seed: SEED, numRuns: RUNS },
    );
    expect(digest()).toBe(before);
  });
});
