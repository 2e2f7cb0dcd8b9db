import { describe, expect, it } from 'vitest';
import { canonicalParams, decodeParams } from './params.js';

describe('canonical parameters', () => {
  it('ignore key order and compare Dates by instant', () => {
    const a = canonicalParams({ when: new Date('2001-03-01T00:00:00Z'), app: 'web' });
    const b = canonicalParams({ app: 'web', when: new Date(Date.UTC(2001, 2, 1)) });
    expect(a).toBe(b);
  });

  it('distinguish a Date from its ISO string, and numbers from numeric strings', () => {
    expect(canonicalParams({ when: new Date(0) })).not.toBe(
      canonicalParams({ when: new Date(0).toISOString() }),
    );
    expect(canonicalParams({ n: 1 })).not.toBe(canonicalParams({ n: '1' }));
    expect(canonicalParams({ n: -0 })).toBe(canonicalParams({ n: 0 }));
  });

  it('round-trip through decodeParams', () => {
    const params = { when: new Date('2001-03-01T00:00:00Z'), app: 'web', n: 1.5, late: false };
    expect(decodeParams(canonicalParams(params))).toEqual(params);
    expect(canonicalParams(undefined)).toBe('[]');
  });

  it('refuse values a store cannot key, naming the parameter', () => {
    expect(() => canonicalParams({ when: { at: 1 } }, 'f.x')).toThrow(
      /Feature "f.x" with parameters { when: a plain object }: parameter "when" is a plain object/,
    );
    expect(() => canonicalParams({ n: Number.NaN })).toThrow(/parameter "n" is the number NaN/);
    expect(() => canonicalParams({ d: new Date('nope') })).toThrow(/invalid Date/);
    expect(() => canonicalParams({ x: undefined })).toThrow(/parameter "x" is undefined/);
    expect(() => canonicalParams([1, 2])).toThrow(/must be one object/);
    expect(() => canonicalParams({ n: 1n })).toThrow(/bigint/);
  });
});
