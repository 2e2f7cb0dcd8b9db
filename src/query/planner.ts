import { FeatureStoreError } from '../errors.js';
import { keyOf } from '../feature/entity-key.js';
import type { FeatureInfo } from '../feature/feature.js';
import { governSources, isStale, ownerOf, type VersionHost } from '../feature/freshness.js';
import type { Params } from '../feature/params.js';
import { adapterFor } from '../frame/adapters.js';
import { type ColumnSpec, columnsOf, type Row, tableToRows } from '../frame/columns.js';
import type { Materializer, ReadPlan, ReadSource, ResolvedSources } from '../materializer/materializer.js';
import {
  formatSpec,
  type HeldSpec,
  holdSpec,
  isResolver,
  type ParamSpec,
  resolveParams,
  sameSpec,
} from '../resolver/resolvers.js';
import { evaluateRead, type RowSource } from './evaluate.js';
import { liveCalls } from './live-route.js';
import type { QueryTree } from './nodes.js';

/** What planning a read needs from the feature store. @internal */
export interface FrameHost {
  servingMaterializer(info: FeatureInfo): Materializer | undefined;
  call(info: FeatureInfo, params: unknown): Promise<unknown>;
  /** `onMissing: 'error'` refuses reads that would run feature code. */
  readonly config?: { readonly onMissing?: 'compute' | 'error' };
  /** Changes whenever `servingMaterializer` may answer otherwise (decorators added or removed). */
  readonly servingEpoch: number;
}

/**
 * A read planned to one store, kept so that planning the same read again (the same features,
 * spec and store) checks that its resolution is still current instead of redoing it.
 */
interface PlannedRoute {
  readonly features: readonly FeatureInfo[];
  readonly spec: HeldSpec;
  readonly servingEpoch: number;
  readonly materializer: Materializer;
  readonly resolved: ResolvedSources;
  readonly sources: readonly ReadSource[];
  /**
   * When no source was stale and one store registered every feature: that store and its
   * generation then. Staleness changes only with a redefinition, which changes the generation.
   */
  readonly fresh: { readonly host: VersionHost | undefined; readonly generation: number } | undefined;
}

/** Routes planned per host, the most recent last. */
const planned = new WeakMap<FrameHost, PlannedRoute[]>();
/** Routes kept per host: a server reads a few sets of features, each with its own spec. */
const MAX_PLANNED = 8;

/**
 * The store route of a read planned before, when nothing it depends on changed: the same
 * features (by identity) and spec, the same decorators, a resolution the store says is still
 * current (no publication since, no `maxAge` passed), and no source stale (else `onStale` is
 * applied again, as on every read). `undefined` when the read must be planned anew. @internal
 */
export function plannedRoute(
  host: FrameHost,
  features: readonly FeatureInfo[],
  spec: ParamSpec,
  query: QueryTree,
): ReadRoute | undefined {
  const routes = planned.get(host);
  if (routes === undefined) return undefined;
  for (let r = routes.length - 1; r >= 0; r--) {
    const route = routes[r]!;
    if (!sameFeatures(route.features, features) || !sameSpec(route.spec, spec)) continue;
    if (route.servingEpoch !== host.servingEpoch || !route.materializer.isCurrent(route.resolved)) {
      routes.splice(r, 1); // planning anew keeps its own; this one would only hold a closed store
      return undefined;
    }
    const fresh = route.fresh;
    if (fresh === undefined || (fresh.host !== undefined && fresh.host.generation !== fresh.generation)) {
      if (governSources(route.sources, false).compute) return undefined;
    }
    const { resolved } = route;
    return {
      kind: 'store',
      materializer: route.materializer,
      params: resolved.params,
      plan: { sources: route.sources, query, resolved: resolved.materializations },
    };
  }
  return undefined;
}

function remember(host: FrameHost, spec: ParamSpec, route: PlannedRoute): void {
  let routes = planned.get(host);
  if (routes === undefined) {
    routes = [];
    planned.set(host, routes);
  }
  const same = routes.findIndex((r) => sameFeatures(r.features, route.features) && sameSpec(r.spec, spec));
  if (same !== -1) routes.splice(same, 1);
  else if (routes.length >= MAX_PLANNED) routes.shift();
  routes.push(route);
}

/** Whether a read's sources were fresh, in the form {@link PlannedRoute.fresh} keeps. */
function freshness(sources: readonly ReadSource[]): PlannedRoute['fresh'] {
  const host = ownerOf(sources[0]!.feature);
  for (const { feature, materialization } of sources) {
    if (ownerOf(feature) !== host || isStale(host, materialization) === true) return undefined;
  }
  return { host, generation: host?.generation ?? 0 };
}

function sameFeatures(a: readonly FeatureInfo[], b: readonly FeatureInfo[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

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
  const servingEpoch = host.servingEpoch;
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
      if (!explaining && first.isCurrent(resolved)) {
        remember(host, spec, {
          features,
          spec: holdSpec(spec),
          servingEpoch,
          materializer: first,
          resolved,
          sources,
          fresh: freshness(sources),
        });
      }
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
