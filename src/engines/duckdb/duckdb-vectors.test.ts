import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { type RecordBatch, Table } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { columnsOf, tableFromColumns, tableToRows } from '../../frame/columns.js';
import { readDuckDBColumns } from './duckdb-columns.js';
import { duckdbBatches } from './duckdb-stream.js';
import { chunkReads } from './duckdb-vectors.js';

/**
 * The vector reader must give exactly what the driver's values give (the reference path,
 * `readDuckDBColumns`), for every type and layout: nulls anywhere, chunks of odd sizes (a filter
 * makes them), inline and out-of-line strings, lists with null items, and batch boundaries.
 */
describe('DuckDB chunks read from vector memory', () => {
  let instance: DuckDBInstance;
  let connection: DuckDBConnection;

  beforeAll(async () => {
    instance = await DuckDBInstance.create(':memory:');
    connection = await instance.connect();
    await connection.run(`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`);
  });
  afterAll(() => {
    connection.closeSync();
    instance.closeSync();
  });

  it('takes the vector path for streamed and fully read results, never the values path', async () => {
    const sql = 'SELECT i, i::VARCHAR AS s, [i, 1.5]::DOUBLE[] AS e FROM range(5000) t(i)';
    const before = { ...chunkReads };
    let rows = 0;
    for await (const batch of duckdbBatches(await connection.stream(sql))) rows += batch.numRows;
    for await (const batch of duckdbBatches(await connection.runAndReadAll(sql))) rows += batch.numRows;
    expect(rows).toBe(10_000);
    expect(chunkReads.values - before.values).toBe(0);
    expect(chunkReads.vectors - before.vectors).toBeGreaterThanOrEqual(4);
  });

  async function bothWays(
    sql: string,
    rowsPerBatch = 65_536,
  ): Promise<{ fast: Table; batches: RecordBatch[] }> {
    const batches: RecordBatch[] = [];
    for await (const batch of duckdbBatches(await connection.stream(sql), rowsPerBatch)) batches.push(batch);
    const fast = new Table(batches);
    const { columns, values } = await readDuckDBColumns(await connection.runAndReadAll(sql));
    const reference = tableFromColumns(columns, values);
    expect(columnsOf(fast)).toEqual(columnsOf(reference));
    expect(tableToRows(fast)).toEqual(tableToRows(reference));
    // A materialized reader (`runAndReadAll`) goes through the same vector reader.
    const read: RecordBatch[] = [];
    for await (const batch of duckdbBatches(await connection.runAndReadAll(sql), rowsPerBatch))
      read.push(batch);
    expect(columnsOf(new Table(read))).toEqual(columnsOf(reference));
    expect(tableToRows(new Table(read))).toEqual(tableToRows(reference));
    return { fast, batches };
  }

  it('reads every fixed-width type, with nulls in odd places', async () => {
    const { fast } = await bothWays(`
      SELECT (i % 256 - 128)::TINYINT AS i1, (i * 7 - 30000)::SMALLINT AS i2, (i * 104729 - 2^31 + 5)::INTEGER AS i4,
             (i * 982451653 * 1000003 - 2^62)::BIGINT AS i8, (i % 256)::UTINYINT AS u1, (i * 13)::USMALLINT AS u2,
             (i * 800003)::UINTEGER AS u4, (i / 7)::FLOAT AS f4, (i / 7)::DOUBLE AS f8, i % 3 = 0 AS b,
             (DATE '1900-01-01' + (i * 11)::INTEGER)::DATE AS d
      FROM (SELECT CASE WHEN i % 17 = 3 THEN NULL ELSE i END AS i FROM range(5000) t(i))`);
    expect(fast.numRows).toBe(5000);
  });

  it('reads timestamps of every unit, before and after 1970, rounding down to the millisecond', async () => {
    await bothWays(`
      SELECT TIMESTAMP '1969-12-31 23:59:59.9985' + to_microseconds(i * 1234567) AS us,
             (TIMESTAMP '1969-12-31 23:59:59.9985' + to_microseconds(i * 1234567))::TIMESTAMPTZ AS tz,
             (TIMESTAMP '1950-06-01' + to_hours(i))::TIMESTAMP_S AS s,
             (TIMESTAMP '1969-12-31 23:59:59.9985' + to_milliseconds(i))::TIMESTAMP_MS AS ms,
             ('1969-12-31 23:59:59.9999995'::TIMESTAMP_NS + to_seconds(i))::TIMESTAMP_NS AS ns,
             CASE WHEN i % 5 = 0 THEN NULL ELSE TIMESTAMP '2262-01-01' END AS far,
             TIMESTAMP '0044-03-15 12:00:00' AS ancient
      FROM range(3000) t(i)`);
  });

  it('reads inline and out-of-line strings, JSON, enums and all-null columns', async () => {
    const { fast } = await bothWays(`
      SELECT CASE WHEN i % 9 = 0 THEN NULL ELSE repeat('é', i % 20) || i END AS s,
             'exactly12byt' AS twelve, 'thirteen bytes' AS thirteen, '' AS empty,
             json_object('k', i, 'v', json_array(i, 'x')) AS j, (['sad', 'ok', 'happy'])[1 + i % 3]::mood AS m,
             NULL AS nothing
      FROM range(4100) t(i)`);
    expect(fast.getChild('s')!.get(1)).toBe('é1');
  });

  it('reads numeric lists as float64[], with null lists and null items', async () => {
    await bothWays(`
      SELECT CASE WHEN i % 7 = 0 THEN NULL ELSE [i * 0.5, NULL, -i]::DOUBLE[] END AS d,
             [i, i + 1]::INTEGER[] AS ints, [i * 1e12]::BIGINT[] AS bigs, [i / 3]::FLOAT[] AS floats,
             CASE WHEN i % 3 = 0 THEN []::DOUBLE[] ELSE [1.0]::DOUBLE[] END AS maybe_empty
      FROM range(2500) t(i)`);
  });

  it('reads decimals of every width', async () => {
    await bothWays(`
      SELECT (i / 100)::DECIMAL(4, 2) AS w4, (i * 12345 / 1000)::DECIMAL(9, 3) AS w9,
             (i * 123456789012 / 10000)::DECIMAL(18, 4) AS w18, (i * 1.5)::DECIMAL(38, 10) AS w38,
             CASE WHEN i % 4 = 0 THEN NULL ELSE -i END::DECIMAL(18, 0) AS neg
      FROM range(3000) t(i)`);
  });

  it('keeps 64-bit integers beyond 2^53 exact, and refuses what int64 cannot hold', async () => {
    await bothWays(`SELECT 9007199254740993::BIGINT AS big, '-9223372036854775808'::BIGINT AS min,
                           4294967295::UINTEGER AS u4, 12::UBIGINT AS ub, 170141183460469231731687303715884105::HUGEINT // 10^20 AS huge`);
    await expect(bothWays('SELECT 18446744073709551615::UBIGINT AS u')).rejects.toThrow(
      /64-bit signed integer/,
    );
  });

  it('gathers chunks of odd sizes into batches of the requested size', async () => {
    const { fast, batches } = await bothWays(
      `SELECT i, 'row ' || i AS label, CASE WHEN i % 2 = 0 THEN NULL ELSE i * 1.5 END AS x
       FROM range(20000) t(i) WHERE i % 3 <> 0 OR i % 1000 < 500`,
      3000,
    );
    expect(batches.length).toBeGreaterThan(3);
    for (const batch of batches.slice(0, -1)) expect(batch.numRows).toBeGreaterThanOrEqual(3000);
    expect(fast.numRows).toBe(batches.reduce((n, b) => n + b.numRows, 0));
  });

  it('gives one empty batch, with the column types, for an empty result', async () => {
    const batches: RecordBatch[] = [];
    const sql = "SELECT 1 AS x, 'a' AS s WHERE false";
    for await (const batch of duckdbBatches(await connection.stream(sql))) batches.push(batch);
    for await (const batch of duckdbBatches(await connection.runAndReadAll(sql))) batches.push(batch);
    expect(batches.map((b) => b.numRows)).toEqual([0, 0]);
    expect(batches[1]!.schema).toEqual(batches[0]!.schema);
    expect(batches[0]!.schema.fields.map((f) => [f.name, String(f.type)])).toEqual([
      ['x', 'Int32'],
      ['s', 'Utf8'],
    ]);
  });
});
