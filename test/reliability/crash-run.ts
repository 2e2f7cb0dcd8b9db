/**
 * Crash injection: a child materializing the workload is SIGKILLed at a seeded random moment, many
 * times over on one store; after each kill, a new opener checks the store (see {@link checkStore}).
 */
import { FeatureStore, FeatureStoreError, Last, type Materializer } from 'featurefn';
import { seeded } from '../support/seeded.js';
import { type Child, kill, sleep, startChild } from './children.js';
import { backendsGone, duplicateRecords, inspectStore, orphans } from './inspect.js';
import {
  checksumOf,
  DAYS,
  dayOf,
  expectedChecksum,
  expectedJoinChecksum,
  openStore,
  registerWorkload,
  rowCount,
  type StoreSpec,
  whenOf,
} from './workload.js';

type Name = 'alpha' | 'beta';
/** The application_name of a child's PostgreSQL sessions, to wait for them to end. */
const appOf = (schema: string, run: number) => `featurefn-${schema}-${run}`;
const pairOf = (name: Name, day: number) => `${name}/${day}`;
const splitPair = (pair: string) => {
  const [name, day] = pair.split('/') as [Name, string];
  return { name, day: Number(day) };
};

/** What the checks found: violations (empty when all holds) and what they looked at. */
export interface CheckResult {
  violations: string[];
  /** Publications present, per pair "alpha/2", with their ids. */
  present: Map<string, bigint>;
  /** Reads compared with what was published. */
  reads: number;
}

/**
 * Opens the store afresh and checks it against what writers confirmed (`confirmed`: the last id
 * confirmed per pair):
 * - no orphan table, at most one record per feature and parameters (read around featurefn);
 * - every confirmed publication is still there (the same id or a later one) and every record is
 *   complete (its row count);
 * - the pairs in `toRead` read back identical (checksum of every row);
 * - `Last()` over both features resolves to the latest day both have, and reads it whole.
 */
export async function checkStore(
  spec: StoreSpec,
  confirmed: ReadonlyMap<string, bigint>,
  toRead: ReadonlySet<string>,
  scale = 1,
): Promise<CheckResult> {
  const violations: string[] = [];
  const tables = await inspectStore(spec);
  for (const orphan of orphans(tables)) violations.push(`orphan table ${orphan}`);
  for (const duplicate of duplicateRecords(tables)) violations.push(`two records for ${duplicate}`);

  const materializer: Materializer = await openStore(spec);
  const present = new Map<string, bigint>();
  let reads = 0;
  try {
    const store = new FeatureStore();
    // A read must come from the store: never computed live when a publication is missing.
    store.config.onMissing = 'error';
    // The child's functions went through tsx, these through vitest: same code, other source text.
    store.config.onStale = 'serve';
    const features = registerWorkload(store, scale);
    store.addDecorator(materializer.decorator);
    for (const name of ['alpha', 'beta'] as const) {
      for (const record of await materializer.listMaterializations(features[name])) {
        const day = dayOf(record.params.when);
        present.set(pairOf(name, day), BigInt(record.id));
        if (record.rows !== rowCount(day, scale))
          violations.push(
            `${pairOf(name, day)} id ${record.id} has ${record.rows} rows, not ${rowCount(day, scale)}`,
          );
      }
    }
    for (const [pair, id] of confirmed) {
      const found = present.get(pair);
      if (found === undefined) violations.push(`confirmed ${pair} id ${id} is gone`);
      else if (found < id) violations.push(`confirmed ${pair} id ${id} was replaced by an older id ${found}`);
    }
    for (const pair of toRead) {
      if (!present.has(pair)) continue;
      const { name, day } = splitPair(pair);
      const rows = await store
        .withParams({ when: whenOf(day) })
        .getFeatures(features[name])
        .toArray();
      reads++;
      if (checksumOf(name, rows) !== expectedChecksum(name, day, scale))
        violations.push(`${pair} id ${present.get(pair)} reads back ${rows.length} rows that differ`);
    }
    const both = DAYS.map((_, day) => day).filter(
      (day) => present.has(pairOf('alpha', day)) && present.has(pairOf('beta', day)),
    );
    const frame = store.withParams({ when: Last() }).getFeatures(features.alpha, features.beta);
    if (both.length === 0) {
      const error = await frame.toArray().then(
        () => undefined,
        (e: unknown) => e,
      );
      if (!(error instanceof FeatureStoreError && error.code === 'NO_CONSISTENT_MATERIALIZATION'))
        violations.push(`Last() with nothing complete gave ${String(error)}`);
    } else {
      const rows = await frame.toArray({ params: true });
      reads++;
      const latest = Math.max(...both);
      const day = rows[0] === undefined ? -1 : dayOf(rows[0].when);
      if (day !== latest) violations.push(`Last() resolved to day ${day}, not ${latest}`);
      else if (checksumOf('join', rows) !== expectedJoinChecksum(day, scale))
        violations.push(`Last() read of day ${day} (${rows.length} rows) differs from what was published`);
    }
  } catch (error) {
    violations.push(`checking failed: ${error instanceof Error ? error.stack : String(error)}`);
  } finally {
    await materializer.close();
  }
  return { violations, present, reads };
}

/** Figures of a crash-injection run, printed for RELIABILITY.md. */
export type CrashFigures = {
  runs: number;
  kills: number;
  /** Kills that landed while a `materialize` was in flight (after `begin`, before its confirmation). */
  killsMidPublication: number;
  confirmed: number;
  /** In-flight publications found complete after the kill (killed between commit and confirmation). */
  committedUnconfirmed: number;
  reads: number;
  /** Runs after a crash whose child went on to confirm a publication (the re-run succeeds). */
  rerunsConfirmed: number;
  /** Mean time of one publication (begin to confirmation). */
  meanPublicationMs: number;
  violations: number;
};

/**
 * `runs` times: starts the writer child on `spec` from a seeded day, kills it during or just after
 * one of its first three publications (a seeded fraction, 0 to 1.3, of the mean publication time,
 * after it began), waits for its database sessions to end, and checks the
 * store. Then one last child materializes every pair to the end, and everything is read back.
 * Stops at the first run with a violation; the returned `violations` say which run and why.
 */
export async function crashRuns(
  spec: StoreSpec,
  options: { runs: number; seed: number },
): Promise<{ figures: CrashFigures; violations: string[] }> {
  const confirmed = new Map<string, bigint>();
  const figures: CrashFigures = {
    runs: 0,
    kills: 0,
    killsMidPublication: 0,
    confirmed: 0,
    committedUnconfirmed: 0,
    reads: 0,
    rerunsConfirmed: 0,
    meanPublicationMs: 0,
    violations: 0,
  };
  const childSpec = (run: number): StoreSpec =>
    spec.engine === 'postgres' ? { ...spec, app: appOf(spec.schema, run) } : spec;
  const absorb = (child: Child, touched: Set<string>) => {
    let inFlight: string | undefined;
    for (const line of child.lines) {
      if (typeof line.begin === 'string') inFlight = pairOf(line.begin as Name, line.day as number);
      if (typeof line.confirmed === 'string') {
        const pair = pairOf(line.confirmed as Name, line.day as number);
        confirmed.set(pair, BigInt(line.id as string));
        touched.add(pair);
        figures.confirmed++;
        inFlight = undefined;
      }
    }
    return inFlight;
  };

  // Mean time of one publication so far: kill points are drawn as a fraction of it, so that they
  // spread over every phase of a publication however loaded the machine is.
  let publicationMs = 1_000;
  let publications = 0;
  for (let run = 0; run < options.runs; run++) {
    const random = seeded(options.seed + run);
    const first = random.int(0, DAYS.length - 1);
    const target = random.int(0, 2);
    const fraction = random.float(0, 1.3);
    const delay = Math.round(fraction * publicationMs);
    const where = `run ${run} (seed ${options.seed + run}, first day ${first}, killed ${delay} ms into publication ${target})`;
    const child = startChild('crash-writer.ts', [JSON.stringify(childSpec(run)), String(first), '0']);
    let begun = 0;
    await child.line((l) => l.begin !== undefined && begun++ === target);
    await Promise.race([sleep(delay), child.exited]);
    if (child.process.exitCode !== null)
      return { figures, violations: [`${where}: the writer failed on its own: ${child.stderr()}`] };
    await kill(child);
    figures.runs++;
    figures.kills++;
    if (spec.engine === 'postgres') await backendsGone(appOf(spec.schema, run));
    for (const [i, line] of child.lines.entries()) {
      const next = child.lines[i + 1];
      if (line.begin === undefined || next?.confirmed === undefined) continue;
      publicationMs += ((next.at as number) - (line.at as number) - publicationMs) / ++publications;
    }
    figures.meanPublicationMs = Math.round(publicationMs);
    const touched = new Set<string>();
    const before = figures.confirmed;
    const inFlight = absorb(child, touched);
    if (run > 0 && figures.confirmed > before) figures.rerunsConfirmed++;
    // Read back the publication it was killed in, else the last it confirmed (to bound the time,
    // the others only have their records checked; the final run reads everything back).
    const toRead = new Set(inFlight === undefined ? [...touched].slice(-1) : [inFlight]);
    if (inFlight !== undefined) figures.killsMidPublication++;
    const previous = inFlight === undefined ? undefined : confirmed.get(inFlight);
    const result = await checkStore(spec, confirmed, toRead);
    figures.reads += result.reads;
    if (inFlight !== undefined) {
      const now = result.present.get(inFlight);
      if (now !== undefined && (previous === undefined || now > previous)) figures.committedUnconfirmed++;
    }
    if (result.violations.length > 0) {
      figures.violations += result.violations.length;
      return { figures, violations: result.violations.map((v) => `${where}: ${v}`) };
    }
  }

  // The re-run to the end: every pair materialized again, then all of them read back.
  const last = startChild('crash-writer.ts', [
    JSON.stringify(childSpec(options.runs)),
    '0',
    String(DAYS.length * 2),
  ]);
  const { code } = await last.exited;
  if (code !== 0)
    return { figures, violations: [`the final re-run failed (exit ${code}): ${last.stderr()}`] };
  const touched = new Set<string>();
  absorb(last, touched);
  figures.rerunsConfirmed++;
  const result = await checkStore(spec, confirmed, touched);
  figures.reads += result.reads;
  figures.violations += result.violations.length;
  return { figures, violations: result.violations.map((v) => `final re-run: ${v}`) };
}
