import type { RecordBatch, Table } from 'apache-arrow';
import { FeatureStoreError } from '../errors.js';
import { describeValue } from '../format.js';
import { isBindable } from '../query/nodes.js';

const SQL_QUERY = Symbol.for('featurefn.sqlQuery');
const SQL_FRAGMENT = Symbol.for('featurefn.sqlFragment');

/** SQL text inserted as it is: an identifier made by `sql.id`, or text made by `sql.raw`. */
export interface SqlFragment {
  readonly [SQL_FRAGMENT]: true;
  readonly text: string;
}

/** A value a SQL feature may bind. */
export type SqlValue = string | number | bigint | boolean | Date | null;

/**
 * A database that runs SQL features: the DuckDB connection or PostgreSQL pool their tables are
 * in. `duckdbSource(connection)` (from `featurefn/duckdb`) and `postgresSource(connection)` (from
 * `featurefn/postgres`) make one; every materializer also has its own as `materializer.source`.
 */
export interface SqlSource {
  /** SQL dialect of the engine. */
  readonly dialect: 'duckdb' | 'postgres';
  /**
   * Identity of the database: a store materializes a SQL feature inside the engine, with one
   * `CREATE TABLE … AS`, when its own source has the same `database`.
   */
  readonly database: unknown;
  /** Runs a query and streams its rows as Arrow record batches. */
  stream(query: SqlQuery): AsyncIterable<RecordBatch>;
  /** A query to run here: ``source.sql`SELECT … WHERE date <= ${when}` ``. */
  readonly sql: SqlTag;
}

/**
 * A SQL query with bound values, built by the `sql` tag of a {@link SqlSource}. Values are never
 * spliced into the text: each becomes a placeholder; a nested query becomes a subquery.
 *
 * ### Example
 * ```ts
 * const departures = feature({ entity: 'origin' }, async function departures({ when }: { when: Date }) {
 *   return flights.sql`SELECT origin, count(*) AS departures FROM flights WHERE date <= ${when} GROUP BY origin`;
 * });
 * ```
 */
export class SqlQuery {
  readonly [SQL_QUERY] = true as const;
  readonly strings: readonly string[];
  readonly values: readonly (SqlValue | SqlQuery | SqlFragment)[];
  readonly source: SqlSource;

  /** @internal */
  constructor(
    source: SqlSource,
    strings: readonly string[],
    values: readonly (SqlValue | SqlQuery | SqlFragment)[],
  ) {
    values.forEach(checkValue);
    this.source = source;
    this.strings = Object.freeze([...strings]);
    this.values = Object.freeze([...values]);
    Object.freeze(this);
  }

  /**
   * The SQL text with placeholders numbered from `first` (1-based), and the values they bind.
   * Nested queries are inlined as parenthesised subqueries.
   */
  render(placeholder: (index: number) => string, first = 1): { text: string; values: SqlValue[] } {
    const values: SqlValue[] = [];
    let text = this.strings[0]!;
    this.values.forEach((value, i) => {
      if (isSqlQuery(value)) {
        const inner = value.render(placeholder, first + values.length);
        text += `(${trimStatement(inner.text)})`;
        values.push(...inner.values);
      } else if (isFragment(value)) {
        text += value.text;
      } else {
        values.push(value);
        text += placeholder(first + values.length - 1);
      }
      text += this.strings[i + 1]!;
    });
    return { text, values };
  }

  /** Runs the query on its source and returns an Arrow table. */
  async toArrow(): Promise<Table> {
    const { Table } = await import('apache-arrow');
    const batches: RecordBatch[] = [];
    for await (const batch of this.source.stream(this)) batches.push(batch);
    return batches.length === 0 ? new Table() : new Table(batches);
  }

  /** Runs the query on its source and returns row objects. */
  async toArray(): Promise<Record<string, unknown>[]> {
    const { tableToRows } = await import('../frame/columns.js');
    return tableToRows(await this.toArrow());
  }
}

/** The `sql` tagged template of a source, with helpers for text that is not a bound value. */
export type SqlTag = ((
  strings: TemplateStringsArray,
  ...values: readonly (SqlValue | SqlQuery | SqlFragment)[]
) => SqlQuery) & {
  /** A quoted identifier: ``db.sql`SELECT * FROM ${db.sql.id('my table')}` ``. */
  id(...parts: string[]): SqlFragment;
  /** Text inserted as it is. Never pass user input. */
  raw(text: string): SqlFragment;
};

const fragments = {
  /** A quoted identifier: ``sql`SELECT * FROM ${sql.id('my table')}` ``. */
  id(...parts: string[]): SqlFragment {
    return fragment(parts.map((p) => `"${p.replaceAll('"', '""')}"`).join('.'));
  },
  /** Text inserted as it is. Never pass user input. */
  raw(text: string): SqlFragment {
    return fragment(text);
  },
};

/**
 * Makes the `sql` tag of a source.
 * @internal
 */
export function sqlTag(source: () => SqlSource): SqlTag {
  const tag = (strings: TemplateStringsArray, ...values: readonly (SqlValue | SqlQuery | SqlFragment)[]) =>
    new SqlQuery(source(), strings, values);
  return Object.assign(tag, fragments);
}

/** True for a {@link SqlQuery}, from any copy of featurefn. */
export function isSqlQuery(value: unknown): value is SqlQuery {
  return typeof value === 'object' && value !== null && SQL_QUERY in value;
}

function isFragment(value: unknown): value is SqlFragment {
  return typeof value === 'object' && value !== null && SQL_FRAGMENT in value;
}

function fragment(text: string): SqlFragment {
  return Object.freeze({ [SQL_FRAGMENT]: true as const, text });
}

function checkValue(value: unknown): void {
  if (!(isBindable(value) || isSqlQuery(value) || isFragment(value))) {
    throw new FeatureStoreError(
      'INVALID_QUERY',
      `a SQL query got ${describeValue(value)} as a value; bind strings, finite numbers, bigints, booleans, Dates or null, ` +
        'nest queries, or use sql.id(...) for identifiers.',
    );
  }
}

/**
 * A statement's text without what follows its last token: trailing whitespace, semicolons and
 * comments, so that it can be wrapped (`(…)`, `CREATE TABLE … AS …`) without ending the wrapper
 * or commenting out its close. Quoted strings and identifiers are skipped whole. @internal
 */
export function trimStatement(text: string): string {
  let end = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '-' && text[i + 1] === '-') {
      const newline = text.indexOf('\n', i);
      i = newline < 0 ? text.length : newline + 1;
    } else if (c === '/' && text[i + 1] === '*') {
      const close = text.indexOf('*/', i + 2);
      i = close < 0 ? text.length : close + 2;
    } else if (c === "'" || c === '"') {
      let j = i + 1;
      for (;;) {
        const close = text.indexOf(c, j);
        if (close < 0) {
          j = text.length;
          break;
        }
        if (text[close + 1] === c) j = close + 2;
        else {
          j = close + 1;
          break;
        }
      }
      i = j;
      end = i;
    } else {
      i++;
      if (c !== ';' && !/\s/.test(c)) end = i;
    }
  }
  return text.slice(0, end);
}
