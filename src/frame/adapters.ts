import type { Table } from 'apache-arrow';
import { FeatureStoreError } from '../errors.js';
import type { Params } from '../feature/params.js';
import { describeValue } from '../format.js';
import { arrowAdapter } from './arrow/arrow-adapter.js';
import type { FrameAdapter } from './frame-adapter.js';
import { kyselyAdapter } from './kysely/kysely-adapter.js';
import { polarsAdapter, polarsLazyAdapter } from './polars/polars-adapter.js';
import { rowsAdapter } from './rows/rows-adapter.js';
import { sqlAdapter } from './sql/sql-adapter.js';

// Row arrays last: the other adapters recognise specific objects, rows any array of objects.
const adapters: FrameAdapter[] = [
  arrowAdapter,
  sqlAdapter,
  polarsAdapter,
  polarsLazyAdapter,
  kyselyAdapter,
  rowsAdapter,
];

/**
 * Adds an adapter for another compute library. Adapters registered later are tried first, so a
 * more specific adapter can take over a shape an earlier one also accepts.
 */
export function registerFrameAdapter(adapter: FrameAdapter): void {
  const existing = adapters.findIndex((a) => a.kind === adapter.kind);
  if (existing >= 0) adapters.splice(existing, 1);
  adapters.unshift(adapter);
}

/** The adapter that recognises `value`, or a clear `UNSUPPORTED_RESULT` error. @internal */
export function adapterFor(value: unknown, feature?: string, params?: Params): FrameAdapter {
  const adapter = adapters.find((a) => a.canAdapt(value));
  if (adapter !== undefined) return adapter;
  throw new FeatureStoreError(
    'UNSUPPORTED_RESULT',
    `the function returned ${describeValue(value)}, which is not a frame featurefn knows. ` +
      `Return one of: ${adapters.map((a) => a.kind).join(', ')} (for example an array of row objects).`,
    { feature, params, details: { tried: adapters.map((a) => a.kind) } },
  );
}

/** The adapter registered for `kind`. @internal */
export function adapterByKind(kind: string): FrameAdapter {
  const adapter = adapters.find((a) => a.kind === kind);
  if (adapter === undefined) {
    throw new FeatureStoreError(
      'UNSUPPORTED_RESULT',
      `results of kind "${kind}" were stored, but no adapter for that kind is registered in this process. ` +
        'Import the module that registers it (for example featurefn/polars) before reading.',
      { details: { kind } },
    );
  }
  return adapter;
}

/** A feature result as an Arrow table, through its adapter. @internal */
export async function toArrowTable(value: unknown, feature?: string, params?: Params): Promise<Table> {
  return adapterFor(value, feature, params).toArrow(value);
}
