import { FeatureStoreError } from '../errors.js';
import type { Params } from '../feature/params.js';
import { formatParams } from '../format.js';

/**
 * The error of a read or call that would run feature code while `store.config.onMissing` is
 * `'error'`. @internal
 */
export function notMaterialized(features: readonly string[], params: Params): FeatureStoreError {
  return new FeatureStoreError(
    'NOT_MATERIALIZED',
    `${features.join(', ')} ${features.length === 1 ? 'has' : 'have'} no materialization at ${formatParams(params)}, ` +
      "and store.config.onMissing is 'error', so no feature code runs. " +
      'Materialize them for these parameters, read at a materialized point in time (e.g. { when: Last() }), ' +
      "or set store.config.onMissing = 'compute'.",
    { params, details: { features: [...features] } },
  );
}
