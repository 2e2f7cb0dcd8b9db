/**
 * How PostgreSQL tests find their server. The URL comes from `FEATUREFN_PG_URL`, default
 * `postgres://postgres@127.0.0.1:5432/test`. Each test works in a schema of its own and drops it.
 * In CI (`CI=true`) an unreachable server fails the run; locally the tests are skipped and say why.
 */
import { randomBytes } from 'node:crypto';
import type { Table } from 'apache-arrow';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { POSTGRES_SQL_TYPES } from '../../src/engines/postgres/dialect.js';
import { copyBatches } from '../../src/engines/postgres/load.js';
import { type ColumnSpec, columnsOf } from '../../src/frame/columns.js';
import { shapeLayoutAt } from '../../src/materializer/shape-table.js';

/** The server the PostgreSQL tests use. */
export function postgresUrl(): string {
  return process.env.FEATUREFN_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
}

/** A fresh schema name, `t_<pid>_<random>`: unique per test, safe to drop. */
export function uniqueSchema(prefix = 't'): string {
  return `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`;
}

/** Whether the server answered, and if not, why. */
export interface PostgresAvailability {
  readonly available: boolean;
  /** Why the tests are skipped (empty when available). */
  readonly reason: string;
  readonly url: string;
}

/**
 * Checks that the server answers. In CI a missing server throws, which fails the test file; locally
 * the result says to skip, with the reason, for `describe.skipIf(!pg.available)`.
 *
 * ### Example
 * ```ts
 * const pg = await requirePostgres();
 * describe.skipIf(!pg.available)(`postgres store${pg.reason}`, () => { ... });
 * ```
 */
export async function requirePostgres(): Promise<PostgresAvailability> {
  const url = postgresUrl();
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return { available: true, reason: '', url };
  } catch (error) {
    const message =
      error instanceof Error ? error.message || String((error as { code?: unknown }).code) : String(error);
    if (process.env.CI === 'true') {
      throw new Error(
        `PostgreSQL is required in CI but ${url} is unreachable: ${message}. Set FEATUREFN_PG_URL.`,
      );
    }
    return {
      available: false,
      reason: ` (skipped: no PostgreSQL at ${url}: ${message}; start one or set FEATUREFN_PG_URL)`,
      url,
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A plain client on the test server, for setting up and inspecting what the store did. */
export async function adminClient(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: postgresUrl() });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** Drops a test schema and everything in it. */
export async function dropSchema(schema: string): Promise<void> {
  const client = await adminClient();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema.replaceAll('"', '""')}" CASCADE`);
  } finally {
    await client.end();
  }
}

/** Loads an Arrow table into a new table `schema.name`, the way the PostgreSQL store loads one (binary COPY). */
export async function loadArrowTable(
  pool: pg.Pool,
  schema: string,
  name: string,
  table: Table,
): Promise<void> {
  const columns = columnsOf(table);
  const client = await pool.connect();
  try {
    const definition = columns.map((c) => `"${c.name}" ${POSTGRES_SQL_TYPES[c.type]}`).join(', ');
    await client.query(`CREATE TABLE "${schema}"."${name}" (${definition})`);
    const copy = client.query(copyFrom(`COPY "${schema}"."${name}" FROM STDIN (FORMAT binary)`));
    await copyBatches(
      copy,
      columns,
      (async function* () {
        yield* table.batches;
      })(),
    );
  } finally {
    client.release();
  }
}

/**
 * Where a PostgreSQL store keeps one materialization's rows, read around featurefn: the quoted
 * table (`m_<id>`, or the shape table it shares) and, for a shape table, its id column; `rows` is a
 * FROM item (aliased `alias`) giving just that materialization's rows and columns.
 */
export async function storedRowsOf(
  client: pg.Client,
  schema: string,
  id: string,
  alias = 'm',
): Promise<{ table: string; idColumn: string | undefined; rows: string }> {
  const { rows } = await client.query<{ stored_in: string; key: string[]; columns: ColumnSpec[] }>({
    text: `SELECT stored_in, key_columns AS key, "columns" FROM "${schema}".catalog WHERE id = $1`,
    values: [id],
  });
  const { stored_in: storedIn, key, columns } = rows[0]!;
  const table = `"${schema}"."${storedIn}"`;
  if (storedIn === `m_${id}`) return { table, idColumn: undefined, rows: `${table} AS ${alias}` };
  const { rows: first } = await client.query<{ name: string }>({
    text: 'SELECT attname AS name FROM pg_attribute WHERE attrelid = $1::regclass AND attnum = 1',
    values: [table],
  });
  const idColumn = first[0]!.name;
  // A shared table names value columns v1, v2, … (see shapeLayoutOf): each is given its own name back.
  const { names: stored } = shapeLayoutAt(storedIn, key, columns);
  const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;
  const names = columns
    .map((c) => (stored.has(c.name) ? `${quote(stored.get(c.name)!)} AS ${quote(c.name)}` : quote(c.name)))
    .join(', ');
  return {
    table,
    idColumn,
    rows: `(SELECT ${names} FROM ${table} WHERE "${idColumn}" = ${BigInt(id)}) AS ${alias}`,
  };
}
