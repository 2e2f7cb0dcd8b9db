import { createHash, randomUUID } from 'node:crypto';
import type { RecordBatch, Table } from 'apache-arrow';
import type { Kysely } from 'kysely';
import {
  Client,
  type ClientBase,
  type ClientConfig,
  type CustomTypesConfig,
  Pool,
  type PoolClient,
  type PoolConfig,
  type QueryArrayConfig,
  type QueryConfig,
  types,
} from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { type Duration, parseDuration } from '../../duration.js';
import { FeatureStoreError, type FeatureStoreErrorContext } from '../../errors.js';
import type { FeatureInfo } from '../../feature/feature.js';
import type { Params } from '../../feature/params.js';
import { formatParams } from '../../format.js';
import { type ColumnSpec, type Row, tableFromColumns } from '../../frame/columns.js';
import { featureRecordText, storedFeatureOf } from '../../materializer/feature-catalog.js';
import { KeyTracker } from '../../materializer/key-tracker.js';
import type {
  Materialization,
  MaterializerOptions,
  ReadPlan,
  StoredFeature,
} from '../../materializer/materializer.js';
import {
  checkSchemaName,
  MaterializerBase,
  type PublishInput,
} from '../../materializer/materializer-base.js';
import {
  isShapeTable,
  peekBatches,
  SHARED_MAX_ROWS,
  shapeLayoutAt,
  shapeLayoutOf,
} from '../../materializer/shape-table.js';
import type { SourcePartition } from '../../query/nodes.js';
import type { BoundValue, CompiledQuery, SqlDialect } from '../../query/sql-compiler.js';
import type { SqlQuery } from '../../sql/sql-query.js';
import { CatalogListener, type ListenerConnection } from './catalog-listener.js';
import { postgresColumnMapping, postgresColumnSpecs } from './columns.js';
import { MAX_IDENTIFIER_BYTES, POSTGRES_SQL_TYPES, placeholder, quoteIdentifier } from './dialect.js';
import { describeFailure, isConnectionLoss, isServerError } from './failure.js';
import { copyBatches } from './load.js';
import {
  dropRetiredTables,
  ensureRetiredTable,
  type RetiredEntry,
  retireTables,
  upgradeRetiredTable,
} from './retired-tables.js';
import { createShapeTable } from './shape-tables.js';
import {
  createPostgresSource,
  databaseIdentity,
  isPool,
  type PostgresSource,
  queryFailed,
  renderPostgres,
} from './source.js';
import { guardConnections, settleSessions, Transaction } from './transaction.js';

/** Options of {@link PostgresMaterializer}. */
export interface PostgresMaterializerOptions extends MaterializerOptions {
  /**
   * Where the store lives: a connection URL (`'postgres://user@host:5432/db'`), a `pg`
   * `PoolConfig` object, or a `pg` `Pool` you created. featurefn ends the pools it creates on
   * `close()`, never one you passed in. One more connection, of its own (with your pool's
   * settings), listens for other processes' publications.
   */
  connection: string | PoolConfig | Pool;
  /** Schema holding the catalog and data tables; created on first use. Default is `'featurefn'`. */
  schema?: string;
  /**
   * Connections of the pool featurefn creates (reads run in parallel up to this many). One more
   * connection is opened to listen for publications. Default is the `PoolConfig`'s `max`, else `10`.
   * Ignored when `connection` is a `Pool`.
   */
  poolSize?: number;
  /**
   * Most prepared statements one connection keeps. Reads are prepared once per connection. A read
   * of small results names their shape tables and binds their ids, so later publications reuse its
   * statement; a read of a big result (its own table) names that table, so each publication of one
   * brings a new statement: a connection that reaches this many is closed (freeing them) and
   * replaced. Default is `200`.
   */
  maxPreparedStatements?: number;
  /**
   * Called with errors that happen outside any call, so none can report them: an idle pool
   * connection the server dropped, or the connection listening for other processes'
   * publications failing (it reconnects by itself; until then `Last()` is resolved from the
   * catalog on the next read). Default is a `console.warn` naming the store's schema.
   */
  onError?: (error: FeatureStoreError) => void;
  /**
   * How long a replaced materialization's rows are kept after the publication that replaced it,
   * so that readers still on it (an open transaction, a query a decorated call returned) finish:
   * a publication never removes rows itself, and never waits for readers. Rows retired longer
   * than this are removed by later publications, `close()` and {@link PostgresMaterializer.vacuum}
   * (an own table is dropped, giving up at once if a reader still holds it; rows in a shape table
   * are deleted). Default is `'10 minutes'`.
   */
  retainReplaced?: Duration;
}

/** Kysely's view of the store's tables: any table, any column. */
type KyselyTables = Record<string, Record<string, unknown>>;

/** Catalog layout version; older catalogs are upgraded in place (see `#upgradeCatalog`), newer refused. */
export const POSTGRES_FORMAT_VERSION = 4;

/** Rows from which a shape table is analyzed by featurefn as it grows (see `#keepStatistics`). */
const ANALYZE_MIN_ROWS = 100_000;

const int8Parser = (text: string): number | bigint => {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : BigInt(text);
};
const float4Parser = (text: string): number => Math.fround(Number.parseFloat(text));
const dateParser = (text: string): Date | string => {
  const match = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/.exec(text);
  if (match === null) return text; // 'infinity': no Date can hold it
  const year = Number(match[1]) * (match[4] === undefined ? 1 : -1) + (match[4] === undefined ? 0 : 1);
  const date = new Date(Date.UTC(2000, Number(match[2]) - 1, Number(match[3])));
  date.setUTCFullYear(year);
  return date;
};

/**
 * Parsers that give featurefn's row values: 64-bit integers as numbers (bigint beyond 2^53),
 * dates as UTC midnight, float4 as the exact stored float; the rest as `pg` parses them.
 */
const READ_TYPES: CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    switch (oid) {
      case types.builtins.INT8:
        return int8Parser;
      case types.builtins.FLOAT4:
        return float4Parser;
      case types.builtins.DATE:
        return dateParser;
      default:
        return types.getTypeParser(oid, format ?? 'text');
    }
  }) as CustomTypesConfig['getTypeParser'],
};

/** A bound value as `pg` sends it. Dates go as UTC text, so the session time zone never matters. */
function toPostgresValue({ value, type }: BoundValue): unknown {
  if (value instanceof Date) return type === 'date' ? value.toISOString().slice(0, 10) : value.toISOString();
  return value;
}

/** True for the error a read gets when a materialization it was planned on was replaced meanwhile. */
function isReplacedTable(error: unknown): boolean {
  return isServerError(error, '42P01');
}

/**
 * The production store: PostgreSQL. A catalog table records each materialization and where its
 * rows are. A small result (under 50,000 rows) goes to its feature's shape table
 * (`<schema>.f_<hash>`, one per feature, key and columns), whose first column holds the
 * materialization id and whose primary key is (id, entity key); a bigger one gets a table of its
 * own (`<schema>.m_<id>`) keyed on the entity key. Either way a key lookup is one index probe. Results are loaded with binary
 * `COPY FROM STDIN` as they stream from the feature, and published in the same transaction that
 * swaps the catalog record: readers see the old materialization or the new one, never a mix, and
 * a crash mid-load leaves nothing behind. Other processes learn of a publication through
 * `LISTEN`/`NOTIFY`, so `Last()` resolves from an in-process cache without a catalog query per read.
 *
 * The schema (catalog, `meta` with the format version, a sequence and the data tables) is
 * created on first use. See `docs/postgres.md`.
 *
 * ### Example
 * ```ts
 * import { defaultStore, Last } from 'featurefn';
 * import { PostgresMaterializer } from 'featurefn/postgres';
 *
 * const materializer = new PostgresMaterializer({ connection: process.env.DATABASE_URL!, schema: 'feature_store' });
 * defaultStore.addDecorator(materializer.decorator);
 * await materializer.materialize(departures, { when: new Date('2001-03-01') });
 * const rows = await defaultStore
 *   .withParams({ when: Last() })
 *   .getFeatures(departures, meanDelay7d)
 *   .filter({ origin: 'SFO' })
 *   .toArray();
 * ```
 */
export class PostgresMaterializer extends MaterializerBase {
  readonly name = 'postgres';
  /** The schema holding the catalog and data tables. */
  readonly schema: string;
  protected readonly dialect: SqlDialect = {
    quote: quoteIdentifier,
    placeholder,
    sqlType: (type) => POSTGRES_SQL_TYPES[type].replace(' COLLATE "C"', ''),
    // One aggregate per column read, over the one row of each materialization.
    groupedLookup: {
      kind: 'pick',
      pick: (column, idColumn, type) => {
        const where = ` FILTER (WHERE ${idColumn} = `;
        if (type === 'boolean') return [`bool_or(${column})${where}`, ')'];
        // jsonb has no max; an array of one value has a first element.
        if (type === 'json') return [`(array_agg(${column})${where}`, '))[1]'];
        return [`max(${column})${where}`, ')'];
      },
    },
  };

  readonly #pool: Pool;
  readonly #ownsPool: boolean;
  /** Identity of the database, as `postgresSource` gives it for the same connection. */
  readonly #database: unknown;
  #source: PostgresSource | undefined;
  /** Kysely on this store's pool, for reading back Kysely features; made on first use. */
  #kysely: Promise<Kysely<KyselyTables>> | undefined;
  readonly #listener: CatalogListener;
  /** The NOTIFY channel of this schema. */
  readonly #channel: string;
  /** Tells this instance's own notifications from other processes'. */
  readonly #instance = randomUUID();
  /** Prepared-statement name of each read's SQL text. */
  readonly #statementNames = new Map<string, string>();
  /** Names of the statements prepared on each connection of the pool. */
  readonly #prepared = new WeakMap<PoolClient, Set<string>>();
  readonly #maxPrepared: number;
  readonly #retainMs: number;
  readonly #onError: (error: FeatureStoreError) => void;
  #ready: Promise<void> | undefined;
  /** The table each record's rows are in (its catalog `stored_in`): `m_<id>` or a shape table. */
  readonly #storedIn = new WeakMap<Materialization, string>();
  /** Shape tables this process knows exist: a publication into one skips creating it. */
  readonly #knownShapes = new Set<string>();
  /** Per shape table: its rows at its last ANALYZE, and the rows published into it since (see `#keepStatistics`). */
  readonly #shapeGrowth = new Map<string, { analyzed: number; added: number }>();

  /**
   * Connects lazily: nothing happens until the first call, which creates the schema if missing.
   *
   * ### Example
   * ```ts
   * new PostgresMaterializer({ connection: 'postgres://postgres@127.0.0.1:5432/test', schema: 'features', poolSize: 4 });
   * ```
   */
  constructor(options: PostgresMaterializerOptions) {
    super(options);
    const { connection } = options ?? {};
    if (typeof connection !== 'string' && (typeof connection !== 'object' || connection === null)) {
      throw new FeatureStoreError(
        'STORE_ERROR',
        'PostgresMaterializer needs a connection: a URL such as "postgres://user@host:5432/db", a pg PoolConfig or a pg Pool.',
      );
    }
    this.schema = checkSchemaName(options.schema ?? 'featurefn', 'PostgreSQL');
    this.#maxPrepared = options.maxPreparedStatements ?? 200;
    this.#retainMs = parseDuration(options.retainReplaced ?? '10 minutes', 'retainReplaced');
    if (Buffer.byteLength(this.schema) > MAX_IDENTIFIER_BYTES) {
      throw new FeatureStoreError(
        'INVALID_SCHEMA',
        `the schema name "${this.schema}" must be 1 to ${MAX_IDENTIFIER_BYTES} bytes long, as PostgreSQL names are.`,
      );
    }
    let clientConfig: ClientConfig | undefined;
    if (isPool(connection)) {
      this.#pool = connection;
      this.#ownsPool = false;
      this.#database = connection;
    } else {
      clientConfig = typeof connection === 'string' ? { connectionString: connection } : connection;
      const max = options.poolSize ?? (clientConfig as PoolConfig).max ?? 10;
      this.#pool = new Pool({ ...clientConfig, max });
      this.#ownsPool = true;
      this.#database = databaseIdentity(clientConfig);
    }
    const onError =
      options.onError ??
      ((error: FeatureStoreError) =>
        console.warn(`featurefn (PostgreSQL store, schema "${this.schema}"): ${error.message}`));
    this.#onError = onError;
    // An idle connection the server dropped is removed from the pool; reported, not thrown: an
    // 'error' event without a listener would crash the process.
    this.#pool.on('error', (error) =>
      onError(this.#storeError("an idle connection of the store's pool", error, {}, 'The pool replaces it.')),
    );
    settleSessions(this.#pool);
    guardConnections(this.#pool);
    const channel = `featurefn_${this.schema}`;
    // Channel names are identifiers too: a long schema name is hashed rather than cut.
    this.#channel =
      Buffer.byteLength(channel) <= MAX_IDENTIFIER_BYTES
        ? channel
        : `featurefn_${createHash('sha1').update(this.schema).digest('hex')}`;
    this.#listener = new CatalogListener({
      channel: this.#channel,
      connect: () =>
        this.#listenerConnection(clientConfig ?? (this.#pool as Pool & { options: ClientConfig }).options),
      onError: (error) =>
        onError(
          this.#storeError(
            "listening for other processes' publications",
            error,
            {},
            'Reconnecting; meanwhile Last() is resolved again from the catalog.',
          ),
        ),
      onNotification: (payload) => {
        if (!payload?.includes(this.#instance)) this.invalidate();
      },
      onGap: () => this.invalidate(),
    });
  }

  /**
   * This store's database as a source of SQL features, on the store's own pool. Its `database`
   * is the `Pool` you passed in, or the normalized URL, so `postgresSource(samePoolOrUrl)` is
   * recognised as the same database: SQL features on it are materialized inside PostgreSQL with
   * `CREATE TABLE … AS`, and materialized SQL features read back as queries on it.
   */
  override get source(): PostgresSource {
    this.#source ??= createPostgresSource(this.#pool, this.#database);
    return this.#source;
  }

  /**
   * A materialized Kysely feature reads back as a Kysely query over its table
   * (`selectFrom('<schema>.m_<id>').selectAll()`) on this store's pool; other kinds as the base does.
   */
  protected override async readMaterialization(
    feature: FeatureInfo,
    materialization: Materialization,
  ): Promise<unknown> {
    if (materialization.kind !== 'kysely') return super.readMaterialization(feature, materialization);
    this.assertOpen();
    if (this.#kysely === undefined) {
      const pool = this.#pool;
      const creating = import('kysely').then(
        ({ Kysely, PostgresDialect }) =>
          new Kysely<KyselyTables>({
            // Kysely ends its pool on destroy(): give it a view that leaves ending to this store.
            dialect: new PostgresDialect({
              pool: { connect: () => pool.connect(), end: async () => undefined },
            }),
          }),
      );
      this.#kysely = creating;
      creating.catch(() => {
        if (this.#kysely === creating) this.#kysely = undefined;
      });
    }
    const db = await this.#kysely;
    const table = this.#storedInOf(materialization);
    if (!isShapeTable(table)) return db.withSchema(this.schema).selectFrom(table).selectAll();
    const { idColumn, names } = shapeLayoutAt(table, materialization.key, materialization.columns);
    return db
      .withSchema(this.schema)
      .selectFrom(table)
      .select(
        materialization.columns.map((c) =>
          names.has(c.name) ? `${names.get(c.name)} as ${c.name}` : c.name,
        ),
      )
      .where(idColumn, '=', materialization.id);
  }

  protected override isReplacedTable(error: unknown): boolean {
    return isReplacedTable(error);
  }

  /**
   * A materialization's own table, or its shape table and the rows of it with its id: the text
   * of a read over shape tables is then the same for every publication, and so is its prepared statement.
   */
  protected sourceOf(materialization: Materialization): {
    table: string;
    partition?: SourcePartition;
    names?: ReadonlyMap<string, string>;
  } {
    const storedIn = this.#storedInOf(materialization);
    const table = `${quoteIdentifier(this.schema)}.${quoteIdentifier(storedIn)}`;
    if (!isShapeTable(storedIn)) return { table };
    const { idColumn, names } = shapeLayoutAt(storedIn, materialization.key, materialization.columns);
    return { table, partition: { column: idColumn, value: BigInt(materialization.id) }, names };
  }

  #storedInOf(materialization: Materialization): string {
    return this.#storedIn.get(materialization) ?? `m_${materialization.id}`;
  }

  /** Builds a record and remembers where its rows are. */
  #recordIn(fields: Omit<Materialization, 'params'>, storedIn: string): Materialization {
    const record = this.record(fields);
    this.#storedIn.set(record, storedIn);
    return record;
  }

  protected async loadCatalog(): Promise<Materialization[]> {
    await this.#open();
    const text = `SELECT id::text AS id, feature_name, params_key, kind, key_columns, "columns", row_count::float8 AS row_count,
                source_hash, created_at, version, lineage, stored_in
         FROM ${this.#catalog} WHERE status = 'complete'`;
    let rows: Record<string, unknown>[];
    try {
      ({ rows } = await this.#pool.query(text).catch((error: unknown) => {
        // A read only: sent again once on a fresh connection if the pool handed out one the
        // server had just ended (a restart, pg_terminate_backend) before the pool noticed.
        if (isConnectionLoss(error)) return this.#pool.query(text);
        throw error;
      }));
    } catch (error) {
      throw this.#storeError('reading the catalog of materializations', error);
    }
    return rows.map((r) =>
      this.#recordIn(
        {
          id: r.id as string,
          featureName: r.feature_name as string,
          paramsKey: r.params_key as string,
          kind: r.kind as string,
          key: r.key_columns as string[],
          columns: r.columns as ColumnSpec[],
          rows: r.row_count as number,
          sourceHash: r.source_hash as string,
          createdAt: r.created_at as Date,
          version: r.version as string,
          lineage: r.lineage as Record<string, string>,
        },
        r.stored_in as string,
      ),
    );
  }

  protected async loadFeatures(): Promise<StoredFeature[]> {
    await this.#open();
    try {
      const { rows } = await this.#pool.query<Record<string, unknown>>(
        `SELECT feature_name, version, metadata::text AS metadata, recorded_at FROM ${quoteIdentifier(this.schema)}.features`,
      );
      return rows.map((r) =>
        storedFeatureOf(
          r.feature_name as string,
          r.version as string,
          r.metadata as string,
          r.recorded_at as Date,
        ),
      );
    } catch (error) {
      throw this.#storeError('reading the catalog of features', error);
    }
  }

  protected async publish(input: PublishInput): Promise<Materialization> {
    const context = { feature: input.feature.name, params: input.params };
    for (const column of input.columns) {
      if (Buffer.byteLength(column.name) > MAX_IDENTIFIER_BYTES) {
        throw new FeatureStoreError(
          'UNSUPPORTED_RESULT',
          `column "${column.name}" has a name longer than ${MAX_IDENTIFIER_BYTES} bytes, which PostgreSQL would cut. ` +
            'Rename the column in the feature. Nothing was stored.',
          { ...context, details: { column: column.name } },
        );
      }
    }
    let created: string | undefined;
    const record = await this.#inTransaction(context, async (client) => {
      // A small result goes to its shape's table; past SHARED_MAX_ROWS, to a table of its own.
      const { head, batches, small, close } = await peekBatches(input.batches, SHARED_MAX_ROWS);
      try {
        const id = await this.#nextId(client);
        if (small) {
          const shape = shapeLayoutOf(input.key, input.columns);
          await this.#checkSmallKey(input, head);
          if (!this.#knownShapes.has(shape.table)) {
            await createShapeTable(client, this.schema, shape, input.key);
            created = shape.table;
          }
          const table = `${quoteIdentifier(this.schema)}.${quoteIdentifier(shape.table)}`;
          const names = [shape.idColumn, ...shape.columns.map((c) => c.name)].map(quoteIdentifier);
          const rows = await copyBatches(
            client.query(copyFrom(`COPY ${table} (${names.join(', ')}) FROM STDIN (FORMAT binary)`)),
            input.columns,
            fromList(head),
            { id: BigInt(id) },
          ).catch((error: unknown) => {
            throw isServerError(error, '23505', '23502') ? this.#keyRefused(input, error) : error;
          });
          return await this.#commitRecord(client, input, id, rows, shape.table);
        }
        const table = this.#table(id);
        const names = input.columns.map((c) => quoteIdentifier(c.name));
        const definition = input.columns
          .map((c, i) => `${names[i]} ${POSTGRES_SQL_TYPES[c.type]}`)
          .join(', ');
        await client.query(`CREATE TABLE ${table} (${definition})`);
        // FREEZE: the table is new in this transaction, so rows can be written already frozen
        // (no later rewrite by vacuum); nobody can see them before the commit anyway.
        const rows = await copyBatches(
          client.query(copyFrom(`COPY ${table} (${names.join(', ')}) FROM STDIN (FORMAT binary, FREEZE)`)),
          input.columns,
          batches,
        );
        await this.#addKey(client, table, input);
        // Statistics now, so the first reads after publication are planned on real figures.
        await client.query(`ANALYZE ${table}`);
        return await this.#commitRecord(client, input, id, rows, `m_${id}`);
      } finally {
        // The result's stream is released however the load ended, before or after reading all of it.
        await close();
      }
    });
    if (created !== undefined) this.#knownShapes.add(created);
    await this.#keepStatistics(record);
    return record;
  }

  /**
   * Analyzes the shape table a small result went to once it holds 100,000 rows or more and the
   * rows published into it since its last ANALYZE reach a tenth of it, as autovacuum would, but
   * before the next read is planned: PostgreSQL then plans key lookups on real figures, and keeps
   * one generic plan for a prepared read instead of planning each call again (which costs more
   * than a lookup of fifty features). A smaller table is left to autovacuum: its figures would
   * make a scan of a few pages look cheaper than a probe of its key. An own table is analyzed as
   * it is published. Best effort: if it fails, autovacuum does it later.
   */
  async #keepStatistics(record: Materialization): Promise<void> {
    const table = this.#storedInOf(record);
    if (!isShapeTable(table)) return;
    const qualified = `${quoteIdentifier(this.schema)}.${quoteIdentifier(table)}`;
    const analyzed = async () => {
      const { rows } = await this.#pool.query<{ n: number }>({
        text: 'SELECT reltuples::float8 AS n FROM pg_class WHERE oid = to_regclass($1)',
        values: [qualified],
      });
      return rows[0]?.n ?? -1;
    };
    try {
      let growth = this.#shapeGrowth.get(table);
      if (growth === undefined) {
        // -1: never analyzed.
        growth = { analyzed: await analyzed(), added: 0 };
        this.#shapeGrowth.set(table, growth);
      }
      growth.added += record.rows;
      const rows = Math.max(growth.analyzed, 0) + growth.added;
      if (rows < ANALYZE_MIN_ROWS) return;
      if (growth.analyzed >= 0 && growth.added < growth.analyzed / 10) return;
      growth.added = 0;
      await this.#pool.query(`ANALYZE ${qualified}`);
      growth.analyzed = await analyzed();
    } catch {
      // autovacuum analyzes it in its own time
    }
  }

  /** Refuses a small result's null or duplicated key before it is loaded, as {@link #addKey} does after. */
  async #checkSmallKey(input: PublishInput, batches: readonly RecordBatch[]): Promise<void> {
    const keys = new KeyTracker(input.key, SHARED_MAX_ROWS);
    for await (const _ of keys.track(fromList(batches))) {
      // observed on the way
    }
    const summary = keys.summary()!;
    if (summary.nulls > 0) throw this.nullKeyError(input, summary.nulls);
    if (summary.duplicate !== undefined) throw this.duplicateKeyError(input, summary.duplicate);
  }

  /** The error for a key the shape table's primary key refused, which the check in Node let through. */
  #keyRefused(input: Pick<PublishInput, 'feature' | 'params'>, error: unknown): FeatureStoreError {
    const detail = String((error as { detail?: unknown }).detail ?? describeFailure(error)).slice(0, 300);
    return new FeatureStoreError(
      'DUPLICATE_KEY',
      `PostgreSQL refused a key of the result (${detail}); each key may appear once and none may be null. ` +
        'Aggregate the rows per key, or set the entity option to the full key. Nothing was stored.',
      { feature: input.feature.name, params: input.params, cause: error },
    );
  }

  /**
   * Materializes a SQL feature whose query runs in this database: `CREATE TABLE m_<id> AS` the
   * query, in the same transaction, with the same checks and publication as a COPY load. No row
   * passes through Node. Columns are stored in the types a COPY load would give them (`numeric`
   * as `double precision`, `timestamp` as `timestamptz` read as UTC, `json` as `jsonb`, numeric
   * arrays as `float8[]`, strings with `COLLATE "C"`).
   */
  protected override async publishQuery(
    input: Omit<PublishInput, 'key' | 'columns' | 'batches'>,
    query: SqlQuery,
    keyOf: (columns: readonly ColumnSpec[]) => readonly string[],
  ): Promise<Materialization> {
    const context = { feature: input.feature.name, params: input.params };
    const { text, values } = renderPostgres(query);
    const wrapped = `SELECT * FROM (\n${text}\n) AS q`;
    let createdShape: string | undefined;
    const record = await this.#inTransaction(context, async (client) => {
      const id = await this.#nextId(client);
      const table = this.#table(id);
      // The result's columns and types, from an empty table: the query is planned, not run.
      await client
        .query({ text: `CREATE TABLE ${table} AS ${wrapped} WITH NO DATA`, values })
        .catch((error: unknown) => {
          throw queryFailed(error, text);
        });
      const { rows: attributes } = await client.query<{ name: string; oid: number; type_name: string }>({
        text: `SELECT a.attname AS name, coalesce(nullif(t.typbasetype, 0), a.atttypid)::int AS oid,
                      format_type(a.atttypid, a.atttypmod) AS type_name
               FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
               WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
               ORDER BY a.attnum`,
        values: [table],
      });
      const columns = postgresColumnSpecs(
        attributes.map((a) => ({ name: a.name, oid: a.oid, typeName: a.type_name })),
        context,
      );
      const key = keyOf(columns);
      await client.query(`DROP TABLE ${table}`);
      // Stored in the types a COPY load gives, so reads and filters behave the same.
      const select = attributes
        .map(
          (a) =>
            `${postgresColumnMapping(a.oid)!.stored(`q.${quoteIdentifier(a.name)}`)} AS ${quoteIdentifier(a.name)}`,
        )
        .join(', ');
      const created = await client
        .query({ text: `CREATE TABLE ${table} AS SELECT ${select} FROM (\n${text}\n) AS q`, values })
        .catch((error: unknown) => {
          throw queryFailed(error, text);
        });
      const full: PublishInput = { ...input, key, columns, batches: noBatches() };
      const rows = created.rowCount ?? 0;
      await this.#addKey(client, table, full);
      if (rows >= SHARED_MAX_ROWS) {
        await client.query(`ANALYZE ${table}`);
        return this.#commitRecord(client, full, id, rows, `m_${id}`);
      }
      // Small: its rows move to its shape's table, in the same transaction.
      const shape = shapeLayoutOf(key, columns);
      if (!this.#knownShapes.has(shape.table)) {
        await createShapeTable(client, this.schema, shape, key);
        createdShape = shape.table;
      }
      const into = shape.columns.map((c) => quoteIdentifier(c.name)).join(', ');
      const from = columns.map((c) => quoteIdentifier(c.name)).join(', ');
      await client.query({
        text: `INSERT INTO ${quoteIdentifier(this.schema)}.${quoteIdentifier(shape.table)} (${quoteIdentifier(shape.idColumn)}, ${into})
               SELECT $1::bigint, ${from} FROM ${table}`,
        values: [id],
      });
      await client.query(`DROP TABLE ${table}`);
      return this.#commitRecord(client, full, id, rows, shape.table);
    });
    if (createdShape !== undefined) this.#knownShapes.add(createdShape);
    await this.#keepStatistics(record);
    return record;
  }

  /**
   * Runs `body` in a transaction on a connection of its own; on failure rolls back, so nothing
   * is left behind, and reports the error for the feature and parameters.
   */
  async #inTransaction(
    context: { feature: string; params: Params },
    body: (client: PoolClient) => Promise<Materialization>,
  ): Promise<Materialization> {
    await this.#open();
    let client: PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw this.#storeError('connecting to store the result', error, context, 'Nothing was stored.');
    }
    let transaction: Transaction | undefined;
    let result: Materialization | undefined;
    try {
      transaction = await Transaction.begin(client);
      result = await body(client);
      await transaction.commit();
    } catch (error) {
      // pg refuses a statement on a connection it knows is lost ("not queryable") without sending it.
      if (result !== undefined && isConnectionLoss(error) && !/not queryable/.test(String(error))) {
        // COMMIT was sent and its answer lost: the server may have committed. This instance ignores
        // its own notifications, so its catalog is read again before anyone checks.
        this.invalidate();
        throw this.#storeError(
          'storing the result',
          error,
          { ...context, details: { id: result.id } },
          `The connection was lost after COMMIT was sent, so materialization ${result.id} may or may not have been stored. ` +
            `Once the server is reachable, check with materializer.listMaterializations(${JSON.stringify(context.feature)}) ` +
            'whether a record with that id is there, or materialize again (a new publication replaces it).',
        );
      }
      if (error instanceof FeatureStoreError) {
        if (error.feature !== undefined) throw error;
        throw new FeatureStoreError(error.code, error.message, {
          ...context,
          sql: error.sql,
          cause: error.cause,
          details: error.details,
        });
      }
      throw this.#storeError('storing the result', error, context, 'Nothing was stored.');
    } finally {
      await transaction?.end();
    }
    await this.#dropRetiredQuietly();
    return result;
  }

  /**
   * Removes the rows of replaced materializations retired longer than `retainReplaced` ago: an
   * own table (`m_<id>`, results of 50,000 rows or more) is dropped, each in a short transaction
   * that gives up after 100 ms if a reader still holds the table (tried again next time); rows in
   * a shape table (the feature's small results) are deleted, and the table is `VACUUM`ed so the
   * space is reused. Also retires any data table left without a record (it goes the same way,
   * after the grace period) and deletes shape-table rows with neither a record nor a retired
   * entry. Later publications and `close()` remove retired rows too, but only this sweeps for
   * orphans; call it from a periodic job. Resolves to the ids removed and of tables still in use.
   *
   * ### Example
   * ```ts
   * const { dropped, busy } = await materializer.vacuum();
   * ```
   */
  async vacuum(): Promise<{ dropped: string[]; busy: string[] }> {
    await this.#open();
    try {
      const { dropped, busy, shared } = await dropRetiredTables(this.#pool, this.schema, this.#retainMs, {
        sweep: true,
      });
      for (const table of shared)
        await this.#pool.query(`VACUUM ${quoteIdentifier(this.schema)}.${quoteIdentifier(table)}`);
      return { dropped, busy };
    } catch (error) {
      throw this.#storeError('dropping the tables of replaced materializations', error);
    }
  }

  /** {@link vacuum} after a publication or at close: a failure is reported, never thrown. */
  async #dropRetiredQuietly(): Promise<void> {
    try {
      await dropRetiredTables(this.#pool, this.schema, this.#retainMs);
    } catch (error) {
      this.#onError(
        this.#storeError(
          'dropping the tables of replaced materializations',
          error,
          {},
          'They are dropped on a later publication or vacuum().',
        ),
      );
    }
  }

  protected async retire(records: readonly Materialization[]): Promise<string[]> {
    const context =
      records.length === 1 ? { feature: records[0]!.featureName, params: records[0]!.params } : {};
    await this.#open();
    let transaction: Transaction | undefined;
    try {
      transaction = await Transaction.begin(await this.#pool.connect());
      const { client } = transaction;
      const { rows } = await client.query<RetiredEntry>({
        text: `DELETE FROM ${this.#catalog} WHERE id = ANY($1::bigint[]) RETURNING id::text AS id, stored_in AS "storedIn"`,
        values: [records.map((r) => r.id)],
      });
      const ids = rows.map((r) => r.id);
      await retireTables(client, this.schema, rows);
      // Other processes re-read the catalog (delivered at commit).
      await client.query({
        text: 'SELECT pg_notify($1, $2)',
        values: [this.#channel, JSON.stringify({ by: this.#instance, retired: ids.length })],
      });
      await transaction.commit();
      return ids;
    } catch (error) {
      throw this.#storeError('retiring materializations', error, context, 'Nothing was retired.');
    } finally {
      await transaction?.end();
    }
  }

  /** A new materialization id, drawn inside the publishing transaction. */
  async #nextId(client: ClientBase): Promise<string> {
    const { rows } = await client.query<{ id: string }>({
      text: 'SELECT nextval($1::regclass)::text AS id',
      values: [`${quoteIdentifier(this.schema)}.materialization_id`],
    });
    return rows[0]!.id;
  }

  /**
   * The end of every publication, inside its transaction: swaps the catalog record under the
   * advisory lock of the feature and parameters, retires the replaced table (dropped later, see
   * `vacuum`, so this never waits for its readers) and announces the publication (delivered at commit).
   */
  async #commitRecord(
    client: ClientBase,
    input: Omit<PublishInput, 'batches'>,
    id: string,
    rows: number,
    storedIn: string,
  ): Promise<Materialization> {
    this.checkRows(input, rows);
    // Serialize publications of the same feature and parameters (across processes) from here to
    // the commit, so that exactly one record and one data table remain.
    await client.query({
      text: 'SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))',
      values: [`featurefn:${this.schema}`, `${input.feature.name}\n${input.paramsKey}`],
    });
    const { rows: old } = await client.query<RetiredEntry>({
      text: `DELETE FROM ${this.#catalog} WHERE feature_name = $1 AND params_key = $2
             RETURNING id::text AS id, stored_in AS "storedIn"`,
      values: [input.feature.name, input.paramsKey],
    });
    await retireTables(client, this.schema, old);
    const { rows: inserted } = await client.query<{ created_at: Date }>({
      text: `INSERT INTO ${this.#catalog}
               (id, feature_name, params_key, params, source_hash, row_count, created_at, status, kind, key_columns, "columns", version, lineage, stored_in)
             VALUES ($1, $2, $3, $4, $5, $6, date_trunc('milliseconds', clock_timestamp()), 'complete', $7, $8, $9, $10, $11, $12)
             RETURNING created_at`,
      values: [
        id,
        input.feature.name,
        input.paramsKey,
        JSON.stringify(input.params),
        input.feature.sourceHash,
        rows,
        input.kind,
        JSON.stringify(input.key),
        JSON.stringify(input.columns),
        input.record.version,
        JSON.stringify(input.record.lineage),
        storedIn,
      ],
    });
    await client.query({
      text: `INSERT INTO ${quoteIdentifier(this.schema)}.features (feature_name, version, metadata, recorded_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (feature_name, version) DO UPDATE SET metadata = EXCLUDED.metadata, recorded_at = EXCLUDED.recorded_at`,
      values: [
        input.feature.name,
        input.record.version,
        featureRecordText(input.record, input.key, input.columns),
        inserted[0]!.created_at,
      ],
    });
    // Delivered at commit, to every process listening on this schema's channel.
    await client.query({
      text: 'SELECT pg_notify($1, $2)',
      values: [this.#channel, JSON.stringify({ by: this.#instance, feature: input.feature.name, id })],
    });
    return this.#recordIn(
      {
        id,
        featureName: input.feature.name,
        paramsKey: input.paramsKey,
        kind: input.kind,
        key: input.key,
        columns: input.columns,
        rows,
        sourceHash: input.feature.sourceHash,
        createdAt: inserted[0]!.created_at,
        version: input.record.version,
        lineage: input.record.lineage,
      },
      storedIn,
    );
  }

  protected runRead(query: CompiledQuery, format: 'rows' | 'arrow'): Promise<Row[] | Table> {
    const values = query.params.map(toPostgresValue);
    const name = this.#statementName(query.sql);
    if (format === 'rows') {
      return this.#query({ name, text: query.sql, values, types: READ_TYPES }) as Promise<Row[]>;
    }
    const config: QueryArrayConfig = { name, text: query.sql, values, types: READ_TYPES, rowMode: 'array' };
    return this.#query(config).then((rows) => {
      const columns = query.columns.map((_, c) => (rows as unknown[][]).map((row) => row[c]));
      return tableFromColumns(query.columns, columns);
    });
  }

  protected async closeConnections(): Promise<void> {
    if (
      await this.#ready?.then(
        () => true,
        () => false,
      )
    )
      await this.#dropRetiredQuietly();
    await this.#listener.stop();
    // The Kysely instance's pool is a view of this store's: destroying it ends nothing.
    await (await this.#kysely?.catch(() => undefined))?.destroy();
    if (this.#ownsPool) await this.#pool.end();
  }

  protected override invalidate(): void {
    super.invalidate();
    if (this.#statementNames.size > 1000) this.#statementNames.clear();
  }

  get #catalog(): string {
    return `${quoteIdentifier(this.schema)}.catalog`;
  }

  #table(id: string): string {
    return `${quoteIdentifier(this.schema)}.${quoteIdentifier(`m_${id}`)}`;
  }

  #statementName(sql: string): string {
    let name = this.#statementNames.get(sql);
    if (name === undefined) {
      name = `featurefn_${createHash('sha1').update(sql).digest('hex')}`;
      this.#statementNames.set(sql, name);
    }
    return name;
  }

  /**
   * Runs a read and resolves to its rows; once more if the pool handed out a connection that had
   * already died. Written with the driver's callbacks: one promise per read, which a key lookup
   * of tens of microseconds notices.
   */
  #query(config: QueryConfig | QueryArrayConfig): Promise<unknown[]> {
    return new Promise((resolve, reject) => this.#send(config, true, resolve, reject));
  }

  #send(
    config: QueryConfig | QueryArrayConfig,
    retry: boolean,
    resolve: (rows: unknown[]) => void,
    reject: (error: unknown) => void,
  ): void {
    const failed = (error: Error) => {
      // The query was never sent on a connection known to be broken: retrying it is safe.
      if (retry && /not queryable/.test(error.message)) this.#send(config, false, resolve, reject);
      else reject(error);
    };
    this.#pool.connect((error, client) => {
      if (error || client === undefined) return failed(error ?? new Error('the pool gave no connection'));
      let prepared = this.#prepared.get(client);
      if (prepared === undefined) {
        prepared = new Set();
        this.#prepared.set(client, prepared);
      }
      let broken: Error | undefined;
      // A checked-out client has no listener of the pool's: the server ending the session just after
      // the answer (or between queries) would be an 'error' event nobody handles, which crashes the process.
      const onError = (error: Error) => {
        broken ??= error;
      };
      client.on('error', onError);
      client.query(config, (error: Error | undefined, result: { rows: unknown[] }) => {
        client.off('error', onError);
        // A server error leaves the session usable, unless it is the server ending the session.
        if (error && (!isServerError(error) || isConnectionLoss(error))) broken = error;
        if (config.name !== undefined) prepared.add(config.name);
        // Each text names its tables, so a connection would keep a prepared statement per replaced
        // table: past the bound it is closed, which frees them all, and the pool opens a new one.
        client.release(broken ?? prepared.size >= this.#maxPrepared);
        if (error) failed(error);
        else resolve(result.rows);
      });
    });
  }

  /** Adds the primary key; on a duplicated or null key, says which, as DuckDB does. */
  async #addKey(client: ClientBase, table: string, input: PublishInput): Promise<void> {
    await client.query('SAVEPOINT featurefn_key');
    try {
      await client.query(
        `ALTER TABLE ${table} ADD PRIMARY KEY (${input.key.map(quoteIdentifier).join(', ')})`,
      );
    } catch (error) {
      if (!isServerError(error, '23505', '23502')) throw error;
      await client.query('ROLLBACK TO SAVEPOINT featurefn_key');
      const checks = this.keyChecks(table, input.key);
      const { rows: summary } = await client.query({ text: checks.summary, types: READ_TYPES });
      const count = Number((summary[0] as Row).nulls);
      if (count > 0) throw this.nullKeyError(input, count);
      const { rows: duplicates } = await client.query({ text: checks.duplicates, types: READ_TYPES });
      if (duplicates[0] !== undefined) throw this.duplicateKeyError(input, duplicates[0] as Row);
      throw error;
    }
  }

  #open(): Promise<void> {
    this.assertOpen();
    if (this.#ready === undefined) {
      const ready = this.#prepare();
      this.#ready = ready;
      ready.catch(() => {
        if (this.#ready === ready) this.#ready = undefined;
      });
    }
    return this.#ready;
  }

  /** Creates the schema if needed, checks its format, and starts listening before the catalog is first read. */
  async #prepare(): Promise<void> {
    try {
      let version = await this.#formatVersion();
      if (version === undefined) {
        await this.#createSchema();
        version = await this.#formatVersion();
      }
      if (version !== undefined && version > POSTGRES_FORMAT_VERSION) {
        throw new FeatureStoreError(
          'STORE_ERROR',
          `schema "${this.schema}" holds a featurefn catalog of format ${version}, newer than this release reads ` +
            `(${POSTGRES_FORMAT_VERSION}). Upgrade featurefn.`,
        );
      }
      if (version !== undefined && version < POSTGRES_FORMAT_VERSION) await this.#upgradeCatalog();
      await ensureRetiredTable(this.#pool, this.schema);
      await this.#listener.start();
    } catch (error) {
      if (error instanceof FeatureStoreError) throw error;
      throw this.#storeError(`opening the featurefn schema "${this.schema}"`, error);
    }
  }

  /** The schema's format version, or `undefined` when the schema or its tables do not exist yet. */
  async #formatVersion(): Promise<number | undefined> {
    try {
      const { rows } = await this.#pool.query<{ value: string }>(
        `SELECT value FROM ${quoteIdentifier(this.schema)}.meta WHERE name = 'format_version'`,
      );
      return rows[0] === undefined ? undefined : Number(rows[0].value);
    } catch (error) {
      // 3F000: no such schema; 42P01: no such table.
      if (isServerError(error, '3F000', '42P01')) return undefined;
      throw error;
    }
  }

  async #createSchema(): Promise<void> {
    const schema = quoteIdentifier(this.schema);
    const transaction = await Transaction.begin(await this.#pool.connect());
    const { client } = transaction;
    try {
      // Two processes creating the same schema at once would collide on IF NOT EXISTS.
      await client.query({
        text: 'SELECT pg_advisory_xact_lock(hashtext($1), 0)',
        values: [`featurefn:${this.schema}`],
      });
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
      await client.query(`CREATE SEQUENCE IF NOT EXISTS ${schema}.materialization_id`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${schema}.meta (name text PRIMARY KEY, value text NOT NULL)`,
      );
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${this.#catalog} (
           id bigint PRIMARY KEY,
           feature_name text NOT NULL,
           params_key text NOT NULL,
           params jsonb NOT NULL,
           source_hash text NOT NULL,
           row_count bigint NOT NULL,
           created_at timestamptz NOT NULL,
           status text NOT NULL,
           kind text NOT NULL,
           key_columns jsonb NOT NULL,
           "columns" jsonb NOT NULL,
           UNIQUE (feature_name, params_key)
         )`,
      );
      await client.query({
        // A new catalog starts at format 1 (the layout above) and is upgraded like any other.
        text: `INSERT INTO ${schema}.meta (name, value) VALUES ('format_version', $1) ON CONFLICT DO NOTHING`,
        values: ['1'],
      });
      await transaction.commit();
    } finally {
      await transaction.end();
    }
  }

  /**
   * CATALOG FORMAT UPGRADES: the one place where the catalog's layout changes. Brings the schema's
   * catalog to {@link POSTGRES_FORMAT_VERSION} in one transaction, under the schema's lock (so two
   * processes upgrading at once do it once); every step is idempotent.
   */
  async #upgradeCatalog(): Promise<void> {
    const schema = quoteIdentifier(this.schema);
    const transaction = await Transaction.begin(await this.#pool.connect());
    const { client } = transaction;
    try {
      await client.query({
        text: 'SELECT pg_advisory_xact_lock(hashtext($1), 0)',
        values: [`featurefn:${this.schema}`],
      });
      const { rows } = await client.query<{ value: string }>(
        `SELECT value FROM ${schema}.meta WHERE name = 'format_version'`,
      );
      const from = Number(rows[0]!.value);
      if (from < 2) {
        // 2: each materialization's version and lineage; metadata per feature and version.
        await client.query(
          `ALTER TABLE ${this.#catalog} ADD COLUMN IF NOT EXISTS version text NOT NULL DEFAULT ''`,
        );
        await client.query(
          `ALTER TABLE ${this.#catalog} ADD COLUMN IF NOT EXISTS lineage jsonb NOT NULL DEFAULT '{}'`,
        );
        await client.query(
          `CREATE TABLE IF NOT EXISTS ${schema}.features (
             feature_name text NOT NULL,
             version text NOT NULL,
             metadata jsonb NOT NULL,
             recorded_at timestamptz NOT NULL,
             PRIMARY KEY (feature_name, version)
           )`,
        );
      }
      if (from < 3) {
        // 3: where each materialization's rows are (`m_<id>`, or a shape table shared by the small
        // materializations of a feature), in the catalog and in the retired list. Existing
        // materializations keep their own tables: no data moves.
        await client.query(`ALTER TABLE ${this.#catalog} ADD COLUMN IF NOT EXISTS stored_in text`);
        await client.query(`UPDATE ${this.#catalog} SET stored_in = 'm_' || id WHERE stored_in IS NULL`);
        await client.query(`ALTER TABLE ${this.#catalog} ALTER COLUMN stored_in SET NOT NULL`);
        await upgradeRetiredTable(client, this.schema);
      }
      // 4: small materializations go to tables shared by every feature of the same key and column
      // types (`s_…`, value columns `v1`, `v2`, …). The tables of format 3 (`f_…`, one feature's,
      // under its own column names) are read as they are: no data moves, but an older release
      // would misread the new tables, hence the new format.
      if (from < POSTGRES_FORMAT_VERSION) {
        await client.query({
          text: `UPDATE ${schema}.meta SET value = $1 WHERE name = 'format_version'`,
          values: [String(POSTGRES_FORMAT_VERSION)],
        });
      }
      await transaction.commit();
    } finally {
      await transaction.end();
    }
  }

  /**
   * A dedicated connection for LISTEN, never a pool client (it would be held for good, and a
   * pool of one would deadlock): for a pool passed in, made from that pool's own settings.
   */
  async #listenerConnection(config: ClientConfig): Promise<ListenerConnection> {
    const client = new Client(config);
    client.on('error', () => undefined); // until the listener attaches its own
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    return { client, close: () => client.end() };
  }

  protected readFailed(plan: ReadPlan, error: unknown): FeatureStoreError {
    const names = plan.sources.map((s) => s.feature.name);
    const keys = new Set(plan.sources.map((s) => s.materialization.paramsKey));
    const params = keys.size === 1 ? plan.sources[0]!.materialization.params : undefined;
    const what =
      names.length === 1
        ? 'reading it'
        : `reading ${names.join(', ')}${params === undefined ? '' : ` with parameters ${formatParams(params)}`}`;
    return new FeatureStoreError(
      'STORE_ERROR',
      `${what} failed in PostgreSQL: ${describeFailure(error)}. ` +
        'This call was not retried; later calls use a new connection, so read again once the server is reachable.',
      {
        ...(names.length === 1 ? { feature: names[0], params } : {}),
        cause: error,
        details: { features: names },
      },
    );
  }

  #storeError(
    doing: string,
    error: unknown,
    context: FeatureStoreErrorContext = {},
    consequence = '',
  ): FeatureStoreError {
    return new FeatureStoreError(
      'STORE_ERROR',
      `${doing} failed in PostgreSQL: ${describeFailure(error)}.${consequence === '' ? '' : ` ${consequence}`}`,
      { ...context, cause: error },
    );
  }
}

async function* fromList(batches: readonly RecordBatch[]): AsyncIterable<RecordBatch> {
  yield* batches;
}

/** The batches of a publication whose rows never pass through Node. */
async function* noBatches(): AsyncIterable<RecordBatch> {}
