/**
 * Compute libraries and SQL features, on the 3-million-row flight records (vega-datasets): where a
 * SQL feature runs, what streaming a big result through Node costs, and how much memory it takes.
 * The server is `FEATUREFN_PG_URL` (default postgres://postgres@127.0.0.1:5432/test); everything
 * happens in schemas of their own, dropped at the end.
 *
 * Setup: the flights are loaded once into `"<bench schema>".flights` in PostgreSQL (DuckDB scans
 * the parquet file, featurefn's Arrow batches feed a binary COPY), `flight_id` = the parquet row.
 *
 * (a) In-engine vs fetch-then-load. The per-flight feature (each flight's delay relative to its
 *     origin's mean delay up to `when`; 3,000,000 rows, key `flight_id`) is materialized into a
 *     PostgresMaterializer
 *     - in-engine: the feature's source is `postgresSource(pool)` on the store's own pool, so the
 *       store runs `CREATE TABLE … AS` and no row passes through Node; against the hand-written
 *       equivalent (`CREATE TABLE AS`, primary key, ANALYZE in one transaction), alternating;
 *     - fetch-then-load: the same SQL through `postgresSource(url)`, a pool the store cannot know
 *       is its own database, so the rows stream through Node (server-side cursor → Arrow →
 *       binary COPY). Its time against the in-engine time is the speed-up of running in-engine.
 * (b) Peak RSS of streaming that feature through Node, each case in a child process of its own
 *     (`bench/fixtures/rss-<case>.ts`, `process.resourceUsage().maxRSS`): PostgreSQL → DuckDB store
 *     (in memory, so the store's own data counts too), PostgreSQL → PostgreSQL store, and the same
 *     feature computed by DuckDB over the parquet file → PostgreSQL store. The bound is 1 GiB.
 * (c) DuckDB result → Arrow record batches (the 3M flights, 6 columns): featurefn's reader, which
 *     copies from the vectors' memory, against the client's own helpers (`chunk.getColumns()`,
 *     then `vectorFromArray`), which is what featurefn did before.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { makeData, RecordBatch, Schema, Struct, Table, vectorFromArray } from 'apache-arrow';
import { PostgresMaterializer, postgresSource } from 'featurefn/postgres';
import pg from 'pg';
import { duckdbBatches } from '../src/engines/duckdb/duckdb-stream.js';
import { renderPostgres } from '../src/engines/postgres/source.js';
import { arrowFieldOf, arrowTypeOf, columnsOf } from '../src/frame/columns.js';
import {
  assertPostgresReachable,
  type BenchResult,
  collectGarbage,
  formatMs,
  median,
  msSince,
  now,
  POSTGRES_URL,
  ratioOf,
} from './bench-kit.js';
import {
  FLIGHT_COLUMNS,
  FLIGHTS_SELECT,
  loadFlightsIntoPostgres,
  perFlightFeature,
  perFlightQuery,
  type RssReport,
  WHEN,
} from './fixtures/per-flight.js';

const URL = POSTGRES_URL;
const here = dirname(fileURLToPath(import.meta.url));
const ROWS = 3_000_000;
const IN_ENGINE_RUNS = 3;
const STREAMED_RUNS = 2;
const CONVERSION_RUNS = 2;
const RSS_LIMIT_MIB = 1024;

export async function run(): Promise<BenchResult[]> {
  await assertPostgresReachable();
  const schema = `bench_compute_${process.pid}`;
  const storeSchema = `${schema}_store`;
  const pool = new pg.Pool({ connectionString: URL, max: 4 });
  pool.on('error', () => undefined);
  const results: BenchResult[] = [];
  try {
    const loaded = await loadFlightsIntoPostgres(pool, schema);
    if (loaded.rows !== ROWS) throw new Error(`loaded ${loaded.rows} flights, expected ${ROWS}`);
    log(
      `loaded ${loaded.rows} flights into PostgreSQL in ${formatMs(loaded.ms)} (DuckDB parquet scan → Arrow → binary COPY)`,
    );
    results.push(...(await inEngine(pool, schema, storeSchema)));
    results.push(...(await peakRss(schema)));
    results.push(await duckdbToArrow());
    return results;
  } finally {
    for (const s of [schema, storeSchema, `${schema}_rss1`, `${schema}_rss2`]) {
      await pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`).catch(() => undefined);
    }
    await pool.end();
  }
}

/** (a) The per-flight feature in-engine, by hand, and streamed through Node. */
async function inEngine(pool: pg.Pool, schema: string, storeSchema: string): Promise<BenchResult[]> {
  const flights = `"${schema}".flights`;
  const materializer = new PostgresMaterializer({ connection: pool, schema: storeSchema });
  const elsewhere = postgresSource(URL);
  try {
    const own = perFlightFeature(postgresSource(pool), flights);
    const streamedFeature = perFlightFeature(elsewhere, flights);
    const { text, values } = renderPostgres(perFlightQuery(postgresSource(pool), flights, WHEN));
    const times = { featurefn: [] as number[], hand: [] as number[], streamed: [] as number[] };
    let lastTable = '';
    for (let run = 0; run < IN_ENGINE_RUNS; run++) {
      for (const side of run % 2 === 0
        ? (['featurefn', 'hand'] as const)
        : (['hand', 'featurefn'] as const)) {
        collectGarbage();
        const start = now();
        if (side === 'featurefn') {
          const record = await materializer.materialize(own, { when: WHEN });
          if (record.rows !== ROWS) throw new Error(`in-engine stored ${record.rows} rows, expected ${ROWS}`);
          lastTable = `"${storeSchema}"."m_${record.id}"`;
        } else {
          const rows = await handCreateTableAs(pool, `"${storeSchema}".hand`, text, values);
          if (rows !== ROWS)
            throw new Error(`the hand-written CREATE TABLE AS stored ${rows} rows, expected ${ROWS}`);
        }
        times[side].push(msSince(start));
      }
    }
    await checkSame(pool, lastTable, `"${storeSchema}".hand`);
    for (let run = 0; run < STREAMED_RUNS; run++) {
      collectGarbage();
      const start = now();
      const record = await materializer.materialize(streamedFeature, { when: WHEN });
      if (record.rows !== ROWS) throw new Error(`streamed ${record.rows} rows, expected ${ROWS}`);
      times.streamed.push(msSince(start));
      lastTable = `"${storeSchema}"."m_${record.id}"`;
    }
    await checkSame(pool, lastTable, `"${storeSchema}".hand`);
    const ff = median(times.featurefn);
    const hand = median(times.hand);
    const streamed = median(times.streamed);
    log(
      `per-flight feature: in-engine ${formatMs(ff)}, hand CREATE TABLE AS ${formatMs(hand)}, streamed through Node ${formatMs(streamed)} (${rate(ROWS, streamed)})`,
    );
    return [
      {
        name: 'compute: SQL feature in-engine on PostgreSQL (3M rows)',
        featurefn: formatMs(ff),
        handWritten: formatMs(hand),
        ratio: ratioOf(ff, hand),
        target: '< 1.15',
        notes: `median of ${IN_ENGINE_RUNS}, alternating; hand: CREATE TABLE AS + ADD PRIMARY KEY + ANALYZE in one transaction; featurefn adds the type probe (WITH NO DATA), catalog swap and NOTIFY`,
      },
      {
        name: 'compute: same SQL fetched through Node, then loaded (in-engine speed-up)',
        featurefn: formatMs(streamed),
        handWritten: formatMs(ff),
        ratio: ratioOf(streamed, ff),
        target: '—',
        notes: `ratio = fetch-then-load ÷ in-engine: in-engine is ${(streamed / ff).toFixed(2)}× faster; streamed ${rate(ROWS, streamed)} (cursor FETCH 50,000 → Arrow → binary COPY), median of ${STREAMED_RUNS}`,
      },
    ];
  } finally {
    await materializer.close();
    await elsewhere.close();
  }
}

/** What a user writes to do the same in-engine by hand: one transaction, ending in the same state. */
async function handCreateTableAs(
  pool: pg.Pool,
  table: string,
  text: string,
  values: unknown[],
): Promise<number> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(`DROP TABLE IF EXISTS ${table}`);
    const created = await client.query({ text: `CREATE TABLE ${table} AS ${text}`, values });
    await client.query(`ALTER TABLE ${table} ADD PRIMARY KEY (flight_id)`);
    await client.query(`ANALYZE ${table}`);
    await client.query('COMMIT');
    return created.rowCount ?? 0;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/** Both sides must hold the same rows, or the comparison means nothing. */
async function checkSame(pool: pg.Pool, a: string, b: string): Promise<void> {
  const { rows } = await pool.query(
    `SELECT count(*)::int AS n FROM ${a} x JOIN ${b} y USING (flight_id)
     WHERE x.origin = y.origin AND x.date = (y.date AT TIME ZONE 'UTC')
       AND x.relative_delay IS NOT DISTINCT FROM y.relative_delay`,
  );
  if (rows[0].n !== ROWS) throw new Error(`${a} and ${b} differ: ${rows[0].n} of ${ROWS} rows are equal`);
}

/** (b) Peak RSS of each streaming case, in a child process of its own. */
async function peakRss(schema: string): Promise<BenchResult[]> {
  const cases = [
    {
      label: 'PostgreSQL → DuckDB store (in memory)',
      file: 'rss-postgres-to-duckdb.ts',
      args: [URL, schema],
    },
    {
      label: 'PostgreSQL → PostgreSQL store',
      file: 'rss-postgres-to-postgres.ts',
      args: [URL, schema, `${schema}_rss1`],
    },
    {
      label: 'DuckDB (parquet) → PostgreSQL store',
      file: 'rss-duckdb-to-postgres.ts',
      args: [URL, `${schema}_rss2`],
    },
  ];
  const results: BenchResult[] = [];
  for (const c of cases) {
    const report = await child(join(here, 'fixtures', c.file), c.args);
    if (report.rows !== ROWS) throw new Error(`${c.file} stored ${report.rows} rows, expected ${ROWS}`);
    const mib = report.maxRssKiB / 1024;
    log(
      `${c.label}: peak RSS ${mib.toFixed(0)} MiB, ${formatMs(report.ms)} (${rate(report.rows, report.ms)})`,
    );
    results.push({
      name: `compute: peak RSS, 3M-row SQL feature streamed ${c.label}`,
      featurefn: `${mib.toFixed(0)} MiB`,
      handWritten: `${RSS_LIMIT_MIB} MiB`,
      ratio: Math.round((mib / RSS_LIMIT_MIB) * 100) / 100,
      target: '< 1',
      notes: `ratio = peak RSS ÷ the 1 GiB bound (whole Node process, child of its own); materialize took ${formatMs(report.ms)}, ${rate(report.rows, report.ms)}`,
    });
  }
  return results;
}

/** Runs a peak-RSS child and reads the report it prints last. */
function child(file: string, args: readonly string[]): Promise<RssReport> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', file, ...args], {
      cwd: join(here, '..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    proc.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    proc.on('error', reject);
    proc.on('close', (code) => {
      const last = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0 || !last.startsWith('{')) {
        reject(new Error(`${file} exited with ${code}: ${err.trim() || out.trim()}`));
        return;
      }
      resolve(JSON.parse(last) as RssReport);
    });
  });
}

/** (c) DuckDB result → Arrow batches: featurefn's vector reader against the client's helpers. */
async function duckdbToArrow(): Promise<BenchResult> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    await connection.run(`CREATE TABLE flights AS ${FLIGHTS_SELECT}`);
    const times = { featurefn: [] as number[], helpers: [] as number[] };
    for (let run = 0; run < CONVERSION_RUNS; run++) {
      for (const side of run % 2 === 0
        ? (['featurefn', 'helpers'] as const)
        : (['helpers', 'featurefn'] as const)) {
        collectGarbage();
        const start = now();
        const result = await connection.stream('SELECT * FROM flights');
        let rows = 0;
        const batches = side === 'featurefn' ? duckdbBatches(result) : helperBatches(result);
        for await (const batch of batches) {
          if (rows === 0) checkColumns(batch);
          rows += batch.numRows;
        }
        if (rows !== ROWS) throw new Error(`${side} read ${rows} rows, expected ${ROWS}`);
        times[side].push(msSince(start));
      }
    }
    const ff = median(times.featurefn);
    const helpers = median(times.helpers);
    log(
      `DuckDB → Arrow: featurefn ${formatMs(ff)} (${rate(ROWS, ff)}), client helpers ${formatMs(helpers)} (${rate(ROWS, helpers)})`,
    );
    return {
      name: 'compute: DuckDB result → Arrow batches (3M flights, 6 columns)',
      featurefn: rate(ROWS, ff),
      handWritten: rate(ROWS, helpers),
      ratio: ratioOf(ff, helpers),
      target: '< 0.5',
      notes: `ratio = time; hand: chunk.getColumns() per 65,536 rows, then vectorFromArray (featurefn's path before this change); median of ${CONVERSION_RUNS}`,
    };
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

/** Batches through the client's helpers: JS values per cell, then Arrow vectors from arrays. */
async function* helperBatches(result: Awaited<ReturnType<DuckDBConnection['stream']>>) {
  const fields = FLIGHT_COLUMNS.map(arrowFieldOf);
  const schema = new Schema(fields);
  let pending: unknown[][] = FLIGHT_COLUMNS.map(() => []);
  let rows = 0;
  const flush = () => {
    const children = FLIGHT_COLUMNS.map((c, i) => {
      const values =
        c.type === 'timestamp'
          ? (pending[i] as ({ micros: bigint } | null)[]).map((v) =>
              v === null ? null : new Date(Number(v.micros / 1000n)),
            )
          : pending[i]!;
      return vectorFromArray(values, arrowTypeOf(c.type)).data[0]!;
    });
    const batch = new RecordBatch(
      schema,
      makeData({ type: new Struct(fields), length: rows, children, nullCount: 0 }),
    );
    pending = FLIGHT_COLUMNS.map(() => []);
    rows = 0;
    return batch;
  };
  for (
    let chunk = await result.fetchChunk();
    chunk !== null && chunk.rowCount > 0;
    chunk = await result.fetchChunk()
  ) {
    chunk.getColumns().forEach((column, i) => {
      for (const v of column) pending[i]!.push(v);
    });
    rows += chunk.rowCount;
    if (rows >= 65_536) yield flush();
  }
  if (rows > 0) yield flush();
}

function checkColumns(batch: RecordBatch): void {
  const got = columnsOf(new Table(batch));
  if (JSON.stringify(got) !== JSON.stringify(FLIGHT_COLUMNS)) {
    throw new Error(`unexpected columns ${JSON.stringify(got)}`);
  }
}

function rate(rows: number, ms: number): string {
  const perSecond = (rows / ms) * 1000;
  return perSecond >= 1e6
    ? `${(perSecond / 1e6).toFixed(2)} M rows/s`
    : `${(perSecond / 1e3).toFixed(0)} k rows/s`;
}

function log(message: string): void {
  console.error(`[compute] ${message}`);
}
