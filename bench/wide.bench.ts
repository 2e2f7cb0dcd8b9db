/**
 * Wide reads in Feast's serving shape, on the stores themselves: 2,000 entities, 50 numeric
 * features, three points in time, every feature materialized with featurefn, read at `Last()` for
 * one key with `store.withParams({ when: Last() }).getFeatures(...50).filter({ entity })`.
 *
 * The hand-written side is what a user builds instead: one wide table of the latest values
 * (50 columns, primary key on the entity) and a prepared query (`pg` named statement; DuckDB
 * prepared statement) bound per call. Calls alternate between the sides over a fixed shuffle of
 * the keys; p50 and p99 for both, on PostgreSQL and on DuckDB.
 *
 * Data: a fixed-seed generator (test/support/seeded.ts), the same values on every run: feature
 * `f<n>` of entity `user_<i>` at point in time `d` is a float in [0, 1000).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import {
  Field,
  Float64,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  Table,
  Utf8,
  vectorFromArray,
} from 'apache-arrow';
import { type Feature, FeatureStore, Last, type Materializer } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { PostgresMaterializer } from 'featurefn/postgres';
import pg from 'pg';
import { seeded } from '../test/support/seeded.js';
import {
  assertPostgresReachable,
  type BenchResult,
  BenchUnavailable,
  benchesStore,
  formatMs,
  formatP50P99,
  POSTGRES_URL,
  ratioOf,
  rotation,
  sampleInterleaved,
  summarize,
} from './bench-kit.js';

const ENTITIES = 2_000;
const FEATURES = 50;
const WHENS = [1, 2, 3].map((d) => new Date(Date.UTC(2024, 0, d)));
const READ_CALLS = Number(process.env.WIDE_READ_CALLS ?? 2_000);
const READ_WARMUP = 300;

type WideFeature = Feature<(params: { when: Date }) => Promise<Table>>;

const entity = (i: number) => `user_${i}`;
const column = (f: number) => `f${f}`;
const KEYS = Array.from({ length: ENTITIES }, (_, i) => entity(i));

/** Value of feature `f` for every entity at the `d`-th point in time, the same on every run. */
function values(f: number, d: number): Float64Array {
  const random = seeded(1_000 * d + f + 1);
  return Float64Array.from({ length: ENTITIES }, () => Math.round(random.float(0, 1000) * 1000) / 1000);
}

function featureTable(f: number, d: number): Table {
  const fields = [new Field('entity', new Utf8(), false), new Field(column(f), new Float64(), false)];
  const data = makeData({
    type: new Struct(fields),
    length: ENTITIES,
    children: [
      vectorFromArray(KEYS, new Utf8()).data[0]!,
      makeData({ type: new Float64(), length: ENTITIES, data: values(f, d) }),
    ],
  });
  return new Table(new RecordBatch(new Schema(fields), data));
}

/** 50 features in a store of their own, each `({ when }) => table of (entity, f<n>)`. */
function wideFeatures(): { store: FeatureStore; features: WideFeature[] } {
  const store = new FeatureStore();
  const features = Array.from({ length: FEATURES }, (_, f) =>
    store.feature({ module: 'wide', entity: 'entity', name: column(f) }, async ({ when }: { when: Date }) =>
      featureTable(
        f,
        WHENS.findIndex((w) => w.getTime() === when.getTime()),
      ),
    ),
  );
  return { store, features };
}

export async function run(): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  try {
    if (benchesStore('postgres')) {
      await assertPostgresReachable();
      results.push(...(await onPostgres()));
    }
  } catch (error) {
    if (!(error instanceof BenchUnavailable)) throw error;
    log(`PostgreSQL skipped: ${error.message}`);
  }
  if (benchesStore('duckdb')) results.push(...(await onDuckDB()));
  return results;
}

async function materializeAll(
  materializer: Materializer,
  store: FeatureStore,
  features: readonly WideFeature[],
) {
  store.addDecorator(materializer.decorator);
  for (const when of WHENS) for (const f of features) await materializer.materialize(f, { when });
}

async function onPostgres(): Promise<BenchResult[]> {
  const schema = `bench_wide_${process.pid}`;
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 3 });
  pool.on('error', () => undefined);
  const materializer = new PostgresMaterializer({ connection: pool, schema });
  try {
    const { store, features } = wideFeatures();
    await materializeAll(materializer, store, features);
    const wide = `"${schema}"."hand_wide"`;
    await pool.query(
      `CREATE TABLE ${wide} (entity text PRIMARY KEY, ${features.map((_, f) => `${column(f)} double precision`).join(', ')})`,
    );
    await pool.query(
      `INSERT INTO ${wide} SELECT * FROM unnest($1::text[], ${features.map((_, f) => `$${f + 2}::float8[]`).join(', ')})`,
      [KEYS, ...features.map((_, f) => Array.from(values(f, WHENS.length - 1)))],
    );
    await pool.query(`ANALYZE ${wide}`);
    const text = `SELECT * FROM ${wide} WHERE entity = $1`;
    const hand = async (key: string) => (await pool.query({ name: 'hand_wide', text, values: [key] })).rows;
    return await compare('postgres', store, features, hand);
  } finally {
    await materializer.close();
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await pool.end();
  }
}

async function onDuckDB(): Promise<BenchResult[]> {
  const dir = await mkdtemp(join(tmpdir(), 'featurefn-bench-wide-'));
  const materializer = new DuckDBMaterializer({ path: join(dir, 'features.duckdb') });
  const instance = await DuckDBInstance.create(join(dir, 'hand.duckdb'));
  const connection = await instance.connect();
  try {
    const { store, features } = wideFeatures();
    await materializeAll(materializer, store, features);
    await connection.run(
      `CREATE TABLE hand_wide (entity VARCHAR PRIMARY KEY, ${features.map((_, f) => `${column(f)} DOUBLE`).join(', ')})`,
    );
    const appender = await connection.createAppender('hand_wide');
    const latest = features.map((_, f) => values(f, WHENS.length - 1));
    for (let i = 0; i < ENTITIES; i++) {
      appender.appendVarchar(KEYS[i]!);
      for (const v of latest) appender.appendDouble(v[i]!);
      appender.endRow();
    }
    appender.closeSync();
    const statement = await connection.prepare('SELECT * FROM hand_wide WHERE entity = $1');
    const hand = async (key: string) => {
      statement.bind([key]);
      return (await statement.runAndReadAll()).getRowObjectsJS();
    };
    try {
      return await compare('duckdb', store, features, hand);
    } finally {
      statement.destroySync();
    }
  } finally {
    connection.closeSync();
    instance.closeSync();
    await materializer.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function compare(
  engine: string,
  store: FeatureStore,
  features: readonly WideFeature[],
  hand: (key: string) => Promise<Record<string, unknown>[]>,
): Promise<BenchResult[]> {
  const featurefn = (key: string) =>
    store
      .withParams({ when: Last() })
      .getFeatures(...features)
      .filter({ entity: key })
      .toArray();
  await checkSameAnswers(featurefn, hand);
  const keys = rotation(KEYS);
  const key = (i: number) => keys[i % keys.length]!;
  const { a, b } = await sampleInterleaved(
    (i) => featurefn(key(i)),
    (i) => hand(key(i)),
    { iterations: READ_CALLS, warmup: READ_WARMUP },
  );
  const ff = summarize(a);
  const hw = summarize(b);
  log(`${engine}: featurefn p50/p99 ${formatP50P99(ff)}, hand-written ${formatP50P99(hw)}`);
  const label = `${engine}: Last() read, ${FEATURES} features, 1 key`;
  const notes = `${READ_CALLS} calls per side after ${READ_WARMUP} warm-up, ${ENTITIES} keys rotating; hand: prepared query on one wide table`;
  const targets = engine === 'postgres' ? { p50: '< 1.3', p99: '< 2' } : { p50: '< 3', p99: '—' };
  return [
    {
      name: `${label} (p50)`,
      featurefn: formatMs(ff.p50),
      handWritten: formatMs(hw.p50),
      ratio: ratioOf(ff.p50, hw.p50),
      target: targets.p50,
      notes,
    },
    {
      name: `${label} (p99)`,
      featurefn: formatMs(ff.p99),
      handWritten: formatMs(hw.p99),
      ratio: ratioOf(ff.p99, hw.p99),
      target: targets.p99,
      notes: 'tails move between runs',
    },
  ];
}

/** Both sides must return the same values, or the comparison means nothing. */
async function checkSameAnswers(
  featurefn: (key: string) => Promise<Record<string, unknown>[]>,
  hand: (key: string) => Promise<Record<string, unknown>[]>,
): Promise<void> {
  for (const key of [KEYS[0]!, KEYS[ENTITIES - 1]!, KEYS[977]!]) {
    const [ours, theirs] = [await featurefn(key), await hand(key)];
    const same =
      ours.length === 1 &&
      theirs.length === 1 &&
      Object.keys(theirs[0]!).every((name) => ours[0]![name] === theirs[0]![name]) &&
      Object.keys(ours[0]!).length === Object.keys(theirs[0]!).length;
    if (!same)
      throw new Error(
        `featurefn and the hand-written query disagree for ${key}: ${JSON.stringify(ours).slice(0, 300)} vs ${JSON.stringify(theirs).slice(0, 300)}`,
      );
  }
}

function log(message: string): void {
  console.error(`[wide] ${message}`);
}
