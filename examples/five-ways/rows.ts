/**
 * Way 1: rows. Plain TypeScript over an array of flight objects; returns an array of rows.
 */
import { feature } from 'featurefn';
import { flightRows } from './flights.js';

/** Departures from each airport up to and including `when`. Key `origin`; value `departures`. */
export const departures = feature(
  { module: 'fiveWays.rows', entity: 'origin' },
  async function departures({ when }: { when: Date }) {
    const flights = await flightRows();
    const counts = new Map<string, number>();
    for (const f of flights) if (f.date <= when) counts.set(f.origin, (counts.get(f.origin) ?? 0) + 1);
    return [...counts].map(([origin, departures]) => ({ origin, departures }));
  },
);
