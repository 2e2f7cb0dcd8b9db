import { FeatureStoreError } from '../errors.js';
import { keyOf } from '../feature/entity-key.js';
import type { FeatureInfo } from '../feature/feature.js';
import { governSources, isStale, ownerOf, type VersionHost } from '../feature/freshness.js';
import type { Params } from '../feature/params.js';
import { adapterFor } from '../frame/adapters.js';
import { type ColumnSpec, columnsOf, type Row, tableToRows } from '../frame/columns.js';
import type { Materializer, ReadPlan, ReadSource, ResolvedSources } from '../materializer/materializer.js';
import { formatSpec, isResolver, type ParamSpec, resolveParams } from '../resolver/resolvers.js';
import { evaluateRead, type RowSource } from './evaluate.js';
import { liveCalls } from './live-route.js';
import type { QueryTree } from './nodes.js';

/** What planning a read needs from the feature store. @internal */
export interface FrameHost {
  servingMaterializer(info: FeatureInfo): Materializer | undefined;
  call(info: FeatureInfo, params: unknown): Promise<unknown>;
  /** `onMissing: 'error'` refuses reads that would run feature code. */
  readonly config?: { readonly onMissing?: 'compute' | 'error' };
  /** Changes whenever {@link servingMaterializer} could answer otherwise. */
  readonly servingGeneration?: number;
}

/**
 * What planning a frame's features found last, so that the next read at the same resolution
 * (a serving loop's usual case) skips the work per feature: the store serving each one, the
 * sources, the staleness check. Kept only when no source was stale.
 */
interface RouteMemo {
  readonly spec: ParamSpec;
  readonly servingGeneration: number;
  readonly materializer: Materializer;
  readonly names: readonly string[];
  readonly resolved: ResolvedSources;
  readonly sources: readonly ReadSource[];
  /** The stores that registered the features, and their generation (staleness depends on it). */
  readonly owners: readonly (readonly [VersionHost, number])[];
}

/** By the features array a frame and every frame derived from it share. */
const routes = new WeakMap<readonly FeatureInfo[], RouteMemo>();

/**
 * How a read runs: in one store, as one statement over the materializations `plan` names; or
 * live, computing the features at `params` and joining in process, for `reason`. @internal
 */
export type ReadRoute =
  | {
      readonly kind: 'store';
      readonly materializer: Materializer;
      readonly plan: ReadPlan;
      readonly params: Params;
      /** Set when a stale materialization is served (see `store.config.onStale`), for `explain()`. */
      readonly stale?: string | undefined;
    }
  | {
      readonly kind: 'live';
      readonly params: Params;
      readonly reason: string;
      /** What each feature is called with: only the parameters it takes. */
      readonly featureParams: readonly Params[];
      /** Features with no materialization at their parameters: their code runs. */
      readonly missing: readonly string[];
    };

/**
 * Decides how a read of `features` at `spec` runs: when one store serves every feature and holds
 * them all at the parameters `spec` resolves to (`Last()`… decided among its materializations),
 * there; otherwise live, with resolvers decided across the stores that serve each feature.
 * @internal
 */
export async function planRead(
  host: FrameHost,
  features: readonly FeatureInfo[],
  spec: ParamSpec,
  query: QueryTree,
  explaining = false,
): Promise<ReadRoute> {
  const memo = routes.get(features);
  const generation = host.servingGeneration;
  if (memo !== undefined && memo.spec === spec && memo.servingGeneration === generation && !explaining) {
    const resolved = await memo.materializer.resolveSources(memo.names, spec);
    if (resolved === memo.resolved && memo.owners.every(([owner, g]) => owner.generation === g)) {
      const plan = { sources: memo.sources, query, resolved: resolved.materializations };
      return { kind: 'store', materializer: memo.materializer, params: resolved.params, plan };
    }
  }
  const names: string[] = new Array(features.length);
  const materializers: (Materializer | undefined)[] = new Array(features.length);
  let oneStore = true;
  for (let i = 0; i < features.length; i++) {
    names[i] = features[i]!.name;
    materializers[i] = host.servingMaterializer(features[i]!);
    oneStore &&= materializers[i] === materializers[0];
  }
  const first = materializers[0];

  if (first !== undefined && oneStore) {
    const resolved = await first.resolveSources(names, spec);
    if (resolved !== undefined) {
      const sources: ReadSource[] = new Array(features.length);
      for (let i = 0; i < features.length; i++) {
        sources[i] = { feature: features[i]!, materialization: resolved.materializations[i]! };
      }
      const stale = governSources(sources, explaining);
      if (stale.compute) {
        const reason = `a materialization is stale and store.config.onStale is 'compute'${stale.note === undefined ? '' : `\n-- ${stale.note}`}`;
        const calls = await liveCalls(materializers, features, spec, resolved.params);
        // onStale 'compute' asked for the code to run: nothing is missing.
        return {
          kind: 'live',
          params: resolved.params,
          reason,
          featureParams: calls.featureParams,
          missing: [],
        };
      }
      if (!explaining && generation !== undefined)
        memoize(features, spec, generation, first, names, resolved, sources);
      const plan = { sources, query, resolved: resolved.materializations };
      return { kind: 'store', materializer: first, params: resolved.params, plan, stale: stale.note };
    }
    const exact = spec as Params;
    const calls = await liveCalls(materializers, features, spec, exact);
    return {
      kind: 'live',
      params: exact,
      reason: `not materialized in ${first.name} for these parameters: ${calls.missing.join(', ')}`,
      ...calls,
    };
  }

  const hasResolver = Object.values(spec).some(isResolver);
  if (!hasResolver) {
    const reason = materializers.every((m) => m === undefined)
      ? 'no materializer is attached to these features'
      : 'the features are served by different stores (or some by none)';
    const calls = await liveCalls(materializers, features, spec, spec as Params);
    return { kind: 'live', params: spec as Params, reason, ...calls };
  }
  const unserved = features.filter((_, i) => materializers[i] === undefined).map((f) => f.name);
  if (unserved.length > 0) {
    throw new FeatureStoreError(
      'NO_CONSISTENT_MATERIALIZATION',
      `${formatSpec(spec)} is decided from materializations, but ${unserved.join(', ')} ha${unserved.length === 1 ? 's' : 've'} no materializer attached. ` +
        'Attach one with store.addDecorator(materializer.decorator), or pass exact parameter values to compute live.',
      { details: { features: unserved } },
    );
  }
  const available = await Promise.all(
    features.map(async (f, i) => ({
      feature: f.name,
      materializations: await materializers[i]!.listMaterializations(f.name),
    })),
  );
  const { params } = resolveParams(spec, available)!;
  return {
    kind: 'live',
    params,
    ...(await liveCalls(materializers, features, spec, params)),
    reason: 'the features are served by different stores; each is read from its store and joined in process',
  };
}

/** Remembers a store route for the next read of `features`, unless a source is stale. */
function memoize(
  features: readonly FeatureInfo[],
  spec: ParamSpec,
  servingGeneration: number,
  materializer: Materializer,
  names: readonly string[],
  resolved: ResolvedSources,
  sources: readonly ReadSource[],
): void {
  const owners = new Map<VersionHost, number>();
  for (const { feature, materialization } of sources) {
    const owner = ownerOf(feature);
    // A stale source's outcome depends on store.config.onStale, which may change: plan it each time.
    if (isStale(owner, materialization) === true) {
      routes.delete(features);
      return;
    }
    if (owner !== undefined) owners.set(owner, owner.generation);
  }
  routes.set(features, {
    spec,
    servingGeneration,
    materializer,
    names,
    resolved,
    sources,
    owners: [...owners],
  });
}

/**
 * Runs a live read: calls each feature at its `featureParams` (through the store's decorators) and
 * evaluates `query` over the results in process. @internal
 */
export async function readLive(
  host: FrameHost,
  features: readonly FeatureInfo[],
  featureParams: readonly Params[],
  query: QueryTree,
): Promise<{ columns: ColumnSpec[]; rows: Row[] }> {
  const sources: RowSource[] = await Promise.all(
    features.map(async (feature, i) => {
      const params = featureParams[i]!;
      // A copy each: the function may change its parameters object, and the frame must not.
      const result = await host.call(feature, { ...params });
      const table = await adapterFor(result, feature.name, params).toArrow(result);
      const columns = columnsOf(table, feature.name);
      return {
        feature: feature.name,
        key: keyOf(feature, columns, params),
        columns,
        rows: tableToRows(table),
      };
    }),
  );
  return evaluateRead(query, sources);
}
