import type { ClientBase } from 'pg';
import type { ShapeLayout } from '../../materializer/shape-table.js';
import { POSTGRES_SQL_TYPES, quoteIdentifier } from './dialect.js';

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
  shape: ShapeLayout,
  key: readonly string[],
): Promise<void> {
  await client.query({
    text: 'SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))',
    values: [`featurefn:${schema}:shape`, shape.table],
  });
  const definition = shape.columns
    .map((c) => `${quoteIdentifier(c.name)} ${POSTGRES_SQL_TYPES[c.type]}`)
    .join(', ');
  const primary = [shape.idColumn, ...key].map(quoteIdentifier).join(', ');
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${quoteIdentifier(schema)}.${quoteIdentifier(shape.table)} ` +
      `(${quoteIdentifier(shape.idColumn)} bigint NOT NULL, ${definition}, PRIMARY KEY (${primary}))`,
  );
}
