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
import {
  isShapeTable,
  peekBatches,
  SHAPE_TABLE_PATTERN,
  SHARED_MAX_ROWS,
  type ShapeLayout,
  shapeLayoutAt,
  shapeLayoutOf,
} from '../../materializer/shape-table.js';
import type { SourcePartition } from '../../query/nodes.js';
import type { BoundValue, CompiledQuery, SqlDialect } from '../../query/sql-compiler.js';
import type { SqlQuery, SqlSource } from '../../sql/sql-query.js';
import { duckdbColumnSpecs } from './duckdb-columns.js';
import {
  columnDefinitions,
  DUCKDB_DIALECT,
  dateOf,
  duckdbSqlType,
  quoteIdentifier,
  timestampOf,
} from './duckdb-dialect.js';
import { acquireInstance } from './duckdb-instances.js';
import { appendBatches } from './duckdb-load.js';
import {
  countPublication,
  dropRetiredTables,
  publicationCount,
  retiredTableDefinition,
  StaleCatalog,
  shapeTables,
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
export const DUCKDB_FORMAT_VERSION = 4;

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

/** Prepared statements kept per connection (see `#runPrepared`). */
const STATEMENTS_PER_CONNECTION = 256;

/** Rows per record batch of an Arrow read. */
const ROWS_PER_BATCH = 65_536;

/**
 * The embedded store: DuckDB in a file (or in memory), no server. A catalog table records each
 * materialization and where its rows live: a small one (under 50,000 rows) in its feature's shape
 * table (`f_<hash>`, shared by the feature's materializations of the same key and columns, with
 * the id in a first column), a bigger one in a table of its own (`m_<id>`, with an index on a
 * single-column key). Each is published in one transaction with the catalog swap.
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
  /** Where each materialization this store read or wrote lives (`stored_in`), by id. */
  #storedIn = new Map<string, string>();
  /** When the earliest retirement this store knows of falls due (ms); until then none is looked for. */
  #nextDue = 0;

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
   * Removes the replaced materializations retired longer than `retainReplaced` ago (their own
   * tables are dropped, their rows in shared shape tables deleted), any data table or shared row
   * left without a record (after the same grace period), and shape tables left empty; then
   * checkpoints, so that the file gives the space back. Later publications and `close()` remove
   * retired materializations too. Resolves to the ids removed and of those still in use.
   *
   * ### Example
   * ```ts
   * const { dropped } = await materializer.vacuum();
   * ```
   */
  async vacuum(): Promise<{ dropped: string[]; busy: string[] }> {
    const { writer } = await this.#open();
    return this.#guard('removing replaced materializations', () =>
      writer.run(async (c) => {
        const removed = await this.#dropRetired(c);
        await this.#dropEmptyShapes(c);
        await c.run('CHECKPOINT');
        return removed;
      }),
    );
  }

  /** Drops the shape tables holding no row that no record or retired entry names (a zero-row materialization has none). */
  async #dropEmptyShapes(c: DuckDBConnection): Promise<void> {
    const tables = [...(await shapeTables(c, this.#database, this.schema)).keys()];
    if (tables.length === 0) return;
    const empty = (
      await c.runAndReadAll(
        tables
          .map(
            (t) =>
              `SELECT '${t}' WHERE NOT EXISTS (SELECT 1 FROM ${this.#table(t)})
               AND '${t}' NOT IN (SELECT stored_in FROM ${this.#catalog})
               AND '${t}' NOT IN (SELECT stored_in FROM ${this.#prefix}.retired WHERE stored_in IS NOT NULL)`,
          )
          .join('\nUNION ALL '),
      )
    ).getRows();
    for (const [name] of empty) {
      const table = String(name);
      try {
        await c.run(`DROP TABLE IF EXISTS ${this.#table(table)}`);
        this.#shapes.delete(table);
      } catch {
        // A reader's open transaction holds it: dropped by a later vacuum.
      }
    }
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

  async #dropRetired(c: DuckDBConnection, sweep = true): Promise<{ dropped: string[]; busy: string[] }> {
    const { dropped, busy, nextDue } = await dropRetiredTables(
      c,
      { prefix: this.#prefix, database: this.#database, schema: this.schema },
      this.#retainMs,
      sweep,
    );
    this.#nextDue = nextDue;
    return { dropped, busy };
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

  /** The quoted, qualified name of the store's table `name`. */
  #table(name: string): string {
    return `${this.#prefix}.${quoteIdentifier(name)}`;
  }

  /**
   * A materialization in its own table is read from it; one in a shape table (see
   * `shapeLayoutOf`) through its id column, bound as a parameter, so that a read's SQL text is
   * the same across publications and its prepared statement serves them all.
   */
  protected sourceOf(materialization: Materialization): {
    table: string;
    partition?: SourcePartition;
    names?: ReadonlyMap<string, string>;
  } {
    const storedIn = this.#storedIn.get(materialization.id) ?? `m_${materialization.id}`;
    if (!isShapeTable(storedIn)) return { table: this.#table(storedIn) };
    const { idColumn, names } = shapeLayoutAt(storedIn, materialization.key, materialization.columns);
    return {
      table: this.#table(storedIn),
      partition: { column: idColumn, value: BigInt(materialization.id) },
      names,
    };
  }

  /** Records where `id` lives; ids are never reused, so an entry is never wrong, only unneeded. */
  #remember(id: string, storedIn: string): void {
    this.#storedIn.set(id, storedIn);
  }

  protected async loadCatalog(): Promise<Materialization[]> {
    const { instance, reader } = await this.#open();
    this.#seen = publicationCount(instance, this.schema);
    const result = await this.#guard('reading the catalog of materializations', () =>
      reader.run((c) =>
        c.runAndReadAll(
          `SELECT id, feature_name, params_key, kind, "key", "columns", "rows", source_hash, created_at, version, lineage, stored_in
         FROM ${this.#catalog} WHERE status = 'complete'
         QUALIFY row_number() OVER (PARTITION BY feature_name, params_key ORDER BY id DESC) = 1`,
        ),
      ),
    );
    const rows = result.getRowObjectsJS();
    // Rebuilt when it holds many ids no longer in the catalog; a read planned on one of those
    // before finds no table `m_<id>` and plans again (see `isReplacedTable`).
    if (this.#storedIn.size > 2 * rows.length + 10_000) this.#storedIn = new Map();
    for (const r of rows) this.#remember(String(r.id), r.stored_in as string);
    return rows.map((r) =>
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
    const { instance, writer } = await this.#open();
    return writer
      .run((c) =>
        this.#storing(c, input, async (id, createdAt) => {
          // A small result goes to its feature's shape table; a big one to a table of its own, as
          // fast to load and read. Which one is known once the input ends or passes the limit.
          const { batches, rows, small, close } = await peekBatches(input.batches, SHARED_MAX_ROWS);
          try {
            const { key, columns } = input;
            const shape = small ? shapeLayoutOf(key, columns) : undefined;
            const storedIn = shape?.table ?? `m_${id}`;
            const table = this.#table(storedIn);
            const partition = shape?.idColumn;
            const create =
              shape === undefined
                ? [`CREATE TABLE ${table} (${columnDefinitions(columns)})`]
                : this.#shapes.has(storedIn)
                  ? []
                  : [this.#createShape(shape)];
            // One call begins the transaction, creates the table if needed and writes the record (a
            // big result's row count is set when the rows are in): each call costs 0.3–1 ms.
            await c.run(
              ['BEGIN TRANSACTION', ...create, RECORD_INSERT(this.#catalog)].join(';\n'),
              this.#recordValues(input, { id, key, columns, rows, storedIn, createdAt }),
            );
            const keys = new KeyTracker(key, KEY_CHECK_MAX_ROWS);
            await appendBatches(
              c,
              { catalog: this.#database, schema: this.schema, name: storedIn },
              columns,
              keys.track(batches),
              partition === undefined ? undefined : BigInt(id),
            );
            const summary =
              keys.summary() ??
              (await this.#keySummary(
                c,
                partition === undefined
                  ? table
                  : `(SELECT * FROM ${table} WHERE ${quoteIdentifier(partition)} = ${BigInt(id)}) AS s`,
                key,
              ));
            return { key, columns, summary, storedIn, recorded: summary.rows === rows };
          } finally {
            // The result's stream is released however the load ended.
            await close();
          }
        }),
      )
      .finally(() => this.#afterWrite(instance));
  }

  /**
   * Runs the query inside DuckDB with `CREATE TABLE … AS`: no row passes through Node. A small
   * result whose column types are featurefn's own then moves into its feature's shape table.
   */
  protected override async publishQuery(
    input: Omit<PublishInput, 'key' | 'columns' | 'batches'>,
    query: SqlQuery,
    keyOf: (columns: readonly ColumnSpec[]) => readonly string[],
  ): Promise<Materialization> {
    const { instance, writer } = await this.#open();
    return writer
      .run((c) =>
        this.#storing(c, input, async (id, createdAt) => {
          const own = `m_${id}`;
          const table = this.#table(own);
          const { text, values } = renderDuckDB(query);
          try {
            await c.run(`BEGIN TRANSACTION;\nCREATE TABLE ${table} AS SELECT * FROM (${text}) AS q`, values);
          } catch (cause) {
            throw new FeatureStoreError(
              'FEATURE_FAILED',
              `DuckDB could not run the SQL feature's query: ${String(cause)}. Fix the query; nothing was stored.`,
              { feature: input.feature.name, params: input.params, sql: text, cause },
            );
          }
          const created = await c.runAndReadAll(`SELECT * FROM ${table} LIMIT 0`);
          const columns = duckdbColumnSpecs(created, input.feature.name);
          const key = keyOf(columns);
          const summary = await this.#keySummary(c, table, key);
          // Only where the shape table's types are the result's own, so that nothing is converted.
          const exact = created.columnTypes().every((t, i) => String(t) === duckdbSqlType(columns[i]!.type));
          const small = exact && summary.rows < SHARED_MAX_ROWS && summary.nulls === 0 && !summary.duplicate;
          const shape = small ? shapeLayoutOf(key, columns) : undefined;
          const storedIn = shape?.table ?? own;
          const moves: string[] = [];
          if (shape !== undefined) {
            const into = shape.columns.map((col) => quoteIdentifier(col.name)).join(', ');
            const from = columns.map((col) => quoteIdentifier(col.name)).join(', ');
            if (!this.#shapes.has(storedIn)) moves.push(this.#createShape(shape));
            moves.push(
              `INSERT INTO ${this.#table(storedIn)} (${quoteIdentifier(shape.idColumn)}, ${into}) SELECT ${BigInt(id)}, ${from} FROM ${table}`,
              `DROP TABLE ${table}`,
            );
          }
          await c.run(
            [...moves, RECORD_INSERT(this.#catalog)].join(';\n'),
            this.#recordValues(input, { id, key, columns, rows: summary.rows, storedIn, createdAt }),
          );
          return { key, columns, summary, storedIn, recorded: true };
        }),
      )
      .finally(() => this.#afterWrite(instance));
  }

  /** `CREATE TABLE IF NOT EXISTS` of a shape table: the materialization id first, then the shape's columns. */
  #createShape(shape: ShapeLayout): string {
    return `CREATE TABLE IF NOT EXISTS ${this.#table(shape.table)} (${quoteIdentifier(shape.idColumn)} BIGINT NOT NULL, ${columnDefinitions(shape.columns)})`;
  }

  /** The values of {@link RECORD_INSERT} for one publication. */
  #recordValues(
    input: Omit<PublishInput, 'key' | 'columns' | 'batches'>,
    r: {
      id: string;
      key: readonly string[];
      columns: readonly ColumnSpec[];
      rows: number;
      storedIn: string;
      createdAt: Date;
    },
  ): DuckDBValue[] {
    return [
      BigInt(r.id),
      input.feature.name,
      input.paramsKey,
      input.kind,
      JSON.stringify(r.key),
      JSON.stringify(r.columns),
      BigInt(r.rows),
      input.feature.sourceHash,
      timestampOf(r.createdAt.getTime()),
      input.record.version,
      JSON.stringify(input.record.lineage),
      r.storedIn,
    ];
  }

  /**
   * One publication, in one transaction: `load` begins it, stores the rows and writes the catalog
   * record (`recorded: false` when its row count is still to be set); then the key is checked, the
   * replaced records retired, the index made and the transaction committed. Any failure rolls all
   * of it back. The id is counted in memory (see `nextId`) and saved as `last_id` in the same
   * transaction: writers on one instance are queued (see `writeQueueOf`), and a file is open in
   * one process only.
   */
  async #storing(
    c: DuckDBConnection,
    input: Omit<PublishInput, 'key' | 'columns' | 'batches'>,
    load: (
      id: string,
      createdAt: Date,
    ) => Promise<{
      columns: readonly ColumnSpec[];
      key: readonly string[];
      summary: KeySummary;
      storedIn: string;
      recorded: boolean;
    }>,
  ): Promise<Materialization> {
    const instance = this.#opened!;
    try {
      const id = String(nextId(instance, this.schema));
      const createdAt = new Date();
      const { columns, key, summary, storedIn, recorded } = await load(id, createdAt);
      this.checkRows(input, summary.rows);
      if (summary.nulls > 0) throw this.nullKeyError({ ...input, key }, summary.nulls);
      if (summary.duplicate !== undefined) throw this.duplicateKeyError({ ...input, key }, summary.duplicate);
      // Ids below are this store's own numbers (counted in `meta`), not user input.
      const finish: string[] = [];
      if (!recorded)
        finish.push(`UPDATE ${this.#catalog} SET "rows" = ${summary.rows} WHERE id = ${BigInt(id)}`);
      const replaced = await this.#replacedIds(input.feature.name, input.paramsKey);
      // Kept for queries still running over them; removed after the grace period.
      if (replaced.length > 0) finish.push(...this.#retireStatements(replaced, createdAt.getTime()));
      if (storedIn === `m_${id}` && key.length === 1 && summary.rows >= INDEX_MIN_ROWS) {
        // DuckDB probes an ART index on one column only (composite keys scan), and below about a
        // row group a scan of the zone-mapped column is as fast as the index.
        finish.push(
          `CREATE INDEX ${quoteIdentifier(`${storedIn}_key`)} ON ${this.#table(storedIn)} (${quoteIdentifier(key[0]!)})`,
        );
      }
      finish.push(`UPDATE ${this.#prefix}.meta SET value = '${BigInt(id)}' WHERE name = 'last_id'`);
      // The feature's record changes only with its version or shape: a daily run writes it once.
      // Its texts are bound, never spliced: it goes last, where the values bind, and COMMIT follows.
      const featureText = featureRecordText(input.record, key, columns);
      const written = `${input.record.version}\0${featureText}`;
      if (this.#featuresWritten.get(input.feature.name) !== written) {
        finish.push(`INSERT OR REPLACE INTO ${this.#prefix}.features VALUES ($1, $2, $3, $4)`);
        await c.run(finish.join(';\n'), [
          input.feature.name,
          input.record.version,
          featureText,
          timestampOf(createdAt.getTime()),
        ]);
        await c.run('COMMIT');
      } else {
        finish.push('COMMIT');
        await c.run(finish.join(';\n'));
      }
      if (this.#featuresWritten.size >= 10_000) this.#featuresWritten.clear();
      this.#featuresWritten.set(input.feature.name, written);
      if (countPublication(instance, this.schema) === this.#seen) this.#seen++;
      if (storedIn !== `m_${id}`) this.#shapes.add(storedIn);
      this.#remember(id, storedIn);
      if (replaced.length > 0) this.#nextDue = Math.min(this.#nextDue, createdAt.getTime() + this.#retainMs);
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
  }

  /**
   * Housekeeping after a write, in the writer's queue: retired materializations whose grace period
   * is over are removed (a table it cannot drop now is dropped next time). Skipped, with no
   * statement at all, until the earliest retirement this store knows of falls due.
   */
  #afterWrite(instance: DuckDBInstance): Promise<void> {
    if (Date.now() < this.#nextDue) return Promise.resolve();
    return writeQueueOf(instance)
      .run(async () => {
        const { writer } = await this.#open();
        await this.#dropRetired(writer.connection, false);
      })
      .catch(() => undefined);
  }

  /** Statements moving the records `ids` (the store's own numbers) to the retired list, at `now`. */
  #retireStatements(ids: readonly string[], now: number): string[] {
    const list = ids.map((id) => BigInt(id)).join(', ');
    return [
      `INSERT INTO ${this.#prefix}.retired (id, retired_at, stored_in)
       SELECT id, epoch_ms(${Math.trunc(now)}), stored_in FROM ${this.#catalog} WHERE id IN (${list})
       ON CONFLICT DO NOTHING`,
      `DELETE FROM ${this.#catalog} WHERE id IN (${list})`,
    ];
  }

  protected async retire(records: readonly Materialization[]): Promise<string[]> {
    const { instance, writer } = await this.#open();
    const ids = records.map((r) => String(BigInt(r.id)));
    if (ids.length === 0) return [];
    const removed = await this.#guard('retiring materializations', () =>
      writer.run(async (c) => {
        try {
          const [insert, remove] = this.#retireStatements(ids, Date.now());
          const deleted = await c.runAndReadAll(
            `BEGIN TRANSACTION; ${insert}; ${remove} RETURNING CAST(id AS VARCHAR)`,
          );
          await c.run('COMMIT');
          return deleted.getRows().map(([id]) => String(id));
        } catch (error) {
          await c.run('ROLLBACK').catch(() => undefined);
          throw error;
        }
      }),
    );
    // Other stores on this instance plan their next reads again (see `publicationCount`).
    if (removed.length > 0) {
      countPublication(instance, this.schema);
      this.#nextDue = Math.min(this.#nextDue, Date.now() + this.#retainMs);
      await this.#afterWrite(instance);
    }
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
    const { sql, params } = this.compile(this.planOf(feature, materialization));
    return this.#guard(
      'reading it',
      () => reader.run((c) => c.runAndReadAll(sql, params.map(toDuckDBValue))),
      {
        feature: feature.name,
        params: materialization.params,
      },
    );
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
    return (
      error instanceof Error &&
      new RegExp(`Table with name (m_\\d+|${SHAPE_TABLE_PATTERN}) does not exist`).test(error.message)
    );
  }

  protected async runRead(query: CompiledQuery, format: 'rows' | 'arrow'): Promise<Row[] | Table> {
    const { instance, reader } = await this.#open();
    // Planned on a catalog another store has published past: plan again, as a read an instant later would.
    if (publicationCount(instance, this.schema) !== this.#seen) throw new StaleCatalog();
    if (query.apart !== undefined) return this.#readApart(reader, query, format);
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
    return rowsOf(query.columns, values);
  }

  /**
   * A key lookup whose columns in shared tables are read apart (see `compileRead`): the
   * statement of the rest, then one statement per shared table giving the rows of all its
   * materializations at once, each output column taking the row of its own materialization.
   */
  async #readApart(reader: Session, query: CompiledQuery, format: 'rows' | 'arrow'): Promise<Row[] | Table> {
    const apart = query.apart!;
    const bound = query.params.map(toDuckDBValue);
    const [main, ...found] = await reader.run(async () => {
      const results = [await this.#runPrepared(reader, query.sql, bound.slice(0, apart.params))];
      for (const lookup of apart.lookups)
        results.push(
          await this.#runPrepared(
            reader,
            lookup.sql,
            lookup.params.map((i) => bound[i]!),
          ),
        );
      return Promise.all(results.map((result) => readDuckDBColumnsExact(result)));
    });
    const count = main!.values[0]?.length ?? 0;
    const own = new Map(apart.columns.map((c, i) => [c.name, main!.values[i]!]));
    const picked = new Map<string, unknown>();
    apart.lookups.forEach((lookup, l) => {
      // No rows, no columns: the driver gives none for an empty result.
      const [ids = [], ...columns] = found[l]!.values;
      const rowOfId = new Map(ids.map((id, r) => [String(id), r]));
      for (const { name, column, id } of lookup.picks) {
        const r = rowOfId.get(String(query.params[id]!.value));
        picked.set(name, r === undefined ? null : columns[column]![r]);
      }
    });
    const values = query.columns.map(({ name }) => {
      const found = own.get(name);
      if (found !== undefined) return found;
      // Each row its own copy of a value it could change (a list, a JSON value, a date).
      const value = picked.get(name) ?? null;
      return Array.from({ length: count }, (_, r) =>
        r === 0 || typeof value !== 'object' || value === null ? value : structuredClone(value),
      );
    });
    return format === 'arrow' ? tableFromColumns(query.columns, values) : rowsOf(query.columns, values);
  }

  protected async closeConnections(): Promise<void> {
    const ready = this.#ready;
    if (ready === undefined) return;
    const { writer, reader } = await ready.catch(() => ({
      writer: undefined,
      reader: undefined,
    }));
    // No sweep: orphans come only from a damaged store, and the next open or vacuum() sweeps.
    await writer?.run((c) => this.#dropRetired(c, false)).catch(() => undefined);
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

  /**
   * Runs `sql` with `values` through the session's prepared statement for it; call inside
   * `session.run`. Over shape tables a read's text does not change with publications, so one
   * statement, planned once, serves a read shape for as long as the store is open. The last
   * {@link STATEMENTS_PER_CONNECTION} texts are kept; a statement whose run fails is dropped.
   */
  async #runPrepared(session: Session, sql: string, values: DuckDBValue[]): Promise<DuckDBResultReader> {
    const statements = session.statements;
    let prepared = statements.get(sql);
    if (prepared === undefined) {
      prepared = session.connection.prepare(sql);
      statements.set(sql, prepared);
      prepared.catch(() => statements.delete(sql));
      if (statements.size > STATEMENTS_PER_CONNECTION) {
        const [oldest, evicted] = statements.entries().next().value!;
        statements.delete(oldest);
        evicted.then((s) => s.destroySync()).catch(() => undefined);
      }
    } else {
      // Most recently used last: the first entry is the one to evict.
      statements.delete(sql);
      statements.set(sql, prepared);
    }
    const statement = await prepared;
    try {
      statement.bind(values);
      return await statement.runAndReadAll();
    } catch (error) {
      if (statements.get(sql) === prepared) statements.delete(sql);
      statement.destroySync();
      throw error;
    }
  }

  /**
   * The shape tables known to exist on this instance and schema, shared by its stores: a
   * publication into one skips its `CREATE TABLE IF NOT EXISTS`; `vacuum` forgets what it drops.
   */
  get #shapes(): Set<string> {
    return knownShapes(this.#opened!, this.schema);
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
      const last = (
        await c.runAndReadAll(`SELECT CAST(value AS BIGINT) FROM ${schema}.meta WHERE name = 'last_id'`)
      ).getRows()[0]![0];
      startIds(
        instance,
        this.schema,
        BigInt(String(found)) > BigInt(String(last)) ? String(found) : String(last),
      );
      // Records replaced by another store on this file while this one's catalog cache still
      // showed older ones (see #replacedIds): retired here.
      const older = `SELECT id FROM ${this.#catalog}
           QUALIFY row_number() OVER (PARTITION BY feature_name, params_key ORDER BY id DESC) > 1`;
      await c.run(
        `BEGIN TRANSACTION;
         INSERT INTO ${schema}.retired (id, retired_at, stored_in)
           SELECT id, epoch_ms(${Date.now()}), stored_in FROM ${this.#catalog} WHERE id IN (${older})
           ON CONFLICT DO NOTHING;
         DELETE FROM ${this.#catalog} WHERE id IN (${older});
         COMMIT`,
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
    if (from < 3) {
      // 3: where each materialization's rows live (`stored_in`): its own table `m_<id>`, or the
      // shape table it shares with its feature's other small ones. Existing tables stay as they are.
      for (const table of ['catalog', 'retired']) {
        await c.run(`ALTER TABLE ${schema}.${table} ADD COLUMN IF NOT EXISTS stored_in VARCHAR`);
        await c.run(
          `UPDATE ${schema}.${table} SET stored_in = 'm_' || CAST(id AS VARCHAR) WHERE stored_in IS NULL`,
        );
      }
    }
    // 4: small materializations go to tables shared by every feature of the same key and column
    // types (`s_…`, value columns `v1`, `v2`, …). The tables of format 3 (`f_…`, one feature's,
    // under its own column names) are read as they are: no data moves, but an older release would
    // misread the new tables, hence the new format.
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

/** The last materialization id drawn per instance and schema (see `nextId`). */
const lastIds = new WeakMap<object, Map<string, bigint>>();

/**
 * Starts counting ids on `instance` for `schema` above `last`, unless a store there counts
 * already (and so is at least as far: every id it drew is in the catalog or rolled back).
 */
function startIds(instance: object, schema: string, last: string): void {
  let ids = lastIds.get(instance);
  if (ids === undefined) {
    ids = new Map();
    lastIds.set(instance, ids);
  }
  const current = ids.get(schema);
  if (current === undefined || current < BigInt(last)) ids.set(schema, BigInt(last));
}

/**
 * The next materialization id on `instance` for `schema`, drawn in memory: a file is open in one
 * process only, and its writers are queued, so no round trip is needed; the publication saves it
 * as `last_id`. An id a rolled-back publication drew is not used again.
 */
function nextId(instance: object, schema: string): bigint {
  const ids = lastIds.get(instance)!;
  const id = ids.get(schema)! + 1n;
  ids.set(schema, id);
  return id;
}

const shapesKnown = new WeakMap<object, Map<string, Set<string>>>();

/** The shape tables known to exist on `instance` in `schema` (see `#shapes`). */
function knownShapes(instance: object, schema: string): Set<string> {
  let schemas = shapesKnown.get(instance);
  if (schemas === undefined) {
    schemas = new Map();
    shapesKnown.set(instance, schemas);
  }
  let known = schemas.get(schema);
  if (known === undefined) {
    known = new Set();
    schemas.set(schema, known);
  }
  return known;
}

/** The statement writing one catalog record; its values are bound (see `#recordValues`). */
const RECORD_INSERT = (catalog: string): string =>
  `INSERT INTO ${catalog} (id, feature_name, params_key, kind, "key", "columns", "rows", source_hash, created_at, status, version, lineage, stored_in)
   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'complete', $10, $11, $12)`;

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

/** Row objects of columns of values. */
function rowsOf(columns: readonly ColumnSpec[], values: readonly unknown[][]): Row[] {
  const names = columns.map((c) => c.name);
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
