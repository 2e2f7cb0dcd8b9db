/**
 * Way 5, variant: SQL on PostgreSQL with the `sql` tag of a PostgreSQL source. A store on the same
 * database materializes it inside PostgreSQL (`CREATE TABLE … AS`), where a Kysely query's rows
 * pass through Node.
 */
import { feature } from 'featurefn';
import { flightsPostgresSource, postgresFlightsSchema } from './flights.js';

/** Departures from each airport up to and including `when`. Key `origin`; value `departures`. */
export const departures = feature(
  { module: 'fiveWays.postgresSql', entity: 'origin' },
  async function departures({ when }: { when: Date }) {
    const db = await flightsPostgresSource();
    const flights = db.sql.id(postgresFlightsSchema(), 'flights');
    return db.sql`SELECT origin, count(*)::int AS departures FROM ${flights} WHERE date <= ${when} GROUP BY origin`;
  },
);
