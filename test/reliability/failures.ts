/** How the fault tests judge a failed call: a FeatureStoreError saying the connection or server failed. */
import { FeatureStoreError } from 'featurefn';

/** Distinct failure messages seen (digits masked), to print once for RELIABILITY.md. */
export const samples = new Set<string>();

/**
 * Adds to `problems` unless `error` is a clear error for a lost connection: a FeatureStoreError
 * with code STORE_ERROR, naming the connection or the server, not kilobytes long.
 */
export function checkFailure(error: unknown, problems: string[]): void {
  if (error instanceof Error) samples.add(error.message.replace(/\d+/g, 'N').slice(0, 240));
  if (!(error instanceof FeatureStoreError)) {
    problems.push(`raw error: ${String(error).slice(0, 300)}`);
  } else if (
    error.code !== 'STORE_ERROR' ||
    !/connection|server/.test(error.message) ||
    error.message.length > 1_000
  ) {
    problems.push(`unclear error ${error.code}: ${error.message.slice(0, 300)}`);
  }
}

/** Prints the samples gathered, one `[reliability]` line each, and forgets them. */
export function printSamples(test: string): void {
  for (const sample of samples) process.stdout.write(`[reliability] ${test}, an error seen: ${sample}\n`);
  samples.clear();
}
