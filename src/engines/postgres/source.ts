import type { RecordBatch } from 'apache-arrow';
import {
  type CustomTypesConfig,
  type FieldDef,
  Pool,
  type PoolClient,
  type PoolConfig,
  type QueryArrayResult,
} from 'pg';
import { parse as parseConnectionString } from 'pg-connection-string';
import { FeatureStoreError } from '../../errors.js';
import type { ColumnSpec } from '../../frame/columns.js';
import { type SqlQuery, type SqlSource, type SqlValue, sqlTag } from '../../sql/sql-query.js';
import { postgresColumnSpecs, postgresTextBatch } from './columns.js';
import { describeFailure, isQueryError } from './failure.js';
import { sessionSettings, Transaction } from './transaction.js';

/** Options of {@link postgresSource}. */
export interface PostgresSourceOptions {
  /**
   * Rows fetched from the server-side cursor at a time, and so rows per Arrow record batch: the
   * most a streamed result holds in Node at once (twice, while the next fetch is in flight).
   * Default is `50_000`.
   */
  rowsPerBatch?: number;
}

/** A PostgreSQL database as a source of SQL features; {@link postgresSource} makes one. */
export interface PostgresSource extends SqlSource {
  readonly dialect: 'postgres';
  /** Ends the pool the source created from a URL or `PoolConfig`; a `Pool` you passed in stays open. */
  close(): Promise<void>;
}

/** The part of a `pg` `Pool` the source uses. @internal */
export interface PoolLike {
  connect(): Promise<PoolClient>;
}

const DEFAULT_ROWS_PER_BATCH = 50_000;

/** Every value as PostgreSQL's text: featurefn decodes it straight into Arrow buffers. */
const RAW_TEXT: CustomTypesConfig = {
  getTypeParser: (() => (text: string) => text) as unknown as CustomTypesConfig['getTypeParser'],
};

/**
 * A PostgreSQL database as a source of SQL features. Queries are streamed through a server-side
 * cursor (`DECLARE … NO SCROLL CURSOR`, then `FETCH` of `rowsPerBatch` rows at a time, the next
 * fetch in flight while the last batch is used), so a large result is never held whole in Node.
 * Values are bound as `$n` parameters, never spliced into the text; PostgreSQL infers each one's
 * type from where it is used, and types it as text where nothing says (`SELECT ${n} AS n`): cast it
 * there (`${n}::int`).
 *
 * `connection` is a `pg` `Pool` (used as it is, never ended by featurefn), a connection URL or a
 * `PoolConfig` (a pool is created on first use; {@link PostgresSource.close} ends it).
 *
 * A `PostgresMaterializer` on the same database (the same `Pool` object, or a URL or config
 * naming the same user, host, port, database and session options) materializes this source's
 * features inside PostgreSQL, with one `CREATE TABLE … AS`, so no row passes through Node.
 *
 * Column types: `smallint`, `integer`, `bigint`, `real`, `double precision`, `numeric` (read as
 * float64), `text`/`varchar`/`char`, `boolean`, `timestamptz`/`timestamp` (the latter as UTC),
 * `date`, `json`/`jsonb`, and one-dimensional numeric arrays (as float64[]). Any other type is
 * refused with `UNSUPPORTED_COLUMN_TYPE` naming the column: cast it in the query.
 *
 * ### Example
 * ```ts
 * // db.ts (owned by whoever runs the jobs)
 * export const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
 * export const warehouse = postgresSource(pool);
 *
 * // features.ts
 * export const departures = feature({ entity: 'origin' }, async function departures({ when }: { when: Date }) {
 *   return warehouse.sql`SELECT origin, count(*)::int AS departures FROM flights WHERE date <= ${when} GROUP BY origin`;
 * });
 *
 * // inference.ts: the same pool, so the feature is materialized inside PostgreSQL
 * const materializer = new PostgresMaterializer({ connection: pool, schema: 'feature_store' });
 * ```
 */
export function postgresSource(
  connection: string | PoolConfig | Pool,
  options: PostgresSourceOptions = {},
): PostgresSource {
  if (isPool(connection)) return createPostgresSource(connection, connection, options);
  if (typeof connection !== 'string' && (typeof connection !== 'object' || connection === null)) {
    throw new FeatureStoreError(
      'STORE_ERROR',
      'postgresSource needs a connection: a URL such as "postgres://user@host:5432/db", a pg PoolConfig or a pg Pool.',
    );
  }
  const config: PoolConfig = typeof connection === 'string' ? { connectionString: connection } : connection;
  let pool: Pool | undefined;
  const lazy: PoolLike = {
    connect: () => {
      if (pool === undefined) {
        pool = new Pool(config);
        // An idle connection the server dropped is removed from the pool; without a listener,
        // that 'error' event would crash the process.
        pool.on('error', () => undefined);
      }
      return pool.connect();
    },
  };
  return createPostgresSource(lazy, databaseIdentity(config), options, async () => {
    const created = pool;
    pool = undefined;
    await created?.end();
  });
}

/**
 * A source streaming from `pool`, whose identity is `database`. `PostgresMaterializer` makes its
 * own with this, so its identity matches what `postgresSource` gives for the same connection.
 * @internal
 */
export function createPostgresSource(
  pool: PoolLike,
  database: unknown,
  options: PostgresSourceOptions = {},
  close: () => Promise<void> = async () => undefined,
): PostgresSource {
  const rowsPerBatch = options.rowsPerBatch ?? DEFAULT_ROWS_PER_BATCH;
  if (!Number.isInteger(rowsPerBatch) || rowsPerBatch < 1) {
    throw new FeatureStoreError(
      'STORE_ERROR',
      `rowsPerBatch must be a positive integer, not ${rowsPerBatch}.`,
    );
  }
  const source: PostgresSource = {
    dialect: 'postgres',
    database,
    sql: sqlTag(() => source),
    stream: (query) => streamQuery(pool, query, rowsPerBatch),
    close,
  };
  return Object.freeze(source);
}

/**
 * Identity of the database a URL or `PoolConfig` connects to:
 * `postgres://<user>@<host>:<port>/<database>`, with `pg`'s defaults (and `PG*` environment
 * variables) filled in, so that two spellings of the same connection compare equal. Session
 * `options` count (they may set `search_path`); the password and other settings are left out.
 * @internal
 */
export function databaseIdentity(config: string | PoolConfig): string {
  const given = typeof config === 'string' ? { connectionString: config } : config;
  // As in pg: the connection string, parsed by pg's own parser, wins over the other fields.
  const fields: Record<string, unknown> = { ...given };
  if (given.connectionString !== undefined) {
    for (const [key, value] of Object.entries(parseConnectionString(given.connectionString))) {
      if (value !== undefined && value !== null) fields[key] = value;
    }
  }
  const text = (key: string): string | undefined => {
    const value = fields[key];
    return value === undefined || value === null || value === '' ? undefined : String(value);
  };
  const env = process.env;
  const user = text('user') ?? env.PGUSER ?? env.USER ?? '';
  const rawHost = text('host') ?? env.PGHOST ?? 'localhost';
  // Host names are case-insensitive; socket directories are paths, which are not.
  const host = rawHost.startsWith('/') ? encodeURIComponent(rawHost) : rawHost.toLowerCase();
  const port = text('port') ?? env.PGPORT ?? '5432';
  const database = text('database') ?? env.PGDATABASE ?? user;
  // Session options (`-c search_path=…`) change what a query's names mean, so they count.
  const options = text('options');
  const session = options === undefined ? '' : `?options=${encodeURIComponent(options)}`;
  return `postgres://${encodeURIComponent(user)}@${host}:${port}/${encodeURIComponent(database)}${session}`;
}

/** The query's text with `$n` placeholders, and its values as `pg` sends them. @internal */
export function renderPostgres(query: SqlQuery): { text: string; values: unknown[] } {
  const { text, values } = query.render((i) => `$${i}`);
  // A trailing semicolon would end the statement featurefn wraps the query in.
  return { text: text.replace(/[\s;]+$/, ''), values: values.map(toPostgres) };
}

/** Dates go as UTC text, so the session time zone never shifts a bound instant. */
function toPostgres(value: SqlValue): unknown {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/** The error for a query that PostgreSQL refused or that failed while running. @internal */
export function queryFailed(error: unknown, sql: string): FeatureStoreError {
  if (error instanceof FeatureStoreError) return error;
  if (isQueryError(error)) {
    return new FeatureStoreError(
      'FEATURE_FAILED',
      `PostgreSQL could not run the SQL feature's query: ${describeFailure(error)}. Fix the query; nothing was stored.`,
      { sql, cause: error },
    );
  }
  return new FeatureStoreError(
    'STORE_ERROR',
    `running the SQL feature's query failed in PostgreSQL: ${describeFailure(error)}. Nothing was stored.`,
    { sql, cause: error },
  );
}

async function* streamQuery(
  pool: PoolLike,
  query: SqlQuery,
  rowsPerBatch: number,
): AsyncIterable<RecordBatch> {
  const { text, values } = renderPostgres(query);
  let client: PoolClient;
  try {
    client = await pool.connect();
  } catch (error) {
    throw new FeatureStoreError(
      'STORE_ERROR',
      `connecting to PostgreSQL to run a SQL feature's query failed: ${describeFailure(error)}.`,
      { sql: text, cause: error },
    );
  }
  const fetchText = `FETCH ${rowsPerBatch} FROM featurefn_cursor`;
  const fetch = () => {
    const next = client.query({ text: fetchText, rowMode: 'array', types: RAW_TEXT }) as Promise<
      QueryArrayResult<(string | null)[]>
    >;
    next.catch(() => undefined); // awaited below; a fetch left in flight by an early stop must not crash
    return next;
  };
  let transaction: Transaction;
  try {
    transaction = await Transaction.begin(client, sessionSettings(true));
  } catch (error) {
    throw queryFailed(error, text);
  }
  let inFlight: Promise<unknown> | undefined;
  try {
    try {
      await client.query({ text: `DECLARE featurefn_cursor NO SCROLL CURSOR FOR ${text}`, values });
    } catch (error) {
      throw queryFailed(error, text);
    }
    let columns: ColumnSpec[] | undefined;
    let yielded = false;
    let next = fetch();
    inFlight = next;
    while (true) {
      let result: QueryArrayResult<(string | null)[]>;
      try {
        result = await next;
      } catch (error) {
        throw queryFailed(error, text);
      }
      columns ??= await columnsOf(client, result.fields);
      const done = result.rows.length < rowsPerBatch;
      // The server produces the next rows while this batch is converted and used.
      inFlight = undefined;
      if (!done) {
        next = fetch();
        inFlight = next;
      }
      // An empty result still gives one (empty) batch: it carries the column types.
      if (result.rows.length > 0 || !yielded) {
        yielded = true;
        yield postgresTextBatch(columns, result.rows);
      }
      if (done) break;
    }
    await transaction.commit();
  } finally {
    if (inFlight !== undefined) await inFlight.catch(() => undefined);
    // Also closes the cursor when the reader stopped early.
    await transaction.end();
  }
}

/** Column specs of a result; on a type featurefn cannot store, the error names the column and its type. */
async function columnsOf(client: PoolClient, fields: readonly FieldDef[]): Promise<ColumnSpec[]> {
  const described = fields.map((f) => ({ name: f.name, oid: f.dataTypeID }));
  try {
    return postgresColumnSpecs(described);
  } catch (error) {
    if (!(error instanceof FeatureStoreError)) throw error;
    // Only on failure: ask the server for the type names, for the message.
    const { rows } = await client
      .query<{ name: string }>({
        text: 'SELECT format_type(oid, NULL) AS name FROM unnest($1::oid[]) WITH ORDINALITY AS t(oid, n) ORDER BY n',
        values: [described.map((f) => f.oid)],
      })
      .catch(() => ({ rows: [] as { name: string }[] }));
    return postgresColumnSpecs(described.map((f, i) => ({ ...f, typeName: rows[i]?.name })));
  }
}

/** True for a `pg` Pool (or anything shaped like one). @internal */
export function isPool(value: unknown): value is Pool {
  const pool = value as Partial<Record<'connect' | 'query' | 'end' | 'on', unknown>>;
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof pool.connect === 'function' &&
    typeof pool.query === 'function' &&
    typeof pool.end === 'function' &&
    typeof pool.on === 'function'
  );
}
