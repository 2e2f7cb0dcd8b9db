/**
 * The readers of the PostgreSQL fault tests: `Last()` over both workload features, read whole (and
 * checked against what was published) and by key, in a loop while the faults happen; and the reads
 * in a row that must all succeed afterwards.
 */
import type { LazyFrame } from 'featurefn';
import { checkFailure } from './failures.js';
import { checksumOf, dayOf, expectedJoinChecksum } from './workload.js';

/** Readers looping over `frame` until `stop()`; failures must be clear errors (see `checkFailure`). */
export interface FaultReaders {
  /** Calls that succeeded, and calls that failed, so far. */
  readonly counts: { reads: number; failed: number };
  /** Ends the loops and waits for the calls in flight. */
  stop(): Promise<void>;
}

/**
 * Starts `n` readers of `frame` (`Last()` over alpha and beta of a workload at `scale`), each
 * alternating whole reads, checked against what was published, and key lookups: many round
 * trips, so that some are in flight whenever a fault comes. What is wrong goes to `problems`.
 */
export function startReaders(frame: LazyFrame, scale: number, problems: string[], n = 4): FaultReaders {
  const counts = { reads: 0, failed: 0 };
  let running = true;
  const reader = async (r: number) => {
    for (let i = 0; running; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      try {
        if ((i + r) % 2 === 0) {
          const rows = await frame.toArray({ params: true });
          if (checksumOf('join', rows) !== expectedJoinChecksum(dayOf(rows[0]!.when), scale))
            problems.push(`a read of ${rows.length} rows differs from what was published`);
        } else {
          const rows = await frame.filter({ k: 'K000042' }).toArray();
          if (rows.length !== 1) problems.push(`a key lookup gave ${rows.length} rows`);
        }
        counts.reads++;
      } catch (error) {
        counts.failed++;
        checkFailure(error, problems);
      }
    }
  };
  const readers = Array.from({ length: n }, (_, r) => reader(r));
  return {
    counts,
    stop: async () => {
      running = false;
      await Promise.all(readers);
    },
  };
}

/** How many of 20 whole reads in a row succeed and read back `day` as published. */
export async function recoveredReads(frame: LazyFrame, scale: number, day: number): Promise<number> {
  let recovered = 0;
  for (let i = 0; i < 20; i++) {
    const rows = await frame.toArray({ params: true });
    if (checksumOf('join', rows) === expectedJoinChecksum(day, scale) && dayOf(rows[0]!.when) === day)
      recovered++;
  }
  return recovered;
}
