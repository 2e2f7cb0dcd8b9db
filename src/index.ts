/**
 * featurefn: a feature store where a feature is a plain function.
 *
 * ```ts
 * import { feature, defaultStore, Last } from 'featurefn';
 * ```
 * Stores live behind subpath exports: `featurefn/duckdb` (embedded) and `featurefn/postgres`.
 * @module
 */

export { type Duration, parseDuration } from './duration.js';
export { FeatureStoreError, type FeatureStoreErrorCode, type FeatureStoreErrorContext } from './errors.js';
export type {
  Feature,
  FeatureCall,
  FeatureFunction,
  FeatureInfo,
  FeatureOptions,
} from './feature/feature.js';
export {
  defaultStore,
  FeatureStore,
  type FeatureStoreConfig,
  feature,
  type ParamsScope,
} from './feature/feature-store.js';
export type { OnStale } from './feature/freshness.js';
export type { Params, ParamValue } from './feature/params.js';
export type { StandardSchemaV1 } from './feature/standard-schema.js';
export { registerFrameAdapter } from './frame/adapters.js';
export type { ColumnSpec, ColumnType, Row } from './frame/columns.js';
export type { FrameAdapter } from './frame/frame-adapter.js';
export type {
  FeatureDecorator,
  Materialization,
  MaterializationStatus,
  MaterializeOptions,
  MaterializeParams,
  Materializer,
  MaterializerOptions,
  OnlineCacheStats,
  OnlineOptions,
  PruneOptions,
  StoredFeature,
  StoredParam,
} from './materializer/materializer.js';
export { MaterializerBase, type PublishInput } from './materializer/materializer-base.js';
export type {
  OnlineKey,
  OnlineKeyValue,
  OnlineMaterialization,
  OnlinePublication,
  OnlineSource,
  OnlineStore,
} from './online/online-store.js';
export { LazyFrame, type PolarsFrame } from './query/lazy-frame.js';
export {
  type Comparison,
  type ComparisonOperator,
  type FilterConditions,
  type FilterValue,
  gt,
  gte,
  lt,
  lte,
  ne,
} from './query/nodes.js';
export type { BoundValue, CompiledQuery, SqlDialect } from './query/sql-compiler.js';
export { AsOf, First, isResolver, Last, type ParamSpec, type Resolver } from './resolver/resolvers.js';
export {
  isSqlQuery,
  type SqlFragment,
  SqlQuery,
  type SqlSource,
  type SqlTag,
  type SqlValue,
} from './sql/sql-query.js';
