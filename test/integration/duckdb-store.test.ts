import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { FeatureStore } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chunkReads } from '../../src/engines/duckdb/duckdb-vectors.js';
import { type ColumnSpec, columnsOf, tableFromColumns, tableToRows } from '../../src/frame/columns.js';
import { isShapeTable, SHARED_MAX_ROWS, shapeLayoutOf } from '../../src/materializer/shape-table.js';

/**
 * Where materializations' rows are: `m_<id>` for each own table, `<shape table>:<id>` for each id
 * with rows in a shape table (see `shapeLayoutOf`).
 */
async function dataTables(instance: DuckDBInstance): Promise<string[]> {
  const c = await instance.connect();
  try {
    const names = (
      await c.runAndReadAll(
        `SELECT table_name FROM duckdb_tables() WHERE schema_name = 'featurefn' AND regexp_full_match(table_name, '(m|f|s)_[0-9a-f]+') ORDER BY table_name LIKE 'm_%', table_name`,
      )
    )
      .getRows()
      .map((r) => String(r[0]));
    const found: string[] = [];
    for (const name of names) {
      if (!isShapeTable(name)) found.push(name);
      else {
        // The id column is the first; its name depends on the shape's columns.
        const column = (
          await c.runAndReadAll(
            `SELECT column_name FROM duckdb_columns() WHERE schema_name = 'featurefn' AND table_name = '${name}' AND column_index = 1`,
          )
        ).getRows()[0]![0];
        const ids = await c.runAndReadAll(
          `SELECT DISTINCT "${String(column)}" FROM featurefn.${name} ORDER BY 1`,
        );
        found.push(...ids.getRows().map(([id]) => `${name}:${String(id)}`));
      }
    }
    return found;
  } finally {
    c.closeSync();
  }
}

/** Where `dataTables` lists the rows of materialization `id` of `counts` (one row, columns id and v). */
const countsAt = (id: string) =>
  `${
    shapeLayoutOf(
      ['id'],
      [
        { name: 'id', type: 'string' },
        { name: 'v', type: 'int32' },
      ],
    ).table
  }:${id}`;

describe('DuckDB store', () => {
  let instance: DuckDBInstance;
  const store = new FeatureStore();
  let version = 1;
  const counts = store.feature({ module: 'replace', entity: 'id' }, async function counts() {
    return [{ id: 'a', v: version }];
  });

  beforeEach(async () => {
    instance = await DuckDBInstance.create(':memory:');
  });
  afterEach(() => instance.closeSync());

  it('reads toArrow straight from the vectors, giving what toArray gives, over several batches', async () => {
    const materializer = new DuckDBMaterializer({ instance });
    const own = new FeatureStore();
    own.addDecorator(materializer.decorator);
    const wide = own.feature({ module: 'arrow', entity: 'id' }, async function wide() {
      return Array.from({ length: 70_000 }, (_, i) => ({
        id: i,
        x: i % 7 === 0 ? null : i * 1.5,
        s: i % 5 === 0 ? `\ufeff${i}` : `s${i}`,
        e: [i + 0.5, 0.25],
        t: new Date(Date.UTC(2001, 0, 1) + i * 1000),
      }));
    });
    try {
      await materializer.materialize(wide, {});
      const frame = own.withParams({}).getFeatures(wide);
      expect(await frame.explain()).not.toContain('computes live');
      const before = { ...chunkReads };
      const table = await frame.toArrow();
      expect(chunkReads.values - before.values).toBe(0);
      expect(chunkReads.vectors - before.vectors).toBeGreaterThan(0);
      expect(table.batches.length).toBeGreaterThan(1);
      expect(columnsOf(table).map((c) => c.type)).toEqual([
        'int32',
        'float64',
        'string',
        'float64[]',
        'timestamp',
      ]);
      expect(tableToRows(table)).toEqual(await frame.toArray());
    } finally {
      await materializer.close();
    }
  });

  it('stores a small result in its shape’s shared table and a big one in its own, a column named _m included', async () => {
    const materializer = new DuckDBMaterializer({ instance });
    const own = new FeatureStore();
    own.addDecorator(materializer.decorator);
    const sized = own.feature({ module: 'sizes', entity: 'id' }, async function sized({ n }: { n: number }) {
      return Array.from({ length: n }, (_, i) => ({ id: i, _m: `m${i}`, _m_1: i * 2 }));
    });
    try {
      const small = await materializer.materialize(sized, { n: 3 });
      const other = await materializer.materialize(sized, { n: 4 });
      const big = await materializer.materialize(sized, { n: SHARED_MAX_ROWS });
      const layout = shapeLayoutOf(['id'], small.columns);
      const shape = layout.table;
      // Value columns are stored as v1, v2, …: the id column is `_m`, whatever the result's columns are named.
      expect(layout.columns.map((column) => column.name)).toEqual(['id', 'v1', 'v2']);
      expect(layout.idColumn).toBe('_m');
      const c = await instance.connect();
      const stored = (
        await c.runAndReadAll(`SELECT "_m", count(*) FROM featurefn.${shape} GROUP BY ALL ORDER BY 1`)
      ).getRows();
      c.closeSync();
      expect(stored.map(([id, n]) => [String(id), Number(n)])).toEqual([
        [small.id, 3],
        [other.id, 4],
      ]);
      expect(await dataTables(instance)).toEqual([
        `${shape}:${small.id}`,
        `${shape}:${other.id}`,
        `m_${big.id}`,
      ]);
      for (const n of [3, 4]) {
        const rows = await own.withParams({ n }).getFeatures(sized).toArray();
        expect(rows.sort((a, b) => Number(a.id) - Number(b.id))).toEqual(
          Array.from({ length: n }, (_, i) => ({ id: i, _m: `m${i}`, _m_1: i * 2 })),
        );
      }
      const one = await own
        .withParams({ n: SHARED_MAX_ROWS })
        .getFeatures(sized)
        .filter({ id: 49_999 })
        .toArray();
      expect(one).toEqual([{ id: 49_999, _m: 'm49999', _m_1: 99_998 }]);
    } finally {
      await materializer.close();
    }
  });

  it('vacuum() deletes shared rows of retired ids and of ids without a record, then drops the emptied shape table', async () => {
    const materializer = new DuckDBMaterializer({ instance, retainReplaced: 0 });
    const first = await materializer.materialize(counts, {});
    const shape = countsAt(first.id).split(':')[0]!;
    const c = await instance.connect();
    // Rows no record names, as only a damaged store could hold.
    await c.run(`INSERT INTO featurefn.${shape} VALUES (999, 'z', 1)`);
    c.closeSync();
    expect(await dataTables(instance)).toEqual([countsAt(first.id), countsAt('999')]);
    await materializer.vacuum();
    expect(await dataTables(instance)).toEqual([countsAt(first.id)]);
    expect((await materializer.unpublish(first.id))?.id).toBe(first.id);
    await materializer.vacuum();
    expect(await dataTables(instance)).toEqual([]);
    // Published again: the shape table is made again.
    const again = await materializer.materialize(counts, {});
    expect(await dataTables(instance)).toEqual([countsAt(again.id)]);
    await materializer.close();
  });

  it('retire the replaced table and drop it after retainReplaced, at the next publication or vacuum()', async () => {
    const kept = new DuckDBMaterializer({ instance, retainReplaced: '10 minutes' });
    const old = await kept.materialize(counts, {});
    version = 9;
    await kept.materialize(counts, {});
    expect(await dataTables(instance)).toContain(countsAt(old.id));
    expect((await kept.listMaterializations(counts)).map((m) => m.id)).not.toContain(old.id);
    expect((await kept.vacuum()).dropped).toEqual([]);
    await kept.close();
    // A stop before the grace period ran out leaves the retired record: a later open or vacuum drops it.
    expect(await dataTables(instance)).toContain(countsAt(old.id));
    const later = new DuckDBMaterializer({ instance, retainReplaced: 0 });
    await later.vacuum();
    expect(await dataTables(instance)).not.toContain(countsAt(old.id));
    await later.close();
  });

  it('drop the replaced table right after the publication with retainReplaced: 0', async () => {
    const materializer = new DuckDBMaterializer({ instance, retainReplaced: 0 });
    const first = await materializer.materialize(counts, {});
    version = 2;
    const second = await materializer.materialize(counts, {});
    version = 3;
    const third = await materializer.materialize(counts, {});
    expect(await dataTables(instance)).toEqual([countsAt(third.id)]);
    expect([first.id, second.id, third.id]).toEqual(['1', '2', '3']);
    expect((await materializer.listMaterializations(counts)).map((m) => m.id)).toEqual([third.id]);
    await materializer.close();
  });

  it('keep one record and one table when two stores on one database replace the same parameters', async () => {
    const a = new DuckDBMaterializer({ instance, retainReplaced: 0 });
    const b = new DuckDBMaterializer({ instance, retainReplaced: 0 });
    await a.materialize(counts, {});
    await b.listMaterializations(counts); // b's cache now shows a's first table
    version = 2;
    const fromA = await a.materialize(counts, {});
    version = 3;
    // b's cached catalog is behind a's publication: it is read again, so b replaces a's table.
    const fromB = await b.materialize(counts, {});
    expect(await dataTables(instance)).not.toContain(countsAt(fromA.id));
    expect((await a.listMaterializations(counts)).map((m) => m.id)).toEqual([fromB.id]);

    const c = new DuckDBMaterializer({ instance, retainReplaced: 0 });
    expect((await c.listMaterializations(counts)).map((m) => m.id)).toEqual([fromB.id]);
    expect(await dataTables(instance)).toEqual([countsAt(fromB.id)]);
    for (const m of [a, b, c]) await m.close();
  });

  it('writes catalog records whose texts try to break out of SQL quoting, and reads them back after a reopen', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'featurefn-duckdb-'));
    const path = join(dir, 'quotes.duckdb');
    const column = "x'); DROP TABLE featurefn.catalog; --";
    const hostile = "it's'); DELETE FROM featurefn.catalog; --";
    const quoted = store.feature(
      { module: 'replace', entity: 'id' },
      async function quoted(p: { tag: string }) {
        return [{ id: p.tag, [column]: 1 }];
      },
    );
    try {
      const writer = new DuckDBMaterializer({ path });
      const record = await writer.materialize(quoted, { tag: hostile });
      await writer.close();
      const reader = new DuckDBMaterializer({ path });
      const [found] = await reader.listMaterializations(quoted);
      expect(found).toMatchObject({ id: record.id, params: { tag: hostile }, rows: 1 });
      expect(found?.columns.map((c) => c.name)).toEqual(['id', column]);
      expect(found?.createdAt).toEqual(record.createdAt);
      await reader.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps null items inside an Arrow list<float64> column (embeddings)', async () => {
    const materializer = new DuckDBMaterializer({ instance });
    const local = new FeatureStore();
    local.addDecorator(materializer.decorator);
    const rows = [
      { id: 'a', embedding: [1.5, null, 3.5] },
      { id: 'b', embedding: [null] },
      { id: 'c', embedding: null },
    ];
    const columns: ColumnSpec[] = [
      { name: 'id', type: 'string' },
      { name: 'embedding', type: 'float64[]' },
    ];
    const embeddings = local.feature({ module: 'nulls', entity: 'id' }, async function embeddings() {
      return tableFromColumns(columns, [rows.map((r) => r.id), rows.map((r) => r.embedding)]);
    });
    const record = await materializer.materialize(embeddings, {});
    expect(record.columns).toEqual(columns);
    const read = await local
      .withParams({})
      .getFeatures(embeddings)
      .filter({ id: ['a', 'b', 'c'] })
      .toArray();
    expect(read.sort((x, y) => String(x.id).localeCompare(String(y.id)))).toEqual(rows);
    const c = await instance.connect();
    try {
      const stored = await c.runAndReadAll(
        `SELECT id, list_count(v1) AS n FROM featurefn.${shapeLayoutOf(['id'], columns).table}
         WHERE "_m" = ${record.id} ORDER BY id`,
      );
      expect(stored.getRowObjectsJS().map((r) => r.n)).toEqual([2n, 0n, null]);
    } finally {
      c.closeSync();
    }
    await materializer.close();
  });

  it('binds catalog texts: parameters with control characters, quotes and backslashes come back exact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'featurefn-duckdb-'));
    const path = join(dir, 'bound.duckdb');
    const tag = "a\u0001b'\\n\u0007; --";
    const tagged = store.feature(
      { module: 'bound', entity: 'id' },
      async function tagged(p: { tag: string }) {
        return [{ id: `x${p.tag}`, "v'\\n\u0007": 1 }];
      },
    );
    try {
      const writer = new DuckDBMaterializer({ path });
      await writer.materialize(tagged, { tag });
      await writer.close();
      const reader = new DuckDBMaterializer({ path });
      const [found] = await reader.listMaterializations(tagged);
      expect(found?.params).toEqual({ tag });
      expect(found?.columns.map((c) => c.name)).toEqual(['id', "v'\\n\u0007"]);
      await reader.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
