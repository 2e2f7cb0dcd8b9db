import { describe, expect, it } from 'vitest';
import { OnlineCache } from './online-cache.js';

describe('OnlineCache', () => {
  it('keeps the most recently used entries up to maxEntries and counts hits and misses', () => {
    const cache = new OnlineCache({ maxEntries: 4 });
    cache.set('f', 'm1', ['a'], { v: 1 });
    cache.set('f', 'm1', ['b'], null);
    cache.set('f', 'm1', ['c'], { v: 3 });
    expect(cache.get('f', 'm1', ['a'])).toEqual({ v: 1 });
    cache.set('f', 'm1', ['d'], { v: 4 });
    cache.set('f', 'm1', ['e'], { v: 5 });
    // 'b' was the least recently used: it went; 'a', read since, stayed.
    expect(cache.get('f', 'm1', ['b'])).toBeUndefined();
    expect(cache.get('f', 'm1', ['a'])).toEqual({ v: 1 });
    expect(cache.stats()).toEqual({ hits: 2, misses: 1, entries: 3 });
    // A cached null (no row) is told apart from a miss; 5 and 5n are one key.
    cache.set('f', 'm2', [5n], null);
    expect(cache.get('f', 'm2', [5])).toBeNull();
    expect(cache.stats().entries).toBeLessThanOrEqual(4);
  });

  it('forgets one materialization, and keys of other features or ids never collide', () => {
    const cache = new OnlineCache();
    cache.set('f', 'm1', ['x'], { v: 1 });
    cache.set('f', 'm10', ['x'], { v: 2 });
    cache.set('f1', 'm1', ['x'], { v: 3 });
    cache.forget('f', 'm1');
    expect(cache.get('f', 'm1', ['x'])).toBeUndefined();
    expect(cache.get('f', 'm10', ['x'])).toEqual({ v: 2 });
    expect(cache.get('f1', 'm1', ['x'])).toEqual({ v: 3 });
  });

  it('serves a hit in well under 10 µs', () => {
    const cache = new OnlineCache({ maxEntries: 20_000 });
    for (let i = 0; i < 10_000; i++) cache.set('f', 'm', [`user_${i}`], { v: i });
    const keys = Array.from({ length: 10_000 }, (_, i) => [`user_${i}`]);
    const n = 200_000;
    const started = performance.now();
    for (let i = 0; i < n; i++) cache.get('f', 'm', keys[i % 10_000]!);
    const microseconds = ((performance.now() - started) / n) * 1000;
    expect(cache.stats().hits).toBe(n);
    expect(microseconds).toBeLessThan(10);
  });
});
