/**
 * Way 3: nodejs-polars. A filter and a group-by on a DataFrame; returns a DataFrame.
 */
import { feature } from 'featurefn';
import pl from 'nodejs-polars';
import { flightsPolars } from './flights.js';

/** Departures from each airport up to and including `when`. Key `origin`; value `departures`. */
export const departures = feature(
  { module: 'fiveWays.polars', entity: 'origin' },
  async function departures({ when }: { when: Date }) {
    const flights = await flightsPolars();
    return flights
      .filter(pl.col('date').ltEq(pl.lit(when)))
      .groupBy('origin')
      .agg(pl.len().cast(pl.Int64).alias('departures'));
  },
);
