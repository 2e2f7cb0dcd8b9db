import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { describeMaterializer } from './materializer-contract.js';

describeMaterializer('DuckDB in memory', async () => {
  const materializer = new DuckDBMaterializer();
  return { materializer, cleanup: () => materializer.close() };
});

describeMaterializer('DuckDB file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'featurefn-contract-'));
  const materializer = new DuckDBMaterializer({ path: join(dir, 'store.duckdb'), schema: 'features' });
  return {
    materializer,
    cleanup: async () => {
      await materializer.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
