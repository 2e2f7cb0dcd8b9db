import { FeatureStoreError } from '../errors.js';
import { describeValue } from '../format.js';
import type { StandardSchemaV1 } from './standard-schema.js';

/** Any function a feature can be made of. It takes one parameter object (or nothing). */
// biome-ignore lint/suspicious/noExplicitAny: the parameter type is the user's, carried through generics.
export type FeatureFunction = (...args: any[]) => unknown;

/**
 * Options of {@link feature}. All are optional.
 *
 * ### Example
 * ```ts
 * feature({ module: 'flights', entity: ['origin', 'destination'], tags: ['ops'] }, async function routeDelayShare() {…});
 * ```
 */
export interface FeatureOptions {
  /** Name of the feature inside its module. Default is the function's name. */
  name?: string;
  /**
   * Module the feature belongs to; the qualified name is `module.name`, and
   * `store.addDecorator(d, 'module')` targets it. Default is the file name the feature is defined
   * in, without extension (`features/events.ts` → `events`).
   */
  module?: string;
  /**
   * Key column(s) of the feature's result, e.g. `'user_id'` or `['origin', 'destination']`.
   * Default is the result's first column.
   */
  entity?: string | readonly string[];
  /** What the feature means, in a sentence or two. */
  description?: string;
  /** Who to ask about it, e.g. `'Ana Ruiz <ana@example.com>'`. */
  maintainer?: string;
  /** Lifecycle status, e.g. `'experimental'`, `'production'`, `'deprecated'`. */
  status?: string;
  /** Free-form labels, e.g. `['PII', 'appteam']`. */
  tags?: readonly string[];
  /**
   * Schema of one row's value columns (any Standard Schema: zod, valibot, arktype). When set,
   * `materialize` refuses rows that violate it.
   */
  schema?: StandardSchemaV1;
  /**
   * Part of the feature's version for what no hash of its code can see (a helper module, a model
   * file): bump it when those change, e.g. `'2'`.
   */
  version?: string;
}

/**
 * A feature's documentation: its doc comment (read with the TypeScript compiler API) merged with
 * its options, options winning. `store.describeFeature(f)` returns it.
 */
export interface FeatureMetadata {
  readonly name: string;
  /** The first paragraph of the description, on one line. */
  readonly summary: string | undefined;
  readonly description: string | undefined;
  readonly maintainer: string | undefined;
  readonly status: string | undefined;
  readonly tags: readonly string[];
  /** What each parameter means, from `@param` tags. */
  readonly params: Readonly<Record<string, string>>;
  /** The feature's version including the features it called (see `store.versionOf`). */
  readonly version: string;
  readonly definedAt: string;
}

/** What the registry knows of a feature: `store.describe(f)` and `store.list()` return these. */
export interface FeatureInfo {
  /** Qualified unique name, `module.name`. */
  readonly name: string;
  readonly module: string;
  /** Name inside the module. */
  readonly localName: string;
  /** Declared key column(s), or `undefined` when the first result column is the key. */
  readonly entity: readonly string[] | undefined;
  readonly description: string | undefined;
  readonly maintainer: string | undefined;
  readonly status: string | undefined;
  readonly tags: readonly string[];
  readonly schema: StandardSchemaV1 | undefined;
  /** SHA-256 of the function's source text: a changed function shows up as a new version. */
  readonly sourceHash: string;
  /**
   * SHA-256 of what defines the feature's result: its function's source, the top-level
   * constants and functions of its file that the function reaches (read with TypeScript when the
   * file is readable), and the `version` option. No paths: equal code gives equal versions on
   * any machine. Computed when first read.
   */
  readonly version: string;
  /** `file:line` where the feature was defined. */
  readonly definedAt: string;
}

/**
 * A registered feature: callable exactly like the function it wraps (same parameters, same
 * awaited result), plus its registry entry. With no decorator attached, the awaited value is the
 * very value the function returned.
 */
export type Feature<F extends FeatureFunction = FeatureFunction> = ((
  ...args: Parameters<F>
) => Promise<Awaited<ReturnType<F>>>) & {
  /** The registry entry: name, module, entity, metadata, source hash. */
  readonly info: FeatureInfo;
  /** Runs the function itself, without any decorator (no store is consulted). */
  readonly compute: (...args: Parameters<F>) => Promise<Awaited<ReturnType<F>>>;
};

/** A single decorated call: parameters in, feature result out. */
export type FeatureCall = (params: unknown) => Promise<unknown>;

/** The registry entry of a feature, or a clear error for anything else. @internal */
export function featureInfoOf(feature: unknown): FeatureInfo {
  if (typeof feature === 'function') {
    // `info` is a getter (a redefinition replaces it): read it once.
    const info = (feature as { info?: unknown }).info;
    if (typeof info === 'object' && info !== null) return info as FeatureInfo;
  }
  if (typeof feature === 'object' && feature !== null && 'sourceHash' in feature && 'name' in feature) {
    return feature as FeatureInfo;
  }
  throw new FeatureStoreError(
    'UNKNOWN_FEATURE',
    `expected a feature made with feature(...), but got ${typeof feature === 'function' ? `the plain function "${feature.name}"` : describeValue(feature)}. ` +
      'Register it first: const f = feature(myFunction).',
  );
}
