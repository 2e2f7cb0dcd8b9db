import { describe, expect, it } from 'vitest';
import { canonicalParams } from '../feature/params.js';
import { AsOf, Last, resolveParams, takenNames } from './resolvers.js';

const day = (d: number) => new Date(Date.UTC(2001, 2, d));
const at = (params: Record<string, Date | string>, createdAt = day(30)) => ({
  paramsKey: canonicalParams(params),
  createdAt,
});

describe('resolveParams', () => {
  it('resolves a parameter across features that take different parameter sets', () => {
    const resolution = resolveParams({ when: Last(), app: 'ios' }, [
      {
        feature: 'f.departures',
        materializations: [at({ when: day(1) }), at({ when: day(2) }), at({ when: day(3) })],
      },
      {
        feature: 'a.opens',
        materializations: [at({ when: day(2), app: 'ios' }), at({ when: day(3), app: 'web' })],
      },
    ]);
    expect(resolution?.params).toEqual({ when: day(2), app: 'ios' });
    expect(resolution?.keys).toEqual([
      canonicalParams({ when: day(2) }),
      canonicalParams({ when: day(2), app: 'ios' }),
    ]);
  });

  it('takes the names all of a feature’s materializations share, and none when nothing is stored', () => {
    expect(
      takenNames([canonicalParams({ when: day(1), app: 'x' }), canonicalParams({ when: day(2) })]),
    ).toEqual(new Set(['when']));
    expect(takenNames([])).toBeUndefined();
  });

  it('measures maxAge from now: the edge is admitted, a millisecond more is not', () => {
    const now = day(10).getTime();
    const available = [{ feature: 'f.x', materializations: [at({ when: day(8) })] }];
    expect(resolveParams({ when: Last({ maxAge: '2 days' }) }, available, now)?.expiresAt).toBe(now);
    expect(() => resolveParams({ when: Last({ maxAge: '2 days' }) }, available, now + 1)).toThrow(
      expect.objectContaining({ code: 'TOO_OLD' }),
    );
    expect(() => resolveParams({ when: AsOf(day(9), { maxAge: '1 day' }) }, available, now)).toThrow(
      /2001-03-08T00:00:00.000Z, 2 days old, but when allows at most 1 day/,
    );
  });

  it('refuses a parameter no feature takes, naming the closest', () => {
    const available = [{ feature: 'f.x', materializations: [at({ when: day(8) })] }];
    expect(() => resolveParams({ Wehn: day(8) }, available)).toThrow(
      expect.objectContaining({
        code: 'UNKNOWN_PARAMETER',
        message: expect.stringContaining('Did you mean `when`?'),
      }),
    );
    // Nothing materialized for a feature: its parameters are unknown, so nothing is refused.
    expect(
      resolveParams({ app: 'x' }, [...available, { feature: 'f.y', materializations: [] }]),
    ).toBeUndefined();
  });
});
