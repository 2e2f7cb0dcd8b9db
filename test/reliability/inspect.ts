/**
 * What a store holds, read around featurefn (raw DuckDB, or SQL on PostgreSQL) so that opening a
 * materializer cannot tidy it up first: its tables, catalog records and retired ids.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import pg from 'pg';
import { adminClient } from '../support/postgres.js';
import type { StoreSpec } from './workload.js';

export interface StoreTables {
  /** Every table in the store's schema. */
  readonly tables: string[];
  /** Catalog records: id, feature name and canonical parameters. */
  readonly catalog: { id: string; feature: string; paramsKey: string }[];
  /** Ids recorded as retired (replaced, kept for a grace period, then dropped). */
  readonly retired: string[];
  /** Materialization ids found in each shape table (`f_<hash>`, small results of a feature). */
  readonly sharedRows?: { table: string; id: string }[];
}

/** A shape table: the rows of a feature's small materializations of one shape, by id. */
const SHAPE_TABLE = /^f_[0-9a-f]{16}$/;

/** The store's own tables; every other table must be a data table `m_<id>` the catalog or retired list names. */
const OWN = new Set(['catalog', 'meta', 'retired', 'features']);

/**
 * Orphans: tables in the store's schema that are neither the store's own (`catalog`, `meta`,
 * `retired`, `features`), nor a shape table, nor the data table `m_<id>` of a catalog record or of
 * a retired id; and rows of a shape table whose id has neither a record nor a retired entry. A
 * crash must never leave one: nothing would ever drop it, and nothing tells what it holds.
 */
export function orphans({ tables, catalog, retired, sharedRows = [] }: StoreTables): string[] {
  const ids = new Set([...catalog.map((r) => r.id), ...retired]);
  const named = new Set([...ids].map((id) => `m_${id}`));
  return [
    ...tables.filter((t) => !OWN.has(t) && !named.has(t) && !SHAPE_TABLE.test(t)),
    ...sharedRows.filter((r) => !ids.has(r.id)).map((r) => `${r.table} rows of id ${r.id}`),
  ];
}

/** Catalog records sharing a feature and parameters: there must be at most one of each. */
export function duplicateRecords({ catalog }: StoreTables): string[] {
  const seen = new Map<string, string>();
  const duplicates: string[] = [];
  for (const r of catalog) {
    const slot = `${r.feature} ${r.paramsKey}`;
    const other = seen.get(slot);
    if (other !== undefined) duplicates.push(`${slot}: ids ${other} and ${r.id}`);
    seen.set(slot, r.id);
  }
  return duplicates;
}

/** Reads the store's tables, catalog and retired ids (empty when the store was never created). */
export async function inspectStore(spec: StoreSpec): Promise<StoreTables> {
  return spec.engine === 'duckdb' ? inspectDuckDB(spec.path) : inspectPostgres(spec.url, spec.schema);
}

async function inspectDuckDB(path: string): Promise<StoreTables> {
  const instance = await DuckDBInstance.create(path);
  const c = await instance.connect();
  try {
    const rows = async (sql: string) => (await c.runAndReadAll(sql)).getRows().map((r) => r.map(String));
    const tables = (
      await rows(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'featurefn' AND database_name = current_database() ORDER BY 1",
      )
    ).map(([t]) => t!);
    const catalog = tables.includes('catalog')
      ? (await rows('SELECT id, feature_name, params_key FROM featurefn.catalog ORDER BY id')).map(
          ([id, feature, paramsKey]) => ({ id: id!, feature: feature!, paramsKey: paramsKey! }),
        )
      : [];
    const retired = tables.includes('retired')
      ? (await rows('SELECT id FROM featurefn.retired ORDER BY id')).map(([id]) => id!)
      : [];
    return { tables, catalog, retired };
  } finally {
    c.closeSync();
    instance.closeSync();
  }
}

async function inspectPostgres(url: string, schema: string): Promise<StoreTables> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows: tables } = await client.query<{ name: string }>({
      text: 'SELECT tablename AS name FROM pg_tables WHERE schemaname = $1 ORDER BY 1',
      values: [schema],
    });
    const names = tables.map((t) => t.name);
    const q = (table: string) => `"${schema}".${table}`;
    const catalog = names.includes('catalog')
      ? (
          await client.query<{ id: string; feature: string; paramsKey: string }>(
            `SELECT id::text AS id, feature_name AS feature, params_key AS "paramsKey" FROM ${q('catalog')} ORDER BY id`,
          )
        ).rows
      : [];
    const retired = names.includes('retired')
      ? (
          await client.query<{ id: string }>(`SELECT id::text AS id FROM ${q('retired')} ORDER BY id`)
        ).rows.map((r) => r.id)
      : [];
    return { tables: names, catalog, retired, sharedRows: await postgresSharedRows(client, schema, names) };
  } finally {
    await client.end();
  }
}

/** The ids in each PostgreSQL shape table (its leading column holds the materialization id). */
async function postgresSharedRows(
  client: pg.Client,
  schema: string,
  tables: readonly string[],
): Promise<{ table: string; id: string }[]> {
  const found: { table: string; id: string }[] = [];
  for (const table of tables.filter((t) => SHAPE_TABLE.test(t))) {
    const qualified = `"${schema}"."${table}"`;
    const { rows: first } = await client.query<{ name: string }>({
      text: 'SELECT attname AS name FROM pg_attribute WHERE attrelid = $1::regclass AND attnum = 1',
      values: [qualified],
    });
    const { rows } = await client.query<{ id: string }>(
      `SELECT DISTINCT "${first[0]!.name}"::text AS id FROM ${qualified} ORDER BY 1`,
    );
    for (const { id } of rows) found.push({ table, id });
  }
  return found;
}

/** Waits until no backend of `application_name` `app` is left (a killed child's are ended by the server). */
export async function backendsGone(app: string, timeoutMs = 30_000): Promise<void> {
  const client = await adminClient();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await client.query<{ n: number }>({
        text: 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
        values: [app],
      });
      if (rows[0]!.n === 0) return;
      if (Date.now() > deadline) throw new Error(`backends of ${app} still running after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    await client.end();
  }
}
