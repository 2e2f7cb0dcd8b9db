import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { describeMaterializer } from './materializer-contract.js';

describeMaterializer('DuckDB in memory, schema "my features"', async () => {
  const materializer = new DuckDBMaterializer({ schema: 'my features' });
  return { materializer, cleanup: () => materializer.close() };
});

// A file named like the default schema: DuckDB names the catalog after the file.
describeMaterializer('DuckDB file featurefn.duckdb', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'featurefn-contract-'));
  const path = join(dir, 'featurefn.duckdb');
  const materializer = new DuckDBMaterializer({ path });
  return {
    materializer,
    another: () => new DuckDBMaterializer({ path }),
    elsewhere: {
      imports: `import { DuckDBMaterializer } from ${JSON.stringify(new URL('../../src/duckdb.ts', import.meta.url).href)};`,
      create: `new DuckDBMaterializer({ path: ${JSON.stringify(path)} })`,
    },
    cleanup: async () => {
      await materializer.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
