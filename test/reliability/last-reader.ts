/**
 * A reader of `Last()` over both workload features, in a loop, checking every read: one point in
 * time for all rows, the values published for it (checksum), never an earlier point than a
 * previous read, and no error but "nothing materialized yet" before its first successful read.
 */
import { type FeatureStore, FeatureStoreError, Last } from 'featurefn';
import { checksumOf, dayOf, expectedJoinChecksum, type registerWorkload } from './workload.js';

export interface ReaderFigures {
  reads: number;
  /** Reads that failed with NO_CONSISTENT_MATERIALIZATION before anything was published. */
  nothingYet: number;
  /** Points in time (day indexes) the reads resolved to, in order of first sight. */
  days: number[];
  /** When (ms since the epoch) each of `days` was first read. */
  firstSeen: number[];
  violations: string[];
}

/**
 * Reads until `stop()` says so (calling `onDay` with each point in time on its first read), yielding to the event loop between reads as a server handling
 * requests would. Stops early after 20 violations.
 */
export async function readLast(
  store: FeatureStore,
  features: ReturnType<typeof registerWorkload>,
  stop: () => boolean,
  scale: number,
  onDay: (day: number) => void = () => undefined,
): Promise<ReaderFigures> {
  const figures: ReaderFigures = { reads: 0, nothingYet: 0, days: [], firstSeen: [], violations: [] };
  const frame = store.withParams({ when: Last() }).getFeatures(features.alpha, features.beta);
  let latest = -1;
  while (!stop() && figures.violations.length < 20) {
    await new Promise((resolve) => setImmediate(resolve));
    try {
      const rows = await frame.toArray({ params: true });
      figures.reads++;
      const days = new Set(rows.map((row) => dayOf(row.when)));
      if (days.size !== 1) {
        figures.violations.push(`one read mixed days ${[...days].join(', ')}`);
        continue;
      }
      const [day] = days as Set<number> as unknown as [number];
      if (!figures.days.includes(day)) {
        figures.days.push(day);
        figures.firstSeen.push(Date.now());
        onDay(day);
      }
      if (day < latest) figures.violations.push(`Last() went back from day ${latest} to ${day}`);
      latest = Math.max(latest, day);
      if (checksumOf('join', rows) !== expectedJoinChecksum(day, scale))
        figures.violations.push(
          `the read of day ${day} (${rows.length} rows) differs from what was published`,
        );
    } catch (error) {
      if (
        error instanceof FeatureStoreError &&
        error.code === 'NO_CONSISTENT_MATERIALIZATION' &&
        figures.reads === 0
      ) {
        figures.nothingYet++;
      } else {
        figures.violations.push(
          `read ${figures.reads + figures.nothingYet + 1} failed: ${error instanceof FeatureStoreError ? `${error.code}: ` : 'raw error '}${String(error instanceof Error ? error.message : error).slice(0, 300)}`,
        );
      }
    }
  }
  return figures;
}
