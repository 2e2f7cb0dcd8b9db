import { FeatureStoreError } from '../errors.js';
import {
  canonicalParams,
  compareParamValues,
  decodeParams,
  type Params,
  type ParamValue,
} from '../feature/params.js';
import { formatParamValue } from '../format.js';

const RESOLVER = Symbol.for('featurefn.resolver');

/** A parameter value decided at read time from what is materialized. */
export interface Resolver {
  readonly [RESOLVER]: true;
  readonly kind: 'last' | 'first' | 'asOf';
  /** For `AsOf`: the bound. */
  readonly at?: ParamValue;
}

const LAST: Resolver = Object.freeze({ [RESOLVER]: true as const, kind: 'last' as const });
const FIRST: Resolver = Object.freeze({ [RESOLVER]: true as const, kind: 'first' as const });

/**
 * The latest value at which **all** requested features have a completed materialization sharing
 * the other parameters.
 *
 * ### Example
 * ```ts
 * store.withParams({ when: Last() }).getFeatures(departures, meanDelay)
 * ```
 */
export function Last(): Resolver {
  return LAST;
}

/** The earliest value at which all requested features have a materialization. */
export function First(): Resolver {
  return FIRST;
}

/** The latest value at or before `at` at which all requested features have a materialization. */
export function AsOf(at: ParamValue): Resolver {
  canonicalParams({ at });
  return Object.freeze({ [RESOLVER]: true as const, kind: 'asOf' as const, at });
}

/** True for `Last()`, `First()` and `AsOf(x)`. */
export function isResolver(value: unknown): value is Resolver {
  return typeof value === 'object' && value !== null && RESOLVER in value;
}

/** What `withParams` takes: each parameter an exact value or a resolver. */
export type ParamSpec = Readonly<Record<string, ParamValue | Resolver>>;

/**
 * A string equal for equal specs, whatever their key order: memoizes resolutions. Names and
 * values are length-prefixed, so no name or value can make two specs look alike. @internal
 */
export function specKey(spec: ParamSpec): string {
  const names = Object.keys(spec);
  if (names.length > 1) names.sort();
  let key = '';
  for (const name of names) {
    const value = spec[name];
    const encoded = isResolver(value)
      ? value.at === undefined
        ? value.kind
        : `${value.kind}@${canonicalParams({ at: value.at })}`
      : canonicalParams({ v: value });
    key += `${name.length}:${name}${encoded.length}:${encoded}`;
  }
  return key;
}

/** A feature's materialized parameter sets, as canonical keys. @internal */
export interface MaterializedParams {
  readonly feature: string;
  readonly paramsKeys: readonly string[];
}

/**
 * Picks the parameters at which every feature has a materialization: exact values must match,
 * resolved ones are chosen among the sets all features share. Returns `undefined` when `spec` has
 * no resolver and some feature lacks the exact set (the caller then computes live).
 * @internal
 */
export function resolveParams(spec: ParamSpec, available: readonly MaterializedParams[]): Params | undefined {
  const resolved = Object.entries(spec).filter(([, v]) => isResolver(v)) as [string, Resolver][];
  if (resolved.length === 0) {
    const key = canonicalParams(spec);
    return available.every((a) => a.paramsKeys.includes(key)) ? (spec as Params) : undefined;
  }
  const names = Object.keys(spec).sort();
  const fixed = Object.fromEntries(Object.entries(spec).filter(([, v]) => !isResolver(v))) as Params;
  canonicalParams(fixed);
  let shared: Set<string> | undefined;
  for (const { paramsKeys } of available) {
    const matching = new Set(paramsKeys.filter((key) => matches(decodeParams(key), names, fixed, resolved)));
    shared = shared === undefined ? matching : new Set([...shared].filter((key) => matching.has(key)));
  }
  const candidates = [...(shared ?? [])].map(decodeParams);
  if (candidates.length === 0) throw noConsistent(spec, available);
  candidates.sort((a, b) => {
    for (const [name, resolver] of resolved) {
      const order = compareParamValues(a[name]!, b[name]!);
      if (order !== 0) return resolver.kind === 'first' ? order : -order;
    }
    return 0;
  });
  return candidates[0]!;
}

function matches(
  params: Record<string, ParamValue>,
  names: readonly string[],
  fixed: Params,
  resolved: readonly [string, Resolver][],
): boolean {
  const keys = Object.keys(params).sort();
  if (keys.length !== names.length || keys.some((k, i) => k !== names[i])) return false;
  for (const [name, value] of Object.entries(fixed)) {
    if (canonicalParams({ v: params[name] }) !== canonicalParams({ v: value })) return false;
  }
  for (const [name, resolver] of resolved) {
    const value = params[name]!;
    if (resolver.kind !== 'asOf') continue;
    const at = resolver.at!;
    if (typeof value !== typeof at || value instanceof Date !== at instanceof Date) return false;
    if (compareParamValues(value, at) > 0) return false;
  }
  return true;
}

function noConsistent(spec: ParamSpec, available: readonly MaterializedParams[]): FeatureStoreError {
  const counts = available.map((a) => `${a.feature} (${a.paramsKeys.length} materialization(s))`).join(', ');
  return new FeatureStoreError(
    'NO_CONSISTENT_MATERIALIZATION',
    `no parameter set ${formatSpec(spec)} has a materialization of every requested feature: ${counts}. ` +
      'Materialize the missing features for a shared point in time, or pass exact parameter values to compute live.',
    { details: { features: available.map((a) => a.feature) } },
  );
}

/** `{ when: Last(), app: "x" }`: a parameter spec as a person reads it. @internal */
export function formatSpec(spec: ParamSpec): string {
  const parts = Object.entries(spec).map(([name, value]) => {
    if (!isResolver(value)) return `${name}: ${formatParamValue(value)}`;
    if (value.kind === 'asOf') return `${name}: AsOf(${formatParamValue(value.at)})`;
    return `${name}: ${value.kind === 'last' ? 'Last' : 'First'}()`;
  });
  return parts.length === 0 ? '{}' : `{ ${parts.join(', ')} }`;
}
