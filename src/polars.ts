/**
 * nodejs-polars frames as feature results and as read results. Needs the optional peer dependency
 * `nodejs-polars`, loaded only when a polars frame has to be made.
 *
 * ```ts
 * import { toPolars } from 'featurefn/polars';
 * const df = await toPolars(await departures({ when }));
 * ```
 *
 * Polars frames travel through Arrow IPC. Polars has no JSON type: a stored JSON column reads back
 * as a String column of JSON text (`pl.col(name).str.jsonDecode()` parses it), and storing that
 * frame again keeps the column JSON. Struct and non-numeric list columns a feature returns are
 * stored as JSON; numeric lists as `float64[]`; timestamps at millisecond precision.
 * @module
 */
import { toArrowTable } from './frame/adapters.js';
import {
  arrowToPolars,
  collectPolars,
  isPolarsDataFrame,
  isPolarsLazyFrame,
  type PolarsDataFrame,
  type PolarsLazyFrame,
  polarsAdapter,
  polarsLazyAdapter,
} from './frame/polars/polars-adapter.js';
import type { LazyFrame } from './query/lazy-frame.js';

declare module './query/lazy-frame.js' {
  /** With `featurefn/polars` in the program, `frame.toPolars()` is typed as a nodejs-polars `DataFrame`. */
  interface PolarsFrame extends PolarsDataFrame {}
}

export { type PolarsDataFrame, type PolarsLazyFrame, polarsAdapter, polarsLazyAdapter };

/**
 * Any feature result (row objects, an Arrow table, a DuckDB result, a polars frame) or a lazy
 * frame of features, as a polars `DataFrame`. A `DataFrame` is returned as it is; a polars
 * `LazyDataFrame` is collected.
 *
 * ### Example
 * ```ts
 * const df = await toPolars(store.withParams({ when: Last() }).getFeatures(departures));
 * ```
 */
export async function toPolars(frame: unknown): Promise<PolarsDataFrame> {
  if (isPolarsDataFrame(frame)) return frame;
  if (isPolarsLazyFrame(frame)) return collectPolars(frame);
  if (isFeatureFrame(frame)) return frame.toPolars();
  return arrowToPolars(await toArrowTable(frame));
}

function isFeatureFrame(value: unknown): value is LazyFrame {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as LazyFrame).toPolars === 'function' &&
    typeof (value as LazyFrame).explain === 'function'
  );
}
