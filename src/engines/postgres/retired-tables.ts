import type { ClientBase, Pool } from 'pg';
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
      `CREATE TABLE IF NOT EXISTS ${table} (id bigint PRIMARY KEY, retired_at timestamptz NOT NULL)`,
    );
    await transaction.commit();
  } finally {
    await transaction.end();
  }
}

/** Records replaced tables as retired, inside the publishing transaction. @internal */
export async function retireTables(
  client: ClientBase,
  schema: string,
  ids: readonly string[],
): Promise<void> {
  if (ids.length === 0) return;
  await client.query({
    text: `INSERT INTO ${retiredTable(schema)} (id, retired_at)
           SELECT unnest($1::bigint[]), clock_timestamp() ON CONFLICT (id) DO NOTHING`,
    values: [ids],
  });
}

/**
 * Drops the data tables retired more than `graceMs` ago (by the server's clock). A data table with
 * neither a catalog record nor a retired one (left by an interrupted run) is retired first, so it
 * goes after the grace period too. Each drop runs in its own transaction with a short lock
 * timeout; a table still in use is left for the next time. Returns the ids dropped and skipped.
 * @internal
 */
export async function dropRetiredTables(
  pool: Pool,
  schema: string,
  graceMs: number,
): Promise<{ dropped: string[]; busy: string[] }> {
  const retired = retiredTable(schema);
  const catalog = `${quoteIdentifier(schema)}.catalog`;
  // One statement, one snapshot: a publication is either committed (its table has a record) or
  // invisible (its table too), so no table being loaded is ever taken for an orphan.
  await pool.query({
    text: `INSERT INTO ${retired} (id, retired_at)
           SELECT substr(c.relname, 3)::bigint, clock_timestamp()
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname ~ '^m_[0-9]{1,18}$'
             AND NOT EXISTS (SELECT 1 FROM ${catalog} r WHERE r.id = substr(c.relname, 3)::bigint)
           ON CONFLICT (id) DO NOTHING`,
    values: [schema],
  });
  const { rows } = await pool.query<{ id: string }>({
    text: `SELECT id::text AS id FROM ${retired}
           WHERE retired_at <= clock_timestamp() - $1 * interval '1 millisecond' ORDER BY id`,
    values: [graceMs],
  });
  const dropped: string[] = [];
  const busy: string[] = [];
  for (const { id } of rows) {
    const transaction = await Transaction.begin(
      await pool.connect(),
      ` SET LOCAL lock_timeout = '${DROP_LOCK_TIMEOUT}'`,
    );
    try {
      await transaction.client.query(
        `DROP TABLE IF EXISTS ${quoteIdentifier(schema)}.${quoteIdentifier(`m_${id}`)}`,
      );
      await transaction.client.query({ text: `DELETE FROM ${retired} WHERE id = $1`, values: [id] });
      await transaction.commit();
      dropped.push(id);
    } catch (error) {
      // 55P03: a reader still holds the table; it is dropped on a later try.
      if (!isServerError(error, '55P03')) throw error;
      busy.push(id);
    } finally {
      await transaction.end();
    }
  }
  return { dropped, busy };
}

function retiredTable(schema: string): string {
  return `${quoteIdentifier(schema)}.retired`;
}
