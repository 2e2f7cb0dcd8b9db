/**
 * Crash injection on the PostgreSQL store: a process materializing 50,000 to 110,000-row results
 * into a schema is SIGKILLed at 50 seeded random moments; after each kill (once the server has ended
 * its sessions) a new opener finds every confirmed publication whole, nothing partial, no orphan
 * table, and the next process publishes again.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';
import { report } from './children.js';
import { crashRuns } from './crash-run.js';

const RUNS = Number(process.env.CRASH_RUNS ?? 50);
const pg = await requirePostgres();

describe.skipIf(!pg.available)(`crash injection: PostgreSQL schema${pg.reason}`, () => {
  const schema = uniqueSchema('crash');
  afterAll(() => dropSchema(schema));

  it(`keeps every confirmed publication whole across ${RUNS} SIGKILLs, with no orphan table`, async () => {
    const { figures, violations } = await crashRuns(
      { engine: 'postgres', url: postgresUrl(), schema },
      { runs: RUNS, seed: 9_200 },
    );
    report('crash injection, PostgreSQL', figures);
    expect(violations).toEqual([]);
    expect(figures.kills).toBe(RUNS);
  }, 600_000);
});
