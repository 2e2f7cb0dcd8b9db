/**
 * Exact round trips that fail today in the DuckDB store's row reads (`runRead` in
 * src/materializer/duckdb/duckdb-materializer.ts), outside this suite's files: rows are built with
 * `row[name] = …`, which drops a `__proto__` column, and strings come from apache-arrow's
 * `Vector.get`, whose module-level `TextDecoder` drops a leading U+FEFF. PostgreSQL passes both.
 * Run by `npm run test:reliability`, not by `npm test`, until the DuckDB store reads rows with
 * `tableToRows` (src/frame/columns.ts), which keeps both.
 */
import { FeatureStore, type Materializer } from 'featurefn';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stores } from './stores.js';

for (const [name, available, factory] of stores) {
  describe.skipIf(!available)(`exact row reads: ${name}`, () => {
    let materializer: Materializer;
    let cleanup: () => Promise<void>;
    let store: FeatureStore;

    beforeEach(() => {
      ({ materializer, cleanup } = factory());
      store = new FeatureStore();
      store.addDecorator(materializer.decorator);
    });
    afterEach(async () => {
      await cleanup();
    });

    it('stores __proto__ as a column name and reads it back', async () => {
      const f = store.feature({ module: 'hostile', entity: 'id' }, async function proto() {
        return [JSON.parse('{"id": "k", "__proto__": 7}') as Record<string, unknown>];
      });
      await materializer.materialize(f);
      const [row] = await store.withParams({}).getFeatures(f).toArray();
      expect(Object.keys(row!)).toEqual(['id', '__proto__']);
      expect(Object.getOwnPropertyDescriptor(row, '__proto__')?.value).toBe(7);
    });

    it('keeps a leading U+FEFF and paired surrogates in keys and values', async () => {
      const f = store.feature({ module: 'hostile', entity: 'id' }, async function bom() {
        return [{ id: '\ufeffk', v: '\ufeff😀' }];
      });
      await materializer.materialize(f);
      expect(await store.withParams({}).getFeatures(f).toArray()).toEqual([{ id: '\ufeffk', v: '\ufeff😀' }]);
    });
  });
}
