/**
 * Way 2: Apache Arrow. Reads the columns of an Arrow table batch by batch; returns an Arrow table.
 */
import { tableFromArrays } from 'apache-arrow';
import { feature } from 'featurefn';
import { flightsArrow } from './flights.js';

/** Departures from each airport up to and including `when`. Key `origin`; value `departures`. */
export const departures = feature(
  { module: 'fiveWays.arrow', entity: 'origin' },
  async function departures({ when }: { when: Date }) {
    const flights = await flightsArrow();
    const until = BigInt(when.getTime()); // `date` is a millisecond timestamp
    const counts = new Map<string, number>();
    for (const batch of flights.batches) {
      const dates = batch.getChild('date')!.data[0]!.values as BigInt64Array;
      const origins = batch.getChild('origin')!;
      for (let i = 0; i < batch.numRows; i++) {
        if (dates[i]! > until) continue;
        const origin = origins.get(i) as string;
        counts.set(origin, (counts.get(origin) ?? 0) + 1);
      }
    }
    return tableFromArrays({ origin: [...counts.keys()], departures: Int32Array.from(counts.values()) });
  },
);
