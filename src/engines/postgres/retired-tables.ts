import type { ClientBase, Pool } from 'pg';
import { SHAPE_TABLE_PATTERN } from '../../materializer/shape-table.js';
import { quoteIdentifier } from './dialect.js';
import { isServerError } from './failure.js';
import { Transaction } from './transaction.js';

/**
 * Replaced data tables are not dropped by the publication that replaces them: dropping takes an
 * ACCESS EXCLUSIVE lock, which would wait behind every reader still on the old table and queue
 * every new reader behind itself. The publication records them in `<schema>.retired` instead, and
 * they are dropped later, once retired longer than a grace period, each in a short transaction
 * that gives up after {@link DROP_LOCK_TIMEOUT} (and is tried again next time).
 * @internal
 */
export const DROP_LOCK_TIMEOUT = '100ms';

/** A retired materialization: its id and the table its rows are in (`m_<id>` or a shape table). @internal */
export interface RetiredEntry {
  readonly id: string;
  readonly storedIn: string;
}

/** Creates `<schema>.retired` if missing (stores made before it existed are upgraded in place). @internal */
export async function ensureRetiredTable(pool: Pool, schema: string): Promise<void> {
  const table = retiredTable(schema);
  const { rows } = await pool.query<{ found: boolean }>({
    text: 'SELECT to_regclass($1) IS NOT NULL AS found',
    values: [table],
  });
  if (rows[0]?.found === true) return;
  const transaction = await Transaction.begin(await pool.connect());
  try {
    // The same lock as the schema's creation: two processes upgrading at once would collide.
    await transaction.client.query({
      text: 'SELECT pg_advisory_xact_lock(hashtext($1), 0)',
      values: [`featurefn:${schema}`],
    });
    await transaction.client.query(
      `CREATE TABLE IF NOT EXISTS ${table} (id bigint PRIMARY KEY, retired_at timestamptz NOT NULL, stored_in text NOT NULL)`,
    );
    await transaction.commit();
  } finally {
    await transaction.end();
  }
}

/**
 * Catalog format 3, inside the upgrade's transaction: the retired list records where each
 * retired materialization's rows are; every id retired before lived in its own table. @internal
 */
export async function upgradeRetiredTable(client: ClientBase, schema: string): Promise<void> {
  const table = retiredTable(schema);
  const { rows } = await client.query<{ found: boolean }>({
    text: 'SELECT to_regclass($1) IS NOT NULL AS found',
    values: [table],
  });
  if (rows[0]?.found !== true) return; // created later with the column
  await client.query(`ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS stored_in text`);
  await client.query(`UPDATE ${table} SET stored_in = 'm_' || id WHERE stored_in IS NULL`);
  await client.query(`ALTER TABLE ${table} ALTER COLUMN stored_in SET NOT NULL`);
}

/** Records replaced materializations as retired, inside the publishing transaction. @internal */
export async function retireTables(
  client: ClientBase,
  schema: string,
  entries: readonly RetiredEntry[],
): Promise<void> {
  if (entries.length === 0) return;
  await client.query({
    text: `INSERT INTO ${retiredTable(schema)} (id, retired_at, stored_in)
           SELECT unnest($1::bigint[]), clock_timestamp(), unnest($2::text[]) ON CONFLICT (id) DO NOTHING`,
    values: [entries.map((e) => e.id), entries.map((e) => e.storedIn)],
  });
}

/** What {@link dropRetiredTables} did. @internal */
export interface DropResult {
  /** Ids whose own table was dropped or whose shared rows were deleted. */
  dropped: string[];
  /** Ids whose own table a reader still held: tried again next time. */
  busy: string[];
  /** Shape tables rows were deleted from (worth a `VACUUM`). */
  shared: string[];
}

/**
 * Removes the rows of materializations retired more than `graceMs` ago (by the server's clock):
 * an own table is dropped, each in its own transaction with a short lock timeout (a table still
 * in use is left for the next time); rows in a shape table are deleted (no heavy lock, so no
 * reader waits). With `sweep`, first retires every data table with neither a catalog record nor
 * a retired one (so it goes after the grace period too), and deletes shape-table rows of ids
 * with neither: only a damaged store has them, as a publication's rows and its record commit
 * together. The sweep reads the schema's tables, so it runs in `vacuum()`, not per publication.
 * @internal
 */
export async function dropRetiredTables(
  pool: Pool,
  schema: string,
  graceMs: number,
  options: { sweep?: boolean } = {},
): Promise<DropResult> {
  const retired = retiredTable(schema);
  const result: DropResult = { dropped: [], busy: [], shared: [] };
  if (options.sweep === true) result.shared.push(...(await sweepOrphans(pool, schema)));
  const { rows } = await pool.query<{ id: string; stored_in: string }>({
    text: `SELECT id::text AS id, stored_in FROM ${retired}
           WHERE retired_at <= clock_timestamp() - $1 * interval '1 millisecond' ORDER BY id`,
    values: [graceMs],
  });
  const shared = new Map<string, string[]>();
  for (const { id, stored_in: storedIn } of rows) {
    if (storedIn !== `m_${id}`) {
      const ids = shared.get(storedIn);
      if (ids === undefined) shared.set(storedIn, [id]);
      else ids.push(id);
      continue;
    }
    const transaction = await Transaction.begin(
      await pool.connect(),
      ` SET LOCAL lock_timeout = '${DROP_LOCK_TIMEOUT}'`,
    );
    try {
      await transaction.client.query(
        `DROP TABLE IF EXISTS ${quoteIdentifier(schema)}.${quoteIdentifier(storedIn)}`,
      );
      await transaction.client.query({ text: `DELETE FROM ${retired} WHERE id = $1`, values: [id] });
      await transaction.commit();
      result.dropped.push(id);
    } catch (error) {
      // 55P03: a reader still holds the table; it is dropped on a later try.
      if (!isServerError(error, '55P03')) throw error;
      result.busy.push(id);
    } finally {
      await transaction.end();
    }
  }
  for (const [table, ids] of shared) {
    const transaction = await Transaction.begin(await pool.connect());
    try {
      const idColumn = await idColumnOfTable(transaction.client, schema, table);
      if (idColumn !== undefined) {
        await transaction.client.query({
          text: `DELETE FROM ${quoteIdentifier(schema)}.${quoteIdentifier(table)} WHERE ${quoteIdentifier(idColumn)} = ANY($1::bigint[])`,
          values: [ids],
        });
      }
      await transaction.client.query({
        text: `DELETE FROM ${retired} WHERE id = ANY($1::bigint[])`,
        values: [ids],
      });
      await transaction.commit();
      result.dropped.push(...ids);
      if (!result.shared.includes(table)) result.shared.push(table);
    } finally {
      await transaction.end();
    }
  }
  return result;
}

/** The shape tables of `schema` (unquoted names). @internal */
export async function shapeTables(client: Pool | ClientBase, schema: string): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>({
    text: `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname ~ ('^' || $2 || '$') ORDER BY 1`,
    values: [schema, SHAPE_TABLE_PATTERN],
  });
  return rows.map((r) => r.name);
}

/**
 * Retires own tables with no record, and deletes shape-table rows whose id has neither a catalog
 * record nor a retired one. Each statement sees one snapshot: a publication is either committed
 * (its table or rows have a record) or invisible (its table and rows too). Returns the shape
 * tables rows were deleted from.
 */
async function sweepOrphans(pool: Pool, schema: string): Promise<string[]> {
  const retired = retiredTable(schema);
  const catalog = `${quoteIdentifier(schema)}.catalog`;
  await pool.query({
    text: `INSERT INTO ${retired} (id, retired_at, stored_in)
           SELECT substr(c.relname, 3)::bigint, clock_timestamp(), c.relname
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname ~ '^m_[0-9]{1,18}$'
             AND NOT EXISTS (SELECT 1 FROM ${catalog} r WHERE r.id = substr(c.relname, 3)::bigint)
           ON CONFLICT (id) DO NOTHING`,
    values: [schema],
  });
  const swept: string[] = [];
  for (const table of await shapeTables(pool, schema)) {
    const client = await pool.connect();
    try {
      const idColumn = await idColumnOfTable(client, schema, table);
      if (idColumn === undefined) continue;
      const id = `t.${quoteIdentifier(idColumn)}`;
      const { rowCount } = await client.query(
        `DELETE FROM ${quoteIdentifier(schema)}.${quoteIdentifier(table)} AS t
         WHERE NOT EXISTS (SELECT 1 FROM ${catalog} r WHERE r.id = ${id})
           AND NOT EXISTS (SELECT 1 FROM ${retired} r WHERE r.id = ${id})`,
      );
      if ((rowCount ?? 0) > 0) swept.push(table);
    } finally {
      client.release();
    }
  }
  return swept;
}

/** A shape table's leading column (the materialization id), or `undefined` when it is gone. */
async function idColumnOfTable(
  client: ClientBase,
  schema: string,
  table: string,
): Promise<string | undefined> {
  const { rows } = await client.query<{ name: string }>({
    text: `SELECT attname AS name FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum = 1`,
    values: [`${quoteIdentifier(schema)}.${quoteIdentifier(table)}`],
  });
  return rows[0]?.name;
}

function retiredTable(schema: string): string {
  return `${quoteIdentifier(schema)}.retired`;
}
