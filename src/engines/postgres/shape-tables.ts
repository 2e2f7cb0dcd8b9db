import { createHash } from 'node:crypto';
import type { ClientBase } from 'pg';
import type { ColumnSpec } from '../../frame/columns.js';
import { POSTGRES_SQL_TYPES, quoteIdentifier } from './dialect.js';

/**
 * A result with fewer rows than this is stored in its shape's table, among the rows of the
 * feature's other small materializations; a bigger one gets a table of its own (COPY … FREEZE,
 * key built after the load, ANALYZE), which loads faster per row. At 50,000 rows the shared
 * table's index maintenance costs about as much as building an own table's key (see
 * BENCHMARKS.md, History).
 * @internal
 */
export const SHARED_MAX_ROWS = 50_000;

/** Where one shape's rows live: the unquoted table name and its leading materialization-id column. */
export interface ShapeTable {
  readonly name: string;
  readonly idColumn: string;
}

/**
 * The shape table of a feature's small materializations with this key and these columns:
 * `f_<16 hex of sha256(feature \0 JSON(key) \0 JSON(columns))>`. Its leading column holds the
 * materialization id, named `_m`, or `_m_1`, `_m_2`… when the shape has a column of that name.
 * @internal
 */
export function shapeTableOf(
  feature: string,
  key: readonly string[],
  columns: readonly ColumnSpec[],
): ShapeTable {
  const hash = createHash('sha256')
    .update(
      `${feature}\0${JSON.stringify(key)}\0${JSON.stringify(columns.map((c) => ({ name: c.name, type: c.type })))}`,
    )
    .digest('hex');
  return { name: `f_${hash.slice(0, 16)}`, idColumn: idColumnOf(columns) };
}

/** The first of `_m`, `_m_1`, `_m_2`… that is not one of `columns`. @internal */
export function idColumnOf(columns: readonly ColumnSpec[]): string {
  const names = new Set(columns.map((c) => c.name));
  if (!names.has('_m')) return '_m';
  for (let n = 1; ; n++) if (!names.has(`_m_${n}`)) return `_m_${n}`;
}

/** True for the unquoted name of a shape table. @internal */
export function isShapeTable(name: string): boolean {
  return /^f_[0-9a-f]{16}$/.test(name);
}

/**
 * Creates the shape table inside the publishing transaction if it does not exist: the id column,
 * the shape's columns, and a primary key on (id, key…), which refuses a duplicated key. Concurrent
 * first creators are serialized on an advisory lock of the table's name, so `IF NOT EXISTS` never
 * collides on the catalog's unique names.
 * @internal
 */
export async function createShapeTable(
  client: ClientBase,
  schema: string,
  shape: ShapeTable,
  key: readonly string[],
  columns: readonly ColumnSpec[],
): Promise<void> {
  await client.query({
    text: 'SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))',
    values: [`featurefn:${schema}:shape`, shape.name],
  });
  const definition = columns
    .map((c) => `${quoteIdentifier(c.name)} ${POSTGRES_SQL_TYPES[c.type]}`)
    .join(', ');
  const primary = [shape.idColumn, ...key].map(quoteIdentifier).join(', ');
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${quoteIdentifier(schema)}.${quoteIdentifier(shape.name)} ` +
      `(${quoteIdentifier(shape.idColumn)} bigint NOT NULL, ${definition}, PRIMARY KEY (${primary}))`,
  );
}
