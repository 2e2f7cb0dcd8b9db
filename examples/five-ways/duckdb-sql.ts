/**
 * Way 4: DuckDB SQL. Returns a query with the `sql` tag of a DuckDB source; `when` is bound, never
 * spliced into the text.
 */
import { feature } from 'featurefn';
import { flightsSource } from './flights.js';

/** Departures from each airport up to and including `when`. Key `origin`; value `departures`. */
export const departures = feature(
  { module: 'fiveWays.duckdbSql', entity: 'origin' },
  async function departures({ when }: { when: Date }) {
    const flights = await flightsSource();
    return flights.sql`SELECT origin, count(*) AS departures FROM flights WHERE date <= ${when} GROUP BY origin`;
  },
);
