import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { FeatureStore } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { afterAll, describe, expect, it } from 'vitest';
import { inspectStore, orphans } from '../reliability/inspect.js';

const fixture = join(import.meta.dirname, 'fixtures', 'duckdb-crash-writer.ts');

describe('DuckDB store after a crash mid-load', () => {
  const dir = mkdtempSync(join(tmpdir(), 'featurefn-crash-'));
  const path = join(dir, 'store.duckdb');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps no partial data, and the next run publishes normally', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, path], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += String(d);
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        if (String(d).includes('loading')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`writer exited early (${code}): ${stderr}`)));
    });
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('exit', resolve));

    // What a reader sees: the good materialization only, and no stray data tables.
    const instance = await DuckDBInstance.create(path);
    const connection = await instance.connect();
    const tables = (
      await connection.runAndReadAll(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'featurefn' ORDER BY 1",
      )
    )
      .getRows()
      .map(([name]) => name);
    const catalog = (
      await connection.runAndReadAll('SELECT id, feature_name, stored_in FROM featurefn.catalog')
    ).getRowObjectsJS();
    connection.closeSync();
    instance.closeSync();
    expect(catalog.map((r) => r.feature_name)).toEqual(['crash.good']);
    // Its few rows are in its shape's shared table; the killed load left no table of its own.
    expect(String(catalog[0]!.stored_in)).toMatch(/^s_[0-9a-f]{16}$/);
    expect(tables).toEqual(['catalog', 'features', 'meta', 'retired', String(catalog[0]!.stored_in)]);
    expect(orphans(await inspectStore({ engine: 'duckdb', path }))).toEqual([]);

    const materializer = new DuckDBMaterializer({ path });
    try {
      expect((await materializer.listMaterializations('crash.slow')).length).toBe(0);
      const store = new FeatureStore();
      const slow = store.feature({ module: 'crash', entity: 'origin' }, async function slow() {
        return [{ origin: 'SFO', n: 2 }];
      });
      const record = await materializer.materialize(slow, {});
      expect(record.rows).toBe(1);
      expect((await materializer.listMaterializations('crash.good')).length).toBe(1);
    } finally {
      await materializer.close();
    }
  });
});
