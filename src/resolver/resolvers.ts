import { type Duration, parseDuration } from '../duration.js';
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
  /** Oldest point in time accepted, in milliseconds (`Last({ maxAge })`). */
  readonly maxAge?: number;
}

/** What `Last()` and `AsOf()` take. */
export interface ResolverOptions {
  /**
   * Resolve only to materializations whose point in time is at most this old, e.g. `'2 days'`
   * (a {@link Duration}). No limit by default.
   */
  readonly maxAge?: Duration;
}

const LAST: Resolver = Object.freeze({ [RESOLVER]: true as const, kind: 'last' as const });
const FIRST: Resolver = Object.freeze({ [RESOLVER]: true as const, kind: 'first' as const });

/**
 * The latest value at which **all** requested features have a completed materialization sharing
 * the other parameters. A feature that does not take this parameter (its materializations have
 * no such name) does not constrain it.
 *
 * With `maxAge`, only materializations whose **point in time** is that recent count, and a read
 * with none fails with `TOO_OLD`, naming the newest point in time found and its age. The point in
 * time is the resolved parameter's value when it is a Date (`now − when ≤ maxAge`, the edge
 * included), and otherwise the `createdAt` of every materialization read (the oldest of them
 * decides). `now` is the time of the read's resolution.
 *
 * ### Example
 * ```ts
 * store.withParams({ when: Last() }).getFeatures(departures, meanDelay)
 * store.withParams({ when: Last({ maxAge: '2 days' }) }).getFeatures(departures) // fails if older
 * ```
 */
export function Last(options?: ResolverOptions): Resolver {
  if (options?.maxAge === undefined) return LAST;
  return Object.freeze({ ...LAST, maxAge: parseDuration(options.maxAge, 'maxAge') });
}

/** The earliest value at which all requested features have a materialization. */
export function First(): Resolver {
  return FIRST;
}

/**
 * The latest value at or before `at` at which all requested features have a materialization;
 * `maxAge` as for {@link Last}.
 */
export function AsOf(at: ParamValue, options?: ResolverOptions): Resolver {
  canonicalParams({ at });
  const resolver = { [RESOLVER]: true as const, kind: 'asOf' as const, at };
  if (options?.maxAge === undefined) return Object.freeze(resolver);
  return Object.freeze({ ...resolver, maxAge: parseDuration(options.maxAge, 'maxAge') });
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
      ? (value.at === undefined ? value.kind : `${value.kind}@${canonicalParams({ at: value.at })}`) +
        (value.maxAge === undefined ? '' : `<${value.maxAge}`)
      : canonicalParams({ v: value });
    key += `${name.length}:${name}${encoded.length}:${encoded}`;
  }
  return key;
}

/** A spec's values as they were: Dates by their instant, resolvers by kind and bound. @internal */
export type HeldSpec = Readonly<Record<string, unknown>>;

/** A Date (by its instant) or a resolver as it was when held: callers may change a Date later. */
class Held {
  constructor(
    readonly kind: 'date' | Resolver['kind'],
    readonly at: unknown,
    readonly maxAge?: number,
  ) {}
}

function holdValue(value: unknown): unknown {
  if (value instanceof Date) return new Held('date', value.getTime());
  if (isResolver(value)) return new Held(value.kind, holdValue(value.at), value.maxAge);
  return value;
}

/**
 * `spec` as it is now, to compare later specs with ({@link sameSpec}): a caller changing a Date
 * it passed cannot make a later spec look like this one. @internal
 */
export function holdSpec(spec: ParamSpec): HeldSpec {
  const held: Record<string, unknown> = {};
  for (const name in spec) if (Object.hasOwn(spec, name)) held[name] = holdValue(spec[name]);
  return held;
}

/** True when `spec` has the names and values `held` had (Dates compared by instant). @internal */
export function sameSpec(held: HeldSpec, spec: ParamSpec): boolean {
  let count = 0;
  for (const name in spec) {
    if (!Object.hasOwn(spec, name)) continue;
    if (!Object.hasOwn(held, name) || !sameValue(held[name], spec[name])) return false;
    count++;
  }
  for (const name in held) if (Object.hasOwn(held, name)) count--;
  return count === 0;
}

function sameValue(held: unknown, value: unknown): boolean {
  if (value instanceof Date)
    return held instanceof Held && held.kind === 'date' && held.at === value.getTime();
  if (isResolver(value))
    return (
      held instanceof Held &&
      held.kind === value.kind &&
      held.maxAge === value.maxAge &&
      sameValue(held.at, value.at)
    );
  return held === value;
}

/** A feature's materializations, as resolution needs them. @internal */
export interface MaterializedParams {
  readonly feature: string;
  readonly materializations: readonly { readonly paramsKey: string; readonly createdAt: Date }[];
}

/**
 * What {@link resolveParams} decided: the parameters of the read, and for each feature the
 * canonical key of the parameters it is read at (only those it takes). `expiresAt` (ms since the
 * epoch): when a `maxAge` bound stops admitting this resolution. @internal
 */
export interface Resolution {
  readonly params: Params;
  readonly keys: readonly string[];
  readonly expiresAt?: number;
}

/**
 * Picks the parameters at which every feature has a materialization: exact values must match,
 * resolved ones are chosen among the values all features share. Each feature is matched on the
 * parameters it takes (see {@link takenNames}); a parameter no feature takes is refused with
 * `UNKNOWN_PARAMETER`. Returns `undefined` when `spec` has no resolver and some feature lacks the
 * exact set (the caller then computes live). `now`: the time `maxAge` is measured from.
 * @internal
 */
export function resolveParams(
  spec: ParamSpec,
  available: readonly MaterializedParams[],
  now = Date.now(),
): Resolution | undefined {
  const taken = available.map((a) => takenNames(a.materializations.map((m) => m.paramsKey)));
  checkNames(
    spec,
    taken,
    available.map((a) => a.feature),
  );
  const resolved = Object.entries(spec).filter(([, v]) => isResolver(v)) as [string, Resolver][];
  if (resolved.length === 0) {
    const keys = available.map((_, i) => canonicalParams(paramsFor(spec as Params, taken[i])));
    return available.every((a, i) => a.materializations.some((m) => m.paramsKey === keys[i]))
      ? { params: spec as Params, keys }
      : undefined;
  }
  const fixed = Object.fromEntries(Object.entries(spec).filter(([, v]) => !isResolver(v))) as Params;
  canonicalParams(fixed);
  // Each feature's matching materializations, as the values of the resolved names it takes; then
  // joined across features on the names they share.
  let candidates: Record<string, ParamValue>[] | undefined;
  for (let i = 0; i < available.length; i++) {
    const own = paramsFor(spec as Params, taken[i]);
    const names = Object.keys(own).sort();
    const ownFixed = paramsFor(fixed, taken[i]);
    const ownResolved = resolved.filter(([name]) => name in own);
    const values = new Map<string, Record<string, ParamValue>>();
    for (const { paramsKey } of available[i]!.materializations) {
      const params = decodeParams(paramsKey);
      if (!matches(params, names, ownFixed, ownResolved)) continue;
      const picked = Object.fromEntries(ownResolved.map(([name]) => [name, params[name]!]));
      values.set(canonicalParams(picked), picked);
    }
    candidates = candidates === undefined ? [...values.values()] : join(candidates, [...values.values()]);
  }
  if (candidates === undefined || candidates.length === 0) throw noConsistent(spec, available);
  candidates.sort((a, b) => {
    for (const [name, resolver] of resolved) {
      const order = compareParamValues(a[name]!, b[name]!);
      if (order !== 0) return resolver.kind === 'first' ? order : -order;
    }
    return 0;
  });
  const bounded = resolved.filter(([, r]) => r.maxAge !== undefined);
  let newest: { at: number; name: string; maxAge: number } | undefined;
  for (const candidate of candidates) {
    const params = { ...fixed, ...candidate } as Params;
    const keys = available.map((_, i) => canonicalParams(paramsFor(params, taken[i])));
    let expiresAt: number | undefined;
    let tooOld: { at: number; name: string; maxAge: number } | undefined;
    for (const [name, { maxAge }] of bounded) {
      const at = pointInTime(params[name]!, available, keys);
      expiresAt = Math.min(expiresAt ?? Number.POSITIVE_INFINITY, at + maxAge!);
      if (now - at > maxAge!) tooOld ??= { at, name, maxAge: maxAge! };
    }
    if (tooOld === undefined) return expiresAt === undefined ? { params, keys } : { params, keys, expiresAt };
    if (newest === undefined || tooOld.at > newest.at) newest = tooOld;
  }
  throw tooOldError(spec, available, newest!, now);
}

/**
 * The parameter names a feature takes, from its materializations' keys: the names they all
 * share (normally every materialization of a feature has the same ones); `undefined` when
 * nothing is materialized. @internal
 */
export function takenNames(paramsKeys: readonly string[]): ReadonlySet<string> | undefined {
  let names: Set<string> | undefined;
  for (const key of paramsKeys) {
    const own = Object.keys(decodeParams(key));
    names = names === undefined ? new Set(own) : new Set(own.filter((n) => names!.has(n)));
  }
  return names;
}

/** The part of `params` a feature taking `taken` is called with: all of it when unknown. @internal */
export function paramsFor<P extends Params>(params: P, taken: ReadonlySet<string> | undefined): P {
  if (taken === undefined) return params;
  const own: Record<string, ParamValue> = {};
  for (const name of Object.keys(params)) if (taken.has(name)) own[name] = params[name]!;
  return own as P;
}

/**
 * Refuses a parameter no requested feature takes (when every feature's names are known), naming
 * the closest real one. @internal
 */
export function checkNames(
  spec: ParamSpec,
  taken: readonly (ReadonlySet<string> | undefined)[],
  features: readonly string[],
): void {
  if (taken.some((t) => t === undefined)) return;
  const known = new Set(taken.flatMap((t) => [...t!]));
  for (const name of Object.keys(spec)) {
    if (known.has(name)) continue;
    const closest = [...known]
      .map((k) => [k, editDistance(name, k)] as const)
      .sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1))[0];
    const hint =
      closest === undefined
        ? 'The features take no parameters.'
        : closest[1] <= Math.max(2, Math.floor(name.length / 3))
          ? `Did you mean \`${closest[0]}\`?`
          : `They take: ${[...known].sort().join(', ')}.`;
    throw new FeatureStoreError(
      'UNKNOWN_PARAMETER',
      `the parameter \`${name}\` in ${formatSpec(spec)} is taken by none of the requested features (${features.join(', ')}), judging by their materializations. ${hint}`,
      { details: { parameter: name, features, ...(closest === undefined ? {} : { closest: closest[0] }) } },
    );
  }
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** Assignments of `left` and `right` agreeing on the names they share, merged. */
function join(
  left: readonly Record<string, ParamValue>[],
  right: readonly Record<string, ParamValue>[],
): Record<string, ParamValue>[] {
  if (left.length === 0 || right.length === 0) return [];
  const shared = Object.keys(left[0]!).filter((n) => n in right[0]!);
  const byShared = new Map<string, Record<string, ParamValue>[]>();
  for (const r of right) {
    const k = canonicalParams(Object.fromEntries(shared.map((n) => [n, r[n]!])));
    byShared.set(k, [...(byShared.get(k) ?? []), r]);
  }
  const out: Record<string, ParamValue>[] = [];
  for (const l of left) {
    const k = canonicalParams(Object.fromEntries(shared.map((n) => [n, l[n]!])));
    for (const r of byShared.get(k) ?? []) out.push({ ...r, ...l });
  }
  return out;
}

/** A resolved value's point in time: itself if a Date, else the oldest `createdAt` read. */
function pointInTime(
  value: ParamValue,
  available: readonly MaterializedParams[],
  keys: readonly string[],
): number {
  if (value instanceof Date) return value.getTime();
  let oldest = Number.POSITIVE_INFINITY;
  for (let i = 0; i < available.length; i++) {
    const m = available[i]!.materializations.find((x) => x.paramsKey === keys[i]);
    if (m !== undefined) oldest = Math.min(oldest, m.createdAt.getTime());
  }
  return oldest;
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
  const counts = available
    .map((a) => `${a.feature} (${a.materializations.length} materialization(s))`)
    .join(', ');
  return new FeatureStoreError(
    'NO_CONSISTENT_MATERIALIZATION',
    `no parameter set ${formatSpec(spec)} has a materialization of every requested feature: ${counts}. ` +
      'Materialize the missing features for a shared point in time, or pass exact parameter values to compute live.',
    { details: { features: available.map((a) => a.feature) } },
  );
}

function tooOldError(
  spec: ParamSpec,
  available: readonly MaterializedParams[],
  newest: { at: number; name: string; maxAge: number },
  now: number,
): FeatureStoreError {
  const features = available.map((a) => a.feature);
  return new FeatureStoreError(
    'TOO_OLD',
    `${formatSpec(spec)}: the newest point in time at which every requested feature (${features.join(', ')}) is materialized is ` +
      `${new Date(newest.at).toISOString()}, ${formatAge(now - newest.at)} old, but ${newest.name} allows at most ${formatAge(newest.maxAge)}. ` +
      'Materialize the features for a recent point in time, or allow a larger maxAge.',
    {
      details: {
        features,
        newest: new Date(newest.at),
        ageMs: now - newest.at,
        maxAgeMs: newest.maxAge,
      },
    },
  );
}

/** `3 days 4 hours`, `90 ms`: an age as a person reads it. */
function formatAge(ms: number): string {
  const units: [string, number][] = [
    ['day', 86_400_000],
    ['hour', 3_600_000],
    ['minute', 60_000],
    ['second', 1000],
  ];
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, size] of units) {
    const n = Math.floor(rest / size);
    if (n > 0 && parts.length < 2) parts.push(`${n} ${unit}${n === 1 ? '' : 's'}`);
    if (n > 0) rest -= n * size;
  }
  if (parts.length === 0 || (parts.length === 1 && ms < 60_000 && rest > 0)) parts.push(`${rest} ms`);
  return parts.join(' ');
}

/** `{ when: Last(), app: "x" }`: a parameter spec as a person reads it. @internal */
export function formatSpec(spec: ParamSpec): string {
  const parts = Object.entries(spec).map(([name, value]) => {
    if (!isResolver(value)) return `${name}: ${formatParamValue(value)}`;
    const options = value.maxAge === undefined ? '' : `{ maxAge: ${formatAge(value.maxAge)} }`;
    if (value.kind === 'asOf')
      return `${name}: AsOf(${formatParamValue(value.at)}${options ? `, ${options}` : ''})`;
    return `${name}: ${value.kind === 'last' ? 'Last' : 'First'}(${options})`;
  });
  return parts.length === 0 ? '{}' : `{ ${parts.join(', ')} }`;
}
