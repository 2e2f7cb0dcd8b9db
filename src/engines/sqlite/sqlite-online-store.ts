import Database from 'better-sqlite3';
import { FeatureStoreError } from '../../errors.js';
import type { ColumnSpec, Row } from '../../frame/columns.js';
import {
  batchKeys,
  batchRows,
  checkKeep,
  collectBatches,
  encodeKey,
  notListed,
  rowDecoder,
  storeContext,
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

// Reads and statements are prepared once per shape; a shape is (sources, keys).
const MAX_READ_STATEMENTS = 64;

/**
 * An online store in one SQLite file (better-sqlite3, WAL mode): serving reads in process, in
 * microseconds. Two tables: the catalog of published materializations, and one
 * `WITHOUT ROWID` table of encoded rows keyed by (materialization, key). A read of any number of
 * features and keys is one prepared statement.
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
  readonly #reads = new Map<string, Database.Statement>();
  readonly #decoders = new Map<number, (text: string) => Row>();
  #closed = false;

  constructor(options: SqliteOnlineStoreOptions = {}) {
    this.#path = options.path ?? 'online.sqlite';
    this.keep = checkKeep(options.keep ?? 3);
    try {
      this.#db = new Database(this.#path);
      this.#db.pragma('journal_mode = WAL');
      this.#db.pragma('synchronous = NORMAL');
      // AUTOINCREMENT: a retired materialization's number is never reused, so a read that
      // resolved it before the retirement finds nothing instead of another materialization.
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
        );
        CREATE TABLE IF NOT EXISTS featurefn_online_rows (
          m INTEGER NOT NULL,
          k TEXT NOT NULL,
          v TEXT NOT NULL,
          PRIMARY KEY (m, k)
        ) WITHOUT ROWID;`);
    } catch (error) {
      throw new FeatureStoreError(
        'STORE_ERROR',
        `cannot open the SQLite online store at ${this.#path}: ${messageOf(error)}`,
        {
          cause: error,
        },
      );
    }
  }

  async publish(publication: OnlinePublication): Promise<OnlineMaterialization> {
    this.#assertOpen();
    const batches = await collectBatches(publication);
    // Encode before the transaction: a refused value leaves the store untouched.
    const encoded = batches.map((batch) => ({
      keys: batchKeys(publication, batch),
      rows: batchRows(publication, batch),
    }));
    const rows = encoded.reduce((n, b) => n + b.keys.length, 0);
    const publishedAt = new Date();
    const db = this.#db;
    try {
      return db
        .transaction(() => {
          const { feature, id, paramsKey } = publication;
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
          const { lastInsertRowid } = this.#statement(
            'INSERT INTO featurefn_online_catalog (feature, id, params_key, rows, published_at, columns) VALUES (?, ?, ?, ?, ?, ?)',
          ).run(feature, id, paramsKey, rows, publishedAt.getTime(), JSON.stringify(publication.columns));
          const m = Number(lastInsertRowid);
          const insert = this.#statement('INSERT INTO featurefn_online_rows (m, k, v) VALUES (?, ?, ?)');
          for (const batch of encoded) {
            for (let r = 0; r < batch.keys.length; r++) insert.run(m, batch.keys[r], batch.rows[r]);
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
    const result: (Row | null)[][] = keys.map(() => new Array<Row | null>(sources.length).fill(null));
    if (sources.length === 0 || keys.length === 0) return result;
    const args: (string | number)[] = [];
    for (let s = 0; s < sources.length; s++) args.push(s, sources[s]!.feature, sources[s]!.id);
    const encoded = keys.map(encodeKey);
    args.push(...encoded);
    const found = this.#run({ feature: sources[0]!.feature }, () =>
      this.#readStatement(sources.length, keys.length).all(args),
    ) as { s: number; m: number; columns: string; k: string | null; v: string | null }[];
    const seen = new Array<boolean>(sources.length).fill(false);
    for (const { s, m, columns, k, v } of found) {
      seen[s] = true;
      if (k === null || v === null) continue;
      let decode = this.#decoders.get(m);
      if (decode === undefined) {
        decode = rowDecoder(JSON.parse(columns) as ColumnSpec[]);
        if (this.#decoders.size >= 1024) this.#decoders.clear();
        this.#decoders.set(m, decode);
      }
      const row = decode(v);
      for (let i = 0; i < encoded.length; i++) if (encoded[i] === k) result[i]![s] = row;
    }
    const missing = sources.filter((_, s) => !seen[s]);
    if (missing.length > 0) throw notListed(missing);
    return result;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#reads.clear();
    this.#db.close();
  }

  #retire(m: number): void {
    this.#statement('DELETE FROM featurefn_online_rows WHERE m = ?').run(m);
    this.#statement('DELETE FROM featurefn_online_catalog WHERE m = ?').run(m);
  }

  #statement(sql: string): Database.Statement {
    let statement = this.#reads.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare(sql);
      this.#reads.set(sql, statement);
    }
    return statement;
  }

  // One statement, so one snapshot: each source's catalog row and its rows for the keys. A
  // source missing from the answer is not listed (any more).
  #readStatement(sources: number, keys: number): Database.Statement {
    const shape = `${sources}:${keys}`;
    let statement = this.#reads.get(shape);
    if (statement === undefined) {
      if (this.#reads.size >= MAX_READ_STATEMENTS) this.#reads.clear();
      const values = Array.from({ length: sources }, () => '(?, ?, ?)').join(', ');
      const inKeys = Array.from({ length: keys }, () => '?').join(', ');
      statement = this.#db.prepare(
        `WITH s(s, feature, id) AS (VALUES ${values})
         SELECT s.s AS s, c.m AS m, c.columns AS columns, r.k AS k, r.v AS v
         FROM s JOIN featurefn_online_catalog c ON c.feature = s.feature AND c.id = s.id
         LEFT JOIN featurefn_online_rows r ON r.m = c.m AND r.k IN (${inKeys})`,
      );
      this.#reads.set(shape, statement);
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
        {
          ...context,
          cause: error,
        },
      );
    }
  }

  #assertOpen(): void {
    if (this.#closed) {
      throw new FeatureStoreError('CLOSED', `the SQLite online store at ${this.#path} is closed.`);
    }
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
