/**
 * Ops code: where the flight features are stored and when they are computed. `features.ts` knows
 * nothing of this file; this file imports the features, never the other way round. Swap the
 * DuckDB file for `PostgresMaterializer` from `featurefn/postgres` and the features do not change.
 */
import { defaultStore, type Feature, type Materialization } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';

/** A feature of `{ when }`, whatever it returns. */
export type WhenFeature = Feature<(params: { when: Date }) => unknown>;

/** One materialization to run: a feature at a point in time. */
export interface Job {
  readonly feature: WhenFeature;
  readonly when: Date;
}

/** A finished job: the catalog record and how long it took. */
export interface JobResult extends Job {
  readonly record: Materialization;
  readonly ms: number;
}

/**
 * Opens the DuckDB store at `path` and attaches it to every feature of the default store: from
 * now on, a call whose parameters are materialized there is served from it.
 */
export function attachStore(path: string): DuckDBMaterializer {
  const materializer = new DuckDBMaterializer({ path });
  defaultStore.addDecorator(materializer.decorator);
  return materializer;
}

/**
 * The weekly job: every `when`, every feature, in the order given (list a derived feature after
 * the features it calls, so its calls are served from the store). Runs one job at a time and
 * reports each as it finishes.
 */
export async function runJobs(
  materializer: DuckDBMaterializer,
  jobs: readonly Job[],
  onDone: (result: JobResult, index: number) => void = () => {},
): Promise<JobResult[]> {
  const results: JobResult[] = [];
  for (const [index, job] of jobs.entries()) {
    const started = performance.now();
    const record = await materializer.materialize(job.feature, { when: job.when });
    const result = { ...job, record, ms: performance.now() - started };
    results.push(result);
    onDone(result, index);
  }
  return results;
}
