/**
 * Hostile input on both stores: each value is stored and read back exactly, or refused before it
 * reaches a driver with a FeatureStoreError naming it; `timeout` ends a call that never settles.
 */
import { type RecordBatch, tableFromArrays } from 'apache-arrow';
import { FeatureStore, FeatureStoreError, type Materializer } from 'featurefn';
import { PostgresMaterializer } from 'featurefn/postgres';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqlQuery, type SqlSource } from '../../src/sql/sql-query.js';
import { postgresUrl } from '../support/postgres.js';
import { pg, refusal, stores } from './stores.js';

for (const [name, available, factory] of stores) {
  describe.skipIf(!available)(`hostile input: ${name}`, () => {
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

    const echo = () =>
      store.feature({ module: 'hostile', entity: 'id' }, async function echo(p: Record<string, unknown>) {
        return [{ id: 'k', n: Object.keys(p).length }];
      });

    it('refuses NUL and lone surrogates in parameter names and values before the driver, naming them', async () => {
      const f = echo();
      for (const [params, pattern] of [
        [{ s: 'a\0b' }, /parameter "s" is a string that holds a NUL character/],
        [{ s: 'a\ud800' }, /parameter "s" is a string that holds a lone UTF-16 surrogate/],
        [{ 'a\0': 'x' }, /parameter name "a\\u0000" holds a NUL/],
      ] as const) {
        const error = await refusal(materializer.materialize(f, params));
        expect(error.code).toBe('UNSUPPORTED_PARAMETER');
        expect(error.message).toMatch(pattern);
      }
      expect(await materializer.listMaterializations(f)).toEqual([]);
    });

    it('takes a 1,024-character parameter string and refuses a longer one without echoing it', async () => {
      const f = echo();
      const record = await materializer.materialize(f, { s: 'x'.repeat(1024) });
      expect(record.params).toEqual({ s: 'x'.repeat(1024) });
      const error = await refusal(materializer.materialize(f, { s: 'y'.repeat(3000) }));
      expect(error.code).toBe('UNSUPPORTED_PARAMETER');
      expect(error.message).toMatch(/3000 characters; at most 1024/);
      expect(error.message.length).toBeLessThan(600);
    });

    it('stores __proto__ and constructor as parameter names exactly', async () => {
      const f = echo();
      const params = JSON.parse('{"__proto__": "p", "constructor": "c"}') as Record<string, string>;
      await materializer.materialize(f, params);
      const [record] = await materializer.listMaterializations(f);
      expect(Object.keys(record!.params)).toEqual(['__proto__', 'constructor']);
      expect(Object.getOwnPropertyDescriptor(record!.params, '__proto__')?.value).toBe('p');
    });

    it('refuses NUL and lone surrogates in column names and string values, naming them', async () => {
      store.config.interactive = true;
      for (const [rows, code, pattern] of [
        [[{ id: 'k', 'a\0b': 1 }], 'UNSUPPORTED_RESULT', /column name "a\\u0000b" holds a NUL/],
        [[{ id: 'k', 'a\udc00': 1 }], 'UNSUPPORTED_RESULT', /column name "a\\udc00" holds a lone UTF-16/],
        [[{ id: 'a\0b' }], 'INVALID_VALUE', /column "id": the string "a\\u0000b" holds a NUL/],
        [[{ id: 'k', v: '\ud800' }], 'INVALID_VALUE', /column "v": the string "\\ud800" holds a lone/],
        [[{ id: 'k', at: new Date(Number.NaN) }], 'INVALID_VALUE', /column "at" holds an invalid Date/],
      ] as const) {
        const f = store.feature({ module: 'hostile', entity: 'id' }, async function bad() {
          return rows;
        });
        const error = await refusal(materializer.materialize(f));
        expect(error.code).toBe(code);
        expect(error.message).toMatch(pattern);
        expect(error.feature).toBe('hostile.bad');
      }
    });

    it('ends a function that never settles with TIMEOUT, naming feature, params and duration', async () => {
      const f = store.feature({ module: 'hostile', entity: 'id' }, function never(_p: { s: string }) {
        return new Promise<{ id: string }[]>(() => {});
      });
      const started = Date.now();
      const error = await refusal(materializer.materialize(f, { s: 'x' }, { timeout: '200 ms' }));
      expect(Date.now() - started).toBeLessThan(5000);
      expect(error.code).toBe('TIMEOUT');
      expect(error.message).toMatch(
        /^Feature "hostile.never" with parameters \{ s: "x" \}: it did not finish within 200 ms .*Nothing was stored/,
      );
      expect(await materializer.listMaterializations(f)).toEqual([]);
    });

    it('ends a load whose result stream stalls, with the materializer’s timeout, storing nothing', async () => {
      await cleanup();
      ({ materializer, cleanup } = factory({ timeout: 300 }));
      const batch = tableFromArrays({ id: ['a', 'b'] }).batches[0]!;
      const stalled: SqlSource = {
        dialect: 'duckdb',
        database: {},
        sql: undefined as never,
        async *stream(): AsyncIterable<RecordBatch> {
          yield batch;
          await new Promise(() => {});
        },
      };
      const f = store.feature({ module: 'hostile', entity: 'id' }, async function stalls() {
        return new SqlQuery(stalled, ['SELECT 1'], []);
      });
      const error = await refusal(materializer.materialize(f));
      expect(error.code).toBe('TIMEOUT');
      expect(error.message).toMatch(/within 300 ms/);
      expect(await materializer.listMaterializations(f)).toEqual([]);
      // The store still works afterwards.
      const ok = echo();
      expect((await materializer.materialize(ok, { s: 'y' }, { timeout: '1 minute' })).rows).toBe(1);
    });

    it('refuses a timeout that is not a duration', async () => {
      const error = await refusal(materializer.materialize(echo(), {}, { timeout: 'soon' }));
      expect(error.code).toBe('INVALID_DURATION');
      expect(() => factory({ timeout: '3 months' })).toThrow(/timeout is the string "3 months"/);
    });

    it('refuses an invalid Date parameter naming the parameter, in materialize and in reads', async () => {
      const f = echo();
      const error = await refusal(materializer.materialize(f, { when: new Date(Number.NaN) }));
      expect(error.code).toBe('UNSUPPORTED_PARAMETER');
      expect(error.message).toMatch(/parameter "when" is an invalid Date/);
      await materializer.materialize(f, { when: new Date(Date.UTC(2001, 2, 1)) });
      const read = await refusal(
        Promise.resolve().then(() =>
          store
            .withParams({ when: new Date(Number.NaN) })
            .getFeatures(f)
            .toArray(),
        ),
      );
      expect(read.code).toBe('UNSUPPORTED_PARAMETER');
      expect(read.message).toMatch(/"when"/);
      expect(read.message).not.toMatch(/BigInt/);
    });
  });
}

describe.skipIf(!pg.available)(`hostile schema names: PostgreSQL${pg.reason}`, () => {
  it('refuses an empty schema name, one with a NUL and one too long with INVALID_SCHEMA, at construction', () => {
    for (const schema of ['', 'a\0b', 'x'.repeat(64)]) {
      let error: unknown;
      try {
        new PostgresMaterializer({ connection: postgresUrl(), schema });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(FeatureStoreError);
      expect((error as FeatureStoreError).code).toBe('INVALID_SCHEMA');
    }
  });
});
