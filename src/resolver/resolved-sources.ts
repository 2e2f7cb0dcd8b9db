import type { Params } from '../feature/params.js';
import type { Materialization, ResolvedSources } from '../materializer/materializer.js';
import type { Resolution } from './resolvers.js';

/**
 * A store's resolution as sources: each feature's catalog record at its key, and the read's
 * parameters taken from those records (the catalog's frozen values, never the caller's Dates).
 * `undefined` stays `undefined` (some exact parameters are not materialized). @internal
 */
export function resolvedSources(
  resolution: Resolution | undefined,
  catalogs: readonly (readonly Materialization[])[],
): ResolvedSources | undefined {
  if (resolution === undefined) return undefined;
  const materializations = catalogs.map((ms, i) => ms.find((m) => m.paramsKey === resolution.keys[i])!);
  const params: Record<string, unknown> = {};
  for (const m of materializations) Object.assign(params, m.params);
  for (const name of Object.keys(resolution.params))
    if (!(name in params)) params[name] = resolution.params[name];
  return Object.freeze({
    params: Object.freeze(params) as Params,
    materializations: Object.freeze(materializations),
    ...(resolution.expiresAt === undefined ? {} : { expiresAt: resolution.expiresAt }),
  });
}

/** False once a remembered resolution's `maxAge` bound no longer admits it. @internal */
export function fresh(resolved: ResolvedSources | undefined): boolean {
  return resolved?.expiresAt === undefined || Date.now() <= resolved.expiresAt;
}
