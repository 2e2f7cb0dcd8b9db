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
  /** Each materialization id with rows in a shape table (`f_<hex>`, id in its first column). */
  readonly shared: { table: string; id: string }[];
}

/** The store's own tables; every other table must be a data table `m_<id>` the catalog or retired list names. */
const OWN = new Set(['catalog', 'meta', 'retired', 'features']);

/** A shape table's name: small materializations of the same key and column types share it. */
const SHAPE = /^[fs]_[0-9a-f]{16}$/;

/**
 * Orphans: tables in the store's schema that are neither the store's own (`catalog`, `meta`,
 * `retired`, `features`), nor a shape table, nor the data table `m_<id>` of a catalog record or
 * of a retired id; and rows in a shape table whose id has no record and is not retired. A crash
 * must never leave one: nothing would ever remove it, and nothing tells what it holds.
 */
export function orphans({ tables, catalog, retired, shared }: StoreTables): string[] {
  const ids = new Set([...catalog.map((r) => r.id), ...retired]);
  const named = new Set([...ids].map((id) => `m_${id}`));
  return [
    ...tables.filter((t) => !OWN.has(t) && !SHAPE.test(t) && !named.has(t)),
    ...shared.filter((s) => !ids.has(s.id)).map((s) => `${s.table} rows of id ${s.id}`),
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
    const shared: StoreTables['shared'] = [];
    for (const table of tables.filter((t) => SHAPE.test(t))) {
      // The id column is the first; its name depends on the shape's columns.
      const column = (
        await rows(
          `SELECT column_name FROM duckdb_columns() WHERE schema_name = 'featurefn' AND database_name = current_database()
         AND table_name = '${table}' AND column_index = 1`,
        )
      )[0]![0]!;
      const ids = await rows(`SELECT DISTINCT "${column}" FROM featurefn.${table} ORDER BY 1`);
      shared.push(...ids.map(([id]) => ({ table, id: id! })));
    }
    return { tables, catalog, retired, shared };
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
    const shared: StoreTables['shared'] = [];
    for (const table of names.filter((t) => SHAPE.test(t))) {
      const { rows: first } = await client.query<{ name: string }>({
        text: 'SELECT column_name AS name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND ordinal_position = 1',
        values: [schema, table],
      });
      const { rows: ids } = await client.query<{ id: string }>(
        `SELECT DISTINCT "${first[0]!.name}"::text AS id FROM ${q(table)} ORDER BY 1`,
      );
      shared.push(...ids.map((r) => ({ table, id: r.id })));
    }
    return { tables: names, catalog, retired, shared };
  } finally {
    await client.end();
  }
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
