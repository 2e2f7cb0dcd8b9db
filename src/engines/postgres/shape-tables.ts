import type { ClientBase } from 'pg';
import type { ColumnSpec } from '../../frame/columns.js';
import { partitionColumnOf, shapeTableName } from '../../materializer/shape-table.js';
import { POSTGRES_SQL_TYPES, quoteIdentifier } from './dialect.js';

/** Where one shape's rows live: the unquoted table name and its leading materialization-id column. */
export interface ShapeTable {
  readonly name: string;
  readonly idColumn: string;
}

/** The shape table of a feature's small materializations with this key and these columns. @internal */
export function shapeTableOf(
  feature: string,
  key: readonly string[],
  columns: readonly ColumnSpec[],
): ShapeTable {
  return { name: shapeTableName(feature, key, columns), idColumn: partitionColumnOf(columns) };
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
