import { describe, expect, it } from 'vitest';
import { FeatureStoreError } from '../errors.js';
import type { FeatureDecorator } from '../materializer/materializer.js';
import { FeatureStore } from './feature-store.js';

describe('feature registration', () => {
  it('returns a callable that resolves to the very value the function returned', async () => {
    const store = new FeatureStore();
    const result = [{ user_id: 1, minor: true }];
    const minor = store.feature(async function minor() {
      return result;
    });
    expect(await minor()).toBe(result);
    const sync = store.feature(function syncFeature(p: { n: number }) {
      return [{ id: p.n }];
    });
    expect(await sync({ n: 3 })).toEqual([{ id: 3 }]);
  });

  it('names features module.name, with the module defaulting to the defining file', () => {
    const store = new FeatureStore();
    const a = store.feature({ module: 'events' }, async function nFavorites() {
      return [];
    });
    const b = store.feature(async function nEvents() {
      return [];
    });
    const c = store.feature({ name: 'renamed', module: 'events.web' }, async () => []);
    expect(a.info.name).toBe('events.nFavorites');
    expect(b.info.name).toBe('feature-store.nEvents'.replace('-', '_'));
    expect(c.info.name).toBe('events.web.renamed');
    expect(a.info.definedAt).toMatch(/feature-store\.test\.ts:\d+$/);
  });

  it('keeps metadata readable from the registry', () => {
    const store = new FeatureStore();
    const f = store.feature(
      {
        module: 'events',
        entity: ['user_id', 'app'],
        description: 'Favorites so far.',
        maintainer: 'Ana <ana@example.com>',
        status: 'production',
        tags: ['PII'],
      },
      async function nFavorites() {
        return [];
      },
    );
    const info = store.describe(f);
    expect(info).toMatchObject({
      name: 'events.nFavorites',
      module: 'events',
      localName: 'nFavorites',
      entity: ['user_id', 'app'],
      description: 'Favorites so far.',
      maintainer: 'Ana <ana@example.com>',
      status: 'production',
      tags: ['PII'],
    });
    expect(info.sourceHash).toMatch(/^[0-9a-f]{64}$/);
    expect(store.describe('events.nFavorites')).toBe(info);
    expect(store.list().map((i) => i.name)).toEqual(['events.nFavorites']);
  });

  it('refuses a duplicate name, naming both definitions', () => {
    const store = new FeatureStore();
    store.feature({ module: 'm' }, async function f() {
      return [];
    });
    let error: unknown;
    try {
      store.feature({ module: 'm' }, async function f() {
        return [1];
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FeatureStoreError);
    expect((error as FeatureStoreError).code).toBe('DUPLICATE_FEATURE');
    expect((error as FeatureStoreError).message).toMatch(
      /defined at .*feature-store\.test\.ts:\d+; redefined at .*feature-store\.test\.ts:\d+/,
    );
  });

  it('replaces a definition in interactive mode', async () => {
    const store = new FeatureStore();
    store.config.interactive = true;
    store.feature({ module: 'm' }, async function f() {
      return [{ v: 1 }];
    });
    const second = store.feature({ module: 'm' }, async function f() {
      return [{ v: 2 }];
    });
    expect(await second()).toEqual([{ v: 2 }]);
    expect(store.list()).toHaveLength(1);
    expect(store.describe('m.f')).toBe(second.info);
  });

  it('refuses nameless functions, bad names and bad entities with clear errors', () => {
    const store = new FeatureStore();
    expect(() => store.feature({}, (() => () => [])())).toThrow(/has no name/);
    expect(() => store.feature({ module: 'bad module' }, async function ok() {})).toThrow(
      /not an identifier/,
    );
    expect(() => store.feature({ module: 'm', name: 'x"; drop' }, async function ok() {})).toThrow(
      /not an identifier/,
    );
    expect(() => store.feature({ module: 'm', entity: [] }, async function ok() {})).toThrow(/entity option/);
    expect(() => store.feature({ module: 'm' }, 'nope' as never)).toThrow(/takes a function/);
  });

  it('refuses unknown features by name and features of another store', () => {
    const store = new FeatureStore();
    const other = new FeatureStore();
    store.feature({ module: 'm' }, async function f() {
      return [];
    });
    const f = other.feature({ module: 'm' }, async function f() {
      return [];
    });
    expect(() => store.describe('m.missing')).toThrow(expect.objectContaining({ code: 'UNKNOWN_FEATURE' }));
    expect(() => store.withParams({}).getFeatures(f)).toThrow(/another FeatureStore/);
    expect(() => store.withParams({}).getFeatures((async () => []) as never)).toThrow(/plain function/);
  });
});

describe('decorators', () => {
  function tagging(tag: string, log: string[]): FeatureDecorator {
    return (next, info) => async (params) => {
      log.push(`${tag}:${info.name}`);
      const value = (await next(params)) as string[];
      return [...value, tag];
    };
  }

  it('apply to features registered before and after addDecorator, last added outermost', async () => {
    const store = new FeatureStore();
    const log: string[] = [];
    const before = store.feature({ module: 'a' }, async function before() {
      return ['fn'];
    });
    store.addDecorator(tagging('first', log));
    store.addDecorator(tagging('second', log));
    const after = store.feature({ module: 'a' }, async function after() {
      return ['fn'];
    });
    expect(await before()).toEqual(['fn', 'first', 'second']);
    expect(await after()).toEqual(['fn', 'first', 'second']);
    expect(log).toEqual(['second:a.before', 'first:a.before', 'second:a.after', 'first:a.after']);
  });

  it('with a module prefix, cover that module and its sub-modules only', async () => {
    const store = new FeatureStore();
    const log: string[] = [];
    store.addDecorator(tagging('events', log), 'events');
    const make = (module: string) =>
      store.feature({ module }, async function f() {
        return ['fn'];
      });
    const events = make('events');
    const sub = make('events.web');
    const other = make('eventsExtra');
    const root = make('billing');
    expect(await events()).toEqual(['fn', 'events']);
    expect(await sub()).toEqual(['fn', 'events']);
    expect(await other()).toEqual(['fn']);
    expect(await root()).toEqual(['fn']);
  });

  it('pass the parameters through to the function', async () => {
    const store = new FeatureStore();
    store.addDecorator((next) => async (params) => next(params));
    const f = store.feature({ module: 'm' }, async function echo(p: { when: Date }) {
      return p;
    });
    const params = { when: new Date(0) };
    expect(await f(params)).toBe(params);
  });
});

describe('interactive redefinition', () => {
  it('old handles follow the current definition: call, compute, info and getFeatures', async () => {
    const store = new FeatureStore();
    store.config.interactive = true;
    const old = store.feature({ module: 'm', entity: 'id' }, async function f() {
      return [{ id: 1, v: 1 }];
    });
    const current = store.feature({ module: 'm', entity: 'id' }, async function f() {
      return [{ id: 1, v: 2 }];
    });
    expect(await old()).toEqual([{ id: 1, v: 2 }]);
    expect(await old.compute()).toEqual([{ id: 1, v: 2 }]);
    expect(old.info).toBe(current.info);
    expect(store.describe(old)).toBe(current.info);
    expect(await store.withParams({}).getFeatures(old).toArray()).toEqual([{ id: 1, v: 2 }]);
  });
});
