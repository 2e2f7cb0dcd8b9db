import type { FeatureMetadata } from '../feature/feature.js';
import type { ColumnSpec } from '../frame/columns.js';
import type { StoredFeature } from './materializer.js';

/** What a publication records of its feature in the store's catalog. */
export interface FeatureRecordInput {
  /** `store.versionOf` at the run. */
  readonly version: string;
  /** Every feature the run called, with its code version. */
  readonly lineage: Readonly<Record<string, string>>;
  /** `store.describeFeature` at the run. */
  readonly metadata: FeatureMetadata;
  /** Parameter names the materialization was computed with. */
  readonly paramNames: readonly string[];
}

/** The JSON text a store keeps per feature and version (everything but name, version and time). @internal */
export function featureRecordText(
  input: FeatureRecordInput,
  key: readonly string[],
  columns: readonly ColumnSpec[],
): string {
  const { metadata } = input;
  const names = [...new Set([...input.paramNames, ...Object.keys(metadata.params)])].sort();
  return JSON.stringify({
    summary: metadata.summary ?? null,
    description: metadata.description ?? null,
    maintainer: metadata.maintainer ?? null,
    status: metadata.status ?? null,
    tags: metadata.tags,
    entity: key,
    params: names.map((name) => ({ name, description: metadata.params[name] ?? null })),
    columns: columns.filter((c) => !key.includes(c.name)),
    calls: input.lineage,
    definedAt: metadata.definedAt,
  });
}

/** A stored feature from its catalog row. @internal */
export function storedFeatureOf(
  name: string,
  version: string,
  text: string,
  recordedAt: Date,
): StoredFeature {
  const r = JSON.parse(text) as Record<string, unknown>;
  const orUndefined = (v: unknown) => (v === null || v === undefined ? undefined : (v as string));
  return Object.freeze({
    name,
    version,
    summary: orUndefined(r.summary),
    description: orUndefined(r.description),
    maintainer: orUndefined(r.maintainer),
    status: orUndefined(r.status),
    tags: Object.freeze([...(r.tags as string[])]),
    entity: Object.freeze([...(r.entity as string[])]),
    params: Object.freeze(
      (r.params as { name: string; description: string | null }[]).map((p) =>
        Object.freeze({ name: p.name, description: orUndefined(p.description) }),
      ),
    ),
    columns: Object.freeze(r.columns as ColumnSpec[]),
    calls: Object.freeze({ ...(r.calls as Record<string, string>) }),
    definedAt: r.definedAt as string,
    recordedAt,
  });
}
