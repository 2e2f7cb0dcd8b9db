import { describe, expect, it } from 'vitest';
import { parseDuration } from './duration.js';
import { FeatureStoreError } from './errors.js';

describe('parseDuration', () => {
  it.each([
    ['2 days', 172_800_000],
    ['30 minutes', 1_800_000],
    ['1 hour', 3_600_000],
    ['500 ms', 500],
    ['1.5h', 5_400_000],
    ['  10 Seconds ', 10_000],
    ['1 week', 604_800_000],
    [1500, 1500],
    [0, 0],
  ] as const)('reads %j as %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each([
    '',
    '2',
    'days',
    '-1 day',
    '1 hour 30 minutes',
    '1 month',
    '1e3 ms',
    '2 dayz',
    -5,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    '1000000 days',
  ])('refuses %j, naming it and the option', (value) => {
    let error: unknown;
    try {
      parseDuration(value, 'timeout');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FeatureStoreError);
    expect((error as FeatureStoreError).code).toBe('INVALID_DURATION');
    expect((error as FeatureStoreError).message).toMatch(/^timeout is .* which is not a duration/);
  });

  it('refuses values that are not numbers or strings', () => {
    expect(() => parseDuration(null as never)).toThrow(/duration is null/);
  });
});
