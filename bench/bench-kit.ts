/**
 * Shared helpers of the benchmarks: timing, percentiles, warm-up, the result shape every
 * `bench/*.bench.ts` returns, and the table `npm run bench` prints.
 *
 * Benchmarks are not tests: nothing here asserts a timing. Each bench file measures featurefn and
 * the hand-written code a competent user would write instead, side by side in the same run.
 */
import os from 'node:os';
import { type Data, type Field, makeData, RecordBatch, Schema, Struct, Table } from 'apache-arrow';
import { defaultStore, type FeatureDecorator, type Materializer } from 'featurefn';
import pg from 'pg';

/** One line of the results table. Figures are preformatted text; `ratio` is featurefn ÷ hand-written. */
export interface BenchResult {
  /** What was measured, e.g. `'duckdb: Last() read of 2 features, 1 key (p50)'`. */
  name: string;
  /** featurefn's figure, formatted (e.g. `'412 µs'`). */
  featurefn: string;
  /** The hand-written figure, formatted the same way. */
  handWritten: string;
  /** featurefn ÷ hand-written (lower is better; 1 means no overhead). */
  ratio: number;
  /** The ratio aimed for, e.g. `'< 1.3'`. */
  target: string;
  notes?: string;
}

/** What a bench file exports. */
export interface BenchModule {
  run(): Promise<BenchResult[]>;
}

/**
 * Thrown by a bench file whose store is unavailable (server down, driver missing): the runner
 * prints the reason and goes on with the other files.
 */
export class BenchUnavailable extends Error {
  override readonly name = 'BenchUnavailable';
}

/** Monotonic clock in nanoseconds. */
export function now(): bigint {
  return process.hrtime.bigint();
}

/** Milliseconds since `start` (a value of {@link now}). */
export function msSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** Runs `fn` once and returns its duration in milliseconds with its value. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = process.hrtime.bigint();
  const value = await fn();
  return { ms: msSince(start), value };
}

/** Options of {@link sample}. */
export interface SampleOptions {
  /** Timed calls. */
  iterations: number;
  /** Untimed calls first, to let the JIT and caches settle. Default is `0`. */
  warmup?: number;
}

/**
 * Calls `fn(i)` sequentially, `warmup` untimed times then `iterations` timed times, and returns
 * the duration of each timed call in milliseconds. `i` counts from 0 across warm-up and timed calls.
 */
export async function sample(fn: (i: number) => Promise<unknown>, options: SampleOptions): Promise<number[]> {
  const warmup = options.warmup ?? 0;
  for (let i = 0; i < warmup; i++) await fn(i);
  const samples: number[] = new Array(options.iterations);
  for (let i = 0; i < options.iterations; i++) {
    const start = process.hrtime.bigint();
    await fn(warmup + i);
    samples[i] = Number(process.hrtime.bigint() - start) / 1e6;
  }
  return samples;
}

/**
 * Times two sides call by call, alternating which goes first (A B, B A, …), so drift in the machine
 * (other processes, CPU frequency, caches) weighs on both alike. Returns each side's durations in
 * milliseconds. Each round calls both sides with the same `i`.
 */
export async function sampleInterleaved(
  a: (i: number) => Promise<unknown>,
  b: (i: number) => Promise<unknown>,
  options: SampleOptions,
): Promise<{ a: number[]; b: number[] }> {
  const warmup = options.warmup ?? 0;
  const out = { a: [] as number[], b: [] as number[] };
  for (let i = 0; i < warmup + options.iterations; i++) {
    for (const side of i % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const)) {
      const fn = side === 'a' ? a : b;
      const start = process.hrtime.bigint();
      await fn(i);
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (i >= warmup) out[side].push(ms);
    }
  }
  return out;
}

/** Runs `fn(i)` untimed `n` times. */
export async function warmUp(fn: (i: number) => Promise<unknown>, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await fn(i);
}

/** The `p`-th percentile (0–100) of `samples`, by the nearest-rank method. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** The median of `samples`. */
export function median(samples: readonly number[]): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Summary of a set of durations in milliseconds. */
export interface Summary {
  n: number;
  p50: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** p50, p99, mean, min and max of durations in milliseconds. */
export function summarize(samples: readonly number[]): Summary {
  return {
    n: samples.length,
    p50: median(samples),
    p99: percentile(samples, 99),
    mean: samples.reduce((sum, s) => sum + s, 0) / samples.length,
    min: Math.min(...samples),
    max: Math.max(...samples),
  };
}

/** A duration for people: `'412 µs'`, `'12.3 ms'`, `'1.52 s'`. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** `'412 µs / 1.20 ms'`: p50 and p99 in one cell. */
export function formatP50P99(summary: Pick<Summary, 'p50' | 'p99'>): string {
  return `${formatMs(summary.p50)} / ${formatMs(summary.p99)}`;
}

/** featurefn ÷ hand-written, rounded to two decimals. */
export function ratioOf(featurefn: number, handWritten: number): number {
  return Math.round((featurefn / handWritten) * 100) / 100;
}

/** True when `ratio` meets a target written as `'< 1.5'` or `'<= 1.5'` (other targets: `undefined`). */
export function meetsTarget(ratio: number, target: string): boolean | undefined {
  const match = /^\s*(<=?)\s*([\d.]+)\s*$/.exec(target);
  if (match === null) return undefined;
  const bound = Number(match[2]);
  return match[1] === '<' ? ratio < bound : ratio <= bound;
}

/** The results as an aligned plain-text table, with a met/missed column. */
export function formatTable(results: readonly BenchResult[]): string {
  const header = ['benchmark', 'featurefn', 'hand-written', 'ratio', 'target', 'met', 'notes'];
  const rows = results.map((r) => {
    const met = meetsTarget(r.ratio, r.target);
    return [
      r.name,
      r.featurefn,
      r.handWritten,
      r.ratio.toFixed(2),
      r.target,
      met === undefined ? '' : met ? 'yes' : 'NO',
      r.notes ?? '',
    ];
  });
  const right = new Set([1, 2, 3]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, c) => (right.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Prints the results as an aligned table. */
export function printTable(results: readonly BenchResult[]): void {
  console.log(formatTable(results));
}

/** The results as a Markdown table, for pasting into BENCHMARKS.md. */
export function formatMarkdownTable(results: readonly BenchResult[]): string {
  const lines = [
    '| benchmark | featurefn | hand-written | ratio | target | notes |',
    '|---|---:|---:|---:|---|---|',
  ];
  for (const r of results) {
    lines.push(
      `| ${r.name} | ${r.featurefn} | ${r.handWritten} | ${r.ratio.toFixed(2)} | ${r.target} | ${r.notes ?? ''} |`,
    );
  }
  return lines.join('\n');
}

/** The machine a run happens on. */
export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  platform: string;
}

/** CPU model and count, memory, Node version and platform. */
export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
  };
}

/** Collects garbage between phases when Node runs with `--expose-gc`; otherwise does nothing. */
export function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** The keys in one fixed shuffled order, the same on every run, so calls do not walk the keys in storage order. */
export function rotation(keys: readonly string[]): string[] {
  let seed = 42;
  const shuffled = [...keys];
  for (let i = shuffled.length - 1; i > 0; i--) {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    const j = seed % (i + 1);
    [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
  }
  return shuffled;
}

/**
 * Attaches a materializer to `defaultStore`, where the flight features live and which every bench
 * file shares, through a decorator that steps aside once detached, so a closed store is never
 * asked to serve a later file's calls. Returns the detach function.
 */
export function attachScoped(materializer: Materializer): () => void {
  let active = true;
  const decorator: FeatureDecorator = Object.assign(
    ((next, info) => {
      const inner = materializer.decorator(next, info);
      return (params) => (active ? inner(params) : next(params));
    }) satisfies FeatureDecorator,
    { materializer },
  );
  defaultStore.addDecorator(decorator);
  return () => {
    active = false;
  };
}

/** The PostgreSQL server benchmarks use: `FEATUREFN_PG_URL`, default the local `test` database. */
export const POSTGRES_URL = process.env.FEATUREFN_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Throws {@link BenchUnavailable} when no PostgreSQL answers at {@link POSTGRES_URL}. */
export async function assertPostgresReachable(): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    throw new BenchUnavailable(
      `no PostgreSQL at ${POSTGRES_URL} (${(error as Error).message}); set FEATUREFN_PG_URL`,
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Runs a benchmark on PostgreSQL when a server answers at {@link POSTGRES_URL} (else `log` says
 * why it was skipped), then on DuckDB; returns their results in that order. Each runs only if
 * {@link benchesStore} names it.
 */
export async function onPostgresThenDuckDB(
  postgres: () => Promise<BenchResult[]>,
  duckdb: () => Promise<BenchResult[]>,
  log: (message: string) => void,
): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  try {
    if (benchesStore('postgres')) {
      await assertPostgresReachable();
      results.push(...(await postgres()));
    }
  } catch (error) {
    if (!(error instanceof BenchUnavailable)) throw error;
    log(`PostgreSQL skipped: ${error.message}`);
  }
  if (benchesStore('duckdb')) results.push(...(await duckdb()));
  return results;
}

/** A table of one record batch: `children[i]` holds the values of `fields[i]`, all of one length. */
export function tableOf(fields: Field[], children: Data[]): Table {
  const data = makeData({ type: new Struct(fields), length: children[0]?.length ?? 0, children });
  return new Table(new RecordBatch(new Schema(fields), data));
}

/**
 * True when the bench should run on `engine`: `FEATUREFN_BENCH_STORES` is a comma-separated list
 * of stores (`duckdb`, `postgres`) to run alone; unset, every store runs.
 */
export function benchesStore(engine: string): boolean {
  const only = process.env.FEATUREFN_BENCH_STORES;
  if (only === undefined || only.trim() === '') return true;
  return only
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .includes(engine);
}
