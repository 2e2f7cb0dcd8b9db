/**
 * `npm run bench [-- filter…]`: runs every `bench/*.bench.ts` and prints the machine, the date and
 * one table of featurefn's figures next to hand-written code, with ratios and targets.
 *
 * A filter keeps the bench files whose name contains it (`npm run bench -- duckdb`); when no file
 * name matches, every file runs and only results whose name contains a filter are shown.
 * A file whose store is unavailable (PostgreSQL down…) is reported and skipped.
 */
import { readdir } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  type BenchModule,
  type BenchResult,
  BenchUnavailable,
  formatTable,
  machineInfo,
} from './bench-kit.js';

const here = dirname(fileURLToPath(import.meta.url));
const filters = process.argv.slice(2).map((f) => f.toLowerCase());

const files = (await readdir(here)).filter((f) => f.endsWith('.bench.ts')).sort();
const byFile = files.filter(
  (f) => filters.length === 0 || filters.some((filter) => f.toLowerCase().includes(filter)),
);
const selected = byFile.length > 0 ? byFile : files;
const filterResults = filters.length > 0 && byFile.length === 0;

const machine = machineInfo();
console.log(`featurefn benchmarks — ${new Date().toISOString()}`);
console.log(`machine: ${machine.cpu} × ${machine.cores}, ${machine.memoryGiB} GiB, ${machine.platform}`);
console.log(`node ${machine.node}; load average ${loadAverage()} (1, 5, 15 min) at start`);
console.log(
  `bench files: ${selected.join(', ') || '(none)'}${filters.length > 0 ? `  (filter: ${filters.join(' ')})` : ''}`,
);
console.log('');

const results: BenchResult[] = [];
const skipped: string[] = [];
let failed = false;
for (const file of selected) {
  const label = basename(file, '.bench.ts');
  const started = process.hrtime.bigint();
  console.error(`[${label}] running…`);
  try {
    const module = (await import(pathToFileURL(join(here, file)).href)) as Partial<BenchModule>;
    if (typeof module.run !== 'function')
      throw new Error(`${file} does not export run(): Promise<BenchResult[]>`);
    const got = await module.run();
    results.push(
      ...(filterResults ? got.filter((r) => filters.some((f) => r.name.toLowerCase().includes(f))) : got),
    );
    console.error(`[${label}] done in ${(Number(process.hrtime.bigint() - started) / 1e9).toFixed(1)} s`);
  } catch (error) {
    if (isUnavailable(error)) {
      const reason = `${label}: skipped, store unavailable: ${messageOf(error)}`;
      skipped.push(reason);
      console.error(`[${reason}]`);
    } else {
      failed = true;
      skipped.push(`${label}: FAILED: ${messageOf(error)}`);
      console.error(`[${label}] failed:`, error);
    }
  }
}

console.log(formatTable(results));
console.log(`\nload average ${loadAverage()} at end; figures from a busy machine are slower and noisier`);
if (skipped.length > 0) console.log(`\n${skipped.join('\n')}`);
if (failed) process.exitCode = 1;
// Bench files close what they open, but a driver pool left behind must not keep the run alive.
setTimeout(() => process.exit(), 100).unref();

/** A store that is simply not there: refused or unknown host, bad credentials, missing database or driver. */
function isUnavailable(error: unknown): boolean {
  if (error instanceof BenchUnavailable) return true;
  const codes = new Set([
    'ECONNREFUSED',
    'ENOTFOUND',
    'EAI_AGAIN',
    'ETIMEDOUT',
    'ECONNRESET',
    'EHOSTUNREACH',
    '28P01',
    '28000',
    '3D000',
    'ERR_MODULE_NOT_FOUND',
  ]);
  const seen = new Set<unknown>();
  const walk = (e: unknown): boolean => {
    if (typeof e !== 'object' || e === null || seen.has(e)) return false;
    seen.add(e);
    const { code, cause, errors } = e as { code?: unknown; cause?: unknown; errors?: unknown };
    if (typeof code === 'string' && codes.has(code)) return true;
    if (Array.isArray(errors) && errors.some(walk)) return true;
    return walk(cause);
  };
  return walk(error);
}

function messageOf(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0)
    return error.errors.map(messageOf).join('; ');
  return error instanceof Error ? error.message || error.name : String(error);
}

function loadAverage(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}
