/**
 * Flight features: what a data scientist writes. Plain functions of `when` over the flight
 * records; no store, no materializer. Three compute with SQL in DuckDB, one combines two others
 * with ordinary TypeScript.
 */
import { timestampValue } from '@duckdb/node-api';
import { feature } from 'featurefn';
import { query } from './flights-data.js';

const at = (when: Date) => timestampValue(BigInt(when.getTime()) * 1000n);

/**
 * Departures from each airport up to the instant `when` (a midnight `when` leaves that day out).
 * Key `origin`; value `departures`.
 */
export const departures = feature(
  {
    module: 'flights',
    entity: 'origin',
    description: 'Departures from each airport up to the instant `when`.',
    maintainer: 'Flight Ops <ops@example.com>',
    status: 'production',
    tags: ['airport'],
  },
  async function departures({ when }: { when: Date }) {
    return query('SELECT origin, count(*) AS departures FROM flights WHERE date <= $1 GROUP BY origin', [
      at(when),
    ]);
  },
);

/**
 * Mean departure delay (minutes) of each airport over the 7 days before `when`.
 * Key `origin`; value `mean_delay_7d`.
 */
export const meanDelay7d = feature(
  {
    module: 'flights',
    entity: 'origin',
    description: 'Mean departure delay in minutes over the 7 days up to `when`.',
    status: 'production',
    tags: ['airport', 'delay'],
  },
  async function meanDelay7d({ when }: { when: Date }) {
    return query(
      `SELECT origin, avg(delay) AS mean_delay_7d
       FROM flights WHERE date > $1::TIMESTAMP - INTERVAL 7 DAY AND date <= $1
       GROUP BY origin`,
      [at(when)],
    );
  },
);

/**
 * Share of each route's flights up to `when` that left more than 15 minutes late.
 * Key `origin, destination`; values `flights`, `delayed_share`.
 */
export const routeDelayShare = feature(
  {
    module: 'flights',
    entity: ['origin', 'destination'],
    description: 'Share of a route’s flights up to `when` delayed by more than 15 minutes.',
    status: 'experimental',
    tags: ['route', 'delay'],
  },
  async function routeDelayShare({ when }: { when: Date }) {
    return query(
      `SELECT origin, destination, count(*) AS flights, avg(CASE WHEN delay > 15 THEN 1.0 ELSE 0.0 END) AS delayed_share
       FROM flights WHERE date <= $1
       GROUP BY origin, destination`,
      [at(when)],
    );
  },
);

/**
 * Derived: each airport's recent mean delay weighted by how busy it is, as rows.
 * Calls `departures` and `meanDelay7d`; when those are materialized, the calls are served from
 * the store. Key `origin`; values `delay_minutes_per_1k`, `risk`.
 */
export const delayRisk = feature(
  {
    module: 'flights',
    entity: 'origin',
    description: 'Recent mean delay weighted by traffic, with a low/medium/high label.',
    status: 'experimental',
    tags: ['airport', 'delay', 'derived'],
  },
  async function delayRisk({ when }: { when: Date }) {
    const [counts, delays] = await Promise.all([departures({ when }), meanDelay7d({ when })]);
    const countRows = rowsOf(counts);
    const total = countRows.reduce((sum, r) => sum + Number(r.departures), 0);
    const meanByOrigin = new Map(rowsOf(delays).map((r) => [r.origin as string, Number(r.mean_delay_7d)]));
    return countRows
      .filter((r) => meanByOrigin.has(r.origin as string))
      .map((r) => {
        const mean = meanByOrigin.get(r.origin as string)!;
        const weighted = (mean * Number(r.departures) * 1000) / total;
        return {
          origin: r.origin as string,
          delay_minutes_per_1k: weighted,
          risk: mean > 15 ? 'high' : mean > 5 ? 'medium' : 'low',
        };
      });
  },
);

/** Rows of a DuckDB result, whichever way it was produced. */
function rowsOf(result: { getRowObjectsJS(): Record<string, unknown>[] }): Record<string, unknown>[] {
  return result.getRowObjectsJS();
}
