import { describe, expect, it } from 'vitest';
import type { FeatureStoreError } from '../errors.js';
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

describe('hostile parameters', () => {
  const refusal = (params: unknown) => {
    try {
      canonicalParams(params, 'f.x');
    } catch (error) {
      return error as FeatureStoreError;
    }
    throw new Error('accepted');
  };

  it('keep __proto__ and constructor as parameter names', () => {
    const params = JSON.parse('{"__proto__": "a", "constructor": "b"}') as Record<string, string>;
    const decoded = decodeParams(canonicalParams(params));
    expect(Object.keys(decoded)).toEqual(['__proto__', 'constructor']);
    expect(Object.getOwnPropertyDescriptor(decoded, '__proto__')?.value).toBe('a');
    expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
  });

  it('refuse lone surrogates and NUL in names and values, naming the parameter', () => {
    for (const [params, pattern] of [
      [
        { app: 'a\ud800' },
        /parameter "app" is a string that holds a lone UTF-16 surrogate \(\\ud800\) at position 1/,
      ],
      [{ app: '\udc00' }, /lone UTF-16 surrogate \(\\udc00\) at position 0/],
      [{ app: 'a\0b' }, /parameter "app" is a string that holds a NUL character/],
      [{ 'a\0': 1 }, /parameter name "a\\u0000" holds a NUL character/],
      [{ '\ud800': 1 }, /parameter name "\\ud800" holds a lone UTF-16 surrogate/],
    ] as const) {
      const error = refusal(params);
      expect(error.code).toBe('UNSUPPORTED_PARAMETER');
      expect(error.message).toMatch(pattern);
    }
    // Paired surrogates are ordinary text.
    expect(decodeParams(canonicalParams({ app: '😀\ufeff' }))).toEqual({ app: '😀\ufeff' });
  });

  it('refuse strings over 1,024 characters without echoing them', () => {
    expect(decodeParams(canonicalParams({ s: 'x'.repeat(1024) }))).toEqual({ s: 'x'.repeat(1024) });
    const error = refusal({ s: 'y'.repeat(5000) });
    expect(error.code).toBe('UNSUPPORTED_PARAMETER');
    expect(error.message).toMatch(/has 5000 characters; at most 1024 are stored/);
    expect(error.message.length).toBeLessThan(500);
    const long = refusal({ ['n'.repeat(2000)]: 1 });
    expect(long.message).toMatch(/has 2000 characters/);
    expect(long.message.length).toBeLessThan(500);
  });

  it('refuse a key over 2,048 bytes made of several parameters', () => {
    const error = refusal({ a: 'é'.repeat(600), b: 'é'.repeat(600) });
    expect(error.message).toMatch(/take \d+ bytes as a key; at most 2048/);
    expect(error.message.length).toBeLessThan(700);
  });
});
