/**
 * Concurrency on PostgreSQL: three writer processes materialize the workload (two of them the same
 * features and parameters at the same moments, one other points in time) while three reader
 * processes resolve `Last()` over both features in a loop. Every read is one point in time with the
 * values published for it, never earlier than a previous read; no reader fails except with
 * "nothing materialized yet"; every reader ends on the latest point; and a fresh opener finds one
 * confirmed publication per feature and parameters, whole.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { dropSchema, postgresUrl, requirePostgres, uniqueSchema } from '../support/postgres.js';
import { type Child, report, sleep, startChild } from './children.js';
import { checkStore } from './crash-run.js';
import type { ReaderFigures } from './last-reader.js';
import { DAYS, type StoreSpec } from './workload.js';

const SCALE = 0.1; // 5,000 to 11,000 rows a result: many publications in a few seconds
const pg = await requirePostgres();

/** When both features were first confirmed at `day` (ms since the epoch). */
export function bothAt(writers: readonly Child[], day: number): number {
  const first = (name: string) =>
    Math.min(
      ...writers.flatMap((w) =>
        w.lines.filter((l) => l.confirmed === name && l.day === day).map((l) => l.at as number),
      ),
    );
  return Math.max(first('alpha'), first('beta'));
}

describe.skipIf(!pg.available)(`concurrency: PostgreSQL processes${pg.reason}`, () => {
  const schema = uniqueSchema('conc');
  afterAll(() => dropSchema(schema));

  it('3 writer and 3 reader processes: every read consistent, nothing lost', async () => {
    const spec: StoreSpec = { engine: 'postgres', url: postgresUrl(), schema };
    const readers: Child[] = [0, 1, 2].map(() =>
      startChild('reader-child.ts', [JSON.stringify(spec), String(SCALE)]),
    );
    await Promise.all(readers.map((r) => r.line((l) => l.ready === true)));
    // Writers 0 and 1 publish the same pairs at the same moments; writer 2 starts three days later.
    const writers = [0, 0, 3].map((first) =>
      startChild('crash-writer.ts', [
        JSON.stringify(spec),
        String(first),
        String(DAYS.length * 2),
        String(SCALE),
      ]),
    );
    const exits = await Promise.all(writers.map((w) => w.exited));
    // Every reader must come to read the latest point in time, whatever the load.
    const latest = DAYS.length - 1;
    const caughtUp = await Promise.all(
      readers.map((r) =>
        Promise.race([r.line((l) => l.seen === latest).then(() => true), sleep(60_000).then(() => false)]),
      ),
    );
    for (const reader of readers) reader.process.stdin.write('stop\n');
    const figures = await Promise.all(
      readers.map(async (r) => (await r.line((l) => l.figures !== undefined)).figures as ReaderFigures),
    );

    const confirmed = new Map<string, Set<bigint>>();
    for (const writer of writers) {
      for (const line of writer.lines) {
        if (typeof line.confirmed !== 'string') continue;
        const pair = `${line.confirmed}/${String(line.day)}`;
        if (!confirmed.has(pair)) confirmed.set(pair, new Set());
        confirmed.get(pair)!.add(BigInt(line.id as string));
      }
    }
    const result = await checkStore(spec, new Map(), new Set(confirmed.keys()), SCALE);
    // How long after the first point in time both features had (by their writers' clocks, the
    // same machine) each reader first read one.
    const readable = Math.min(...DAYS.map((_, day) => bothAt(writers, day)));
    const lags = figures.map((f) => (f.firstSeen[0] ?? Number.POSITIVE_INFINITY) - readable);
    // The last commit of a pair wins, whichever writer drew the lower id: the record left must be
    // one of those confirmed.
    const lost = [...confirmed].filter(([pair, ids]) => !ids.has(result.present.get(pair) ?? -1n));
    report('concurrency, PostgreSQL', {
      writers: writers.length,
      readers: readers.length,
      publications: [...confirmed.values()].reduce((n, ids) => n + ids.size, 0),
      reads: figures.reduce((n, f) => n + f.reads, 0),
      nothingYet: figures.reduce((n, f) => n + f.nothingYet, 0),
      maxFirstReadLagMs: Math.max(...lags),
      violations:
        figures.reduce((n, f) => n + f.violations.length, 0) + result.violations.length + lost.length,
    });
    expect(
      exits.map((e) => e.code),
      writers.map((w) => w.stderr()).join('\n'),
    ).toEqual([0, 0, 0]);
    expect(figures.flatMap((f) => f.violations)).toEqual([]);
    expect(result.violations).toEqual([]);
    expect(lost).toEqual([]);
    expect(caughtUp).toEqual([true, true, true]);
  }, 300_000);
});
