import type { Table } from 'apache-arrow';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kyselyAdapter } from '../../src/frame/kysely/kysely-adapter.js';
import {
  dropSchema,
  loadArrowTable,
  postgresUrl,
  requirePostgres,
  uniqueSchema,
} from '../support/postgres.js';
import { describeFrameAdapter, sampleTable } from './frame-adapter-contract.js';

const server = await requirePostgres();

type Tables = Record<string, Record<string, unknown>>;

/**
 * Parsers a Kysely user sets on the pool to get featurefn's values back: 64-bit integers as
 * numbers (bigints beyond 2^53), float4 as the stored float, dates as UTC midnight.
 */
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    switch (oid) {
      case pg.types.builtins.INT8:
        return (text: string) => (Number.isSafeInteger(Number(text)) ? Number(text) : BigInt(text));
      case pg.types.builtins.FLOAT4:
        return (text: string) => Math.fround(Number(text));
      case pg.types.builtins.DATE:
        return (text: string) => new Date(`${text}T00:00:00Z`);
      default:
        return pg.types.getTypeParser(oid, format ?? 'text');
    }
  },
} as pg.CustomTypesConfig;

describe.skipIf(!server.available)(`Kysely on PostgreSQL${server.reason}`, () => {
  const schema = uniqueSchema('kysely');
  let pool: pg.Pool;
  let db: Kysely<Tables>;
  let tables = 0;

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: postgresUrl(), max: 2, types });
    pool.on('error', () => undefined);
    db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) });
    await pool.query(`CREATE SCHEMA "${schema}"`);
  });
  afterAll(async () => {
    await db?.destroy(); // ends the pool
    await dropSchema(schema);
  });

  /** The Arrow table loaded into a table of its own (as the PostgreSQL store loads one), selected with Kysely. */
  async function load(table: Table) {
    const name = `t_${++tables}`;
    await loadArrowTable(pool, schema, name, table);
    return db.withSchema(schema).selectFrom(name).selectAll().orderBy('id');
  }

  describeFrameAdapter('kysely', {
    // fromArrow as the PostgreSQL store reads a Kysely feature back: a query over a stored table.
    // (Other stores give the rows; see the unit test below.)
    adapter: { ...kyselyAdapter, fromArrow: load },
    make: load,
    skip: {
      'fromArrow then toArrow keeps the column types':
        'Kysely gives row objects, whose column types are inferred from the values: int8/int16 widen to int32, float32 to float64, dates read as timestamps (every value is kept)',
      'toBatches concatenate to toArrow':
        'Kysely queries are run with execute(), which gives every row at once; the adapter has no toBatches',
      'an empty frame keeps its columns':
        'execute() of a query with no rows gives an empty array, without columns',
    },
  });

  it('recognises select queries only, by shape', () => {
    expect(kyselyAdapter.canAdapt(db.selectFrom('x').selectAll())).toBe(true);
    expect(kyselyAdapter.canAdapt(db.insertInto('x').values({ a: 1 }))).toBe(false);
    expect(kyselyAdapter.canAdapt(db.deleteFrom('x'))).toBe(false);
    expect(
      kyselyAdapter.canAdapt({ compile() {}, execute() {}, toOperationNode: () => ({ kind: 'RawNode' }) }),
    ).toBe(false);
  });

  it('reads a query back as the rows execute() gives, outside PostgreSQL', async () => {
    const table = sampleTable(['int32', 'string', 'json', 'float64[]'], 10, 7);
    const query = await load(table);
    const rows = await query.execute();
    const back = await kyselyAdapter.fromArrow(await kyselyAdapter.toArrow(query));
    expect(back).toEqual(rows);
  });
});
