import type { DuckDBConnection } from '@duckdb/node-api';
import { SHAPE_TABLE_PATTERN } from '../../materializer/shape-table.js';
import { quoteIdentifier } from './duckdb-dialect.js';

/**
 * Replaced materializations are retired by the publication that replaces them, not removed: a
 * query a decorated call returned over the old rows (a `sql` or `duckdb` result) keeps running for
 * the grace period. They are removed later by {@link dropRetiredTables}. This is the format-1
 * layout; format 3 adds `stored_in` (see `upgradeCatalog`).
 * @internal
 */
export function retiredTableDefinition(prefix: string): string {
  return `CREATE TABLE IF NOT EXISTS ${prefix}.retired (id BIGINT PRIMARY KEY, retired_at TIMESTAMP NOT NULL)`;
}

/**
 * Removes the materializations retired more than `graceMs` ago: an own table is dropped, each in
 * its own transaction (one another connection still holds is left for next time); rows in a shape
 * table are deleted, one transaction per table. `sweep` first retires every own table without a
 * catalog record and deletes shape-table rows whose id has neither a record nor a retired entry
 * (neither can come from a rolled-back publication; only from a damaged store). Call inside the
 * writer session. Returns the ids removed, those left, and when the next retired one falls due
 * (`Infinity` for none).
 * @internal
 */
export async function dropRetiredTables(
  c: DuckDBConnection,
  where: { prefix: string; database: string; schema: string },
  graceMs: number,
  sweep = true,
): Promise<{ dropped: string[]; busy: string[]; nextDue: number }> {
  const { prefix, database, schema } = where;
  const now = Date.now();
  let shapes: Map<string, string> | undefined;
  if (sweep) {
    shapes = await shapeTables(c, database, schema);
    await c.run(
      `INSERT INTO ${prefix}.retired (id, retired_at, stored_in)
     SELECT CAST(substr(table_name, 3) AS BIGINT), epoch_ms(${now}), table_name FROM duckdb_tables()
     WHERE database_name = $1 AND schema_name = $2 AND regexp_full_match(table_name, 'm_[0-9]{1,18}')
       AND CAST(substr(table_name, 3) AS BIGINT) NOT IN (SELECT id FROM ${prefix}.catalog)
     ON CONFLICT DO NOTHING`,
      [database, schema],
    );
    for (const [table, column] of shapes) {
      const id = quoteIdentifier(column);
      await c.run(
        `DELETE FROM ${prefix}.${quoteIdentifier(table)} WHERE ${id} NOT IN (SELECT id FROM ${prefix}.catalog)
         AND ${id} NOT IN (SELECT id FROM ${prefix}.retired)`,
      );
    }
  }
  const cutoff = now - graceMs;
  const rows = (
    await c.runAndReadAll(
      `SELECT CAST(id AS VARCHAR), coalesce(stored_in, 'm_' || CAST(id AS VARCHAR)), NULL
       FROM ${prefix}.retired WHERE retired_at <= epoch_ms(${cutoff})
       UNION ALL SELECT NULL, NULL, epoch_ms(min(retired_at)) FROM ${prefix}.retired WHERE retired_at > epoch_ms(${cutoff})`,
    )
  ).getRows();
  const dropped: string[] = [];
  const busy: string[] = [];
  const shared = new Map<string, string[]>();
  let nextDue = Number.POSITIVE_INFINITY;
  for (const [value, table, next] of rows) {
    if (value === null) {
      if (next !== null) nextDue = Number(next) + graceMs;
      continue;
    }
    const id = String(value);
    const storedIn = String(table);
    if (storedIn !== `m_${id}`) {
      shared.set(storedIn, [...(shared.get(storedIn) ?? []), id]);
      continue;
    }
    try {
      await c.run(
        `BEGIN TRANSACTION; DROP TABLE IF EXISTS ${prefix}.${quoteIdentifier(storedIn)};
         DELETE FROM ${prefix}.retired WHERE id = ${BigInt(id)}; COMMIT`,
      );
      dropped.push(id);
    } catch {
      // Another connection's open transaction conflicts with the drop: tried again next time.
      await c.run('ROLLBACK').catch(() => undefined);
      busy.push(id);
    }
  }
  if (shared.size > 0) shapes ??= await shapeTables(c, database, schema);
  for (const [table, ids] of shared) {
    const column = shapes?.get(table);
    const list = ids.map((id) => BigInt(id)).join(', ');
    try {
      await c.run(
        `BEGIN TRANSACTION;
         ${column === undefined ? '' : `DELETE FROM ${prefix}.${quoteIdentifier(table)} WHERE ${quoteIdentifier(column)} IN (${list});`}
         DELETE FROM ${prefix}.retired WHERE id IN (${list}); COMMIT`,
      );
      dropped.push(...ids);
    } catch {
      await c.run('ROLLBACK').catch(() => undefined);
      busy.push(...ids);
    }
  }
  if (busy.length > 0) nextDue = now;
  return { dropped, busy, nextDue };
}

/** The shape tables of the store's schema, each with its id column (always its first). @internal */
export async function shapeTables(
  c: DuckDBConnection,
  database: string,
  schema: string,
): Promise<Map<string, string>> {
  const rows = (
    await c.runAndReadAll(
      `SELECT table_name, column_name FROM duckdb_columns()
       WHERE database_name = $1 AND schema_name = $2 AND column_index = 1
         AND regexp_full_match(table_name, $3)`,
      [database, schema, SHAPE_TABLE_PATTERN],
    )
  ).getRows();
  return new Map(rows.map(([table, column]) => [String(table), String(column)]));
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
