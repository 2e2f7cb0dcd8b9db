/**
 * Key lookups of many features at once, the serving shape: small materializations of features
 * with the same key and column types share one table, and a lookup of several of them reads that
 * table once (`… IN (ids)`), picking each feature's values by its materialization id. Checked on
 * both stores against the same lookup computed live, for every column type, nulls, keys some
 * features lack, several materializations of each feature in the same table, and selections.
 */
import { type Feature, FeatureStore, type Materializer, type Row } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { PostgresMaterializer } from 'featurefn/postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tableToRows } from '../../src/frame/columns.js';
import { dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';
import { seeded } from '../support/seeded.js';

const pg = await requirePostgres();

const KEYS = Array.from({ length: 20 }, (_, i) => `u${i}`);
/** Stored: versions 1 and 2. Live (never stored): 11 and 12, with the same data as 1 and 2. */
const STORED = [1, 2];

/** Rows of feature `f` at version `v`: every type a column can have, nulls, some keys missing. */
function rowsOf(f: number, v: number): Row[] {
  const r = seeded(1_000 * f + (v % 10));
  return KEYS.filter((_, i) => i === 0 || r.chance(0.8)).map((id, i) => {
    const none = i > 0 && r.chance(0.2);
    return {
      id,
      n: none ? null : r.int(-5, 50),
      x: none ? null : Math.round(r.float(0, 100) * 100) / 100,
      label: none ? null : r.pick(['a', 'b', "it's", '']),
      flag: none ? null : r.chance(0.5),
      at: none ? null : new Date(Date.UTC(2024, 0, r.int(1, 28))),
      meta: none ? null : { f, v: v % 10, tags: [r.int(0, 3)] },
      embedding: none ? null : [r.float(0, 1), r.float(0, 1)],
    };
  });
}

/** Rows of a feature of another shape (one bigint column), `count_<f>`. */
function countsOf(f: number, v: number): Row[] {
  const r = seeded(7_000 * f + (v % 10));
  return KEYS.filter(() => r.chance(0.7)).map((id) => ({ id, [`count_${f}`]: BigInt(r.int(0, 1_000)) }));
}

/** The value a row has, as text both the stores and the live path agree on. */
function canonical(row: Row): string {
  return Object.keys(row)
    .sort()
    .map((name) => {
      const v = row[name];
      if (v === null || v === undefined) return `${name}=null`;
      if (v instanceof Date) return `${name}=d${v.getTime()}`;
      if (typeof v === 'bigint' || typeof v === 'number') return `${name}=n${Number(v)}`;
      return `${name}=${JSON.stringify(v)}`;
    })
    .join('|');
}

function wideLookups(
  name: string,
  open: () => Promise<{ materializer: Materializer; close(): Promise<void> }>,
) {
  describe(`wide key lookups on ${name}`, () => {
    const store = new FeatureStore();
    // Four features of one shape (renamed apart, so their columns do not collide), two of another.
    const wide: Feature[] = [0, 1, 2, 3].map((f) =>
      store.feature({ module: 'wide', entity: 'id', name: `w${f}` }, async ({ v }: { v: number }) =>
        rowsOf(f, v).map((row) =>
          Object.fromEntries(Object.entries(row).map(([k, value]) => [k === 'id' ? k : `${k}_${f}`, value])),
        ),
      ),
    );
    const counts: Feature[] = [0, 1].map((f) =>
      store.feature({ module: 'wide', entity: 'id', name: `c${f}` }, async ({ v }: { v: number }) =>
        countsOf(f, v),
      ),
    );
    let materializer: Materializer;
    let close: () => Promise<void>;

    beforeAll(async () => {
      ({ materializer, close } = await open());
      store.addDecorator(materializer.decorator);
      for (const v of STORED) for (const f of [...wide, ...counts]) await materializer.materialize(f, { v });
    }, 60_000);
    afterAll(async () => {
      await close?.();
    });

    const sets: [string, () => Feature[]][] = [
      ['all six', () => [...wide, ...counts]],
      ['one of another shape first', () => [counts[1]!, wide[2]!, wide[0]!, counts[0]!]],
      ['two of one shape', () => [wide[3]!, wide[1]!]],
    ];
    for (const [label, features] of sets) {
      it(`${label}: every key, present or not, agrees with the live lookup`, async () => {
        for (const v of STORED) {
          for (const id of [...KEYS, 'nobody']) {
            const stored = await store
              .withParams({ v })
              .getFeatures(...features())
              .filter({ id })
              .toArray();
            const live = await store
              .withParams({ v: v + 10 })
              .getFeatures(...features())
              .filter({ id })
              .toArray();
            expect(stored.map(canonical), `v ${v}, id ${id}`).toEqual(live.map(canonical));
          }
        }
      });
    }

    it('reads each shared table once for all its features, and a selection of their columns agrees', async () => {
      const frame = store
        .withParams({ v: 2 })
        .getFeatures(counts[0]!, ...wide, counts[1]!)
        .filter({ id: 'u3' });
      const sql = await frame.explain();
      // The first feature's table drives the read; the wide features are one pass over theirs,
      // joined (PostgreSQL) or by a statement of its own (DuckDB).
      expect(sql.match(/ IN \(/g)).toHaveLength(1);
      expect(sql).toMatch(/CROSS JOIN|then, for the columns of one shared table/);
      const columns = ['id', 'flag_2', 'meta_0', 'embedding_3', 'count_1', 'at_1'];
      const selected = await frame.select(...columns).toArray();
      const live = await store
        .withParams({ v: 12 })
        .getFeatures(counts[0]!, ...wide, counts[1]!)
        .filter({ id: 'u3' })
        .select(...columns)
        .toArray();
      expect(selected.map(canonical)).toEqual(live.map(canonical));
      // As Arrow, the same values; and with every column from the shared table, the row is still there.
      const arrow = await frame.select(...columns).toArrow();
      expect(tableToRows(arrow).map(canonical)).toEqual(live.map(canonical));
      const apart = await frame.select('flag_2', 'x_1').toArray();
      const liveApart = await store
        .withParams({ v: 12 })
        .getFeatures(counts[0]!, ...wide, counts[1]!)
        .filter({ id: 'u3' })
        .select('flag_2', 'x_1')
        .toArray();
      expect(apart.map(canonical)).toEqual(liveApart.map(canonical));
      expect(apart).toHaveLength(1);
    });
  });
}

wideLookups('DuckDB', async () => {
  const materializer = new DuckDBMaterializer();
  return { materializer, close: () => materializer.close() };
});

// Locally without a server this part is skipped and says why; in CI requirePostgres throws.
describe.skipIf(!pg.available)(`PostgreSQL${pg.reason}`, () => {
  wideLookups('PostgreSQL', async () => {
    const schema = uniqueSchema('wide');
    const materializer = new PostgresMaterializer({ connection: postgresUrl(), schema });
    return {
      materializer,
      close: async () => {
        await materializer.close();
        await dropSchema(schema);
      },
    };
  });
});
