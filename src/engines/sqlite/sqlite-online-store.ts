import { type RecordBatch, Type } from 'apache-arrow';
import Database from 'better-sqlite3';
import { FeatureStoreError } from '../../errors.js';
import { type ColumnSpec, type ColumnType, type Row, utf8Reader } from '../../frame/columns.js';
import {
  batchKeys,
  checkKeep,
  collectBatches,
  decodeFloat,
  encodeKey,
  notListed,
  storeContext,
  typedColumnOf,
  valueText,
} from '../../online/online-codec.js';
import type {
  OnlineKey,
  OnlineMaterialization,
  OnlinePublication,
  OnlineSource,
  OnlineStore,
} from '../../online/online-store.js';

/** Options of {@link SqliteOnlineStore}. */
export interface SqliteOnlineStoreOptions {
  /** The database file, created if missing. Default is `'online.sqlite'`; `':memory:'` allowed. */
  path?: string;
  /** Materializations kept per feature. Default is `3`. */
  keep?: number;
}

interface CatalogRow {
  m: number;
  feature: string;
  id: string;
  params_key: string;
  rows: number;
  published_at: number;
  columns: string;
}

/** A value as SQLite stores it (a blob only as the empty one standing for a first cell's null). */
type Cell = string | number | bigint | Buffer | null;

/** A published materialization as a read needs it: its table and how to turn cells into values. */
interface Stored {
  readonly m: number;
  readonly names: readonly string[];
  readonly decoders: readonly ((cell: Cell) => unknown)[];
}

/** The statement reading a list of sources for `n` keys, and what each source's cells mean. */
interface SourcesPlan {
  readonly stored: readonly Stored[];
  readonly statements: Map<string, Database.Statement>;
}

/** Statements and plans kept, each, before the least used go. */
const MAX_PLANS = 256;
/** Result columns per read statement (SQLite allows 2,000): wider reads take several, in one snapshot. */
const MAX_READ_COLUMNS = 1_000;

/**
 * An online store in one SQLite file (better-sqlite3, WAL mode): serving reads in process, in
 * microseconds. A catalog of published materializations, and one `WITHOUT ROWID` table per
 * materialization, keyed by the encoded entity key, with a column per value column holding
 * SQLite's own numbers and text (not encoded rows): publication is a plain bulk insert. A read of
 * any number of features and keys is one prepared statement, one index probe per feature and key.
 *
 * Needs the optional peer dependency `better-sqlite3`. Publication runs synchronously in one
 * transaction (it blocks the event loop while it writes: about a second per million rows).
 *
 * ### Example
 * ```ts
 * import { SqliteOnlineStore } from 'featurefn/sqlite';
 * const online = new SqliteOnlineStore({ path: 'online.sqlite' });
 * ```
 */
export class SqliteOnlineStore implements OnlineStore {
  readonly name = 'sqlite';
  readonly keep: number;
  readonly #db: Database.Database;
  readonly #path: string;
  readonly #statements = new Map<string, Database.Statement>();
  /** Published materializations by feature and id, as last seen in the catalog. */
  readonly #stored = new Map<string, Stored>();
  /** Read plans by the caller's array of sources (a server passes the same one each time). */
  #plans = new WeakMap<readonly OnlineSource[], SourcesPlan>();
  /** The same, by the materializations read, for callers passing new arrays. */
  readonly #plansByTables = new Map<string, SourcesPlan>();
  #closed = false;

  constructor(options: SqliteOnlineStoreOptions = {}) {
    this.#path = options.path ?? 'online.sqlite';
    this.keep = checkKeep(options.keep ?? 3);
    try {
      this.#db = new Database(this.#path);
      this.#db.pragma('journal_mode = WAL');
      this.#db.pragma('synchronous = NORMAL');
      if (this.#db.prepare("SELECT 1 FROM sqlite_schema WHERE name = 'featurefn_online_rows'").get()) {
        throw new Error(
          'it was written by an earlier featurefn, with another layout; delete the file and refill it with materializer.syncOnline()',
        );
      }
      // AUTOINCREMENT: a retired materialization's number (and table name) is never reused, so
      // a read that resolved it before the retirement finds nothing instead of another one.
      this.#db.exec(`
        CREATE TABLE IF NOT EXISTS featurefn_online_catalog (
          m INTEGER PRIMARY KEY AUTOINCREMENT,
          feature TEXT NOT NULL,
          id TEXT NOT NULL,
          params_key TEXT NOT NULL,
          rows INTEGER NOT NULL,
          published_at INTEGER NOT NULL,
          columns TEXT NOT NULL,
          UNIQUE (feature, id)
        );`);
    } catch (error) {
      throw new FeatureStoreError(
        'STORE_ERROR',
        `cannot open the SQLite online store at ${this.#path}: ${messageOf(error)}`,
        { cause: error },
      );
    }
  }

  async publish(publication: OnlinePublication): Promise<OnlineMaterialization> {
    this.#assertOpen();
    const batches = await collectBatches(publication);
    const publishedAt = new Date();
    const { feature, id, paramsKey, columns } = publication;
    try {
      // Values are encoded as they are inserted: a refused one rolls the whole transaction back.
      return this.#db
        .transaction(() => {
          if (
            this.#statement('SELECT 1 FROM featurefn_online_catalog WHERE feature = ? AND id = ?').get(
              feature,
              id,
            )
          ) {
            throw new FeatureStoreError(
              'STORE_ERROR',
              `materialization ${id} is already published online; unpublish it first.`,
              storeContext(publication),
            );
          }
          const replaced = this.#statement(
            'SELECT m FROM featurefn_online_catalog WHERE feature = ? AND params_key = ?',
          ).all(feature, paramsKey) as { m: number }[];
          for (const { m } of replaced) this.#retire(m);
          const rows = batches.reduce((n, b) => n + b.numRows, 0);
          const m = Number(
            this.#statement(
              'INSERT INTO featurefn_online_catalog (feature, id, params_key, rows, published_at, columns) VALUES (?, ?, ?, ?, ?, ?)',
            ).run(feature, id, paramsKey, rows, publishedAt.getTime(), JSON.stringify(columns))
              .lastInsertRowid,
          );
          const table = tableOf(m);
          const cells = columns.map((_, c) => `, c${c}`).join('');
          this.#db.exec(`CREATE TABLE ${table} (k TEXT PRIMARY KEY NOT NULL${cells}) WITHOUT ROWID`);
          const insert = this.#db.prepare(
            `INSERT INTO ${table} VALUES (?${columns.map(() => ', ?').join('')})`,
          );
          const values: Cell[] = new Array(columns.length + 1);
          for (const batch of batches) {
            const keys = batchKeys(publication, batch);
            const readers = columns.map((column) => cellReader(publication, batch, column));
            for (let r = 0; r < keys.length; r++) {
              values[0] = keys[r]!;
              for (let c = 0; c < readers.length; c++) values[c + 1] = readers[c]!(r);
              insert.run(values);
            }
          }
          const old = this.#statement(
            'SELECT m FROM featurefn_online_catalog WHERE feature = ? ORDER BY m DESC LIMIT -1 OFFSET ?',
          ).all(feature, this.keep) as { m: number }[];
          for (const o of old) this.#retire(o.m);
          return Object.freeze({ feature, id, paramsKey, rows, publishedAt });
        })
        .immediate();
    } catch (error) {
      if (error instanceof FeatureStoreError) throw error;
      if ((error as { code?: unknown }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new FeatureStoreError(
          'DUPLICATE_KEY',
          'two rows share an entity key; online rows need unique keys. Nothing was published.',
          storeContext(publication, error),
        );
      }
      throw new FeatureStoreError(
        'STORE_ERROR',
        `publication to the SQLite online store failed: ${messageOf(error)}. Nothing was published.`,
        storeContext(publication, error),
      );
    }
  }

  async unpublish(feature: string, id: string): Promise<boolean> {
    this.#assertOpen();
    return this.#run({ feature }, () =>
      this.#db
        .transaction(() => {
          const found = this.#statement(
            'SELECT m FROM featurefn_online_catalog WHERE feature = ? AND id = ?',
          ).get(feature, id) as { m: number } | undefined;
          if (found !== undefined) this.#retire(found.m);
          return found !== undefined;
        })
        .immediate(),
    );
  }

  async list(features: readonly string[]): Promise<OnlineMaterialization[]> {
    this.#assertOpen();
    if (features.length === 0) return [];
    return this.#run({ feature: features.join(', ') }, () => {
      const found = this.#statement(
        `SELECT feature, id, params_key, rows, published_at FROM featurefn_online_catalog
         WHERE feature IN (SELECT value FROM json_each(?)) ORDER BY m`,
      ).all(JSON.stringify(features)) as CatalogRow[];
      return found.map((r) =>
        Object.freeze({
          feature: r.feature,
          id: r.id,
          paramsKey: r.params_key,
          rows: r.rows,
          publishedAt: new Date(r.published_at),
        }),
      );
    });
  }

  async read(sources: readonly OnlineSource[], keys: readonly OnlineKey[]): Promise<(Row | null)[][]> {
    this.#assertOpen();
    if (sources.length === 0 || keys.length === 0) {
      return keys.map(() => new Array<Row | null>(sources.length).fill(null));
    }
    const encoded = keys.map(encodeKey);
    return this.#run({ feature: sources[0]!.feature }, () => {
      try {
        return this.#readWith(this.#planOf(sources, false), encoded);
      } catch (error) {
        if (!isMissingTable(error)) throw error;
        // Retired (or retired and published again) since this process last looked: ask the catalog.
        return this.#readWith(this.#planOf(sources, true), encoded);
      }
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#statements.clear();
    this.#plansByTables.clear();
    this.#db.close();
  }

  #readWith(plan: SourcesPlan, keys: readonly string[]): (Row | null)[][] {
    const result: (Row | null)[][] = keys.map(() => new Array<Row | null>(plan.stored.length).fill(null));
    const groups = groupsOf(plan.stored);
    const readGroups = () => {
      for (const [start, end] of groups) {
        const statement = this.#readStatement(plan, start, end, keys.length);
        const found = statement.all(keys) as Cell[][];
        for (let k = 0; k < found.length; k++) {
          const cells = found[k]!;
          let at = 0;
          for (let s = start; s < end; s++) {
            const stored = plan.stored[s]!;
            const width = Math.max(1, stored.names.length);
            // The first cell says whether the key has a row: NULL when not, never when it has one.
            if (cells[at] !== null) result[k]![s] = rowOf(stored, cells, at);
            at += width;
          }
        }
      }
    };
    if (groups.length === 1) readGroups();
    else this.#db.transaction(readGroups).deferred();
    return result;
  }

  /** The read plan of `sources`, from the catalog when `refresh` or when some is not known yet. */
  #planOf(sources: readonly OnlineSource[], refresh: boolean): SourcesPlan {
    if (!refresh) {
      const known = this.#plans.get(sources);
      if (known !== undefined) return known;
    }
    const missing = sources.filter((s) => refresh || !this.#stored.has(storedKey(s)));
    if (missing.length > 0) {
      for (const s of missing) this.#stored.delete(storedKey(s));
      const found = this.#statement(
        `SELECT c.m AS m, c.feature AS feature, c.id AS id, c.columns AS columns
         FROM json_each(?) s JOIN featurefn_online_catalog c
           ON c.feature = json_extract(s.value, '$[0]') AND c.id = json_extract(s.value, '$[1]')`,
      ).all(JSON.stringify(missing.map((s) => [s.feature, s.id]))) as CatalogRow[];
      for (const row of found) {
        const columns = JSON.parse(row.columns) as ColumnSpec[];
        this.#stored.set(storedKey(row), {
          m: row.m,
          names: columns.map((c) => c.name),
          decoders: columns.map((c) => cellDecoder(c.type)),
        });
      }
      const absent = missing.filter((s) => !this.#stored.has(storedKey(s)));
      if (absent.length > 0) throw notListed(absent);
    }
    const stored = sources.map((s) => this.#stored.get(storedKey(s))!);
    const tables = stored.map((s) => s.m).join(',');
    let plan = this.#plansByTables.get(tables);
    if (plan === undefined) {
      if (this.#plansByTables.size >= MAX_PLANS) this.#plansByTables.clear();
      plan = { stored, statements: new Map() };
      this.#plansByTables.set(tables, plan);
    }
    this.#plans.set(sources, plan);
    return plan;
  }

  // One statement, so one snapshot: for each key, each source's cells, one scalar subquery (one
  // index probe) per value column. A retired source's table is gone: the statement fails.
  #readStatement(plan: SourcesPlan, start: number, end: number, keys: number): Database.Statement {
    const shape = `${start}:${keys}`;
    let statement = plan.statements.get(shape);
    if (statement === undefined) {
      const cells: string[] = [];
      for (let s = start; s < end; s++) {
        const { m, names } = plan.stored[s]!;
        const table = tableOf(m);
        if (names.length === 0) cells.push(`(SELECT 1 FROM ${table} WHERE k = q.k)`);
        names.forEach((_, c) => {
          // A row's first cell is never NULL (an empty blob stands for null): NULL means no row.
          const cell = c === 0 ? `ifnull(c0, X'')` : `c${c}`;
          cells.push(`(SELECT ${cell} FROM ${table} WHERE k = q.k)`);
        });
      }
      const values = Array.from({ length: keys }, (_, i) => `(${i}, ?)`).join(', ');
      statement = this.#db
        .prepare(
          `WITH q(i, k) AS (VALUES ${values}) SELECT ${cells.join(', ')} FROM q${keys > 1 ? ' ORDER BY q.i' : ''}`,
        )
        .raw(true)
        .safeIntegers(true);
      if (plan.statements.size >= MAX_PLANS) plan.statements.clear();
      plan.statements.set(shape, statement);
    }
    return statement;
  }

  #retire(m: number): void {
    this.#db.exec(`DROP TABLE IF EXISTS ${tableOf(m)}`);
    this.#statement('DELETE FROM featurefn_online_catalog WHERE m = ?').run(m);
    for (const [key, stored] of this.#stored) if (stored.m === m) this.#stored.delete(key);
    // Plans naming it fail at their next read and are made again from the catalog.
    this.#plans = new WeakMap();
    this.#plansByTables.clear();
  }

  #statement(sql: string): Database.Statement {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  #run<T>(context: { feature: string }, fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      if (error instanceof FeatureStoreError) throw error;
      throw new FeatureStoreError(
        'STORE_ERROR',
        `the SQLite online store at ${this.#path} failed: ${messageOf(error)}`,
        { ...context, cause: error },
      );
    }
  }

  #assertOpen(): void {
    if (this.#closed) {
      throw new FeatureStoreError('CLOSED', `the SQLite online store at ${this.#path} is closed.`);
    }
  }
}

function tableOf(m: number): string {
  return `featurefn_online_m${m}`;
}

function storedKey(source: { feature: string; id: string }): string {
  return `${source.feature}\u0000${source.id}`;
}

/** Ranges of sources whose cells fit in one statement. */
function groupsOf(stored: readonly Stored[]): [number, number][] {
  const groups: [number, number][] = [];
  let start = 0;
  let width = 0;
  for (let s = 0; s < stored.length; s++) {
    const cells = Math.max(1, stored[s]!.names.length);
    if (width + cells > MAX_READ_COLUMNS && s > start) {
      groups.push([start, s]);
      start = s;
      width = 0;
    }
    width += cells;
  }
  groups.push([start, stored.length]);
  return groups;
}

function rowOf(stored: Stored, cells: readonly Cell[], at: number): Row {
  const row: Row = {};
  const { names, decoders } = stored;
  for (let c = 0; c < names.length; c++) {
    const cell = cells[at + c]!;
    // The empty blob of a row's first cell stands for null; no value is ever an empty blob.
    const value = cell === null || (c === 0 && isEmptyBlob(cell)) ? null : decoders[c]!(cell);
    const name = names[c]!;
    if (name === '__proto__') {
      Object.defineProperty(row, name, { value, enumerable: true, writable: true, configurable: true });
    } else row[name] = value;
  }
  return row;
}

function isEmptyBlob(cell: Cell): boolean {
  return typeof cell === 'object' && cell !== null && cell.length === 0;
}

/**
 * Reads one value column of a batch as SQLite cells: numbers, bigints (int64), text; NaN, which
 * SQLite would store as NULL, as the text `'NaN'` (a float column holds no other text).
 */
function cellReader(
  publication: OnlinePublication,
  batch: RecordBatch,
  column: ColumnSpec,
): (row: number) => Cell {
  const vector = typedColumnOf(publication, batch, column);
  switch (column.type) {
    case 'float32':
    case 'float64': {
      if (vector.nullCount === 0) {
        const values = vector.toArray() as Float64Array | Float32Array;
        return (r) => {
          const v = values[r]!;
          return Number.isNaN(v) ? 'NaN' : v;
        };
      }
      return (r) => {
        const v = vector.get(r) as number | null;
        return v !== null && Number.isNaN(v) ? 'NaN' : v;
      };
    }
    case 'int8':
    case 'int16':
    case 'int32':
    case 'int64':
      return (r) => vector.get(r) as number | bigint | null;
    case 'boolean':
      return (r) => {
        const v = vector.get(r) as boolean | null;
        return v === null ? null : v ? 1 : 0;
      };
    case 'timestamp':
    case 'date':
      return (r) => {
        const v = vector.get(r) as number | bigint | null;
        return v === null ? null : Math.floor(Number(v));
      };
    case 'string':
    case 'json': {
      // Keeps a leading U+FEFF, which vector.get() drops.
      const read =
        vector.type.typeId === Type.Utf8 ? utf8Reader(vector) : (r: number) => vector.get(r) as string | null;
      return read;
    }
    case 'float64[]': {
      const text = valueText(column.type, vector);
      return (r) => {
        const v = text(r);
        return v === 'null' ? null : v;
      };
    }
  }
}

/** Turns a non-null cell back into the value published. */
function cellDecoder(type: ColumnType): (cell: Cell) => unknown {
  switch (type) {
    case 'float32':
    case 'float64':
      return decodeFloat;
    case 'int8':
    case 'int16':
    case 'int32':
      return Number;
    case 'int64':
      return (cell) => BigInt(cell as bigint | number);
    case 'boolean':
      return (cell) => Number(cell) === 1;
    case 'timestamp':
    case 'date':
      return (cell) => new Date(Number(cell));
    case 'string':
      return (cell) => cell;
    case 'json':
      return (cell) => JSON.parse(cell as string);
    case 'float64[]':
      return (cell) => (JSON.parse(cell as string) as unknown[]).map(decodeFloat);
  }
}

function isMissingTable(error: unknown): boolean {
  return /no such table: featurefn_online_m/.test(messageOf(error));
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
