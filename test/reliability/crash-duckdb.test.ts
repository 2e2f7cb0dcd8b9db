/**
 * Crash injection on the DuckDB store: a process materializing 50,000 to 110,000-row results into a
 * file is SIGKILLed at 50 seeded random moments; after each kill a new process opens the file and
 * finds every confirmed publication whole, nothing partial, no orphan table, and publishes again.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { report } from './children.js';
import { crashRuns } from './crash-run.js';

const RUNS = Number(process.env.CRASH_RUNS ?? 50);

describe('crash injection: DuckDB file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'featurefn-crash-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it(`keeps every confirmed publication whole across ${RUNS} SIGKILLs, with no orphan table`, async () => {
    const path = join(dir, 'store.duckdb');
    const { figures, violations } = await crashRuns(
      { engine: 'duckdb', path },
      {
        runs: RUNS,
        seed: 9_100,
      },
    );
    report('crash injection, DuckDB', { ...figures, fileMB: (statSync(path).size / 2 ** 20).toFixed(1) });
    expect(violations).toEqual([]);
    expect(figures.kills).toBe(RUNS);
  }, 600_000);
});
