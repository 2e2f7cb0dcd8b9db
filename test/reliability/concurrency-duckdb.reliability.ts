/**
 * Concurrency on DuckDB. A DuckDB file is open in one process at a time, so this runs in one: three
 * writers materialize the workload through the process's store (two of them the same features and
 * parameters at the same moments, one other points in time) while three readers, each with a
 * feature registry of its own, resolve `Last()` over both features in a loop. Every read is one
 * point in time with the values published for it, never earlier than a previous read; no reader
 * fails except with "nothing materialized yet"; every reader ends on the latest point; and a fresh
 * opener finds one confirmed publication per feature and parameters, whole.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FeatureStore } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { afterAll, describe, expect, it } from 'vitest';
import { report } from './children.js';
import { checkStore } from './crash-run.js';
import { readLast } from './last-reader.js';
import { DAYS, registerWorkload, whenOf } from './workload.js';

const SCALE = 0.1; // 5,000 to 11,000 rows a result: many publications in a few seconds

describe('concurrency: DuckDB writers and readers in one process', () => {
  const dir = mkdtempSync(join(tmpdir(), 'featurefn-conc-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('3 writers and 3 readers: every read consistent, nothing lost', async () => {
    const path = join(dir, 'store.duckdb');
    const materializer = new DuckDBMaterializer({ path });
    const readerStores = [0, 1, 2].map(() => {
      const store = new FeatureStore();
      store.config.onMissing = 'error';
      const features = registerWorkload(store, SCALE);
      store.addDecorator(materializer.decorator);
      return { store, features };
    });
    const latest = DAYS.length - 1;
    let writing = true;
    const caughtUp = new Set<number>();
    const readers = readerStores.map(({ store, features }, n) =>
      readLast(
        store,
        features,
        () => !writing && caughtUp.has(n),
        SCALE,
        (day) => {
          if (day === latest) caughtUp.add(n);
        },
      ),
    );

    const writerStore = new FeatureStore();
    const features = registerWorkload(writerStore, SCALE);
    writerStore.addDecorator(materializer.decorator);
    const confirmed = new Map<string, Set<bigint>>();
    const writer = async (first: number) => {
      for (let i = 0; i < DAYS.length * 2; i++) {
        const day = (first + Math.floor(i / 2)) % DAYS.length;
        const name = i % 2 === 0 ? 'alpha' : 'beta';
        const record = await materializer.materialize(features[name], { when: whenOf(day) });
        const pair = `${name}/${day}`;
        if (!confirmed.has(pair)) confirmed.set(pair, new Set());
        confirmed.get(pair)!.add(BigInt(record.id));
      }
    };
    // Writers 0 and 1 publish the same pairs at the same moments; writer 2 starts three days later.
    const writers = await Promise.allSettled([writer(0), writer(0), writer(3)]);
    writing = false;
    const deadline = setTimeout(() => {
      for (let n = 0; n < readers.length; n++) caughtUp.add(n);
    }, 60_000);
    const figures = await Promise.all(readers);
    clearTimeout(deadline);
    await materializer.close();

    const result = await checkStore({ engine: 'duckdb', path }, new Map(), new Set(confirmed.keys()), SCALE);
    const lost = [...confirmed].filter(([pair, ids]) => !ids.has(result.present.get(pair) ?? -1n));
    report('concurrency, DuckDB', {
      writers: writers.length,
      readers: readers.length,
      publications: [...confirmed.values()].reduce((n, ids) => n + ids.size, 0),
      reads: figures.reduce((n, f) => n + f.reads, 0),
      nothingYet: figures.reduce((n, f) => n + f.nothingYet, 0),
      violations:
        figures.reduce((n, f) => n + f.violations.length, 0) + result.violations.length + lost.length,
    });
    expect(writers.filter((w) => w.status === 'rejected')).toEqual([]);
    expect(figures.flatMap((f) => f.violations)).toEqual([]);
    expect(figures.map((f) => f.days.at(-1))).toEqual([latest, latest, latest]);
    expect(result.violations).toEqual([]);
    expect(lost).toEqual([]);
  }, 300_000);
});
