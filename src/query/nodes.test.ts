import { describe, expect, it } from 'vitest';
import { FeatureStoreError } from '../errors.js';
import { predicatesOf } from './nodes.js';

describe('filter values', () => {
  it('refuses strings no store can hold (NUL, lone surrogates), naming the column', () => {
    for (const value of ['a\u0000b', '\ud800x', ['ok', 'x\udc00']]) {
      let error: unknown;
      try {
        predicatesOf({ origin: value as string });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(FeatureStoreError);
      expect(error).toMatchObject({ code: 'INVALID_QUERY', details: { column: 'origin' } });
      expect((error as Error).message).not.toMatch(/reachable/);
    }
  });

  it('keeps quotes, comments, BOMs and surrogate pairs as they are', () => {
    const value = "\ufeff'; -- /* 😀";
    expect(predicatesOf({ origin: value })).toEqual([{ kind: 'compare', column: 'origin', op: '=', value }]);
  });
});
