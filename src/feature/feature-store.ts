import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import { FeatureStoreError } from '../errors.js';
import { describeValue } from '../format.js';
import type { FeatureDecorator, Materializer } from '../materializer/materializer.js';
import { LazyFrame } from '../query/lazy-frame.js';
import { notMaterialized } from '../query/on-missing.js';
import type { ParamSpec } from '../resolver/resolvers.js';
import {
  type Attachment,
  covers,
  forgetAttachment,
  recordAttachment,
  STORE_OF_FEATURE,
} from './attachments.js';
import { callerLocation, fileStem } from './caller.js';
import {
  type Feature,
  type FeatureCall,
  type FeatureFunction,
  type FeatureInfo,
  type FeatureMetadata,
  type FeatureOptions,
  featureInfoOf,
} from './feature.js';
import { type OnStale, ownedBy, versionWith } from './freshness.js';
import type { Params } from './params.js';
import { docCommentAt, hashOf, reachedDeclarations, summaryOf } from './source-info.js';

/** One name's current definition; interactive redefinition updates it in place, so old handles follow. */
interface Registered {
  info: FeatureInfo;
  fn: FeatureFunction;
  /** Features its runs called, by qualified name (recorded as it runs). */
  lineage: Set<string>;
  /** Decorated call, rebuilt when decorators change. */
  chain: FeatureCall | undefined;
  /** The materializer serving reads (`null`: none), found again when decorators change. */
  serving: Materializer | null | undefined;
  /** The callable `feature()` returned; a redefinition returns it again. */
  handle: Feature | undefined;
  metadata: FeatureMetadata | undefined;
}

/** The lineage set of the feature whose function is running, to record the features it calls. */
const running = new AsyncLocalStorage<Set<string>>();

/** Store-wide settings. */
export interface FeatureStoreConfig {
  /**
   * For REPLs and watch mode: redefining a feature replaces it instead of raising
   * `DUPLICATE_FEATURE`. Default is `false`.
   */
  interactive: boolean;
  /**
   * What happens when feature code would run because nothing is materialized: `'compute'`
   * (default) runs it; `'error'` refuses with `NOT_MATERIALIZED` and runs nothing, to keep
   * feature code out of a server's request path. It applies to reads (`getFeatures(…).toArray()`
   * at parameters with no materialization) and to decorated calls (`departures({ when })`) that
   * no materializer serves. It does not apply to `materializer.materialize()`, nor to calls made
   * by a feature's own code while it runs (a job computing a derived feature).
   */
  onMissing?: 'compute' | 'error';
  /**
   * What a read (`getFeatures`) or decorated call does when the materialization it would serve was
   * computed with another version than the code now running: `'warn'` (default: serve it and warn
   * once per feature and version), `'serve'` (silently), `'compute'` (run the code instead) or
   * `'error'` (throw `STALE_MATERIALIZATION`).
   */
  onStale: OnStale;
}

/** Parameters fixed for a read, waiting for the features to read. */
export interface ParamsScope {
  /**
   * A lazy frame of these features joined on their entity key, at the scope's parameters.
   * Nothing runs until `toArray()`, `toArrow()` or `explain()`.
   */
  getFeatures(...features: readonly (Feature | string)[]): LazyFrame;
}

/**
 * A registry of features and the decorators attached to them. `defaultStore` is the
 * process-wide one the bare {@link feature} registers into; create others for isolation (tests,
 * several projects in one process).
 *
 * ### Example
 * ```ts
 * const store = new FeatureStore();
 * const departures = store.feature({ module: 'flights', entity: 'origin' }, async function departures({ when }) {…});
 * store.addDecorator(materializer.decorator);
 * const rows = await store.withParams({ when: Last() }).getFeatures(departures).filter({ origin: 'SFO' }).toArray();
 * ```
 */
export class FeatureStore {
  /** Store-wide settings; change them at any time. */
  readonly config: FeatureStoreConfig = { interactive: false, onMissing: 'compute', onStale: 'warn' };

  #features = new Map<string, Registered>();
  #generation = 0;
  #servingGeneration = 0;
  #decorators: { readonly decorator: FeatureDecorator; readonly modulePrefix: string | undefined }[] = [];

  /**
   * Registers `fn` as a feature and returns a callable with the same parameters and awaited
   * result. With nothing attached, calling it runs `fn` and resolves to exactly what it returned.
   */
  feature<F extends FeatureFunction>(fn: F): Feature<F>;
  feature<F extends FeatureFunction>(options: FeatureOptions, fn: F): Feature<F>;
  feature<F extends FeatureFunction>(optionsOrFn: FeatureOptions | F, maybeFn?: F): Feature<F> {
    const [options, fn] = typeof optionsOrFn === 'function' ? [{}, optionsOrFn] : [optionsOrFn, maybeFn];
    if (typeof fn !== 'function') {
      throw new FeatureStoreError(
        'INVALID_FEATURE',
        `feature() takes a function (optionally after an options object), but got ${describeValue(fn)}.`,
      );
    }
    const info = this.#infoOf(options as FeatureOptions, fn);
    const existing = this.#features.get(info.name);
    if (existing !== undefined && !this.config.interactive) {
      throw new FeatureStoreError(
        'DUPLICATE_FEATURE',
        `a feature with this name is already registered (defined at ${existing.info.definedAt}; redefined at ${info.definedAt}). ` +
          'Give one of them another name or module, or set store.config.interactive = true to replace definitions.',
        { feature: info.name, details: { first: existing.info.definedAt, second: info.definedAt } },
      );
    }
    ownedBy(info, this);
    if (existing !== undefined) {
      this.#generation++;
      this.#servingGeneration++;
      Object.assign(existing, {
        info,
        fn,
        lineage: new Set(),
        chain: undefined,
        serving: undefined,
        metadata: undefined,
      });
      return existing.handle as Feature<F>;
    }
    const entry: Registered = {
      info,
      fn,
      lineage: new Set(),
      chain: undefined,
      serving: undefined,
      handle: undefined,
      metadata: undefined,
    };
    this.#features.set(info.name, entry);
    const handle = Object.defineProperties((params: unknown) => this.#call(entry, params), {
      name: { value: info.localName },
      info: { get: () => entry.info, enumerable: true },
      compute: { value: async (params: unknown) => this.#run(entry, params) },
      [STORE_OF_FEATURE]: { value: this },
    });
    entry.handle = handle as unknown as Feature;
    return entry.handle as Feature<F>;
  }

  /**
   * Attaches a decorator to every feature of the store, registered before or after this call;
   * with `modulePrefix`, only to features of that module and its sub-modules (`'flights'`
   * covers `flights` and `flights.routes`, not `flightsExtra`).
   *
   * Order: decorators wrap in the order they are added, so the one added last sees a call first.
   * A feature's `getFeatures` reads are served by the last-added materializer decorator covering it.
   *
   * Returns a function that detaches this decorator again (calling it twice does nothing more);
   * a materializer's `close()` detaches its decorator from every store.
   *
   * ### Example
   * ```ts
   * const detach = store.addDecorator(materializer.decorator, 'events');
   * detach(); // calls of events.* features run their functions again
   * ```
   */
  addDecorator(decorator: FeatureDecorator, modulePrefix?: string): () => void {
    if (typeof decorator !== 'function') {
      throw new FeatureStoreError(
        'INVALID_FEATURE',
        `addDecorator takes a decorator function, but got ${describeValue(decorator)}.`,
      );
    }
    const added = { decorator, modulePrefix };
    this.#decorators.push(added);
    this.#decoratorsChanged();
    const attachment: Attachment = {
      store: this,
      modulePrefix,
      detach: () => {
        const index = this.#decorators.indexOf(added);
        if (index === -1) return;
        this.#decorators.splice(index, 1);
        forgetAttachment(decorator, attachment);
        this.#decoratorsChanged();
      },
    };
    recordAttachment(decorator, attachment);
    return attachment.detach;
  }

  #decoratorsChanged(): void {
    this.#servingGeneration++;
    for (const entry of this.#features.values()) {
      entry.chain = undefined;
      entry.serving = undefined;
    }
  }

  /** Registry entries of every feature, sorted by name. */
  list(): FeatureInfo[] {
    return [...this.#features.values()].map((e) => e.info).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** The registry entry of a feature, by callable or qualified name. */
  describe(feature: Feature | string): FeatureInfo {
    return this.#entry(feature).info;
  }

  /**
   * Fixes parameters for a read; each may be an exact value or a resolver (`Last()`, `First()`,
   * `AsOf(date)`) decided from what is materialized.
   */
  withParams(params: ParamSpec): ParamsScope {
    return new Scope(this, params);
  }

  /** Decorators covering a feature, in the order they were added. @internal */
  decoratorsOf(info: FeatureInfo): FeatureDecorator[] {
    return this.#decorators.filter((d) => covers(d.modulePrefix, info.module)).map((d) => d.decorator);
  }

  /** The store that serves reads of a feature: the last-added materializer covering it. @internal */
  servingMaterializer(info: FeatureInfo): Materializer | undefined {
    const entry = this.#features.get(info.name);
    if (entry?.info !== info) return servingOf(this.decoratorsOf(info));
    entry.serving ??= servingOf(this.decoratorsOf(info)) ?? null;
    return entry.serving ?? undefined;
  }

  /** A decorated call by name. @internal */
  call(info: FeatureInfo, params: unknown): Promise<unknown> {
    return this.#call(this.#features.get(info.name)!, params);
  }

  /**
   * Qualified names of the features this feature's runs have called so far in this process
   * (directly), sorted. Recorded as it runs, whether the inner call was computed or served.
   */
  lineageOf(feature: Feature | string): string[] {
    return [...this.#entry(feature).lineage].sort();
  }

  /**
   * The feature's version including the features it called: its own `info.version` and,
   * for each feature in {@link lineageOf}, that feature's version computed the same way. Meaningful
   * after a run (a materialization, a call); before, it is `info.version` with no lineage.
   *
   * ### Example
   * ```ts
   * await materializer.materialize(routeDelayShare, { when });
   * store.versionOf(routeDelayShare); // changes when routeDelayShare or a feature it calls changes
   * ```
   */
  versionOf(feature: Feature | string): string {
    const entry = this.#entry(feature);
    return versionWith(entry.info.version, this.lineageVersionsOf(entry.info.name));
  }

  /**
   * Every feature the feature's runs called in this process, directly or through others, with
   * its own code version (`info.version`). @internal
   */
  lineageVersionsOf(name: string): Record<string, string> {
    const found: Record<string, string> = {};
    const visit = (entry: Registered) => {
      for (const called of entry.lineage) {
        const callee = this.#features.get(called);
        if (callee === undefined || called === name || Object.hasOwn(found, called)) continue;
        found[called] = callee.info.version;
        visit(callee);
      }
    };
    visit(this.#entry(name));
    return found;
  }

  /** The code version of a registered feature, or `undefined`. @internal */
  codeVersionOf(name: string): string | undefined {
    return this.#features.get(name)?.info.version;
  }

  /** Changes whenever a feature is redefined. @internal */
  get generation(): number {
    return this.#generation;
  }

  /** Changes whenever {@link servingMaterializer} could answer otherwise (decorators, redefinitions). @internal */
  get servingGeneration(): number {
    return this.#servingGeneration;
  }

  /**
   * The feature's documentation: its doc comment (summary, text, `@maintainer`, `@status`,
   * `@tags` comma-separated, `@param`) merged with its options, options winning. The comment is
   * read from the defining file with the TypeScript compiler API on the first call (never at
   * registration); without the optional `typescript` package, or for an unreadable file, the
   * options alone.
   *
   * ### Example
   * ```ts
   * store.describeFeature(nFavorites);
   * // { name: 'events.nFavorites', summary: 'How many favorites…', maintainer: 'John Smith <…>', status: 'production', tags: ['PII', 'appteam'], … }
   * ```
   */
  describeFeature(feature: Feature | string): FeatureMetadata {
    const entry = this.#entry(feature);
    if (entry.metadata === undefined) {
      const { info } = entry;
      const doc = docCommentAt(info.definedAt);
      const description = info.description ?? doc.description;
      entry.metadata = Object.freeze({
        name: info.name,
        summary: summaryOf(description),
        description,
        maintainer: info.maintainer ?? doc.maintainer,
        status: info.status ?? doc.status,
        tags: info.tags.length > 0 ? info.tags : doc.tags,
        params: doc.params,
        version: info.version,
        definedAt: info.definedAt,
      });
    }
    return { ...entry.metadata, version: this.versionOf(feature) };
  }

  #call(entry: Registered, params: unknown): Promise<unknown> {
    running.getStore()?.add(entry.info.name);
    if (entry.chain === undefined) {
      let chain: FeatureCall = (p) => {
        // Reached only when no decorator served the call: the function itself would run.
        if (this.config.onMissing === 'error' && running.getStore() === undefined) {
          return Promise.reject(notMaterialized([entry.info.name], paramsOf(p)));
        }
        return this.#run(entry, p);
      };
      for (const decorator of this.decoratorsOf(entry.info)) chain = decorator(chain, entry.info);
      entry.chain = chain;
    }
    return entry.chain(params);
  }

  /** Runs the function itself, recording the features it calls. */
  async #run(entry: Registered, params: unknown): Promise<unknown> {
    return running.run(entry.lineage, () => entry.fn(params));
  }

  #entry(feature: Feature | string): Registered {
    const name = typeof feature === 'string' ? feature : featureInfoOf(feature).name;
    const entry = this.#features.get(name);
    if (entry === undefined || (typeof feature !== 'string' && entry.info !== featureInfoOf(feature))) {
      const known = [...this.#features.keys()].slice(0, 20).join(', ');
      throw new FeatureStoreError(
        'UNKNOWN_FEATURE',
        entry === undefined
          ? `no feature "${name}" is registered in this store${known ? `; known features: ${known}` : ''}.`
          : `the feature "${name}" given was registered in another FeatureStore (or replaced); use the one from this store.`,
        { feature: name },
      );
    }
    return entry;
  }

  #infoOf(options: FeatureOptions, fn: FeatureFunction): FeatureInfo {
    if (typeof options !== 'object' || options === null) {
      throw new FeatureStoreError(
        'INVALID_FEATURE',
        `feature options must be an object, but got ${describeValue(options)}.`,
      );
    }
    const definedAt = callerLocation();
    const localName = options.name ?? fn.name;
    if (!localName) {
      throw new FeatureStoreError(
        'INVALID_FEATURE',
        `the feature defined at ${definedAt} has no name: use a named function (async function departures(...) {...}) or pass { name }.`,
      );
    }
    const module = options.module ?? moduleOf(definedAt);
    for (const [what, value] of [
      ['name', localName],
      ['module', module],
    ] as const) {
      if (
        !/^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/.test(value) ||
        (what === 'name' && value.includes('.'))
      ) {
        throw new FeatureStoreError(
          'INVALID_FEATURE',
          `the feature ${what} ${JSON.stringify(value)} (defined at ${definedAt}) is not an identifier; use letters, digits and _${what === 'module' ? ', with dots between parts' : ''}.`,
        );
      }
    }
    const entity =
      options.entity === undefined
        ? undefined
        : Object.freeze(typeof options.entity === 'string' ? [options.entity] : [...options.entity]);
    if (
      entity !== undefined &&
      (entity.length === 0 || entity.some((e) => typeof e !== 'string' || e === ''))
    ) {
      throw new FeatureStoreError(
        'INVALID_FEATURE',
        `the entity option of "${module}.${localName}" must name one or more columns.`,
      );
    }
    let version: string | undefined;
    const versionOption = options.version;
    if (versionOption !== undefined && typeof versionOption !== 'string') {
      throw new FeatureStoreError(
        'INVALID_FEATURE',
        `the version option of "${module}.${localName}" must be a string, but got ${describeValue(versionOption)}.`,
      );
    }
    const source = fn.toString();
    // Lazy: reading the defining file belongs to the first read of the version, not to import.
    return Object.freeze({
      name: `${module}.${localName}`,
      module,
      localName,
      entity,
      description: options.description,
      maintainer: options.maintainer,
      status: options.status,
      tags: Object.freeze([...(options.tags ?? [])]),
      schema: options.schema,
      sourceHash: createHash('sha256').update(source).digest('hex'),
      get version() {
        version ??= hashOf([source, reachedDeclarations(definedAt, source), versionOption ?? null]);
        return version;
      },
      definedAt,
    });
  }
}

class Scope implements ParamsScope {
  readonly #store: FeatureStore;
  readonly #params: ParamSpec;

  constructor(store: FeatureStore, params: ParamSpec) {
    this.#store = store;
    this.#params = params;
  }

  getFeatures(...features: readonly (Feature | string)[]): LazyFrame {
    const infos: FeatureInfo[] = new Array(features.length);
    for (let i = 0; i < features.length; i++) infos[i] = this.#store.describe(features[i]!);
    return LazyFrame.of(this.#store, infos, this.#params);
  }
}

/** A call's parameters for a message: the object if it is one. */
function paramsOf(params: unknown): Params {
  return typeof params === 'object' && params !== null ? (params as Params) : {};
}

function servingOf(decorators: readonly FeatureDecorator[]): Materializer | undefined {
  return decorators.findLast((d) => d.materializer !== undefined)?.materializer;
}

function moduleOf(definedAt: string): string {
  const name = fileStem(definedAt.replace(/:\d+$/, '')).replace(/\.(test|spec)$/, '');
  const cleaned = name.replace(/[^\w$]/g, '_');
  return /^[A-Za-z_$]/.test(cleaned) ? cleaned : 'main';
}

/** The process-wide store that {@link feature} registers into. */
export const defaultStore = new FeatureStore();

/**
 * Registers a function as a feature of {@link defaultStore}. The returned callable takes the same
 * parameters and resolves to exactly what the function returns; attach materializers elsewhere
 * with `defaultStore.addDecorator(...)`.
 *
 * ### Example
 * ```ts
 * /** Departures from each airport up to `when`. *\/
 * export const departures = feature({ module: 'flights', entity: 'origin' }, async function departures({ when }: { when: Date }) {
 *   return flights.filter((f) => f.date <= when).reduce(countByOrigin, []);
 * });
 * ```
 */
export function feature<F extends FeatureFunction>(fn: F): Feature<F>;
export function feature<F extends FeatureFunction>(options: FeatureOptions, fn: F): Feature<F>;
export function feature<F extends FeatureFunction>(optionsOrFn: FeatureOptions | F, fn?: F): Feature<F> {
  return fn === undefined
    ? defaultStore.feature(optionsOrFn as F)
    : defaultStore.feature(optionsOrFn as FeatureOptions, fn);
}
