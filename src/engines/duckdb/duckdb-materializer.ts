import type {
  DuckDBConnection,
  DuckDBInstance,
  DuckDBPreparedStatement,
  DuckDBResultReader,
  DuckDBValue,
} from '@duckdb/node-api';
import { Table } from 'apache-arrow';
import { type Duration, parseDuration } from '../../duration.js';
import { FeatureStoreError } from '../../errors.js';
import type { FeatureInfo } from '../../feature/feature.js';
import type { Params } from '../../feature/params.js';
import { describeValue } from '../../format.js';
import { type ColumnSpec, type Row, tableFromColumns } from '../../frame/columns.js';
import { featureRecordText, storedFeatureOf } from '../../materializer/feature-catalog.js';
import { type KeySummary, KeyTracker } from '../../materializer/key-tracker.js';
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
import type { BoundValue, CompiledQuery, SqlDialect } from '../../query/sql-compiler.js';
import type { SqlQuery, SqlSource } from '../../sql/sql-query.js';
import { duckdbColumnSpecs } from './duckdb-columns.js';
import { columnDefinitions, DUCKDB_DIALECT, dateOf, quoteIdentifier, timestampOf } from './duckdb-dialect.js';
import { acquireInstance } from './duckdb-instances.js';
import { appendBatches } from './duckdb-load.js';
import {
  countPublication,
  dropRetiredTables,
  publicationCount,
  retiredTableDefinition,
  retireStatement,
  StaleCatalog,
} from './duckdb-retired.js';
import { createDuckDBSource, duckdbSource, renderDuckDB } from './duckdb-source.js';
import { readChunks } from './duckdb-stream.js';
import { firstRowExact, readDuckDBColumnsExact } from './duckdb-strings.js';
import { ChunkBatchBuilder } from './duckdb-vectors.js';

/** Options of {@link DuckDBMaterializer}. */
export interface DuckDBMaterializerOptions extends MaterializerOptions {
  /**
   * Database file, created if missing. Default is `':memory:'`. Every materializer on the same
   * file in this process shares one DuckDB instance (with the first one's `threads`), closed when
   * the last of them closes, so none loses another's publications.
   */
  path?: string;
  /** Schema holding the catalog and data tables. Default is `'featurefn'`. */
  schema?: string;
  /**
   * An open DuckDB database to keep the store in, instead of `path`: the store then shares it with
   * your own tables, and SQL features on `duckdbSource(instance)` (or `materializer.source`) are
   * materialized inside it. `close()` leaves an instance you pass open.
   */
  instance?: DuckDBInstance;
  /** DuckDB worker threads. Default is DuckDB's own (one per core); `1` gives steadier key lookups. */
  threads?: number;
  /**
   * How long a replaced materialization's table is kept after the publication that replaced it,
   * so that a query a decorated call returned over it (a `sql` result) still runs. Tables retired
   * longer than this are dropped by later publications, `close()` and
   * {@link DuckDBMaterializer.vacuum}. Default is `'10 minutes'`.
   */
  retainReplaced?: Duration;
}

/** Catalog layout version; older catalogs are upgraded in place (see `upgradeCatalog`), newer refused. */
export const DUCKDB_FORMAT_VERSION = 2;

/** Runs pieces of work one at a time, in the order they were queued. */
class Queue {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(work);
    this.#tail = next.catch(() => undefined);
    return next;
  }
}

/**
 * The queue of every writer on one instance: DuckDB's transactions are optimistic, so two stores
 * writing the same catalog at once would fail each other's commits (`write-write conflict`).
 * Writes on one database are serial anyway; queued, none fails.
 */
const writeQueues = new WeakMap<DuckDBInstance, Queue>();

function writeQueueOf(instance: DuckDBInstance): Queue {
  let queue = writeQueues.get(instance);
  if (queue === undefined) {
    queue = new Queue();
    writeQueues.set(instance, queue);
  }
  return queue;
}

/** One connection used by one statement at a time, with its prepared statements. */
class Session {
  readonly statements = new Map<string, Promise<DuckDBPreparedStatement>>();
  constructor(
    readonly connection: DuckDBConnection,
    readonly queue = new Queue(),
  ) {}
  /** Runs `work` when every earlier piece of work on this connection (or queue) has finished. */
  run<T>(work: (connection: DuckDBConnection) => Promise<T>): Promise<T> {
    return this.queue.run(() => work(this.connection));
  }
}

/** Rows per record batch of an Arrow read. */
const ROWS_PER_BATCH = 65_536;

/**
 * The embedded store: DuckDB in a file (or in memory), no server. A catalog table records each
 * materialization; each materialization's rows live in their own table (`m_<id>`) with an index
 * on a single-column key, published in one transaction with the catalog swap.
 *
 * ### Example
 * ```ts
 * import { defaultStore } from 'featurefn';
 * import { DuckDBMaterializer } from 'featurefn/duckdb';
 *
 * const materializer = new DuckDBMaterializer({ path: 'features.duckdb' });
 * defaultStore.addDecorator(materializer.decorator);
 * await materializer.materialize(departures, { when: new Date('2001-03-01') });
 * ```
 */
export class DuckDBMaterializer extends MaterializerBase {
  readonly name = 'duckdb';
  /** The database file, or `':memory:'`. */
  readonly path: string;
  /** The schema holding the catalog and data tables. */
  readonly schema: string;
  protected readonly dialect: SqlDialect = DUCKDB_DIALECT;

  readonly #threads: number | undefined;
  readonly #retainMs: number;
  /** The publication count (see `publicationCount`) the cached catalog reflects. */
  #seen = -1;
  readonly #instance: DuckDBInstance | undefined;
  #source: SqlSource | undefined;
  #database = 'memory';
  #ready: Promise<{ instance: DuckDBInstance; writer: Session; reader: Session }> | undefined;
  /** The instance once open. */
  #opened: DuckDBInstance | undefined;
  /** Gives back the shared instance this store opened on `path` (none for an instance passed in). */
  #release: (() => void) | undefined;
  /** The table id this store last published per feature and parameters (see `slotOf`). */
  readonly #live = new Map<string, string>();
  /** The catalog's feature records this store wrote and committed, by feature name. */
  readonly #featuresWritten = new Map<string, string>();

  constructor(options: DuckDBMaterializerOptions = {}) {
    super(options);
    this.path = options.path ?? ':memory:';
    if (this.path.includes('\u0000')) {
      throw new FeatureStoreError(
        'INVALID_PATH',
        `the DuckDB path ${describeValue(this.path)} contains a NUL character, which no file name can hold. Remove it.`,
        { details: { path: this.path } },
      );
    }
    this.schema = checkSchemaName(options.schema ?? 'featurefn', 'DuckDB');
    this.#threads = options.threads;
    this.#instance = options.instance;
    this.#retainMs = parseDuration(options.retainReplaced ?? '10 minutes', 'retainReplaced');
  }

  /**
   * Drops the tables of replaced materializations retired longer than `retainReplaced` ago, and
   * any data table left without a record (after the same grace period). Later publications and
   * `close()` do this too. Resolves to the ids of the tables dropped and of those still in use.
   *
   * ### Example
   * ```ts
   * const { dropped } = await materializer.vacuum();
   * ```
   */
  async vacuum(): Promise<{ dropped: string[]; busy: string[] }> {
    const { writer } = await this.#open();
    return this.#guard('dropping the tables of replaced materializations', () =>
      writer.run((c) => this.#dropRetired(c)),
    );
  }

  /** `work`, with any raw DuckDB error it throws reported as a `STORE_ERROR` saying what was being done. */
  async #guard<T>(
    doing: string,
    work: () => Promise<T>,
    context: { feature?: string; params?: Params } = {},
  ): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof FeatureStoreError) throw error;
      throw new FeatureStoreError('STORE_ERROR', `${doing} failed in DuckDB: ${String(error)}`, {
        ...context,
        cause: error,
        details: { path: this.path, schema: this.schema },
      });
    }
  }

  #dropRetired(c: DuckDBConnection, sweep = true): Promise<{ dropped: string[]; busy: string[] }> {
    return dropRetiredTables(
      c,
      { prefix: this.#prefix, database: this.#database, schema: this.schema },
      this.#retainMs,
      sweep,
    );
  }

  /**
   * The store's database as a source of SQL features: ``materializer.source.sql`SELECT …` ``.
   * Such features are materialized inside DuckDB with one `CREATE TABLE … AS`.
   */
  override get source(): SqlSource {
    this.#source ??= this.#instance
      ? duckdbSource(this.#instance)
      : createDuckDBSource(this, async () => ({
          connection: await (await this.#open()).instance.connect(),
          own: true,
        }));
    return this.#source;
  }

  private tableOf(materialization: Materialization): string {
    return `${this.#prefix}.${quoteIdentifier(`m_${materialization.id}`)}`;
  }

  protected sourceOf(materialization: Materialization): { table: string } {
    return { table: this.tableOf(materialization) };
  }

  protected async loadCatalog(): Promise<Materialization[]> {
    const { instance, reader } = await this.#open();
    this.#seen = publicationCount(instance, this.schema);
    const result = await this.#guard('reading the catalog of materializations', () =>
      reader.run((c) =>
        c.runAndReadAll(
          `SELECT id, feature_name, params_key, kind, "key", "columns", "rows", source_hash, created_at, version, lineage
         FROM ${this.#catalog} WHERE status = 'complete'
         QUALIFY row_number() OVER (PARTITION BY feature_name, params_key ORDER BY id DESC) = 1`,
        ),
      ),
    );
    return result.getRowObjectsJS().map((r) =>
      this.record({
        id: String(r.id),
        featureName: r.feature_name as string,
        paramsKey: r.params_key as string,
        kind: r.kind as string,
        key: JSON.parse(r.key as string) as string[],
        columns: JSON.parse(r.columns as string) as ColumnSpec[],
        rows: Number(r.rows),
        sourceHash: r.source_hash as string,
        createdAt: r.created_at as Date,
        version: (r.version as string | null) ?? '',
        lineage: JSON.parse((r.lineage as string | null) ?? '{}') as Record<string, string>,
      }),
    );
  }

  protected async loadFeatures(): Promise<StoredFeature[]> {
    const { reader } = await this.#open();
    const result = await this.#guard('reading the catalog of features', () =>
      reader.run((c) =>
        c.runAndReadAll(`SELECT feature_name, version, metadata, recorded_at FROM ${this.#prefix}.features`),
      ),
    );
    return result
      .getRowObjectsJS()
      .map((r) =>
        storedFeatureOf(
          r.feature_name as string,
          r.version as string,
          r.metadata as string,
          r.recorded_at as Date,
        ),
      );
  }

  protected async publish(input: PublishInput): Promise<Materialization> {
    if (input.kind === 'kysely') {
      // Its decorated calls promise a Kysely query, and DuckDB has no Kysely database to make one on.
      throw new FeatureStoreError(
        'UNSUPPORTED_RESULT',
        'the function returned a Kysely query, which a DuckDB store cannot give back as a Kysely query. ' +
          'Materialize it in a PostgresMaterializer, or return `await query.execute()` (row objects) instead. Nothing was stored.',
        { feature: input.feature.name, params: input.params, details: { kind: input.kind } },
      );
    }
    return this.#publishWith(input, async (c, name, table) => {
      await c.run(`CREATE TABLE ${table} (${columnDefinitions(input.columns)})`);
      const keys = new KeyTracker(input.key, KEY_CHECK_MAX_ROWS);
      await appendBatches(
        c,
        { catalog: this.#database, schema: this.schema, name },
        input.columns,
        keys.track(input.batches),
      );
      return { columns: input.columns, key: input.key, summary: keys.summary() };
    });
  }

  /** Runs the query inside DuckDB with `CREATE TABLE … AS`: no row passes through Node. */
  protected override async publishQuery(
    input: Omit<PublishInput, 'key' | 'columns' | 'batches'>,
    query: SqlQuery,
    keyOf: (columns: readonly ColumnSpec[]) => readonly string[],
  ): Promise<Materialization> {
    return this.#publishWith(input, async (c, _name, table) => {
      const { text, values } = renderDuckDB(query);
      try {
        await c.run(`CREATE TABLE ${table} AS SELECT * FROM (${text}) AS q`, values);
      } catch (cause) {
        throw new FeatureStoreError(
          'FEATURE_FAILED',
          `DuckDB could not run the SQL feature's query: ${String(cause)}. Fix the query; nothing was stored.`,
          { feature: input.feature.name, params: input.params, sql: text, cause },
        );
      }
      const created = await c.runAndReadAll(`SELECT * FROM ${table} LIMIT 0`);
      const columns = duckdbColumnSpecs(created, input.feature.name);
      return { columns, key: keyOf(columns) };
    });
  }

  /**
   * One publication, in one transaction: `load` creates and fills the new table; then the key is
   * checked and indexed, and the catalog record swapped. Any failure rolls all of it back.
   */
  async #publishWith(
    input: Omit<PublishInput, 'key' | 'columns' | 'batches'>,
    load: (
      c: DuckDBConnection,
      name: string,
      table: string,
    ) => Promise<{
      columns: readonly ColumnSpec[];
      key: readonly string[];
      summary?: KeySummary | undefined;
    }>,
  ): Promise<Materialization> {
    const { instance, writer } = await this.#open();
    return writer.run(async (c) => {
      // For a few hundred rows each statement costs more than the data (0.3–1 ms a round trip), so
      // a publication makes four calls: one begins the transaction and draws the id; `load`
      // creates the table and appends the rows, checking a small result's key as it streams (a big one's is checked
      // by one scan); then the removal of replaced records and tables, the index, the new record and
      // the commit go in one call. The id is drawn in the store, in the transaction: writers on
      // one instance are queued (see `writeQueueOf`), and a file is open in one process only.
      try {
        const id = String(
          (
            await c.runAndReadAll(
              `BEGIN TRANSACTION; UPDATE ${this.#prefix}.meta
               SET value = CAST(greatest(CAST(value AS BIGINT), (SELECT coalesce(max(id), 0) FROM ${this.#catalog})) + 1 AS VARCHAR)
               WHERE name = 'last_id' RETURNING value`,
            )
          ).getRows()[0]![0],
        );
        const name = `m_${id}`;
        const table = `${this.#prefix}.${quoteIdentifier(name)}`;
        const { columns, key, summary: streamed } = await load(c, name, table);
        const summary = streamed ?? (await this.#keySummary(c, table, key));
        this.checkRows(input, summary.rows);
        if (summary.nulls > 0) throw this.nullKeyError({ ...input, key }, summary.nulls);
        if (summary.duplicate !== undefined)
          throw this.duplicateKeyError({ ...input, key }, summary.duplicate);
        const createdAt = new Date();
        // Ids below are this store's own numbers (counted in `meta`), not user input.
        const finish: string[] = [];
        const replaced = await this.#replacedIds(input.feature.name, input.paramsKey);
        if (replaced.length > 0)
          finish.push(`DELETE FROM ${this.#catalog} WHERE id IN (${replaced.join(', ')})`);
        // Kept for queries still running over them; dropped after the grace period.
        if (replaced.length > 0) finish.push(retireStatement(this.#prefix, replaced, createdAt.getTime()));
        if (key.length === 1 && summary.rows >= INDEX_MIN_ROWS) {
          // DuckDB probes an ART index on one column only (composite keys scan), and below about a
          // row group a scan of the zone-mapped column is as fast as the index.
          finish.push(
            `CREATE INDEX ${quoteIdentifier(`${name}_key`)} ON ${table} (${quoteIdentifier(key[0]!)})`,
          );
        }
        // Every catalog text is bound, never spliced: the record goes in first, then the rest
        // of the swap rides with the commit.
        await c.run(
          `INSERT INTO ${this.#catalog} (id, feature_name, params_key, kind, "key", "columns", "rows", source_hash, created_at, status, version, lineage)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'complete', $10, $11)`,
          [
            BigInt(id),
            input.feature.name,
            input.paramsKey,
            input.kind,
            JSON.stringify(key),
            JSON.stringify(columns),
            BigInt(summary.rows),
            input.feature.sourceHash,
            timestampOf(createdAt.getTime()),
            input.record.version,
            JSON.stringify(input.record.lineage),
          ],
        );
        // The feature's record changes only with its version or shape: a daily run writes it once.
        const featureText = featureRecordText(input.record, key, columns);
        const written = `${input.record.version}\0${featureText}`;
        if (this.#featuresWritten.get(input.feature.name) !== written) {
          await c.run(`INSERT OR REPLACE INTO ${this.#prefix}.features VALUES ($1, $2, $3, $4)`, [
            input.feature.name,
            input.record.version,
            featureText,
            timestampOf(createdAt.getTime()),
          ]);
        }
        finish.push('COMMIT');
        await c.run(finish.join(';\n'));
        if (this.#featuresWritten.size >= 10_000) this.#featuresWritten.clear();
        this.#featuresWritten.set(input.feature.name, written);
        if (countPublication(instance, this.schema) === this.#seen) this.#seen++;
        // Housekeeping after the commit: a table it cannot drop now is dropped next time.
        // An orphan table comes only from a replacement: the sweep for one runs only then.
        await this.#dropRetired(c, replaced.length > 0).catch(() => undefined);
        // Only the window before the cached catalog takes this record needs it; bounded anyway.
        if (this.#live.size >= 10_000) this.#live.clear();
        this.#live.set(slotOf(input.feature.name, input.paramsKey), id);
        return this.record({
          id,
          featureName: input.feature.name,
          paramsKey: input.paramsKey,
          kind: input.kind,
          key,
          columns,
          rows: summary.rows,
          sourceHash: input.feature.sourceHash,
          createdAt,
          version: input.record.version,
          lineage: input.record.lineage,
        });
      } catch (error) {
        await c.run('ROLLBACK').catch(() => undefined); // nothing to roll back if BEGIN itself failed
        if (error instanceof FeatureStoreError) throw error;
        throw new FeatureStoreError(
          'STORE_ERROR',
          `DuckDB could not store the result: ${String(error)}. Nothing was stored.`,
          { feature: input.feature.name, params: input.params, cause: error },
        );
      }
    });
  }

  protected async retire(records: readonly Materialization[]): Promise<string[]> {
    const { instance, writer } = await this.#open();
    const ids = records.map((r) => BigInt(r.id));
    const removed = await this.#guard('retiring materializations', () =>
      writer.run(async (c) => {
        try {
          // Ids are the store's own numbers, never user input.
          const deleted = await c.runAndReadAll(
            `BEGIN TRANSACTION; DELETE FROM ${this.#catalog} WHERE id IN (${ids.join(', ')}) RETURNING CAST(id AS VARCHAR)`,
          );
          const gone = deleted.getRows().map(([id]) => String(id));
          const finish = gone.length > 0 ? [retireStatement(this.#prefix, gone, Date.now())] : [];
          await c.run([...finish, 'COMMIT'].join(';\n'));
          return gone;
        } catch (error) {
          await c.run('ROLLBACK').catch(() => undefined);
          throw error;
        }
      }),
    );
    // Other stores on this instance plan their next reads again (see `publicationCount`).
    if (removed.length > 0) countPublication(instance, this.schema);
    return removed;
  }

  /** Counts rows, null keys and duplicated keys of a stored table, in one scan (and one more for a duplicate). */
  async #keySummary(c: DuckDBConnection, table: string, key: readonly string[]): Promise<KeySummary> {
    const checks = this.keyChecks(table, key);
    const counts = (await c.runAndReadAll(checks.summary)).getRowObjectsJS()[0]!;
    const duplicate =
      Number(counts.extra) > 0 ? await firstRowExact(await c.runAndReadAll(checks.duplicates)) : undefined;
    return { rows: Number(counts.n), nulls: Number(counts.nulls), duplicate: duplicate as Row | undefined };
  }

  /**
   * Ids of the records and tables a publication for `feature` and `paramsKey` replaces: from the
   * cached catalog and from this store's own publications since. If another store on the same file
   * published these parameters meanwhile, its record stays beside the new one: the catalog is read
   * latest-first (see `loadCatalog`), and the next open removes the older record and its table.
   */
  async #replacedIds(feature: string, paramsKey: string): Promise<string[]> {
    const ids = new Set(
      (await this.listMaterializations(feature)).filter((m) => m.paramsKey === paramsKey).map((m) => m.id),
    );
    const live = this.#live.get(slotOf(feature, paramsKey));
    if (live !== undefined) ids.add(live);
    return [...ids];
  }

  /** DuckDB results are served straight from the store's own connection, with their DuckDB types. */
  protected override async readMaterialization(
    feature: FeatureInfo,
    materialization: Materialization,
  ): Promise<unknown> {
    if (materialization.kind !== 'duckdb') return super.readMaterialization(feature, materialization);
    const { reader } = await this.#open();
    const { sql } = this.compile(this.planOf(feature, materialization));
    return this.#guard('reading it', () => reader.run((c) => c.runAndReadAll(sql)), {
      feature: feature.name,
      params: materialization.params,
    });
  }

  protected readFailed(plan: ReadPlan, error: unknown): FeatureStoreError {
    return new FeatureStoreError(
      'STORE_ERROR',
      `DuckDB could not read ${plan.sources.map((s) => s.feature.name).join(', ')}: ${String(error)}`,
      {
        feature: plan.sources[0]?.feature.name,
        params: plan.sources[0]?.materialization.params,
        cause: error,
      },
    );
  }

  /** Another store on this instance published since the cached catalog was read. */
  protected override catalogIsCurrent(): boolean {
    const instance = this.#opened;
    return instance === undefined || publicationCount(instance, this.schema) === this.#seen;
  }

  /** A table dropped by a replacement after the read was planned (same database, other connection). */
  protected override isReplacedTable(error: unknown): boolean {
    if (error instanceof StaleCatalog) return true;
    return error instanceof Error && /Table with name m_\d+ does not exist/.test(error.message);
  }

  protected async runRead(query: CompiledQuery, format: 'rows' | 'arrow'): Promise<Row[] | Table> {
    const { instance, reader } = await this.#open();
    // Planned on a catalog another store has published past: plan again, as a read an instant later would.
    if (publicationCount(instance, this.schema) !== this.#seen) throw new StaleCatalog();
    const result = await reader.run(() =>
      this.#runPrepared(reader, query.sql, query.params.map(toDuckDBValue)),
    );
    if (format === 'arrow') {
      // Straight from the vectors' memory into Arrow buffers, as loads do: no value per cell.
      const chunks = readChunks(result);
      const builder = chunks && ChunkBatchBuilder.create(query.columns, result.columnTypes());
      if (chunks === undefined || builder === undefined) {
        return tableFromColumns(query.columns, (await readDuckDBColumnsExact(result)).values);
      }
      const batches = [];
      for (const chunk of chunks) {
        if (chunk.rowCount === 0) continue;
        builder.append(chunk);
        if (builder.rows >= ROWS_PER_BATCH) batches.push(builder.flush());
      }
      if (builder.rows > 0 || batches.length === 0) batches.push(builder.flush());
      return new Table(batches);
    }
    const { values } = await readDuckDBColumnsExact(result);
    const names = query.columns.map((c) => c.name);
    const count = values[0]?.length ?? 0;
    const rows: Row[] = new Array(count);
    // An assignment to a column named __proto__ would set the row's prototype and lose the value.
    const plain = !names.includes('__proto__');
    for (let r = 0; r < count; r++) {
      const row: Row = {};
      for (let c = 0; c < names.length; c++) {
        if (plain || names[c] !== '__proto__') row[names[c]!] = values[c]![r];
        else
          Object.defineProperty(row, '__proto__', {
            value: values[c]![r],
            enumerable: true,
            writable: true,
            configurable: true,
          });
      }
      rows[r] = row;
    }
    return rows;
  }

  protected async closeConnections(): Promise<void> {
    const ready = this.#ready;
    if (ready === undefined) return;
    const { writer, reader } = await ready.catch(() => ({
      writer: undefined,
      reader: undefined,
    }));
    await writer?.run((c) => this.#dropRetired(c)).catch(() => undefined);
    for (const session of [reader, writer]) {
      if (session === undefined) continue;
      await session.run(async () => {
        for (const statement of session.statements.values())
          (await statement.catch(() => undefined))?.destroySync();
        session.connection.closeSync();
      });
    }
    this.#release?.();
    this.#release = undefined;
  }

  /** Runs `sql` with `values` through the session's prepared statement for it; call inside `session.run`. */
  async #runPrepared(session: Session, sql: string, values: DuckDBValue[]): Promise<DuckDBResultReader> {
    let prepared = session.statements.get(sql);
    if (prepared === undefined) {
      prepared = session.connection.prepare(sql);
      session.statements.set(sql, prepared);
      prepared.catch(() => session.statements.delete(sql));
    }
    const statement = await prepared;
    statement.bind(values);
    return statement.runAndReadAll();
  }

  get #catalog(): string {
    return `${this.#prefix}.catalog`;
  }

  /**
   * `"database"."schema"`: qualified with the database too, since DuckDB names a file's catalog
   * after the file, and `featurefn.duckdb` would otherwise make `featurefn.catalog` ambiguous.
   */
  get #prefix(): string {
    return `${quoteIdentifier(this.#database)}.${quoteIdentifier(this.schema)}`;
  }

  #open(): Promise<{ instance: DuckDBInstance; writer: Session; reader: Session }> {
    this.assertOpen();
    if (this.#ready === undefined) {
      this.#ready = this.#connect();
      this.#ready.catch(() => {
        this.#ready = undefined;
      });
    }
    return this.#ready;
  }

  async #connect(): Promise<{ instance: DuckDBInstance; writer: Session; reader: Session }> {
    let instance: DuckDBInstance;
    try {
      if (this.#instance !== undefined) instance = this.#instance;
      else {
        const shared = await acquireInstance(
          this.path,
          this.#threads === undefined ? {} : { threads: String(this.#threads) },
        );
        instance = shared.instance;
        this.#release = shared.release;
      }
    } catch (cause) {
      throw new FeatureStoreError('STORE_ERROR', `DuckDB could not open "${this.path}": ${String(cause)}`, {
        cause,
        details: { path: this.path },
      });
    }
    try {
      const ready = await this.#prepare(instance);
      this.#opened = instance;
      return ready;
    } catch (error) {
      this.#release?.();
      this.#release = undefined;
      if (error instanceof FeatureStoreError) throw error;
      throw new FeatureStoreError(
        'STORE_ERROR',
        `DuckDB could not open the featurefn catalog in schema "${this.schema}" of "${this.path}": ${String(error)}`,
        { cause: error, details: { path: this.path, schema: this.schema } },
      );
    }
  }

  /** Opens this store's connections and creates or upgrades its catalog, one store at a time per instance. */
  async #prepare(
    instance: DuckDBInstance,
  ): Promise<{ instance: DuckDBInstance; writer: Session; reader: Session }> {
    const writer = new Session(await instance.connect(), writeQueueOf(instance));
    await writer.run(async (c) => {
      this.#database = String((await c.runAndReadAll('SELECT current_database()')).getRows()[0]![0]);
    });
    const schema = this.#prefix;
    await writer.run(async (c) => {
      await c.run(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
      await c.run(
        `CREATE TABLE IF NOT EXISTS ${schema}.meta (name VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)`,
      );
      await c.run(
        `CREATE TABLE IF NOT EXISTS ${this.#catalog} (
           id BIGINT PRIMARY KEY,
           feature_name VARCHAR NOT NULL,
           params_key VARCHAR NOT NULL,
           kind VARCHAR NOT NULL,
           "key" VARCHAR NOT NULL,
           "columns" VARCHAR NOT NULL,
           "rows" BIGINT NOT NULL,
           source_hash VARCHAR NOT NULL,
           created_at TIMESTAMP NOT NULL,
           status VARCHAR NOT NULL
         )`,
      );
      await c.run(retiredTableDefinition(schema));
      // A new catalog starts at format 1 (the layout above) and is upgraded like any other.
      await c.run(`INSERT INTO ${schema}.meta VALUES ('format_version', '1') ON CONFLICT DO NOTHING`);
      const version = Number(
        (
          await c.runAndReadAll(`SELECT value FROM ${schema}.meta WHERE name = 'format_version'`)
        ).getRows()[0]![0],
      );
      if (version > DUCKDB_FORMAT_VERSION) {
        throw new FeatureStoreError(
          'STORE_ERROR',
          `"${this.path}" holds a featurefn catalog of format ${version}, newer than this release reads (${DUCKDB_FORMAT_VERSION}). Upgrade featurefn.`,
        );
      }
      if (version < DUCKDB_FORMAT_VERSION) await upgradeCatalog(c, schema, version);
    });
    const reader = new Session(await instance.connect());
    await writer.run(async (c) => {
      // Ids are counted in the store (`last_id`), from above every id a record or table ever had.
      const found = (
        await c.runAndReadAll(
          `SELECT greatest(
             (SELECT coalesce(max(id), 0) FROM ${this.#catalog}),
             (SELECT coalesce(max(id), 0) FROM ${schema}.retired),
             (SELECT coalesce(max(CAST(substr(table_name, 3) AS BIGINT)), 0) FROM duckdb_tables()
              WHERE database_name = $1 AND schema_name = $2 AND regexp_full_match(table_name, 'm_[0-9]{1,18}')))`,
          [this.#database, this.schema],
        )
      ).getRows()[0]![0];
      await c.run(`INSERT INTO ${schema}.meta VALUES ('last_id', $1) ON CONFLICT DO NOTHING`, [
        String(found),
      ]);
      // Records replaced by another store on this file while this one's catalog cache still
      // showed older ones (see #replacedIds): removed here, and their tables retired.
      await c.run(
        `DELETE FROM ${this.#catalog} WHERE id IN (
           SELECT id FROM ${this.#catalog}
           QUALIFY row_number() OVER (PARTITION BY feature_name, params_key ORDER BY id DESC) > 1)`,
      );
      await this.#dropRetired(c);
    });
    return { instance, writer, reader };
  }
}

/**
 * CATALOG FORMAT UPGRADES: the one place where the catalog's layout changes. Brings a catalog of
 * format `from` to {@link DUCKDB_FORMAT_VERSION} in one transaction; every step is idempotent.
 */
async function upgradeCatalog(c: DuckDBConnection, schema: string, from: number): Promise<void> {
  await c.run('BEGIN TRANSACTION');
  try {
    if (from < 2) {
      // 2: each materialization's version and lineage; metadata per feature and version.
      await c.run(`ALTER TABLE ${schema}.catalog ADD COLUMN IF NOT EXISTS version VARCHAR DEFAULT ''`);
      await c.run(`ALTER TABLE ${schema}.catalog ADD COLUMN IF NOT EXISTS lineage VARCHAR DEFAULT '{}'`);
      await c.run(
        `CREATE TABLE IF NOT EXISTS ${schema}.features (
           feature_name VARCHAR NOT NULL,
           version VARCHAR NOT NULL,
           metadata VARCHAR NOT NULL,
           recorded_at TIMESTAMP NOT NULL,
           PRIMARY KEY (feature_name, version)
         )`,
      );
    }
    await c.run(`UPDATE ${schema}.meta SET value = $1 WHERE name = 'format_version'`, [
      String(DUCKDB_FORMAT_VERSION),
    ]);
    await c.run('COMMIT');
  } catch (error) {
    await c.run('ROLLBACK').catch(() => undefined);
    throw new FeatureStoreError(
      'STORE_ERROR',
      `DuckDB could not upgrade the featurefn catalog from format ${from} to ${DUCKDB_FORMAT_VERSION}: ${String(error)}. Nothing was changed.`,
      { cause: error },
    );
  }
}

/** The key of {@link DuckDBMaterializer}'s own latest tables: feature name and parameters. */
function slotOf(feature: string, paramsKey: string): string {
  return `${feature}\u0000${paramsKey}`;
}

/**
 * Results up to this many rows have their key checked as they stream in, not by a scan afterwards:
 * about where checking in Node (≈ 1 µs a row) costs what the scan's statement costs.
 */
const KEY_CHECK_MAX_ROWS = 2_048;

/** Rows from which a single-column key gets an index (DuckDB's row group is 122,880 rows). */
const INDEX_MIN_ROWS = 100_000;

function toDuckDBValue({ value, type }: BoundValue): DuckDBValue {
  switch (type) {
    case 'timestamp':
      return timestampOf((value as Date).getTime());
    case 'date':
      return dateOf((value as Date).getTime());
    case 'int64':
      return BigInt(value as number | bigint);
    case 'int8':
    case 'int16':
    case 'int32':
    case 'float32':
    case 'float64':
      return Number(value);
    default:
      return value as DuckDBValue;
  }
}
