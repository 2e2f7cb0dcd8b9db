/**
 * The flight records, once per compute library: the same rows of vega-datasets'
 * `flights-3m.parquet` (date, delay, distance, origin, destination) as an array of row objects,
 * an Apache Arrow table, a nodejs-polars DataFrame, a DuckDB table and a PostgreSQL table.
 *
 * This file belongs to whoever runs the jobs: it opens the databases. The five feature files
 * only ask it for their flights.
 *
 * By default every form holds all 3,000,000 flights. `configureFlights({ limit })` keeps the
 * first `limit` flights of the file (the earliest ones: it is sorted by date) in every form.
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Table } from 'apache-arrow';
import type { SqlSource } from 'featurefn';
import { duckdbSource } from 'featurefn/duckdb';
import { toPolars } from 'featurefn/polars';
import { type PostgresSource, postgresSource } from 'featurefn/postgres';
import { Kysely, PostgresDialect, type QueryCreator } from 'kysely';
import type { DataFrame } from 'nodejs-polars';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

/** One flight, as the row-based feature sees it. */
export interface Flight {
  /** Scheduled departure. */
  date: Date;
  /** Departure delay in minutes (negative: early). */
  delay: number;
  /** Miles. */
  distance: number;
  /** IATA code of the departure airport. */
  origin: string;
  /** IATA code of the arrival airport. */
  destination: string;
}

/** The PostgreSQL tables, as Kysely sees them. */
export interface FlightsDatabase {
  flights: {
    date: Date;
    delay: number;
    distance: number;
    origin: string;
    destination: string;
  };
}

/** Where the flights come from and how many of them. */
export interface FlightsConfig {
  /** Keep the first `limit` flights (the earliest). Default: all 3,000,000. */
  limit?: number;
  /** PostgreSQL URL. Default: `FEATUREFN_PG_URL`, else `postgres://postgres@127.0.0.1:5432/test`. */
  postgresUrl?: string;
  /** Schema of the PostgreSQL `flights` table. Default is `'five_ways'`. */
  postgresSchema?: string;
}

/** The parquet file of the npm package `vega-datasets`. */
export const FLIGHTS_PARQUET = fileURLToPath(
  new URL('../data/flights-3m.parquet', import.meta.resolve('vega-datasets')),
);

let config: Required<Omit<FlightsConfig, 'limit'>> & { limit: number | undefined } = {
  limit: undefined,
  postgresUrl: process.env.FEATUREFN_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
  postgresSchema: 'five_ways',
};

let duckdb: Promise<{ instance: DuckDBInstance; source: SqlSource }> | undefined;
let rows: Promise<Flight[]> | undefined;
let arrow: Promise<Table> | undefined;
let polars: Promise<DataFrame> | undefined;
let postgres: Promise<{ pool: pg.Pool; db: Kysely<FlightsDatabase>; source: PostgresSource }> | undefined;

/** Sets which flights to load and where; call it before the first feature runs. */
export function configureFlights(options: FlightsConfig): void {
  if (duckdb !== undefined || postgres !== undefined) {
    throw new Error('configureFlights must be called before the flights are first loaded');
  }
  config = { ...config, ...options, limit: options.limit ?? config.limit };
}

/** The flights' DuckDB database: an in-memory DuckDB with the table `flights`. */
export async function flightsDuckDB(): Promise<{ instance: DuckDBInstance; source: SqlSource }> {
  duckdb ??= (async () => {
    const instance = await DuckDBInstance.create(':memory:');
    const c = await instance.connect();
    try {
      // The file is in date order and DuckDB keeps insertion order, so LIMIT keeps the earliest.
      await c.run(
        `CREATE TABLE flights AS
         SELECT date, delay::INTEGER AS delay, distance::INTEGER AS distance, origin, destination
         FROM read_parquet('${FLIGHTS_PARQUET.replaceAll("'", "''")}')
         ${config.limit === undefined ? '' : `LIMIT ${Math.trunc(config.limit)}`}`,
      );
    } finally {
      c.closeSync();
    }
    return { instance, source: duckdbSource(instance) };
  })();
  return duckdb;
}

/** The DuckDB source SQL features query: ``source.sql`SELECT … FROM flights` ``. */
export async function flightsSource(): Promise<SqlSource> {
  return (await flightsDuckDB()).source;
}

/** The flights as an Apache Arrow table (`date` a millisecond timestamp, `origin` a string). */
export function flightsArrow(): Promise<Table> {
  arrow ??= flightsSource().then((source) => source.sql`SELECT * FROM flights`.toArrow());
  return arrow;
}

/** The flights as an array of row objects. */
export function flightRows(): Promise<Flight[]> {
  rows ??= flightsArrow().then((table) => {
    const dates = table.getChild('date')!.toArray() as Float64Array | BigInt64Array;
    const delays = table.getChild('delay')!.toArray() as Int32Array;
    const distances = table.getChild('distance')!.toArray() as Int32Array;
    const origins = table.getChild('origin')!.toArray() as string[];
    const destinations = table.getChild('destination')!.toArray() as string[];
    return Array.from({ length: table.numRows }, (_, i) => ({
      date: new Date(Number(dates[i])),
      delay: delays[i]!,
      distance: distances[i]!,
      origin: origins[i]!,
      destination: destinations[i]!,
    }));
  });
  return rows;
}

/** The flights as a nodejs-polars DataFrame. */
export function flightsPolars(): Promise<DataFrame> {
  polars ??= flightsArrow().then(toPolars);
  return polars;
}

/**
 * The flights in PostgreSQL: table `<schema>.flights`, loaded by COPY from the DuckDB table when
 * missing or holding other rows. Queries start from `db.withSchema(schema)`.
 */
export async function flightsPostgres(): Promise<QueryCreator<FlightsDatabase>> {
  const { db } = await openPostgres();
  return db.withSchema(config.postgresSchema);
}

/**
 * The PostgreSQL flights as a source of SQL features: ``source.sql`SELECT … FROM five_ways.flights` ``.
 * Made from the URL, so a `PostgresMaterializer` on the same URL materializes its features
 * inside PostgreSQL.
 */
export async function flightsPostgresSource(): Promise<PostgresSource> {
  return (await openPostgres()).source;
}

/** Schema of the PostgreSQL `flights` table. */
export function postgresFlightsSchema(): string {
  return config.postgresSchema;
}

/** The pool the PostgreSQL flights live on (for hand-written queries). */
export async function flightsPool(): Promise<pg.Pool> {
  return (await openPostgres()).pool;
}

/** Qualified, quoted name of the PostgreSQL flights table. */
export function postgresFlightsTable(): string {
  return `${quote(config.postgresSchema)}.flights`;
}

/** Closes every database this file opened. */
export async function closeFlights(): Promise<void> {
  const [open, data] = [postgres, duckdb];
  postgres = undefined;
  duckdb = undefined;
  rows = undefined;
  arrow = undefined;
  polars = undefined;
  await open
    ?.then(async ({ db, source }) => {
      await source.close();
      await db.destroy(); // ends the pool
    })
    .catch(() => undefined);
  (await data?.catch(() => undefined))?.instance.closeSync();
}

function openPostgres(): Promise<{ pool: pg.Pool; db: Kysely<FlightsDatabase>; source: PostgresSource }> {
  postgres ??= (async () => {
    const pool = new pg.Pool({ connectionString: config.postgresUrl, max: 4 });
    pool.on('error', () => undefined);
    try {
      await loadPostgres(pool);
    } catch (error) {
      await pool.end();
      throw error;
    }
    return {
      pool,
      db: new Kysely<FlightsDatabase>({ dialect: new PostgresDialect({ pool }) }),
      source: postgresSource(config.postgresUrl),
    };
  })();
  postgres.catch(() => {
    postgres = undefined;
  });
  return postgres;
}

/** Creates and fills `<schema>.flights` unless it already holds exactly these flights. */
async function loadPostgres(pool: pg.Pool): Promise<void> {
  const { instance } = await flightsDuckDB();
  const c = await instance.connect();
  const table = postgresFlightsTable();
  try {
    const [shape] = (
      await c.runAndReadAll('SELECT count(*)::INTEGER AS n, epoch_ms(max(date))::BIGINT AS last FROM flights')
    ).getRowObjectsJS() as [{ n: number; last: bigint }];
    const client = await pool.connect();
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${quote(config.postgresSchema)}`);
      const exists = await client.query<{ found: boolean }>('SELECT to_regclass($1) IS NOT NULL AS found', [
        `${config.postgresSchema}.flights`,
      ]);
      const found = exists.rows[0]?.found
        ? (
            await client.query<{ n: number; last: string | null }>(
              `SELECT count(*)::int AS n, (extract(epoch FROM max(date)) * 1000)::bigint::text AS last FROM ${table}`,
            )
          ).rows[0]
        : undefined;
      if (found !== undefined && found.n === shape.n && found.last === String(shape.last)) return;

      const dir = await mkdtemp(join(tmpdir(), 'five-ways-'));
      try {
        const csv = join(dir, 'flights.csv');
        await c.run(
          `COPY (SELECT strftime(date, '%Y-%m-%d %H:%M:%S+00'), delay, distance, origin, destination FROM flights)
           TO '${csv.replaceAll("'", "''")}' (FORMAT csv, HEADER false)`,
        );
        await client.query('BEGIN');
        await client.query(`DROP TABLE IF EXISTS ${table}`);
        await client.query(
          `CREATE TABLE ${table} (
             date timestamptz NOT NULL, delay integer NOT NULL,
             distance integer NOT NULL, origin text NOT NULL, destination text NOT NULL)`,
        );
        await pipeline(
          createReadStream(csv),
          client.query(
            copyFrom(`COPY ${table} (date, delay, distance, origin, destination) FROM STDIN (FORMAT csv)`),
          ),
        );
        await client.query('COMMIT');
        await client.query(`ANALYZE ${table}`);
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    } finally {
      client.release();
    }
  } finally {
    c.closeSync();
  }
}

function quote(identifier: string): string {
  return `"${identifier.replaceAll('"', '""')}"`;
}
