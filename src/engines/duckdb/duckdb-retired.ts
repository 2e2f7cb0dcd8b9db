import type { DuckDBConnection } from '@duckdb/node-api';
import { quoteIdentifier } from './duckdb-dialect.js';

/**
 * Replaced data tables are retired by the publication that replaces them, not dropped: a query a
 * decorated call returned over the old table (a `sql` or `duckdb` result) keeps running for the
 * grace period. They are dropped later by {@link dropRetiredTables}.
 * @internal
 */
export function retiredTableDefinition(prefix: string): string {
  return `CREATE TABLE IF NOT EXISTS ${prefix}.retired (id BIGINT PRIMARY KEY, retired_at TIMESTAMP NOT NULL)`;
}

/** The statement recording `ids` (the store's own numbers) as retired now, inside the publication. @internal */
export function retireStatement(prefix: string, ids: readonly string[], now: number): string {
  const values = ids.map((id) => `(${BigInt(id)}, epoch_ms(${Math.trunc(now)}))`).join(', ');
  return `INSERT INTO ${prefix}.retired VALUES ${values} ON CONFLICT DO NOTHING`;
}

/**
 * Drops the data tables retired more than `graceMs` ago, each in its own transaction; one another
 * connection still holds is left for next time. A data table without a catalog record (left by
 * another store's replacement, see `DuckDBMaterializer`) is retired first, so it goes the same way.
 * `sweep: false` skips that first step. Call inside the writer session. Returns the ids dropped and
 * those left.
 * @internal
 */
export async function dropRetiredTables(
  c: DuckDBConnection,
  where: { prefix: string; database: string; schema: string },
  graceMs: number,
  sweep = true,
): Promise<{ dropped: string[]; busy: string[] }> {
  const { prefix, database, schema } = where;
  const now = Date.now();
  // The sweep reads every table of the database: skipped where no orphan can have appeared.
  if (sweep)
    await c.run(
      `INSERT INTO ${prefix}.retired
     SELECT CAST(substr(table_name, 3) AS BIGINT), epoch_ms(${now}) FROM duckdb_tables()
     WHERE database_name = $1 AND schema_name = $2 AND regexp_full_match(table_name, 'm_[0-9]{1,18}')
       AND CAST(substr(table_name, 3) AS BIGINT) NOT IN (SELECT id FROM ${prefix}.catalog)
     ON CONFLICT DO NOTHING`,
      [database, schema],
    );
  const due = await c.runAndReadAll(
    `SELECT CAST(id AS VARCHAR) FROM ${prefix}.retired WHERE retired_at <= epoch_ms(${now - graceMs}) ORDER BY id`,
  );
  const dropped: string[] = [];
  const busy: string[] = [];
  for (const [value] of due.getRows()) {
    const id = String(value);
    try {
      await c.run(
        `BEGIN TRANSACTION; DROP TABLE IF EXISTS ${prefix}.${quoteIdentifier(`m_${id}`)};
         DELETE FROM ${prefix}.retired WHERE id = ${BigInt(id)}; COMMIT`,
      );
      dropped.push(id);
    } catch {
      // Another connection's open transaction conflicts with the drop: tried again next time.
      await c.run('ROLLBACK').catch(() => undefined);
      busy.push(id);
    }
  }
  return { dropped, busy };
}

/**
 * Publications committed per database and schema by the stores of this process. A DuckDB file is
 * open in one process, so this is every publication: a store whose cached catalog predates the
 * latest re-plans its read (a replaced table still exists while retired, so no error says so).
 */
const publications = new WeakMap<object, Map<string, number>>();

/** How many publications were committed on `instance` for `schema` so far. @internal */
export function publicationCount(instance: object, schema: string): number {
  return publications.get(instance)?.get(schema) ?? 0;
}

/** Counts one committed publication; returns the count before it. @internal */
export function countPublication(instance: object, schema: string): number {
  let counts = publications.get(instance);
  if (counts === undefined) {
    counts = new Map();
    publications.set(instance, counts);
  }
  const before = counts.get(schema) ?? 0;
  counts.set(schema, before + 1);
  return before;
}

/** Thrown by a read planned on a catalog another store has published past since. @internal */
export class StaleCatalog extends Error {
  constructor() {
    super('another store published since this catalog was read');
  }
}
