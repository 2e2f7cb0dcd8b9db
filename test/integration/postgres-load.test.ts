import { makeData, makeVector, Table, TimestampMicrosecond, TimestampNanosecond } from 'apache-arrow';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  dropSchema,
  loadArrowTable,
  postgresUrl,
  requirePostgres,
  uniqueSchema,
} from '../support/postgres.js';

const server = await requirePostgres();

function timestamps(type: TimestampMicrosecond | TimestampNanosecond, values: readonly bigint[]) {
  return makeVector(
    makeData({ type, length: values.length, nullCount: 0, data: BigInt64Array.from(values) }),
  );
}

describe.skipIf(!server.available)(`binary COPY of timestamps${server.reason}`, () => {
  const schema = uniqueSchema('load');
  let pool: pg.Pool;
  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: postgresUrl(), max: 1 });
    await pool.query(`CREATE SCHEMA "${schema}"`);
  });
  afterAll(async () => {
    await pool?.end();
    await dropSchema(schema);
  });

  it('stores nanosecond instants rounded down to the microsecond, before and after 1970 and 2000', async () => {
    const y1900 = -2_208_988_800_000_000_000n; // 1900-01-01 in ns
    const y2000 = 946_684_800_000_000_000n;
    const nanos = [-1n, 1n, -1_500n, 1_999n, 999n, y1900 - 1n, y1900 + 1_001n, y2000 - 1n, y2000 + 999n];
    const expected = nanos.map((ns) => ns / 1000n - (ns % 1000n < 0n ? 1n : 0n));
    const micros = expected;
    await loadArrowTable(
      pool,
      schema,
      't',
      new Table({
        ns: timestamps(new TimestampNanosecond(), nanos),
        us: timestamps(new TimestampMicrosecond(), micros),
      }),
    );
    // Epoch microseconds as exact numeric text: no client-side parsing in between.
    const { rows } = await pool.query<{ ns: string; us: string }>(
      `SELECT (extract(epoch FROM ns) * 1000000)::numeric(30,0)::text AS ns,
              (extract(epoch FROM us) * 1000000)::numeric(30,0)::text AS us
       FROM "${schema}".t`,
    );
    expect(rows.map((r) => BigInt(r.ns))).toEqual(expected);
    expect(rows.map((r) => BigInt(r.us))).toEqual(expected);
  });
});
