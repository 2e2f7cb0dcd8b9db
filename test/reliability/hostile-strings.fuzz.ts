/**
 * Seeded fuzz: hostile strings (quotes, SQL comments, NUL, lone surrogates, BOMs, `__proto__`,
 * long text, unicode) as parameter values, key values, string values and column names, on both
 * stores. Each is stored and read back exactly, or refused with a FeatureStoreError: never a raw
 * driver error. Seed 20260101; fast-check prints the seed and the shrunk input on failure.
 */
import fc from 'fast-check';
import { FeatureStore, type Materializer } from 'featurefn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { report } from './children.js';
import { exactOrRefused, type Figures, stores } from './stores.js';

const SEED = 20260101;
const hostile = fc.oneof(
  fc.constantFrom(
    "'",
    '"',
    "'; DROP TABLE canary; --",
    '/* x */',
    '--',
    '\0',
    'a\0b',
    '\ud800',
    '\udc00x',
    '\ufeff',
    '\ufeffkey',
    '__proto__',
    'constructor',
    'toString',
    '😀',
    'é'.repeat(40),
    'x'.repeat(1025),
  ),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
);

for (const [name, available, factory] of stores) {
  describe.skipIf(!available)(`hostile strings: ${name}`, () => {
    let materializer: Materializer;
    let cleanup: () => Promise<void>;
    beforeAll(() => {
      ({ materializer, cleanup } = factory());
    });
    afterAll(async () => {
      await cleanup();
    });

    const figures: Figures = { inputs: 0, storedExactly: 0, refused: 0 };
    afterAll(() => report(`hostile strings, ${name}`, figures));

    it('parameter values, key values and string values: stored exactly or refused', async () => {
      await fc.assert(
        fc.asyncProperty(hostile, hostile, hostile, async (param, key, value) => {
          const store = new FeatureStore();
          store.addDecorator(materializer.decorator);
          const f = store.feature({ module: 'fuzz', entity: 'id' }, async function values(_p: { s: string }) {
            return [{ id: key, v: value }];
          });
          await exactOrRefused(figures, async () => {
            const record = await materializer.materialize(f, { s: param });
            expect(record.params).toEqual({ s: param });
            const rows = await store.withParams({ s: param }).getFeatures(f).toArray();
            expect(rows).toEqual([{ id: key, v: value }]);
          });
        }),
        { seed: SEED, numRuns: 40 },
      );
    });

    it('column names: stored exactly or refused', async () => {
      let runs = 0;
      await fc.assert(
        fc.asyncProperty(hostile, async (column) => {
          fc.pre(column !== 'id');
          const store = new FeatureStore();
          store.addDecorator(materializer.decorator);
          const row: Record<string, unknown> = { id: 'k' };
          Object.defineProperty(row, column, {
            value: 1,
            enumerable: true,
            writable: true,
            configurable: true,
          });
          // A feature of its own per input: another column name is otherwise a COLUMNS_CHANGED refusal.
          const name = `columns${runs++}`;
          const f = store.feature({ module: 'fuzz', entity: 'id', name }, async function columns() {
            return [row];
          });
          await exactOrRefused(figures, async () => {
            await materializer.materialize(f);
            const [read] = await store.withParams({}).getFeatures(f).toArray();
            expect(Object.keys(read!)).toEqual(['id', column]);
          });
        }),
        { seed: SEED, numRuns: 40 },
      );
    });
  });
}
