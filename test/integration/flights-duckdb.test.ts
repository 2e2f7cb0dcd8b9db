import { timestampValue } from '@duckdb/node-api';
import { defaultStore, Last, type Row } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { delayRisk, departures, meanDelay7d, routeDelayShare } from '../../examples/flights/features.js';
import { query } from '../../examples/flights/flights-data.js';

/** The demo's features on the real flight records, checked against hand-written SQL. */
describe('flight features on DuckDB', () => {
  const when = new Date('2001-03-15T00:00:00Z');
  const at = timestampValue(BigInt(when.getTime()) * 1000n);
  let materializer: DuckDBMaterializer;

  beforeAll(async () => {
    materializer = new DuckDBMaterializer();
    // The example features live in the default store; vitest isolates each test file's modules.
    defaultStore.addDecorator(materializer.decorator);
    for (const f of [departures, meanDelay7d, routeDelayShare, delayRisk])
      await materializer.materialize(f, { when });
  });

  afterAll(async () => {
    await materializer.close();
  });

  const handWritten = async (sql: string) => (await query(sql, [at])).getRowObjectsJS() as Row[];

  it('departures and 7-day mean delay match hand-written SQL for every airport', async () => {
    const expected = await handWritten(
      `SELECT d.origin, d.departures, m.mean_delay_7d
       FROM (SELECT origin, count(*) AS departures FROM flights WHERE date <= $1 GROUP BY origin) d
       LEFT JOIN (SELECT origin, avg(delay) AS mean_delay_7d FROM flights
                  WHERE date > $1::TIMESTAMP - INTERVAL 7 DAY AND date <= $1 GROUP BY origin) m USING (origin)
       ORDER BY origin`,
    );
    const rows = await defaultStore
      .withParams({ when: Last() })
      .getFeatures(departures, meanDelay7d)
      .toArray();
    expect(rows.length).toBe(expected.length);
    expect(rows.length).toBeGreaterThan(200);
    const byOrigin = new Map(rows.map((r) => [r.origin, r]));
    for (const e of expected) {
      const r = byOrigin.get(e.origin)!;
      expect(r.departures).toBe(Number(e.departures));
      if (e.mean_delay_7d === null) expect(r.mean_delay_7d).toBeNull();
      else expect(r.mean_delay_7d).toBeCloseTo(e.mean_delay_7d as number, 9);
    }
  });

  it('route delay share (composite key) matches hand-written SQL for one airport', async () => {
    const expected = await handWritten(
      `SELECT origin, destination, count(*) AS flights, avg(CASE WHEN delay > 15 THEN 1.0 ELSE 0.0 END) AS delayed_share
       FROM flights WHERE date <= $1 AND origin = 'SFO' GROUP BY origin, destination ORDER BY destination`,
    );
    const rows = await defaultStore
      .withParams({ when: Last() })
      .getFeatures(routeDelayShare)
      .filter({ origin: 'SFO' })
      .toArray();
    rows.sort((a, b) => String(a.destination).localeCompare(String(b.destination)));
    expect(rows.map((r) => r.destination)).toEqual(expected.map((e) => e.destination));
    rows.forEach((r, i) => {
      expect(r.flights).toBe(Number(expected[i]!.flights));
      expect(r.delayed_share).toBeCloseTo(Number(expected[i]!.delayed_share), 9);
    });
  });

  it('the derived feature is served its inputs from the store and stored as rows', async () => {
    const [record] = await materializer.listMaterializations(delayRisk);
    expect(record?.kind).toBe('rows');
    const [sfo] = await defaultStore
      .withParams({ when: Last() })
      .getFeatures(delayRisk)
      .filter({ origin: 'SFO' })
      .toArray();
    const [expected] = await handWritten(
      `WITH d AS (SELECT origin, count(*) AS n FROM flights WHERE date <= $1 GROUP BY origin),
            m AS (SELECT origin, avg(delay) AS mean FROM flights WHERE date > $1::TIMESTAMP - INTERVAL 7 DAY AND date <= $1 GROUP BY origin)
       SELECT m.mean * d.n * 1000 / (SELECT sum(n) FROM d) AS weighted, m.mean FROM d JOIN m USING (origin) WHERE origin = 'SFO'`,
    );
    expect(sfo?.delay_minutes_per_1k).toBeCloseTo(Number(expected!.weighted), 9);
    expect(sfo?.risk).toBe(
      Number(expected!.mean) > 15 ? 'high' : Number(expected!.mean) > 5 ? 'medium' : 'low',
    );
  });

  it('a decorated call of a DuckDB-SQL feature gives back a DuckDB result read from the store', async () => {
    const result = await departures({ when });
    expect(result.constructor.name).toBe('DuckDBResultReader');
    const rows = result.getRowObjectsJS();
    expect(rows.length).toBeGreaterThan(200);
    expect(rows.find((r) => r.origin === 'SFO')?.departures).toBe(
      BigInt(
        Number(
          (await handWritten("SELECT count(*) AS n FROM flights WHERE date <= $1 AND origin = 'SFO'"))[0]!.n,
        ),
      ),
    );
  });
});
