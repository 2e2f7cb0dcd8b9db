/**
 * Several DuckDBMaterializers on one file in one process: every publication of each survives a
 * reopen, opening them at the same moment on a new file works, and their first uses together
 * raise no raw DuckDB error. Bad schema names and paths are refused at construction.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { FeatureStore, Last } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { refusal } from './stores.js';

const day = (d: number) => new Date(Date.UTC(2001, 2, d));

describe('DuckDB: materializers sharing one file', () => {
  let dir: string;
  let path: string;
  const store = new FeatureStore();
  const counts = store.feature(
    { module: 'shared', entity: 'id' },
    async function counts({ when }: { when: Date }) {
      return [{ id: 'a', day: when.getUTCDate() }];
    },
  );

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'featurefn-shared-'));
    path = join(dir, 'store.duckdb');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  for (const n of [2, 4]) {
    it(`keeps all 20 interleaved publications of ${n} materializers after a reopen`, async () => {
      const materializers = Array.from({ length: n }, () => new DuckDBMaterializer({ path }));
      // Interleaved: each publication through the next materializer, all at once.
      const records = await Promise.all(
        Array.from({ length: 20 }, (_, i) => materializers[i % n]!.materialize(counts, { when: day(i + 1) })),
      );
      expect(new Set(records.map((r) => r.id)).size).toBe(20);
      for (const m of materializers) await m.close();

      const reopened = new DuckDBMaterializer({ path });
      try {
        const listed = await reopened.listMaterializations(counts);
        expect(listed.map((m) => m.params.when)).toEqual(Array.from({ length: 20 }, (_, i) => day(i + 1)));
        const reader = new FeatureStore();
        const again = reader.feature(
          { module: 'shared', entity: 'id' },
          async function counts(_: { when: Date }) {
            return [] as { id: string; day: number }[];
          },
        );
        reader.config.onStale = 'serve';
        reader.addDecorator(reopened.decorator);
        for (let d = 1; d <= 20; d++) {
          expect(
            await reader
              .withParams({ when: day(d) })
              .getFeatures(again)
              .toArray(),
          ).toEqual([{ id: 'a', day: d }]);
        }
        expect(await reader.withParams({ when: Last() }).getFeatures(again).toArray()).toEqual([
          { id: 'a', day: 20 },
        ]);
      } finally {
        await reopened.close();
      }
    });
  }

  it('opens two materializers at the same moment on a new file', async () => {
    const a = new DuckDBMaterializer({ path });
    const b = new DuckDBMaterializer({ path });
    const [x, y] = await Promise.all([
      a.materialize(counts, { when: day(1) }),
      b.materialize(counts, { when: day(2) }),
    ]);
    expect(x.id).not.toBe(y.id);
    expect((await b.listMaterializations(counts)).length).toBe(2);
    await a.close();
    // The file stays open for the one still using it.
    expect((await b.materialize(counts, { when: day(3) })).rows).toBe(1);
    await b.close();
  });

  for (const shared of ['path', 'instance'] as const)
    it(`gives no raw DuckDB error when four materializers on one ${shared} are first used together`, async () => {
      const instance = shared === 'instance' ? await DuckDBInstance.create(path) : undefined;
      const materializers = Array.from(
        { length: 4 },
        () => new DuckDBMaterializer(instance === undefined ? { path } : { instance }),
      );
      const calls = materializers.flatMap((m, i) =>
        Array.from({ length: 20 }, (_, j) =>
          j % 2 === 0
            ? m.materialize(counts, { when: day(1 + ((i * 20 + j) % 28)) })
            : m.listMaterializations(counts),
        ),
      );
      const outcomes = await Promise.allSettled(calls);
      for (const m of materializers) await m.close();
      instance?.closeSync();
      expect(outcomes.filter((o) => o.status === 'rejected').map((o) => String(o.reason))).toEqual([]);
    });

  it('keeps ids counted per schema, whatever quotes and dots the schema name holds', async () => {
    const schema = `we"ird.sch'ema; --`;
    const a = new DuckDBMaterializer({ path, schema });
    const b = new DuckDBMaterializer({ path });
    const ids = await Promise.all([
      a.materialize(counts, { when: day(1) }),
      b.materialize(counts, { when: day(1) }),
      a.materialize(counts, { when: day(2) }),
    ]);
    expect(ids.map((r) => r.rows)).toEqual([1, 1, 1]);
    await a.close();
    await b.close();
    const reopened = new DuckDBMaterializer({ path, schema });
    expect((await reopened.listMaterializations(counts)).length).toBe(2);
    await reopened.close();
  });

  it('refuses an empty schema name and one with a NUL with INVALID_SCHEMA, at construction', async () => {
    for (const schema of ['', 'a\0b']) {
      const error = await refusal(Promise.resolve().then(() => new DuckDBMaterializer({ path, schema })));
      expect(error.code).toBe('INVALID_SCHEMA');
      expect(error.details).toEqual({ schema });
    }
  });

  it('refuses a NUL in the path with INVALID_PATH instead of opening the file named by its start', async () => {
    const error = await refusal(
      Promise.resolve().then(() => new DuckDBMaterializer({ path: `${path}\0.other` })),
    );
    expect(error.code).toBe('INVALID_PATH');
    expect(error.message).toMatch(/NUL/);
  });
});
