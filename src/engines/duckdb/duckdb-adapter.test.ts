import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { describe, expect, it } from 'vitest';
import { sharedOnSuccess } from './duckdb-adapter.js';

describe('the scratch DuckDB of DuckDB results', () => {
  it('tries again after its creation failed, then shares the database it made', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'featurefn-scratch-'));
    const missing = join(dir, 'not-yet');
    let attempts = 0;
    const scratch = sharedOnSuccess(() => {
      attempts++;
      return DuckDBInstance.create(join(missing, 'scratch.duckdb'));
    });
    try {
      await expect(scratch()).rejects.toThrow();
      mkdirSync(missing);
      const instance = await scratch();
      expect(await scratch()).toBe(instance);
      expect(attempts).toBe(2);
      instance.closeSync();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
