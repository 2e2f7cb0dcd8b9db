import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tableToRows } from '../../frame/columns.js';
import { duckdbAdapter } from './duckdb-adapter.js';

describe('DuckDB results as Arrow', () => {
  let instance: DuckDBInstance;
  const read = async (sql: string) => {
    const connection = await instance.connect();
    try {
      return await duckdbAdapter.toArrow(await connection.runAndReadAll(sql));
    } finally {
      connection.closeSync();
    }
  };

  beforeAll(async () => {
    instance = await DuckDBInstance.create(':memory:');
  });

  afterAll(() => {
    instance.closeSync();
  });

  it('rounds sub-millisecond timestamps before 1970 down, as DuckDB casts to TIMESTAMP_MS do', async () => {
    const table = await read(
      `SELECT '1969-12-31 23:59:59.9985'::TIMESTAMP AS us,
              '1969-12-31 23:59:59.9999995'::TIMESTAMP_NS AS ns,
              '1969-12-31 23:59:59.9985'::TIMESTAMP::TIMESTAMP_MS AS ms`,
    );
    const [row] = tableToRows(table);
    expect(row).toEqual({
      us: new Date('1969-12-31T23:59:59.998Z'),
      ns: new Date('1969-12-31T23:59:59.999Z'),
      ms: new Date('1969-12-31T23:59:59.998Z'),
    });
  });

  it('refuses UBIGINT and HUGEINT values beyond 64 bits instead of wrapping them to -1', async () => {
    await expect(read('SELECT 18446744073709551615::UBIGINT AS u')).rejects.toThrow(
      /column "u" holds the bigint 18446744073709551615/,
    );
    await expect(read('SELECT (2::HUGEINT ** 70)::HUGEINT AS h')).rejects.toMatchObject({
      code: 'UNSUPPORTED_RESULT',
    });
    // Values that fit are kept exactly.
    const table = await read('SELECT 9223372036854775807::UBIGINT AS u, 5::HUGEINT AS h');
    expect(tableToRows(table)).toEqual([{ u: 2n ** 63n - 1n, h: 5 }]);
  });
});
