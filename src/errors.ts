import type { Params } from './feature/params.js';
import { formatParams } from './format.js';

/** Every way featurefn can refuse something, as a literal you can `switch` on. */
export type FeatureStoreErrorCode =
  | 'DUPLICATE_FEATURE'
  | 'UNKNOWN_FEATURE'
  | 'INVALID_FEATURE'
  | 'FEATURE_FAILED'
  | 'UNSUPPORTED_PARAMETER'
  | 'UNSUPPORTED_RESULT'
  | 'UNSUPPORTED_COLUMN_TYPE'
  | 'MISSING_KEY_COLUMN'
  | 'NULL_KEY'
  | 'DUPLICATE_KEY'
  | 'INVALID_VALUE'
  | 'NO_CONSISTENT_MATERIALIZATION'
  | 'NO_COMMON_KEY'
  | 'AMBIGUOUS_COLUMN'
  | 'UNKNOWN_COLUMN'
  | 'INVALID_QUERY'
  | 'INVALID_DURATION'
  | 'TIMEOUT'
  | 'STORE_ERROR'
  | 'ONLINE_UNAVAILABLE'
  | 'ONLINE_PUBLISH_FAILED'
  | 'CLOSED'
  | 'NOT_SERVED'
  | 'TOO_OLD'
  | 'UNKNOWN_PARAMETER'
  | 'NOT_MATERIALIZED'
  | 'STALE_MATERIALIZATION'
  /** A store's schema name is empty or holds a NUL character. */
  | 'INVALID_SCHEMA'
  /** A DuckDB `path` holds a NUL character. */
  | 'INVALID_PATH'
  /** A result has no rows; `materialize(f, params, { allowEmpty: true })` stores it anyway. */
  | 'EMPTY_RESULT'
  /**
   * A result's value columns (names or types) differ from the feature's earlier
   * materializations; `{ allowColumnChange: true }` stores it anyway.
   */
  | 'COLUMNS_CHANGED'
  /** An option of a materializer call is out of range, e.g. `prune({ keep: -1 })`. */
  | 'INVALID_OPTION';

/** Structured context carried by a {@link FeatureStoreError}. */
export interface FeatureStoreErrorContext {
  /** Qualified name of the feature concerned, e.g. `'flights.departures'`. */
  feature?: string | undefined;
  /** The parameters of the call or materialization concerned. */
  params?: Params | undefined;
  /** SQL text involved, if any (values are never part of it; they are bound). */
  sql?: string | undefined;
  /** The error that caused this one. */
  cause?: unknown;
  /** Anything else that helps, e.g. the offending key. */
  details?: Record<string, unknown> | undefined;
}

/**
 * The one error type featurefn throws. `code` tells what went wrong; `feature`, `params` and
 * `details` tell where; `message` reads as advice.
 *
 * ### Example
 * ```ts
 * try {
 *   await materializer.materialize(departures, { when });
 * } catch (error) {
 *   if (error instanceof FeatureStoreError && error.code === 'DUPLICATE_KEY') console.log(error.details);
 * }
 * ```
 */
export class FeatureStoreError extends Error {
  override readonly name = 'FeatureStoreError';
  readonly code: FeatureStoreErrorCode;
  readonly feature: string | undefined;
  readonly params: Params | undefined;
  readonly sql: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: FeatureStoreErrorCode, message: string, context: FeatureStoreErrorContext = {}) {
    super(prefix(context) + message, context.cause === undefined ? undefined : { cause: context.cause });
    this.code = code;
    this.feature = context.feature;
    this.params = context.params;
    this.sql = context.sql;
    this.details = context.details;
  }
}

function prefix({ feature, params }: FeatureStoreErrorContext): string {
  if (feature === undefined) return '';
  return params === undefined
    ? `Feature "${feature}": `
    : `Feature "${feature}" with parameters ${formatParams(params)}: `;
}
