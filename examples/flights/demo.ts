/**
 * `npm run demo`: the four flight features of `features.ts`, materialized week by week into a
 * DuckDB file and read back at a consistent point in time.
 *
 * The features are plain functions (data scientist's code); `materialize.ts` attaches the store
 * and runs the weekly job (ops code); this script drives both and prints what happens. The store
 * file, `.featurefn/flights-demo.duckdb`, is recreated on each run so the output is reproducible.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import { defaultStore, type FeatureDecorator, gt, Last } from 'featurefn';
import { delayRisk, departures, meanDelay7d, routeDelayShare } from './features.js';
import { flightsDatabase, query } from './flights-data.js';
import { attachStore, type Job, type JobResult, runJobs, type WhenFeature } from './materialize.js';
import { formatCell, formatDate, printTable } from './print-table.js';

const started = performance.now();
const STORE_DIR = fileURLToPath(new URL('../../.featurefn/', import.meta.url));
const STORE_PATH = `${STORE_DIR}flights-demo.duckdb`;

/** The weekly job's points in time; routeDelayShare runs only on the first two. */
const WEEKS = ['2001-03-01', '2001-03-08', '2001-03-15', '2001-03-22'].map((d) => new Date(d));
const ROUTE_WEEKS = WEEKS.slice(0, 2);

// 1. The compute engine the features query: 3M real flights in an in-memory DuckDB.
heading('Flight records');
let t = performance.now();
await flightsDatabase();
const loadMs = performance.now() - t;
const [summary] = (
  await query('SELECT count(*) AS flights, min(date) AS first, max(date) AS last FROM flights')
).getRowObjectsJS();
console.log(
  `  ${formatCell(summary?.flights)} flights from ${formatDate(summary?.first as Date)} to ${formatDate(summary?.last as Date)}, ` +
    `loaded into in-memory DuckDB in ${ms(loadMs)}`,
);

// 2. Ops code attaches the store. A decorator added before it sits inside it, so it sees only
//    the calls the store passes through to the function: it tells which calls really computed.
heading('Store');
rmSync(STORE_PATH, { force: true });
rmSync(`${STORE_PATH}.wal`, { force: true });
mkdirSync(STORE_DIR, { recursive: true });
const ran: string[] = [];
const recordRuns: FeatureDecorator = (next, feature) => async (params) => {
  ran.push(feature.name);
  return next(params);
};
defaultStore.addDecorator(recordRuns);
const materializer = attachStore(STORE_PATH);
console.log(`  DuckDBMaterializer at .featurefn/flights-demo.duckdb (fresh), attached to every feature`);

try {
  // 3. The weekly job. delayRisk comes after the two features it calls.
  heading('Weekly job: materialize');
  const jobs: Job[] = WEEKS.flatMap((when) => {
    const features: WhenFeature[] = [departures, meanDelay7d];
    if (ROUTE_WEEKS.includes(when)) features.push(routeDelayShare);
    features.push(delayRisk);
    return features.map((feature) => ({ feature, when }));
  });
  t = performance.now();
  const results = await withProgress(jobs, (onDone) => runJobs(materializer, jobs, onDone));
  const jobMs = performance.now() - t;
  console.log(`  ${results.length} materializations in ${ms(jobMs)}`);
  console.log(
    ran.length === 0
      ? `  delayRisk's calls to departures and meanDelay7d were all served from the store (no function ran)`
      : `  functions run by decorated calls: ${ran.join(', ')}`,
  );

  // 4. What the store holds.
  heading('listMaterializations');
  const tookById = new Map(results.map((r) => [r.record.id, r.ms]));
  const listed = [];
  for (const feature of [departures, meanDelay7d, routeDelayShare, delayRisk]) {
    for (const m of await materializer.listMaterializations(feature)) {
      listed.push({
        feature: m.featureName,
        when: m.params.when,
        rows: m.rows,
        kind: m.kind,
        version: m.sourceHash.slice(0, 8),
        created: m.createdAt,
        'took ms': Math.round(tookById.get(m.id) ?? Number.NaN),
      });
    }
  }
  printTable(listed);

  // 5. The inference read: Last() = the latest `when` at which all three features exist.
  heading('Read at Last(): departures, meanDelay7d, delayRisk for SFO');
  const airport = defaultStore
    .withParams({ when: Last() })
    .getFeatures(departures, meanDelay7d, delayRisk)
    .filter({ origin: 'SFO' });
  console.log(indent(await airport.explain()));
  console.log();
  t = performance.now();
  const airportRows = await airport.toArray();
  const airportMs = performance.now() - t;
  printTable(airportRows);
  console.log(
    `  read in ${ms(airportMs)}; again: ${ms(await median(() => airport.toArray()))} (median of 5)`,
  );

  // 6. A route read: composite key, IN and comparison filters, and a feature joined on `origin`.
  //    routeDelayShare exists only on ROUTE_WEEKS, so Last() falls back to the latest of those.
  heading('Read at Last(): routeDelayShare from SFO, with meanDelay7d of the origin');
  const routes = defaultStore
    .withParams({ when: Last() })
    .getFeatures(routeDelayShare, meanDelay7d)
    .filter({ origin: 'SFO', destination: ['LAX', 'SEA', 'JFK', 'BOS', 'EUG'], flights: gt(500) });
  const routeExplain = (await routes.explain()).split('\n');
  console.log(
    indent(
      routeExplain
        .filter((line) => line.startsWith('-- features') || line.startsWith('-- parameters'))
        .join('\n'),
    ),
  );
  console.log(
    `  -- routeDelayShare is materialized on ${ROUTE_WEEKS.map(formatDate).join(' and ')} only, ` +
      `so Last() is the latest of those\n`,
  );
  t = performance.now();
  const routeRows = await routes.toArray();
  const routeMs = performance.now() - t;
  printTable([...routeRows].sort((a, b) => Number(b.flights) - Number(a.flights)));
  console.log(`  read in ${ms(routeMs)}`);

  // 7. Calling a feature is the same call whether or not it is materialized.
  heading('Decorated calls: served from the store or computed');
  const calls = [];
  for (const feature of [departures, delayRisk] as WhenFeature[]) {
    for (const when of [new Date('2001-03-15'), new Date('2001-03-16')]) {
      ran.length = 0;
      const result = await feature({ when });
      const functionsRun = [...ran];
      const computed = await feature.compute({ when });
      calls.push({
        call: `${feature.info.localName}({ when: ${formatDate(when)} })`,
        materialized: WEEKS.some((w) => w.getTime() === when.getTime()) ? 'yes' : 'no',
        'functions run':
          functionsRun.length === 0 ? 'none' : functionsRun.map((n) => n.split('.').pop()).join(', '),
        result: result?.constructor.name,
        rows: rowsOf(result).length,
        'same as computed': sameRows(result, computed) ? 'yes' : 'NO',
        'ms (median of 5)': await median(() => feature({ when })),
      });
    }
  }
  printTable(calls);

  heading('Done');
  console.log(`  load ${ms(loadMs)} · materialize ${ms(jobMs)} · total ${ms(performance.now() - started)}`);
} finally {
  await materializer.close();
}

/** Runs the jobs with a progress bar on a terminal, plain lines otherwise (CI logs). */
async function withProgress(
  jobs: readonly Job[],
  run: (onDone: (result: JobResult, index: number) => void) => Promise<JobResult[]>,
): Promise<JobResult[]> {
  const label = (job: Job) => `${job.feature.info.name} @ ${formatDate(job.when)}`;
  if (!process.stdout.isTTY) {
    const width = String(jobs.length).length;
    return run((r, i) =>
      console.log(
        `  [${String(i + 1).padStart(width)}/${jobs.length}] ${label(r).padEnd(38)} ${formatCell(r.record.rows).padStart(6)} rows  ${ms(r.ms)}`,
      ),
    );
  }
  const bar = new cliProgress.SingleBar(
    { format: '  {bar} {value}/{total}  {job}', stream: process.stdout, hideCursor: true, barsize: 30 },
    cliProgress.Presets.shades_classic,
  );
  bar.start(jobs.length, 0, { job: jobs[0] === undefined ? '' : label(jobs[0]) });
  try {
    return await run((_, i) => {
      const next = jobs[i + 1];
      bar.increment(1, { job: next === undefined ? 'done' : label(next) });
    });
  } finally {
    bar.stop();
  }
}

function heading(title: string): void {
  console.log(`\n== ${title}`);
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n');
}

function ms(value: number): string {
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${value.toFixed(1)} ms`;
}

async function median(run: () => Promise<unknown>, times = 5): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < times; i++) {
    const start = performance.now();
    await run();
    samples.push(performance.now() - start);
  }
  return samples.sort((a, b) => a - b)[Math.floor(times / 2)]!;
}

/** Rows of what a flight feature returns: a DuckDB result or an array of row objects. */
function rowsOf(result: unknown): Record<string, unknown>[] {
  if (Array.isArray(result)) return result as Record<string, unknown>[];
  return (result as { getRowObjectsJS(): Record<string, unknown>[] }).getRowObjectsJS();
}

/** Same rows in any order. */
function sameRows(a: unknown, b: unknown): boolean {
  const text = (x: unknown) =>
    rowsOf(x)
      .map((row) => JSON.stringify(row, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)))
      .sort()
      .join('\n');
  return text(a) === text(b);
}
