/**
 * The workload the crash, fault and concurrency tests share: two features over the same keys whose
 * results are seeded synthetic data, a pure function of the feature and `when` (20,000 to 110,000
 * rows), so any process can tell what a publication must hold and check what it reads against it.
 */
import { createHash } from 'node:crypto';
import { makeData, makeVector, Table, Utf8 } from 'apache-arrow';
import type { FeatureStore, Materializer, Row } from 'featurefn';
import { seeded } from '../support/seeded.js';

/** The points in time the workload materializes. */
export const DAYS = ['2001-01-01', '2001-01-02', '2001-01-03', '2001-01-04', '2001-01-05', '2001-01-06'];

/**
 * Rows of each day's results: some loads are long, one reaches DuckDB's index threshold, and
 * at full scale days 0, 3 and 5 go to their feature's shape table (under 50,000 rows), the
 * others to tables of their own, so crashes hit both.
 */
const ROWS = [30_000, 50_000, 110_000, 20_000, 60_000, 40_000];

/** Where the store is: a DuckDB file, or a PostgreSQL schema (`app` names the child's connections). */
export type StoreSpec =
  | { engine: 'duckdb'; path: string }
  | { engine: 'postgres'; url: string; schema: string; app?: string };

/** Rows for `day` (an index into {@link DAYS}), scaled by `scale` (tests of faults use fewer). */
export function rowCount(day: number, scale = 1): number {
  return Math.round(ROWS[day]! * scale);
}

type Columns = Record<string, readonly unknown[] | Int32Array | Float64Array>;

/** The columns of `feature` ('alpha' or 'beta') at `day`: the same on every run and machine. */
function columnsOf(feature: 'alpha' | 'beta', day: number, scale: number): Columns {
  const n = rowCount(day, scale);
  const random = seeded((feature === 'alpha' ? 1_000 : 2_000) + day);
  const k = Array.from({ length: n }, (_, i) => `K${String(i).padStart(6, '0')}`);
  if (feature === 'alpha') {
    return {
      k,
      n: Int32Array.from({ length: n }, () => random.int(-1_000_000, 1_000_000)),
      v: Float64Array.from({ length: n }, () => random.float(-1e6, 1e6)),
    };
  }
  return {
    k,
    m: Float64Array.from({ length: n }, () => random.next()),
    s: Array.from({ length: n }, () => random.pick(['SFO', 'LAX', "O'Hare", 'JFK', 'ÖRE'])),
  };
}

/** A UTF-8 Arrow vector built in one pass (apache-arrow's own builder takes ~10 µs a string). */
function utf8(strings: readonly string[]) {
  const offsets = new Int32Array(strings.length + 1);
  const chunks = strings.map((s, i) => {
    const bytes = Buffer.from(s);
    offsets[i + 1] = offsets[i]! + bytes.length;
    return bytes;
  });
  const data = Buffer.concat(chunks);
  return makeVector(
    makeData({ type: new Utf8(), length: strings.length, nullCount: 0, valueOffsets: offsets, data }),
  );
}

/** The result of `feature` at `day` as an Arrow table. */
export function generate(feature: 'alpha' | 'beta', day: number, scale = 1): Table {
  const columns = columnsOf(feature, day, scale);
  return new Table(
    Object.fromEntries(
      Object.entries(columns).map(([name, values]) => [
        name,
        Array.isArray(values) ? utf8(values as string[]) : makeVector(values as Int32Array | Float64Array),
      ]),
    ),
  );
}

/** The value columns of each feature, in order. */
const VALUES = { alpha: ['n', 'v'], beta: ['m', 's'] } as const;

/**
 * A checksum of a result, whatever its row order: SHA-1 of the columns `names` in key order
 * (`K000000` first), numbers as float64 bytes, strings NUL-separated.
 */
export function checksum(columns: Columns, names: readonly string[]): string {
  const keys = columns.k as readonly string[];
  const order = new Int32Array(keys.length).fill(-1);
  for (let i = 0; i < keys.length; i++) order[Number(keys[i]!.slice(1))] = i;
  if (order.includes(-1)) return 'keys missing';
  const hash = createHash('sha1');
  for (const name of names) {
    const column = columns[name]!;
    if (typeof column[0] === 'string') {
      hash.update(Array.from(order, (i) => column[i] as string).join('\0'));
    } else {
      hash.update(new Uint8Array(Float64Array.from(order, (i) => Number(column[i])).buffer));
    }
  }
  return hash.digest('hex');
}

const expected = new Map<string, string>();

/** The checksum a read of `feature` at `day` must give (cached). */
export function expectedChecksum(feature: 'alpha' | 'beta', day: number, scale = 1): string {
  const key = `${feature}/${day}/${scale}`;
  let sum = expected.get(key);
  if (sum === undefined) {
    sum = checksum(columnsOf(feature, day, scale), VALUES[feature]);
    expected.set(key, sum);
  }
  return sum;
}

/** The checksum a joined read of both features at `day` must give (cached). */
export function expectedJoinChecksum(day: number, scale = 1): string {
  const key = `join/${day}/${scale}`;
  let sum = expected.get(key);
  if (sum === undefined) {
    sum = checksum({ ...columnsOf('alpha', day, scale), ...columnsOf('beta', day, scale) }, [
      ...VALUES.alpha,
      ...VALUES.beta,
    ]);
    expected.set(key, sum);
  }
  return sum;
}

/** Checksums a read (row objects, as the store gives them) of `feature`, or of both joined. */
export function checksumOf(feature: 'alpha' | 'beta' | 'join', rows: readonly Row[]): string {
  const names = feature === 'join' ? [...VALUES.alpha, ...VALUES.beta] : VALUES[feature];
  const columns: Columns = {};
  for (const name of ['k', ...names]) columns[name] = rows.map((row) => row[name]);
  return checksum(columns, names);
}

/** The day index of a `when` parameter. */
export function dayOf(when: unknown): number {
  const day = DAYS.indexOf((when as Date).toISOString().slice(0, 10));
  if (day < 0) throw new Error(`not a workload day: ${String(when)}`);
  return day;
}

/** Registers the two features (`crash.alpha`, `crash.beta`) on `store`. */
export function registerWorkload(store: FeatureStore, scale = 1) {
  const alpha = store.feature(
    { module: 'crash', entity: 'k' },
    async function alpha({ when }: { when: Date }) {
      return generate('alpha', dayOf(when), scale);
    },
  );
  const beta = store.feature({ module: 'crash', entity: 'k' }, async function beta({ when }: { when: Date }) {
    return generate('beta', dayOf(when), scale);
  });
  return { alpha, beta };
}

/** Opens the store `spec` names (imports only that store's driver, to start children faster). */
export async function openStore(spec: StoreSpec, poolSize = 2): Promise<Materializer> {
  if (spec.engine === 'duckdb') {
    const { DuckDBMaterializer } = await import('featurefn/duckdb');
    return new DuckDBMaterializer({ path: spec.path });
  }
  const { PostgresMaterializer } = await import('featurefn/postgres');
  const url = new URL(spec.url);
  if (spec.app !== undefined) url.searchParams.set('application_name', spec.app);
  return new PostgresMaterializer({ connection: url.toString(), schema: spec.schema, poolSize });
}

/** A `when` Date for a day index. */
export function whenOf(day: number): Date {
  return new Date(`${DAYS[day]}T00:00:00Z`);
}
