import { FeatureStoreError } from './errors.js';
import { describeValue } from './format.js';

/**
 * A length of time, written one way everywhere featurefn takes one (`timeout`, `maxAge`,
 * `olderThan`): a number of milliseconds, or text of the form
 *
 * ```
 * duration := amount unit
 * amount   := digits [ "." digits ]        (no sign, no exponent)
 * unit     := ms | millisecond(s) | s | second(s) | min | minute(s) | h | hour(s) | day(s) | week(s)
 * ```
 *
 * with optional spaces around and between, case-insensitive: `'500 ms'`, `'30 minutes'`,
 * `'1 hour'`, `'2 days'`, `'1.5h'`. One amount and one unit: `'1 hour 30 minutes'` is refused
 * (write `'90 minutes'`). Months and years are refused because their length varies.
 */
export type Duration = number | string;

const UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  millisecond: 1,
  milliseconds: 1,
  s: 1000,
  sec: 1000,
  second: 1000,
  seconds: 1000,
  min: 60_000,
  minute: 60_000,
  minutes: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000,
  day: 86_400_000,
  days: 86_400_000,
  week: 604_800_000,
  weeks: 604_800_000,
};

const PATTERN = /^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$/i;

/**
 * Milliseconds of a {@link Duration}. Throws `INVALID_DURATION`, naming `what` (e.g. `'timeout'`)
 * and the value, for anything outside the grammar, for negative or non-finite numbers and for
 * durations beyond 100 years.
 *
 * ### Example
 * ```ts
 * parseDuration('2 days'); // 172800000
 * parseDuration('500 ms'); // 500
 * parseDuration(1500);     // 1500
 * ```
 */
export function parseDuration(value: Duration, what = 'duration'): number {
  let ms: number | undefined;
  if (typeof value === 'number') {
    ms = value;
  } else if (typeof value === 'string') {
    const match = PATTERN.exec(value);
    const unit = match === null ? undefined : UNITS[match[2]!.toLowerCase()];
    if (match !== null && unit !== undefined) ms = Number(match[1]) * unit;
  }
  // A bound keeps setTimeout honest: beyond 2^31-1 ms Node fires it at once.
  if (ms === undefined || !Number.isFinite(ms) || ms < 0 || ms > 100 * 365 * 86_400_000) {
    throw new FeatureStoreError(
      'INVALID_DURATION',
      `${what} is ${describeValue(value)}, which is not a duration. Write a number of milliseconds ` +
        `(e.g. 1500) or one amount and one unit: '500 ms', '30 seconds', '30 minutes', '1 hour', '2 days', '1 week'.`,
      { details: { [what]: value } },
    );
  }
  return ms;
}
