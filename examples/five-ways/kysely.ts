/**
 * Way 5: Kysely on PostgreSQL. Returns a type-checked Kysely select query, not yet run.
 */
import { feature } from 'featurefn';
import { flightsPostgres } from './flights.js';

/** Departures from each airport up to and including `when`. Key `origin`; value `departures`. */
export const departures = feature(
  { module: 'fiveWays.kysely', entity: 'origin' },
  async function departures({ when }: { when: Date }) {
    const db = await flightsPostgres();
    return db
      .selectFrom('flights')
      .select((eb) => ['origin', eb.cast<number>(eb.fn.countAll(), 'integer').as('departures')])
      .where('date', '<=', when)
      .groupBy('origin');
  },
);
