import { DuckDBInstance } from '@duckdb/node-api';
import type { Table } from 'apache-arrow';
import { duckdbSource } from 'featurefn/duckdb';
import { postgresSource } from 'featurefn/postgres';
import pg from 'pg';
import { afterAll, beforeAll, describe } from 'vitest';
import { columnDefinitions, quoteIdentifier } from '../../src/engines/duckdb/duckdb-dialect.js';
import { appendBatches } from '../../src/engines/duckdb/duckdb-load.js';
import { columnsOf } from '../../src/frame/columns.js';
import { sqlAdapter } from '../../src/frame/sql/sql-adapter.js';
import {
  dropSchema,
  loadArrowTable,
  postgresUrl,
  requirePostgres,
  uniqueSchema,
} from '../support/postgres.js';
import { describeFrameAdapter } from './frame-adapter-contract.js';

/**
 * SQL features: a frame is a query made with a source's `sql` tag. fromArrow is what a store does
 * when it reads a SQL feature back: the rows stored in a table of its database, selected by a
 * query on that database.
 */
describe('SQL queries on DuckDB', () => {
  let instance: DuckDBInstance;
  let tables = 0;
  beforeAll(async () => {
    instance = await DuckDBInstance.create(':memory:');
  });
  afterAll(() => instance.closeSync());

  async function load(table: Table) {
    const name = `t_${++tables}`;
    const columns = columnsOf(table);
    const c = await instance.connect();
    try {
      const definition = columnDefinitions(columns);
      await c.run(`CREATE TABLE ${quoteIdentifier(name)} (${definition})`);
      await appendBatches(c, { schema: 'main', name }, columns, table.batches);
    } finally {
      c.closeSync();
    }
    const db = duckdbSource(instance);
    return db.sql`SELECT * FROM ${db.sql.id(name)} ORDER BY id`;
  }

  describeFrameAdapter('sql (DuckDB)', {
    adapter: { ...sqlAdapter, fromArrow: load },
    make: load,
  });
});

const server = await requirePostgres();

describe.skipIf(!server.available)(`SQL queries on PostgreSQL${server.reason}`, () => {
  const schema = uniqueSchema('sqlcontract');
  let pool: pg.Pool;
  let tables = 0;
  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: postgresUrl(), max: 2 });
    pool.on('error', () => undefined);
    await pool.query(`CREATE SCHEMA "${schema}"`);
  });
  afterAll(async () => {
    await pool?.end();
    await dropSchema(schema);
  });

  async function load(table: Table) {
    const name = `t_${++tables}`;
    await loadArrowTable(pool, schema, name, table);
    const db = postgresSource(pool);
    return db.sql`SELECT * FROM ${db.sql.id(schema, name)} ORDER BY id`;
  }

  const noTinyint =
    'PostgreSQL has no 1-byte integer: an int8 column is stored and read back as int16 (smallint); every value is kept';
  describeFrameAdapter('sql (PostgreSQL)', {
    adapter: { ...sqlAdapter, fromArrow: load },
    make: load,
    skip: {
      'fromArrow then toArrow keeps the column types': noTinyint,
      'an empty frame keeps its columns': noTinyint,
    },
  });
});
