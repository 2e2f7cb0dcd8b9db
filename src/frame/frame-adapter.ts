import type { RecordBatch, Table } from 'apache-arrow';

/**
 * What an adapter for one compute library must do: recognise its frames by shape, turn them into
 * Apache Arrow (the common columnar form stores load from), and turn Arrow back into its own kind,
 * so that a materialized read returns what the function would have returned.
 *
 * ### Example
 * ```ts
 * const myAdapter: FrameAdapter<MyFrame> = {
 *   kind: 'my-frame',
 *   canAdapt: (value): value is MyFrame => value instanceof Object && 'toArrowIPC' in value,
 *   toArrow: async (frame) => tableFromIPC(frame.toArrowIPC()),
 *   fromArrow: async (table) => MyFrame.fromIPC(tableToIPC(table)),
 * };
 * registerFrameAdapter(myAdapter);
 * ```
 */
export interface FrameAdapter<T = unknown> {
  /** Stable name recorded with each materialization, e.g. `'rows'`, `'arrow'`, `'duckdb'`. */
  readonly kind: string;
  /** True when `value` is a frame of this adapter's kind. Checks shape, never `instanceof` a driver class. */
  canAdapt(value: unknown): value is T;
  /** The frame as an Arrow table. */
  toArrow(value: T): Promise<Table>;
  /** A frame of this kind holding the table's rows. */
  fromArrow(table: Table): Promise<T>;
  /**
   * Optional: the frame as a stream of Arrow record batches, so stores can load it without holding
   * it whole. Stores use this instead of `toArrow` when present.
   */
  toBatches?(value: T): AsyncIterable<RecordBatch>;
}
