import { FeatureStoreError } from '../errors.js';
import { formatParams } from '../format.js';
import type { Materialization } from '../materializer/materializer.js';
import type { FeatureInfo } from './feature.js';
import { hashOf } from './source-info.js';

/** What a read does when the materialization it would serve is stale. */
export type OnStale = 'warn' | 'serve' | 'compute' | 'error';

/** What freshness needs from the feature store that registered a feature. @internal */
export interface VersionHost {
  readonly config: { readonly onStale: OnStale };
  /** The code version (`info.version`) of a feature registered here, or `undefined`. */
  codeVersionOf(name: string): string | undefined;
  /** Changes whenever a code version could have changed (a redefinition). */
  readonly generation: number;
}

/**
 * A version from a feature's own code version and the code versions of every feature it called:
 * the formula of `store.versionOf` and of each materialization's `version`. @internal
 */
export function versionWith(own: string, lineage: Readonly<Record<string, string>>): string {
  const names = Object.keys(lineage).sort();
  return names.length === 0 ? own : hashOf([own, names.map((name) => [name, lineage[name]])]);
}

const owners = new WeakMap<FeatureInfo, VersionHost>();

/** Records which store registered `info`, so a decorator given only the info finds its store. @internal */
export function ownedBy(info: FeatureInfo, host: VersionHost): void {
  owners.set(info, host);
}

/** The store that registered `info`, if any. @internal */
export function ownerOf(info: FeatureInfo): VersionHost | undefined {
  return owners.get(info);
}

/** A materialization's current version in `host`, kept per generation: computed once, not per read. */
const current = new WeakMap<
  Materialization,
  { host: VersionHost; generation: number; version: string | undefined }
>();

/**
 * Whether `materialization` was computed with another version than the code `host` runs now:
 * `undefined` when `host` does not register the feature, or the record predates versions.
 * Features it called that `host` does not register count as unchanged. @internal
 */
export function isStale(
  host: VersionHost | undefined,
  materialization: Materialization,
): boolean | undefined {
  if (host === undefined || materialization.version === '') return undefined;
  let cached = current.get(materialization);
  if (cached === undefined || cached.host !== host || cached.generation !== host.generation) {
    const own = host.codeVersionOf(materialization.featureName);
    let version: string | undefined;
    if (own !== undefined) {
      const lineage: Record<string, string> = {};
      for (const [name, stored] of Object.entries(materialization.lineage)) {
        lineage[name] = host.codeVersionOf(name) ?? stored;
      }
      version = versionWith(own, lineage);
    }
    cached = { host, generation: host.generation, version };
    current.set(materialization, cached);
  }
  return cached.version === undefined ? undefined : cached.version !== materialization.version;
}

/** Warnings given, per store, feature and pair of versions: each is given once. */
const warned = new WeakMap<VersionHost, Set<string>>();

/**
 * What a read or decorated call does with a stale `materialization` of `feature`, following
 * `store.config.onStale`: `'serve'` it (after a warning, once per feature and version, for
 * `'warn'`), `'compute'` instead, or throw `STALE_MATERIALIZATION`. Fresh ones are served. @internal
 */
export function governStale(feature: FeatureInfo, materialization: Materialization): 'serve' | 'compute' {
  const host = ownerOf(feature);
  if (host === undefined || isStale(host, materialization) !== true) return 'serve';
  const mode = host.config.onStale;
  if (mode === 'serve') return 'serve';
  if (mode === 'compute') return 'compute';
  const now = current.get(materialization)!.version!;
  const what = staleMessage(feature.name, materialization, now);
  if (mode === 'error') {
    throw new FeatureStoreError(
      'STALE_MATERIALIZATION',
      `${what} Re-materialize it with the current code, or set store.config.onStale to 'serve' or 'compute'.`,
      {
        feature: feature.name,
        params: materialization.params,
        details: { storedVersion: materialization.version, currentVersion: now },
      },
    );
  }
  const seen = warned.get(host) ?? new Set<string>();
  warned.set(host, seen);
  const key = `${feature.name}\u0000${materialization.version}\u0000${now}`;
  if (!seen.has(key)) {
    seen.add(key);
    process.emitWarning(
      `Feature "${feature.name}": ${what} Serving it anyway; re-materialize it with the current code, ` +
        "or set store.config.onStale to 'compute' (run the code instead), 'error' or 'serve' (no warning).",
      { code: 'FEATUREFN_STALE', type: 'StaleMaterializationWarning' },
    );
  }
  return 'serve';
}

/**
 * `onStale` over a planned read's sources: whether to compute instead of serving, and (for
 * `explain()`) a note on the stale ones. `explaining` only describes: no warning, no error. @internal
 */
export function governSources(
  sources: readonly { readonly feature: FeatureInfo; readonly materialization: Materialization }[],
  explaining: boolean,
): { compute: boolean; note: string | undefined } {
  let compute = false;
  const notes: string[] = [];
  for (const { feature, materialization } of sources) {
    const host = ownerOf(feature);
    if (isStale(host, materialization) !== true) continue;
    if (explaining) {
      const mode = host!.config.onStale;
      const outcome =
        mode === 'error' ? 'the read will fail' : mode === 'compute' ? 'computed instead' : 'served';
      notes.push(
        `${feature.name} (onStale '${mode}': ${outcome}): ${staleMessage(feature.name, materialization)}`,
      );
      compute ||= host!.config.onStale === 'compute';
    } else if (governStale(feature, materialization) === 'compute') {
      compute = true;
    }
  }
  return { compute, note: notes.length === 0 ? undefined : notes.join('\n') };
}

/** One line naming both versions, for `explain()` and the messages. @internal */
export function staleMessage(name: string, materialization: Materialization, now?: string): string {
  const running = now ?? current.get(materialization)?.version ?? 'unknown';
  return (
    `the materialization for ${formatParams(materialization.params)} was computed with version ${short(materialization.version)}, ` +
    `but the code now running is version ${short(running)} (the feature "${name}" or a feature it calls changed).`
  );
}

function short(version: string): string {
  return version.slice(0, 12);
}
